"""Restorer: selected paths, overwriting, and no temporary files left after a failing write."""

from __future__ import annotations

import errno
import os
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from safekeep.core import restorer as restorer_mod
from safekeep.core.archiver import BackupOptions, backup
from safekeep.core.format.keys import KDFParams
from safekeep.core.format.pack import BlobType
from safekeep.core.format.snapshot import Snapshot
from safekeep.core.format.tree import GoTime, Node, encode_tree
from safekeep.core.repository import Repository, RepositoryOptions, sha256
from safekeep.core.restorer import RestoreOptions, restore
from safekeep.storage.providers.memory import MemoryBackend

CHEAP = KDFParams(16, 1, 1)


@pytest.fixture()
def backed_up(tmp_path: Path) -> Any:
    src = tmp_path / "src"
    rng = random.Random(8)
    files = {
        "a.txt": b"alpha",
        "docs/b.txt": b"bravo",
        "docs/deep/c.bin": rng.randbytes(700_000),  # more than one chunk is possible; at least 1
        "photos/d.jpg": rng.randbytes(300_000),
        "photos/e.jpg": rng.randbytes(200_000),
        "empty": b"",
    }
    for rel, data in files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    repo = Repository.init(MemoryBackend(), "pw", options=RepositoryOptions(kdf=CHEAP))
    snap, _ = backup(repo, [str(src)], BackupOptions())
    yield repo, snap, src, files
    repo.close()


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".safekeep-")]


def test_full_restore(tmp_path: Path, backed_up: Any) -> None:
    repo, snap, src, files = backed_up
    out = tmp_path / "out"
    s = restore(repo, snap, str(out), RestoreOptions())
    assert s.errors == []
    assert _all_files(out / str(src).lstrip("/")) == files
    assert s.files_restored == len(files) and s.bytes_written == sum(map(len, files.values()))


def test_include_restores_only_selected_paths(tmp_path: Path, backed_up: Any) -> None:
    repo, snap, src, files = backed_up
    out = tmp_path / "out"
    s = restore(repo, snap, str(out), RestoreOptions(include=(f"{src}/docs", f"{src}/photos/e.jpg")))
    assert s.errors == []
    got = _all_files(out / str(src).lstrip("/"))
    assert got == {k: v for k, v in files.items() if k.startswith("docs/") or k == "photos/e.jpg"}
    assert s.files_restored == 3


def test_restore_overwrites_existing_files(tmp_path: Path, backed_up: Any) -> None:
    repo, snap, src, files = backed_up
    out = tmp_path / "out"
    base = out / str(src).lstrip("/")
    (base / "docs").mkdir(parents=True)
    (base / "a.txt").write_bytes(b"something else, and longer than alpha")
    (base / "docs" / "b.txt").write_bytes(b"")
    os.chmod(base / "a.txt", 0o400)
    s = restore(repo, snap, str(out), RestoreOptions())
    assert s.errors == []
    assert _all_files(base) == files
    assert _leftovers(out) == []


def test_no_temporary_files_after_disk_full(
    tmp_path: Path, backed_up: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, snap, src, files = backed_up
    real = os.pwrite
    calls = {"n": 0}

    def pwrite(fd: int, data: Any, offset: int) -> int:
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(restorer_mod.os, "pwrite", pwrite)
    out = tmp_path / "out"
    s = restore(repo, snap, str(out), RestoreOptions(workers=1))
    monkeypatch.undo()
    assert s.errors, "the simulated full disk must be reported"
    assert all("full" in m for _, m in s.errors)
    assert _leftovers(out) == []
    base = out / str(src).lstrip("/")
    got = _all_files(base)
    failed = {os.path.relpath(p, "/" + str(base).lstrip("/")) for p, _ in s.errors}
    # every file is either complete under its real name, or reported and absent
    for rel, data in files.items():
        if rel in failed:
            assert rel not in got
        else:
            assert got[rel] == data
    assert len(failed) == len(files) - len(got)


# ------------------------------------------------------------------ chunks, checks and shared blobs


def _node(name: bytes, kind: str, **kw: Any) -> Node:
    t = GoTime(1_600_000_000 * 10**9)
    if kind == "file":
        kw.setdefault("mode", 0o644)
    if kind == "dir":
        kw.setdefault("mode", 0o20000000000 | 0o755)
    return Node(name=name, type=kind, mtime=t, atime=t, ctime=t, **kw)


def _crafted(
    repo: Repository,
    files: dict[bytes, list[bytes]],
    bad: dict[bytes, bytes] | None = None,
    sizes: dict[bytes, int] | None = None,
) -> Any:
    """A snapshot whose root holds ``files`` (name -> its chunks, in order); ``bad`` stores the
    named chunk's bytes under the ID of other bytes (a valid MAC, a wrong SHA-256); ``sizes``
    gives a file a size in its node other than its chunks' total."""
    nodes = []
    for name, chunks in files.items():
        ids = []
        for c in chunks:
            forged = (bad or {}).get(c)
            ids.append(repo.save_blob(BlobType.DATA, forged, blob_id=sha256(c)).id if forged else sha256(c))
            if not forged:
                repo.save_blob(BlobType.DATA, c)
        size = (sizes or {}).get(name, sum(map(len, chunks)))
        nodes.append(_node(name, "file", content=ids, size=size))
    tree = repo.save_blob(BlobType.TREE, encode_tree(sorted(nodes, key=lambda n: n.name))).id
    repo.flush()
    snap = Snapshot(time=datetime(2026, 1, 1, tzinfo=UTC), tree=tree, paths=["/x"], hostname="h")
    repo.save_snapshot(snap)
    return snap


@pytest.mark.parametrize(("verify", "preadv"), [(True, True), (True, False), (False, True)])
def test_many_chunks_across_read_blocks_and_shared_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verify: bool, preadv: bool
) -> None:
    monkeypatch.setattr(restorer_mod, "VERIFY_BLOCK", 4096)  # chunks span several re-read blocks
    if not preadv:  # as on Windows and macOS
        monkeypatch.delattr(os, "preadv", raising=False)
    rng = random.Random(5)
    shared = rng.randbytes(10_000)
    files = {
        b"multi": [rng.randbytes(n) for n in (5000, 4096, 1, 12_345)] + [shared],
        b"twice": [shared, rng.randbytes(7), shared],  # one chunk at two offsets of one file
        b"other": [shared],  # and in another file
    }
    repo = Repository.init(MemoryBackend(), "pw", options=RepositoryOptions(kdf=CHEAP))
    snap = _crafted(repo, files)
    out = tmp_path / "out"
    s = restore(repo, snap, str(out), RestoreOptions(verify=verify))
    assert s.errors == []
    assert _all_files(out) == {n.decode(): b"".join(c) for n, c in files.items()}
    assert s.verified == (len(files) if verify else 0)
    assert _leftovers(out) == []


