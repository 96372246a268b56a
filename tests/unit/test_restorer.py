"""Restorer: selected paths, overwriting, and no temporary files left after a failing write."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path
from typing import Any

import pytest

from safekeep.core import restorer as restorer_mod
from safekeep.core.archiver import BackupOptions, backup
from safekeep.core.format.keys import KDFParams
from safekeep.core.repository import Repository, RepositoryOptions
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
