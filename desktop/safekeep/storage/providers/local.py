"""A repository in a folder: local disk, a mounted NAS share or a USB drive.

The layout is restic's, byte for byte, so the ``restic`` program can use the same folder::

    <root>/config
    <root>/data/<first 2 hex of id>/<64 hex id>     (shards data/00 .. data/ff, made by create)
    <root>/index/<id>  <root>/keys/<id>  <root>/locks/<id>  <root>/snapshots/<id>

Writes are atomic: the bytes go to a temporary file *inside the target directory* whose name
starts with ``.tmp-`` (never reported by :meth:`LocalBackend.list`), the file is fsynced, made
read-only (mode 0400, as restic does; directories are 0700), then published under its final
name and the directory is fsynced. A failed or cancelled save removes its temporary file.

Publishing uses a hard link where the file system supports one, so an existing file is never
replaced: saving a name that already exists is a no-op when the stored bytes are identical and
raises :class:`~safekeep.storage.errors.AlreadyExists` otherwise. On file systems without hard
links (FAT, exFAT, some SMB shares) the same check is followed by ``os.replace``.

``list`` also skips restic's own leftover temporary files (``<name>-tmp-<random>``) and anything
that is not a regular file.

When the repository folder itself is missing (a USB drive not plugged in, a NAS share not
mounted) ``load``, ``stat``, ``remove`` and ``save`` raise :class:`~safekeep.storage.errors.NotFound`
with a hint to connect the drive, and ``list`` yields nothing (contract point 4: a never-written
type lists empty; the repository layer then reports "no repository here"). ``save`` never
creates the repository folder itself (that is :meth:`LocalBackend.create`), so nothing is written
to the mount point of an absent drive.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import shutil
import stat as stat_mod
from collections.abc import Iterator, Sequence
from pathlib import Path

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.errors import Cancelled
from safekeep.storage.base import FileInfo, FileType, Handle, Properties, check_range
from safekeep.storage.errors import (
    AlreadyExists,
    NotFound,
    PermanentStorageError,
    PermissionDenied,
    QuotaExceeded,
    StorageError,
    TransientStorageError,
)

log = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"
"""Names of in-progress writes start with this; :meth:`LocalBackend.list` never reports them."""

RESTIC_TEMP_MARKER = "-tmp-"
"""restic's local backend names its temporary files ``<name>-tmp-<random>``."""

FILE_MODE = 0o400
DIR_MODE = 0o700
_WRITE_CHUNK = 1 << 20  # cancellation is checked between chunks
_READ_CHUNK = 16 << 20

