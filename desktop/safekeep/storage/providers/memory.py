"""An in-memory provider for tests, with fault injection and call counting.

:class:`MemoryBackend` keeps the same contract as every other provider (it passes
``tests/contract/``). Saving a name that already exists is a no-op when the bytes are identical
and raises :class:`~safekeep.storage.errors.AlreadyExists` otherwise, like the local provider.

Tests steer it with:

- ``fail_next(op, exc, count=1)`` — the next ``count`` calls of ``op`` (``"save"``, ``"load"``,
  ``"stat"``, ``"list"``, ``"remove"``, ``"create"``) raise ``exc`` instead of running. A failed
  save stores nothing.
- ``calls`` — how many times each operation was called (failed calls included).
- ``files`` — a snapshot of what is stored, keyed by :class:`~safekeep.storage.base.Handle`.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Iterator

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.storage.base import FileInfo, FileType, Handle, Properties, check_range
from safekeep.storage.errors import AlreadyExists, NotFound

OPERATIONS = frozenset({"create", "save", "load", "stat", "list", "remove"})


class MemoryBackend:
    """A thread-safe in-memory repository store. See the module docstring."""

    def __init__(self, *, location: str = "memory:", connections: int = 4) -> None:
        self._lock = threading.Lock()
        self._files: dict[Handle, bytes] = {}
        self._faults: dict[str, deque[Exception]] = {op: deque() for op in OPERATIONS}
        self._calls: Counter[str] = Counter()
        self._properties = Properties(location=location, connections=connections, is_local=False)
        self.closed = False

    # -- test hooks ----------------------------------------------------------------------------

    def fail_next(self, op: str, exc: Exception, count: int = 1) -> None:
        """Make the next ``count`` calls of ``op`` raise ``exc``."""
        if op not in OPERATIONS:
            raise ValueError(f"unknown operation {op!r}; expected one of {sorted(OPERATIONS)}")
        with self._lock:
            self._faults[op].extend([exc] * count)

    def clear_faults(self) -> None:
        with self._lock:
            for q in self._faults.values():
                q.clear()

    @property
    def calls(self) -> dict[str, int]:
        """Calls per operation so far (including calls that failed)."""
        with self._lock:
            return {op: self._calls[op] for op in OPERATIONS}

    @property
    def files(self) -> dict[Handle, bytes]:
        with self._lock:
            return dict(self._files)

    def _enter(self, op: str, cancel: CancelToken) -> None:
        with self._lock:
            self._calls[op] += 1
            fault = self._faults[op].popleft() if self._faults[op] else None
        if fault is not None:
            raise fault
        cancel.raise_if_cancelled()

    # -- Backend -------------------------------------------------------------------------------

    @property
    def properties(self) -> Properties:
        return self._properties

    def create(self, *, cancel: CancelToken = NEVER) -> None:
        self._enter("create", cancel)

    def save(self, h: Handle, data: bytes | bytearray | memoryview, *, cancel: CancelToken = NEVER) -> None:
        self._enter("save", cancel)
        content = bytes(data)
        cancel.raise_if_cancelled()  # the "commit point": nothing is stored after cancel
        with self._lock:
            existing = self._files.get(h)
            if existing is None:
                self._files[h] = content
                return
        if existing != content:
            raise AlreadyExists(
                f"{h.path()} already exists with different content.",
                hint="Repository files are never overwritten.",
            )

    def load(
        self, h: Handle, offset: int = 0, length: int | None = None, *, cancel: CancelToken = NEVER
    ) -> bytes:
        check_range(offset, length)
        self._enter("load", cancel)
        content = self._get(h)
        end = len(content) if length is None else offset + length
        return content[offset:end]

    def stat(self, h: Handle, *, cancel: CancelToken = NEVER) -> FileInfo:
        self._enter("stat", cancel)
        return FileInfo(h.name, len(self._get(h)))

    def list(self, type: FileType, *, cancel: CancelToken = NEVER) -> Iterator[FileInfo]:
        self._enter("list", cancel)
        with self._lock:
            found = [FileInfo(h.name, len(c)) for h, c in self._files.items() if h.type is type]
        yield from found

    def remove(self, h: Handle, *, cancel: CancelToken = NEVER) -> None:
        self._enter("remove", cancel)
        with self._lock:
            if self._files.pop(h, None) is None:
                raise NotFound(f"{h.path()} was not found.")

    def close(self) -> None:
        self.closed = True

    def _get(self, h: Handle) -> bytes:
        with self._lock:
            content = self._files.get(h)
        if content is None:
            raise NotFound(f"{h.path()} was not found.")
        return content
