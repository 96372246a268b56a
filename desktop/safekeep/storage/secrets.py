"""Named secrets of one destination, as providers see them.

A provider that must keep a secret it obtained itself (an OAuth refresh token) or read one the
person entered (an SFTP password) is given a :class:`SecretStore` in its
:class:`~safekeep.storage.registry.ProviderSettings`. The store is already *scoped to one
destination*: names such as ``"oauth-token"`` or ``"sftp-password"`` are the provider's own and
never collide between destinations. The app's store is the OS keyring
(``safekeep.state.secrets``); :class:`MemorySecretStore` serves tests and one-off CLI runs.
"""

from __future__ import annotations

import threading
from typing import Protocol


class SecretStore(Protocol):
    """Named secrets of one destination. Implementations must be safe to call from any thread."""

    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str) -> None: ...

    def delete(self, name: str) -> None:
        """Forget ``name``; forgetting a name that is not stored is not an error."""
        ...


class MemorySecretStore:
    """A :class:`SecretStore` in memory (tests, and one-off CLI runs that keep nothing)."""

    def __init__(self, initial: dict[str, str] | None = None) -> None:
        self._items = dict(initial or {})
        self._lock = threading.Lock()

    def get(self, name: str) -> str | None:
        with self._lock:
            return self._items.get(name)

    def set(self, name: str, value: str) -> None:
        with self._lock:
            self._items[name] = value

    def delete(self, name: str) -> None:
        with self._lock:
            self._items.pop(name, None)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._items)

    def __repr__(self) -> str:  # never show the secrets themselves
        return f"MemorySecretStore({len(self._items)} secrets)"
