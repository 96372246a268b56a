"""LocalBackend specifics: restic's on-disk layout, modes, atomic writes and OSError mapping."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

import pytest

from safekeep.common.cancel import CancelToken
from safekeep.common.errors import Cancelled
from safekeep.storage.base import FileInfo, FileType, Handle
from safekeep.storage.errors import (
    AlreadyExists,
    NotFound,
    PermanentStorageError,
    PermissionDenied,
    QuotaExceeded,
    TransientStorageError,
)
from safekeep.storage.providers.local import TEMP_PREFIX, LocalBackend, LocalStorageError

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


class CancelAfter(CancelToken):
    __slots__ = ("_left",)

    def __init__(self, checks: int) -> None:
        super().__init__()
        self._left = checks

    def raise_if_cancelled(self) -> None:
        if self._left <= 0:
            self.cancel("test")
        self._left -= 1
        super().raise_if_cancelled()


def pack(data: bytes) -> Handle:
    return Handle(FileType.PACK, hashlib.sha256(data).hexdigest())


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def temp_debris(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "repo"


@pytest.fixture
def backend(root: Path) -> LocalBackend:
    b = LocalBackend(root)
    b.create()
    return b


# -- layout -----------------------------------------------------------------------------------


def test_create_makes_restics_layout(backend: LocalBackend, root: Path) -> None:
    top = sorted(p.name for p in root.iterdir())
    assert top == ["data", "index", "keys", "locks", "snapshots"]
    shards = sorted(p.name for p in (root / "data").iterdir())
    assert shards == [f"{i:02x}" for i in range(256)]
    assert all_files(root) == []


@posix_only
def test_directories_are_private(backend: LocalBackend, root: Path) -> None:
    old = os.umask(0)
    os.umask(old)
    for d in [root, root / "keys", root / "data", root / "data" / "ab"]:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700 & ~old


def test_files_land_where_restic_puts_them(backend: LocalBackend, root: Path) -> None:
    data = b"pack bytes"
    h = pack(data)
    backend.save(h, data)
    backend.save(Handle.config(), b"cfg")
    backend.save(Handle(FileType.KEY, "1" * 64), b"key")
    backend.save(Handle(FileType.SNAPSHOT, "2" * 64), b"snap")
    backend.save(Handle(FileType.INDEX, "3" * 64), b"idx")
    backend.save(Handle(FileType.LOCK, "4" * 64), b"lock")
    assert all_files(root) == sorted(
        [
            "config",
            f"data/{h.name[:2]}/{h.name}",
            "index/" + "3" * 64,
            "keys/" + "1" * 64,
            "locks/" + "4" * 64,
            "snapshots/" + "2" * 64,
        ]
    )
    assert (root / "data" / h.name[:2] / h.name).read_bytes() == data


@posix_only
def test_written_files_are_read_only(backend: LocalBackend, root: Path) -> None:
    data = b"x" * 100
    h = pack(data)
    backend.save(h, data)
    assert stat.S_IMODE((root / h.path()).stat().st_mode) == 0o400
    backend.remove(h)  # read-only files can still be removed
    assert not (root / h.path()).exists()


def test_save_without_create_makes_only_the_missing_subfolder(root: Path) -> None:
    root.mkdir()
    b = LocalBackend(root)
    data = b"abc"
    b.save(pack(data), data)
    b.save(Handle(FileType.SNAPSHOT, "5" * 64), b"s")
    assert b.load(pack(data)) == data
    assert names_of(b, FileType.SNAPSHOT) == ["5" * 64]


def names_of(b: LocalBackend, t: FileType) -> list[str]:
    return sorted(fi.name for fi in b.list(t))


# -- missing repository folder ----------------------------------------------------------------


def test_missing_location_reads_not_found_lists_empty_never_created(root: Path) -> None:
    b = LocalBackend(root)
    with pytest.raises(NotFound) as info:
        b.load(Handle.config())
    assert "does not exist" in str(info.value)
    assert "connect" in info.value.hint
    for t in FileType:  # contract point 4: nothing there, nothing listed
        assert list(b.list(t)) == []
    with pytest.raises(NotFound):
        b.remove(Handle(FileType.LOCK, "6" * 64))
    with pytest.raises(NotFound):
        b.stat(Handle.config())
    with pytest.raises(NotFound):
        b.save(Handle.config(), b"cfg")
    assert not root.exists()  # nothing written to the mount point of an absent drive
    assert b.free_space() is None


def test_free_space(backend: LocalBackend) -> None:
    free = backend.free_space()
    assert isinstance(free, int)
    assert free > 0


def test_properties(backend: LocalBackend, root: Path) -> None:
    assert backend.properties.is_local
    assert backend.properties.connections == 2
    assert backend.properties.location == str(root)


# -- atomic writes and failures ----------------------------------------------------------------


def _raise(code: int):  # type: ignore[no-untyped-def]
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    return fail


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_disk_full_is_quota_exceeded_and_leaves_nothing(
    backend: LocalBackend, root: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    data = b"z" * (3 * 1024 * 1024)
    h = pack(data)
    with monkeypatch.context() as m:
        m.setattr(os, where, _raise(errno.ENOSPC))
        with pytest.raises(QuotaExceeded) as info:
            backend.save(h, data)
    err = info.value
    assert "full" in str(err)
    assert "Free" in err.hint
    assert isinstance(err.__cause__, OSError)
    assert err.__cause__.errno == errno.ENOSPC
    assert all_files(root) == []
    assert temp_debris(root) == []


@pytest.mark.skipif(not hasattr(errno, "EDQUOT"), reason="no EDQUOT here")
def test_quota_is_quota_exceeded(backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        m.setattr(os, "write", _raise(errno.EDQUOT))
        with pytest.raises(QuotaExceeded):
            backend.save(pack(b"q"), b"q")


@pytest.mark.parametrize(
    "case",
    [
        (errno.EACCES, PermissionDenied, "permission denied"),
        (errno.EPERM, PermissionDenied, "permission denied"),
        (errno.EROFS, PermissionDenied, "read-only"),
        (errno.EIO, LocalStorageError, "Input/output"),
        (errno.ETIMEDOUT, TransientStorageError, "right now"),
    ],
)
def test_oserrors_are_mapped(
    backend: LocalBackend,
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[int, type[Exception], str],
) -> None:
    code, expected, text = case
    real_open = os.open

    def failing_open(path: object, flags: int, *args: int) -> int:
        if str(path).endswith(tuple("0123456789abcdef")) or TEMP_PREFIX in str(path):
            raise OSError(code, os.strerror(code))
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    data = b"mapped"
    h = pack(data)
    with monkeypatch.context() as m:
        m.setattr(os, "open", failing_open)
        with pytest.raises(expected) as info:
            backend.save(h, data)
    assert text in str(info.value)
    assert info.value.__cause__ is not None
    assert temp_debris(root) == []
    backend.save(h, data)
    with monkeypatch.context() as m:
        m.setattr(os, "open", failing_open)
        with pytest.raises(expected):
            backend.load(h)


def test_unmapped_oserror_is_permanent_storage_error(
    backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:
        m.setattr(os, "write", _raise(errno.EIO))
        with pytest.raises(PermanentStorageError):
            backend.save(pack(b"e"), b"e")


@pytest.mark.parametrize("checks", [1, 2, 3])
def test_cancel_during_write_removes_temp_file(backend: LocalBackend, root: Path, checks: int) -> None:
    data = b"c" * (5 * 1024 * 1024)  # several write chunks, so the cancel lands mid-write
    with pytest.raises(Cancelled):
        backend.save(pack(data), data, cancel=CancelAfter(checks))
    assert all_files(root) == []
    assert temp_debris(root) == []


def test_interrupt_during_write_removes_temp_file(
    backend: LocalBackend, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", interrupted)
        with pytest.raises(KeyboardInterrupt):
            backend.save(pack(b"k"), b"k")
    assert all_files(root) == []


def test_temp_files_are_never_listed(backend: LocalBackend, root: Path) -> None:
    name = "ab" + "1" * 62
    (root / "data" / "ab" / f"{TEMP_PREFIX}123").write_bytes(b"partial")
    (root / "data" / "ab" / f"{name}-tmp-4567").write_bytes(b"restic partial")
    (root / "snapshots" / f"{TEMP_PREFIX}9").write_bytes(b"partial")
    (root / "snapshots" / "subdir").mkdir()
    (root / "data" / "ab" / name).write_bytes(b"real")
    assert list(backend.list(FileType.PACK)) == [FileInfo(name, 4)]
    assert list(backend.list(FileType.SNAPSHOT)) == []


# -- existing names ---------------------------------------------------------------------------


def test_existing_name_identical_is_noop_different_is_refused(backend: LocalBackend, root: Path) -> None:
    backend.save(Handle.config(), b"one")
    backend.save(Handle.config(), b"one")
    with pytest.raises(AlreadyExists):
        backend.save(Handle.config(), b"two")
    assert (root / "config").read_bytes() == b"one"
    assert temp_debris(root) == []


def test_without_hard_links_saves_by_rename(
    backend: LocalBackend, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "link", _raise(errno.EPERM))  # as on FAT / exFAT
    data = b"no links here"
    h = pack(data)
    backend.save(h, data)
    backend.save(h, data)
    assert backend.load(h) == data
    backend.save(Handle.config(), b"a")
    with pytest.raises(AlreadyExists):
        backend.save(Handle.config(), b"b")
    assert backend.load(Handle.config()) == b"a"
    assert temp_debris(root) == []


# -- reads ------------------------------------------------------------------------------------


def test_ranged_load_uses_pread(backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(os, "pread"):
        pytest.skip("no pread on this platform")
    data = bytes(range(256)) * 10
    h = pack(data)
    backend.save(h, data)
    calls: list[tuple[int, int]] = []
    real_pread = os.pread

    def spy(fd: int, n: int, offset: int) -> bytes:
        calls.append((n, offset))
        return real_pread(fd, n, offset)

    monkeypatch.setattr(os, "pread", spy)
    assert backend.load(h, 100, 50) == data[100:150]
    assert calls == [(50, 100)]


def test_invalid_names_are_rejected(backend: LocalBackend) -> None:
    for bad in ["", "../config", "a/b", ".tmp-x", "x"]:
        with pytest.raises(ValueError):
            backend.save(Handle(FileType.PACK, bad), b"")
    with pytest.raises(ValueError):
        backend.load(Handle(FileType.CONFIG, "other"))
