"""The base every wrapper extends: it holds the inner backend and passes through what it does not change."""

from __future__ import annotations

from safekeep.storage.base import Backend, Properties


class Wrapper:
    """Holds ``inner``; reports its properties and closes it. Subclasses wrap the calls they change."""

    def __init__(self, inner: Backend) -> None:
        self._inner = inner

    @property
    def inner(self) -> Backend:
        return self._inner

    @property
    def properties(self) -> Properties:
        return self._inner.properties

    def close(self) -> None:
        self._inner.close()