_IS_WINDOWS = os.name == "nt"
_QUOTA_ERRNOS = {errno.ENOSPC} | ({errno.EDQUOT} if hasattr(errno, "EDQUOT") else set())
_TRANSIENT_ERRNOS = {
    getattr(errno, name)
    for name in (
        "EAGAIN",
        "EINTR",
        "EBUSY",
        "ETIMEDOUT",
        "ESTALE",
        "ECONNRESET",
        "ECONNABORTED",
        "ENETDOWN",
        "ENETUNREACH",
        "EHOSTDOWN",
        "EHOSTUNREACH",
    )
    if hasattr(errno, name)
}
_NO_HARDLINK_ERRNOS = {
    getattr(errno, name)
    for name in ("EPERM", "EACCES", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EMLINK", "EXDEV", "EINVAL")
    if hasattr(errno, name)
}


class LocalStorageError(PermanentStorageError):
    """A local file-system failure that fits none of the specific storage errors."""


class LocalBackend:
    """A repository in the folder ``root``, in restic's layout. See the module docstring."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = Path(root)
        self._properties = Properties(
            location=str(self._root), connections=2, supports_ranges=True, is_local=True
        )

    # -- Backend -------------------------------------------------------------------------------

    @property
    def properties(self) -> Properties:
        return self._properties

    @property
    def root(self) -> Path:
        return self._root

    def create(self, *, cancel: CancelToken = NEVER) -> None:
        """Make the repository folder and restic's sub-folders (idempotent). Safekeep's own
        folder (``FileType.APP``) is made when something is first saved there."""
        cancel.raise_if_cancelled()
        restic_types = [t for t in FileType if t not in (FileType.CONFIG, FileType.APP)]
        dirs = [self._root] + [self._root / t.value for t in restic_types]
        dirs += [self._root / FileType.PACK.value / f"{i:02x}" for i in range(256)]
        for d in dirs:
            cancel.raise_if_cancelled()
            try:
                d.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            except OSError as exc:
                raise self._map(exc, "create the folder", d) from exc
            if not d.is_dir():
                raise LocalStorageError(
                    f"Cannot create the backup folder {d}: a file with that name is in the way.",
                    hint="Choose another location or move the file away.",
                )

    def save(self, h: Handle, data: bytes | bytearray | memoryview, *, cancel: CancelToken = NEVER) -> None:
        target = self._path(h)
        cancel.raise_if_cancelled()
        view = memoryview(data).cast("B")
        tmp = target.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            self._write_temp(tmp, view, cancel)
            cancel.raise_if_cancelled()  # nothing becomes visible after cancel
            self._publish(tmp, target, view)
            self._fsync_dir(target.parent)
        except Cancelled:
            self._discard(tmp)
            raise
        except StorageError:
            self._discard(tmp)
            raise
        except OSError as exc:
            self._discard(tmp)
            raise self._map(exc, "save", target) from exc
        except BaseException:
            self._discard(tmp)
            raise

    def load(
        self, h: Handle, offset: int = 0, length: int | None = None, *, cancel: CancelToken = NEVER
    ) -> bytes:
        check_range(offset, length)
        target = self._path(h)
        cancel.raise_if_cancelled()
        try:
            fd = os.open(target, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except OSError as exc:
            raise self._map(exc, "read", target) from exc
        try:
            size = os.fstat(fd).st_size
            end = size if length is None else min(size, offset + length)
            return self._read_range(fd, offset, max(0, end - offset), cancel)
        except OSError as exc:
            raise self._map(exc, "read", target) from exc
        finally:
            os.close(fd)

    def stat(self, h: Handle, *, cancel: CancelToken = NEVER) -> FileInfo:
        target = self._path(h)
        cancel.raise_if_cancelled()
        try:
            st = target.stat()
        except OSError as exc:
            raise self._map(exc, "inspect", target) from exc
        if not stat_mod.S_ISREG(st.st_mode):
            raise NotFound(f"{target} is not a file.", hint="The repository may be damaged.")
        return FileInfo(h.name, st.st_size)

    def list(self, type: FileType, *, cancel: CancelToken = NEVER) -> Iterator[FileInfo]:
        cancel.raise_if_cancelled()
        if type is FileType.CONFIG:
            try:
                info = self.stat(Handle.config(), cancel=cancel)
            except NotFound:
                return
            yield info
            return
        base = self._root / type.value
        if type is FileType.PACK:
            for shard in sorted(self._scan(base, want_dirs=True)):
                cancel.raise_if_cancelled()
                yield from self._scan_files(base / shard)
        else:
            yield from self._scan_files(base)

    def remove(self, h: Handle, *, cancel: CancelToken = NEVER) -> None:
        target = self._path(h)
        cancel.raise_if_cancelled()
        try:
            _remove_file(target)
        except OSError as exc:
            raise self._map(exc, "delete", target) from exc

    def close(self) -> None:
        return None

    # -- extras --------------------------------------------------------------------------------

    def free_space(self) -> int | None:
        """Free bytes on the file system holding the repository, or None if unknown."""
        try:
            return shutil.disk_usage(self._root).free
        except OSError:
            return None

    # -- internals -----------------------------------------------------------------------------

    def _path(self, h: Handle) -> Path:
        return self._root / h.checked_path()

    def _require_root(self) -> None:
        if not self._root.is_dir():
            raise self._missing_root()

    def _missing_root(self) -> NotFound:
        return NotFound(
            f"The backup location {self._root} does not exist or is not a folder.",
            hint="If it is on a USB drive or network share, connect or mount it and try again.",
        )

    def _write_temp(self, tmp: Path, view: memoryview, cancel: CancelToken) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(tmp, flags, 0o600)
        except FileNotFoundError:
            # The type or shard folder is missing (create() was not run, or someone removed it):
            # make just that one level, never the repository folder itself.
            self._require_root()
            try:
                tmp.parent.mkdir(mode=DIR_MODE, exist_ok=True)
            except FileNotFoundError:  # e.g. data/ itself is missing: one more level
                tmp.parent.parent.mkdir(mode=DIR_MODE, exist_ok=True)
                tmp.parent.mkdir(mode=DIR_MODE, exist_ok=True)
            fd = os.open(tmp, flags, 0o600)
        try:
            pos = 0
            total = len(view)
            while pos < total:
                cancel.raise_if_cancelled()
                pos += os.write(fd, view[pos : pos + _WRITE_CHUNK])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, FILE_MODE)

    def _publish(self, tmp: Path, target: Path, view: memoryview) -> None:
        try:
            os.link(tmp, target)
        except FileExistsError:
            self._check_identical(target, view)
            log.debug("%s already exists with identical content", target)
        except OSError as exc:
            if exc.errno not in _NO_HARDLINK_ERRNOS:
                raise
            # No hard links here (FAT, exFAT, some SMB): check, then rename into place.
            if target.exists():
                self._check_identical(target, view)
            else:
                os.replace(tmp, target)
                return
        _remove_file(tmp)

    def _check_identical(self, target: Path, view: memoryview) -> None:
        with open(target, "rb") as f:
            existing = f.read()
        if existing != view:
            raise AlreadyExists(
                f"{target} already exists with different content.",
                hint="Repository files are never overwritten; the repository may be in use by "
                "another program or damaged.",
            )

    def _discard(self, tmp: Path) -> None:
        try:
            _remove_file(tmp)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove temporary file %s: %s", tmp, exc)

    @staticmethod
    def _fsync_dir(path: Path) -> None:
        if _IS_WINDOWS:
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        except OSError as exc:
            # Some file systems (e.g. certain network mounts) cannot fsync a directory.
            if exc.errno not in (errno.EINVAL, getattr(errno, "ENOTSUP", errno.EINVAL)):
                raise
        finally:
            os.close(fd)

    @staticmethod
    def _read_range(fd: int, offset: int, length: int, cancel: CancelToken) -> bytes:
        parts: list[bytes] = []
        got = 0
        pread = getattr(os, "pread", None)
        if pread is None:  # Windows
            os.lseek(fd, offset, os.SEEK_SET)
        while got < length:
            cancel.raise_if_cancelled()
            n = min(_READ_CHUNK, length - got)
            chunk: bytes = pread(fd, n, offset + got) if pread is not None else os.read(fd, n)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def _scan(self, directory: Path, *, want_dirs: bool) -> Sequence[str]:
        try:
            with os.scandir(directory) as it:
                return [
                    e.name for e in it if (e.is_dir() if want_dirs else e.is_file()) and _listable(e.name)
                ]
        except FileNotFoundError:
            return []
        except NotADirectoryError:
            return []
        except OSError as exc:
            raise self._map(exc, "list", directory) from exc

    def _scan_files(self, directory: Path) -> Iterator[FileInfo]:
        for name in self._scan(directory, want_dirs=False):
            try:
                size = (directory / name).stat().st_size
            except FileNotFoundError:  # removed while listing
                continue
            except OSError as exc:
                raise self._map(exc, "list", directory / name) from exc
            yield FileInfo(name, size)

    def _map(self, exc: OSError, action: str, path: Path) -> StorageError:
        """Translate an ``OSError`` into a typed storage error with a message for a person."""
        code = exc.errno
        detail = exc.strerror or str(exc)
        if code in (errno.ENOENT, errno.ENOTDIR):
            if not self._root.is_dir():
                return self._missing_root()
            return NotFound(f"{path} was not found.", hint="The repository may be incomplete.")
        if code == errno.EROFS:
            return PermissionDenied(
                f"Cannot {action} {path}: the destination is read-only.",
                hint="Check that the drive is not write-protected and is mounted for writing.",
            )
        if code in (errno.EACCES, errno.EPERM):
            return PermissionDenied(
                f"Cannot {action} {path}: permission denied.",
                hint="Check that your user account may read and write the backup folder.",
            )
        if code in _QUOTA_ERRNOS:
            return QuotaExceeded(
                f"The destination {self._root} is full.",
                hint="Free some space there (or choose a bigger destination), then run the "
                "backup again. Nothing already saved was damaged.",
            )
        if code == errno.EEXIST:
            return AlreadyExists(f"Cannot {action} {path}: it already exists.")
        if code in _TRANSIENT_ERRNOS:
            return TransientStorageError(
                f"Cannot {action} {path} right now: {detail}.",
                hint="The drive or network share may be busy; Safekeep will try again.",
            )
        return LocalStorageError(
            f"Cannot {action} {path}: {detail}.",
            hint="Check that the drive is connected and working.",
        )


def _listable(name: str) -> bool:
    return not name.startswith(".") and RESTIC_TEMP_MARKER not in name


def _remove_file(path: Path) -> None:
    try:
        os.remove(path)
    except PermissionError:
        if not _IS_WINDOWS:
            raise
        os.chmod(path, 0o600)  # Windows refuses to delete read-only files
        os.remove(path)