@pytest.mark.parametrize("verify", [True, False])
def test_a_file_whose_data_falls_short_of_its_size_fails(tmp_path: Path, verify: bool) -> None:
    """The size in the backup is checked against what was written (the end of the furthest write)."""
    rng = random.Random(9)
    files = {b"short": [rng.randbytes(1000), rng.randbytes(500)], b"fine": [rng.randbytes(800)]}
    repo = Repository.init(MemoryBackend(), "pw", options=RepositoryOptions(kdf=CHEAP))
    snap = _crafted(repo, files, sizes={b"short": 1600})
    out = tmp_path / "out"
    s = restore(repo, snap, str(out), RestoreOptions(verify=verify))
    assert [(os.path.basename(p), m) for p, m in s.errors] == [
        ("short", f"{out / 'short'}: restored 1500 bytes but the backup says 1600")
    ]
    assert _all_files(out) == {"fine": files[b"fine"][0]}
    assert _leftovers(out) == []


@pytest.mark.parametrize("verify", [True, False])
def test_a_chunk_that_does_not_match_its_id_fails_its_files_only(tmp_path: Path, verify: bool) -> None:
    rng = random.Random(6)
    good, wrong = rng.randbytes(3000), rng.randbytes(3000)
    stored = rng.randbytes(3000)  # stored under wrong's ID
    files = {b"ok": [good], b"bad": [good, wrong], b"bad-too": [wrong]}
    repo = Repository.init(MemoryBackend(), "pw", options=RepositoryOptions(kdf=CHEAP))
    snap = _crafted(repo, files, bad={wrong: stored})
    out = tmp_path / "out"
    s = restore(repo, snap, str(out), RestoreOptions(verify=verify))
    assert sorted(os.path.basename(p) for p, _ in s.errors) == ["bad", "bad-too"]
    for _, message in s.errors:
        assert "does not match its ID" in message and sha256(wrong).hex()[:16] in message
    assert _all_files(out) == {"ok": good}
    assert _leftovers(out) == []


def test_files_created_by_their_first_write(
    tmp_path: Path, backed_up: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(restorer_mod.Restorer, "_create_planned", lambda self: None)  # not beforehand
    repo, snap, src, files = backed_up
    out = tmp_path / "out"
    s = restore(repo, snap, str(out), RestoreOptions())
    assert s.errors == []
    assert _all_files(out / str(src).lstrip("/")) == files
    assert s.verified == len(files) and _leftovers(out) == []


def test_a_file_that_cannot_be_created_is_reported(
    tmp_path: Path, backed_up: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, snap, src, files = backed_up
    real = os.open
    created = {"n": 0}

    def full_after_two(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        if flags & os.O_CREAT and b".safekeep-" in os.fsencode(path):
            created["n"] += 1
            if created["n"] > 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, flags, mode, **kw)

    monkeypatch.setattr(restorer_mod.os, "open", full_after_two)
    out = tmp_path / "out"
    s = restore(repo, snap, str(out), RestoreOptions())
    monkeypatch.undo()
    assert s.errors and all("full" in m for _, m in s.errors)
    base = out / str(src).lstrip("/")
    got = _all_files(base)
    failed = {os.path.basename(p) for p, _ in s.errors}  # (the names are unique here)
    assert len(failed) == len(files) - len(got)
    assert all(got[rel] == files[rel] and os.path.basename(rel) not in failed for rel in got)
    assert _leftovers(out) == []
