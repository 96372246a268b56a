"""Archiver: excludes, files that vanish or change while read, unchanged-file detection."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from safekeep.core import archiver as archiver_mod
from safekeep.core.archiver import BackupOptions, NothingToBackUp, backup
from safekeep.core.format.keys import KDFParams
from safekeep.core.format.pack import BlobType
from safekeep.core.format.tree import Node, decode_tree
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.storage.providers.memory import MemoryBackend

CHEAP = KDFParams(16, 1, 1)


@pytest.fixture()
def repo() -> Any:
    r = Repository.init(MemoryBackend(), "pw", options=RepositoryOptions(kdf=CHEAP))
    yield r
    r.close()


def _listing(repo: Repository, tree: bytes, path: str) -> dict[str, Node]:
    """All nodes below the folder ``path`` of a snapshot, by relative path."""
    for part in path.strip("/").split("/"):
        tree = {n.name: n for n in decode_tree(repo.load_blob(BlobType.TREE, tree))}[part.encode()].subtree
    out: dict[str, Node] = {}

    def walk(tid: bytes, prefix: str) -> None:
        for n in decode_tree(repo.load_blob(BlobType.TREE, tid)):
            rel = prefix + n.name.decode()
            out[rel] = n
            if n.type == "dir":
                walk(n.subtree, rel + "/")

    walk(tree, "")
    return out


def _make(src: Path, n: int = 10) -> None:
    rng = random.Random(7)
    (src / "sub").mkdir(parents=True)
    for i in range(n):
        (src / f"f{i}").write_bytes(rng.randbytes(1000 + i))
    (src / "sub" / "inner").write_text("inner")


def test_excludes(tmp_path: Path, repo: Repository) -> None:
    src = tmp_path / "src"
    _make(src, 3)
    (src / "junk.tmp").write_text("x")
    (src / "sub" / "more.tmp").write_text("x")
    (src / "cache").mkdir()
    (src / "cache" / "big").write_text("x")
    (src / "sub" / "keep.tmp").write_text("kept by a negation")
    opts = BackupOptions(excludes=("*.tmp", f"{src}/cache", "!keep.tmp"))
    snap, summary = backup(repo, [str(src)], opts)
    names = set(_listing(repo, snap.tree, str(src)))
    assert names == {"f0", "f1", "f2", "sub", "sub/inner", "sub/keep.tmp"}
    assert summary.files_new == 5
    assert snap.excludes == list(opts.excludes)


def test_file_vanishing_before_it_is_read(
    tmp_path: Path, repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    _make(src)
    real = archiver_mod._read_file_node

    def vanish(path: bytes) -> int:
        if path.endswith(b"/f3"):
            os.unlink(path)  # gone between lstat and open
        return real(path)

    monkeypatch.setattr(archiver_mod, "_read_file_node", vanish)
    snap, summary = backup(repo, [str(src)], BackupOptions())
    assert [(os.path.basename(p), "vanished" in m) for p, m in summary.errors] == [("f3", True)]
    names = _listing(repo, snap.tree, str(src))
    assert "f3" not in names and "f4" in names
    assert summary.files_new == 10  # 9 top-level files + sub/inner
    assert summary.total_files_processed == 10
    assert snap.summary is not None and snap.summary["files_new"] == 10


def test_file_changing_while_read(tmp_path: Path, repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    _make(src)
    real = archiver_mod._read_file_node

    def grow(path: bytes) -> int:
        fd = real(path)
        if path.endswith(b"/f5"):
            with open(path, "ab") as f:
                f.write(b"appended while being read")
        return fd

    monkeypatch.setattr(archiver_mod, "_read_file_node", grow)
    snap, summary = backup(repo, [str(src)], BackupOptions())
    assert len(summary.errors) == 1
    path, message = summary.errors[0]
    assert path.endswith("/f5") and "changed while it was being read" in message
    node = _listing(repo, snap.tree, str(src))["f5"]
    # recorded with what was read, consistently: size equals the stored content
    stored = b"".join(repo.load_blob(BlobType.DATA, b) for b in node.content or [])
    assert node.size == len(stored) == 1005 + len(b"appended while being read")
    assert summary.files_new == 11


@pytest.mark.parametrize(("change", "size"), [("grow", 1005 + 5000), ("shrink", 400)])
def test_file_changing_between_its_size_and_its_read(
    tmp_path: Path, repo: Repository, monkeypatch: pytest.MonkeyPatch, change: str, size: int
) -> None:
    """The read asks for the size fstat gave + 1; a file that grew or shrank after that is read
    to its end all the same, stored as read, and reported as changed."""
    src = tmp_path / "src"
    _make(src)
    target = src / "f5"
    real_fstat = os.fstat
    done: list[bool] = []

    def fstat(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        if not done and os.path.samestat(st, target.stat()):
            done.append(True)  # only the first fstat, the one the read's size comes from
            if change == "grow":
                with target.open("ab") as f:
                    f.write(b"g" * 5000)
            else:
                os.truncate(target, 400)
        return st

    monkeypatch.setattr(archiver_mod.os, "fstat", fstat)
    snap, summary = backup(repo, [str(src)], BackupOptions())
    assert done
    assert [(os.path.basename(p), "changed while it was being read" in m) for p, m in summary.errors] == [
        ("f5", True)
    ]
    node = _listing(repo, snap.tree, str(src))["f5"]
    stored = b"".join(repo.load_blob(BlobType.DATA, b) for b in node.content or [])
    assert node.size == len(stored) == size
    assert stored == target.read_bytes()


def test_unchanged_files_are_not_read_again(
    tmp_path: Path, repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    _make(src)
    snap1, s1 = backup(repo, [str(src)], BackupOptions())
    assert s1.files_new == 11

    opened: list[bytes] = []
    real = archiver_mod._read_file_node

    def spy(path: bytes) -> int:
        opened.append(path)
        return real(path)

    monkeypatch.setattr(archiver_mod, "_read_file_node", spy)
    saves_before = repo.backend.calls["save"]  # type: ignore[attr-defined]
    snap2, s2 = backup(repo, [str(src)], BackupOptions())
    assert opened == []
    assert s2.parent == snap1.id
    assert (s2.files_new, s2.files_changed, s2.files_unmodified) == (0, 0, 11)
    assert (s2.dirs_unmodified, s2.data_blobs, s2.tree_blobs) == (2, 0, 0)
    assert snap2.tree == snap1.tree
    # nothing but the new snapshot and an (empty-packed) index flush was written
    assert repo.backend.calls["save"] - saves_before == 1  # type: ignore[attr-defined]

    os.utime(src / "f2", ns=(1, 1))
    (src / "sub" / "inner").write_text("changed")
    _, s3 = backup(repo, [str(src)], BackupOptions())
    assert sorted(os.path.basename(p) for p in opened) == [b"f2", b"inner"]
    assert (s3.files_changed, s3.files_unmodified, s3.data_blobs) == (2, 9, 1)  # f2's content is known

    opened.clear()
    _, s4 = backup(repo, [str(src)], BackupOptions(use_parent=False))
    assert len(opened) == 11 and s4.data_blobs == 0 and s4.files_new == 11


def test_single_file_source(tmp_path: Path, repo: Repository) -> None:
    f = tmp_path / "alone.bin"
    f.write_bytes(b"x" * 5000)
    snap, s = backup(repo, [str(f)], BackupOptions())
    parent = _listing(repo, snap.tree, str(tmp_path))
    node = parent["alone.bin"]
    assert b"".join(repo.load_blob(BlobType.DATA, b) for b in node.content or []) == b"x" * 5000
    assert s.files_new == 1
    _, s2 = backup(repo, [str(f)], BackupOptions())
    assert s2.files_unmodified == 1 and s2.data_blobs == 0


def test_missing_sources(tmp_path: Path, repo: Repository) -> None:
    with pytest.raises(NothingToBackUp):
        backup(repo, [str(tmp_path / "nope")], BackupOptions())
    assert repo.list_snapshots() == []
    _make(tmp_path / "src", 1)
    snap, s = backup(repo, [str(tmp_path / "src"), str(tmp_path / "nope")], BackupOptions())
    assert [p for p, _ in s.errors] == [str(tmp_path / "nope")]
    assert snap.id


def test_blob_futures_are_pruned_without_losing_blobs_or_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finished blob saves are forgotten during the run; every blob still lands, and a failure
    in a pruned save still aborts the backup before any snapshot is written."""
    import safekeep.core.archiver as archiver_module
    from safekeep.core.archiver import backup as run_backup
    from safekeep.core.format.keys import KDFParams as _KDF
    from safekeep.core.repository import Repository as _Repo
    from safekeep.core.repository import RepositoryOptions as _Opts
    from safekeep.core.restorer import restore as run_restore
    from safekeep.storage.providers.memory import MemoryBackend as _Mem

    monkeypatch.setattr(archiver_module, "PRUNE_FUTURES_AT", 3)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"f{i:02d}.bin").write_bytes(os.urandom(2000 + i))
    repo = _Repo.init(_Mem(), "pw", options=_Opts(kdf=_KDF(1024, 8, 1)))
    snap, summary = run_backup(repo, [str(src)])
    assert summary.data_blobs == 40
    out = tmp_path / "out"
    run_restore(repo, snap, str(out))
    for i in range(40):
        name = f"f{i:02d}.bin"
        assert (out / str(src).lstrip("/") / name).read_bytes() == (src / name).read_bytes()

    failing = _Repo.init(_Mem(), "pw", options=_Opts(kdf=_KDF(1024, 8, 1)))
    real_save = failing.save_blob
    calls = {"n": 0}

    def save_blob(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("simulated failure in one blob save")
        return real_save(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(failing, "save_blob", save_blob)
    with pytest.raises(OSError, match="simulated failure"):
        run_backup(failing, [str(src)])
    assert failing.list_snapshots() == []
