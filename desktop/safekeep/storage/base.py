"""The storage interface every provider implements.

The contract (checked for every provider by ``tests/contract/``):

1. **Files are immutable.** A file is written once by :meth:`Backend.save` and never modified;
   only :meth:`Backend.remove` deletes it. Callers never save different content under an
   existing name (names are content hashes, except ``config``). Saving a handle that already
   exists raises :class:`~safekeep.storage.errors.AlreadyExists` *or* replaces it atomically with
   the (identical) new content; it never corrupts it.
2. **Saves are atomic.** After ``save`` returns, :meth:`load` returns exactly the bytes given. If
   ``save`` raises or is cancelled, the file is either absent or complete — never partial — and no
   visible temporary debris is listed by :meth:`list`. A provider keeps no reference to ``data``
   once ``save`` returns: the caller reuses that buffer for the next file.
3. **Loads are exact.** ``load(h, offset, length)`` returns ``length`` bytes starting at
   ``offset`` (``length=None``: to the end). Asking beyond the end returns what exists; asking
   for a file that does not exist raises ``NotFound``.
4. **Listing** yields every file of one :class:`FileType` exactly once, with its size, in no
   particular order. For ``PACK`` this includes all shard directories (``data/00``..``data/ff``).
   Listing an empty or never-written type yields nothing (no error).
5. **Errors are typed.** ``NotFound``, ``PermissionDenied``, ``QuotaExceeded``,
   ``InvalidLocation`` are permanent; ``TransientStorageError`` may succeed when retried.
   Nothing else escapes a provider except :class:`~safekeep.common.errors.Cancelled`.
6. **Cancellation.** Every call takes a :class:`~safekeep.common.cancel.CancelToken`; a cancelled
   save leaves nothing behind (point 2).
7. ``create`` prepares an empty repository layout (idempotent); ``close`` releases connections.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from safekeep.common.cancel import NEVER, CancelToken


class FileType(enum.Enum):
    """Kinds of repository file; the value is the folder name in restic's layout."""

    CONFIG = "config"
    KEY = "keys"
    LOCK = "locks"
    SNAPSHOT = "snapshots"
    INDEX = "index"
    PACK = "data"
    APP = "safekeep"
    """Safekeep's own files beside the repository (the audit log's off-site copy). restic reads
    only the folders above, so ``restic check`` ignores this one."""


@dataclass(frozen=True, slots=True)
class Handle:
    """A repository file. For ``CONFIG`` the name is always ``"config"``."""

    type: FileType
    name: str

    @staticmethod
    def config() -> Handle:
        return Handle(FileType.CONFIG, "config")

    def checked_path(self) -> str:
        """:meth:`path`, after refusing a name that could leave the repository's layout.

        Providers build object keys and file paths with this. A bad name is a programming error
        (names are hashes or ``config``), so it raises ``ValueError``, not a storage error.
        """
        name = self.name
        if self.type is FileType.CONFIG:
            if name != "config":
                raise ValueError(f"the config handle must be named 'config', not {name!r}")
        elif (
            not name
            or name.startswith(".")
            or any(c in name for c in "/\\\0:")
            or (self.type is FileType.PACK and len(name) < 2)
        ):
            raise ValueError(f"invalid repository file name {name!r}")
        return self.path()

    def path(self) -> str:
        """The file's path relative to the repository root, in restic's default layout."""
        if self.type is FileType.CONFIG:
            return "config"
        if self.type is FileType.PACK:
            return f"data/{self.name[:2]}/{self.name}"
        return f"{self.type.value}/{self.name}"


def check_range(offset: int, length: int | None) -> None:
    """Refuse a negative offset or length: the first thing every provider's ``load`` checks.

    A bad range is a programming error (callers take offsets from the index), so it raises
    ``ValueError``, not a storage error."""
    if offset < 0 or (length is not None and length < 0):
        raise ValueError(f"invalid range offset={offset} length={length}")


def http_range(offset: int, length: int | None) -> str | None:
    """The HTTP ``Range`` header for a ranged load (RFC 9110 §14.1.2), or None for the whole file.

    ``length=0`` has no HTTP form; providers answer it without a request."""
    if not offset and length is None:
        return None
    end = "" if length is None else str(offset + length - 1)
    return f"bytes={offset}-{end}"


@dataclass(frozen=True, slots=True)
class FileInfo:
    name: str
    size: int


@dataclass(frozen=True, slots=True)
class Properties:
    """What a provider can do; consumers adapt (e.g. parallelism = ``connections``)."""

    location: str
    connections: int = 2
    supports_ranges: bool = True
    max_object_size: int | None = None
    is_local: bool = False


@runtime_checkable
class Backend(Protocol):
    """A place that stores repository files. See the module docstring for the contract."""

    @property
    def properties(self) -> Properties: ...

    def create(self, *, cancel: CancelToken = NEVER) -> None: ...

    def save(
        self, h: Handle, data: bytes | bytearray | memoryview, *, cancel: CancelToken = NEVER
    ) -> None: ...

    def load(
        self, h: Handle, offset: int = 0, length: int | None = None, *, cancel: CancelToken = NEVER
    ) -> bytes: ...

    def stat(self, h: Handle, *, cancel: CancelToken = NEVER) -> FileInfo: ...

    def list(self, type: FileType, *, cancel: CancelToken = NEVER) -> Iterator[FileInfo]: ...

    def remove(self, h: Handle, *, cancel: CancelToken = NEVER) -> None: ...

    def close(self) -> None: ...
