"""Read-only access: ``save`` and ``remove`` are refused before they reach the provider.

Restore, check and browsing open repositories through :class:`ReadOnlyBackend` so they can never
change one. ``create`` is refused too (it writes folders); reads pass straight through.
"""

from __future__ import annotations

from collections.abc import Iterator

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.storage.base import Backend, FileInfo, FileType, Handle
from safekeep.storage.errors import PermissionDenied
from safekeep.storage.wrappers.delegate import Wrapper

READ_ONLY_MESSAGE = "repository opened read-only"


def _refuse() -> PermissionDenied:
    return PermissionDenied(
        READ_ONLY_MESSAGE, hint="This operation only reads the backup; it never changes it."
    )


class ReadOnlyBackend(Wrapper):
    """Wraps ``inner``; writes raise :class:`~safekeep.storage.errors.PermissionDenied`."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)

    def create(self, *, cancel: CancelToken = NEVER) -> None:
        raise _refuse()

    def save(self, h: Handle, data: bytes | bytearray | memoryview, *, cancel: CancelToken = NEVER) -> None:
        raise _refuse()

    def load(
        self, h: Handle, offset: int = 0, length: int | None = None, *, cancel: CancelToken = NEVER
    ) -> bytes:
        return self._inner.load(h, offset, length, cancel=cancel)

    def stat(self, h: Handle, *, cancel: CancelToken = NEVER) -> FileInfo:
        return self._inner.stat(h, cancel=cancel)

    def list(self, type: FileType, *, cancel: CancelToken = NEVER) -> Iterator[FileInfo]:
        return self._inner.list(type, cancel=cancel)

    def remove(self, h: Handle, *, cancel: CancelToken = NEVER) -> None:
        raise _refuse()
