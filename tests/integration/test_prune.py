"""Prune frees the space of forgotten snapshots and leaves a repository restic fully accepts.

Each test ends with restic 0.14's ``check --read-data`` (the independent oracle) and, where data
remains, a ``restic restore`` compared byte for byte with the source.
"""

from __future__ import annotations

import filecmp
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from safekeep.common.cancel import CancelToken
from safekeep.common.errors import Cancelled
from safekeep.common.progress import Progress
from safekeep.core.archiver import BackupOptions, backup
from safekeep.core.checker import check
from safekeep.core.errors import IntegrityError
from safekeep.core.forget import KeepRules, forget, plan_forget
from safekeep.core.format.pack import BlobType
from safekeep.core.format.tree import decode_tree
from safekeep.core.prune import PruneOptions, prune
from safekeep.core.repository import Repository
from safekeep.storage.base import FileType
from safekeep.storage.compose import open_backend
from safekeep.storage.errors import PermissionDenied

pytestmark = pytest.mark.restic

MiB = 1024 * 1024


def _files(repo_path: Path, kind: str) -> dict[str, int]:
    folder = repo_path / kind
    return {p.name: p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def _size(repo_path: Path) -> int:
    return sum(_files(repo_path, "data").values())


def _same_tree(a: Path, b: Path) -> None:
    cmp = filecmp.dircmp(a, b)
    assert not (cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files), (
        cmp.left_only,
        cmp.right_only,
        cmp.diff_files,
    )
    for sub in cmp.common_dirs:
        _same_tree(a / sub, b / sub)


def _restore_equals(restic: Any, repo_path: Path, src: Path, target: Path) -> None:
    restic(repo_path, "restore", "latest", "--target", str(target))
    restored = target / str(src).lstrip("/")
    _same_tree(src, restored)


@pytest.fixture()
def two_backups(tmp_path: Path, sk_repo: Any) -> tuple[Path, Path, Any]:
    """A repository with an old backup (big files, many small ones) and a new one where most of
    that is gone or changed, with small packs so both kinds of pack (all unused, partly used)
    occur."""
    rng = random.Random(3)
    src = tmp_path / "src"
    (src / "docs").mkdir(parents=True)
    for i in range(40):
        (src / "docs" / f"doc{i:02d}.txt").write_bytes(rng.randbytes(rng.randint(1, 60) * 1024))
    (src / "video.bin").write_bytes(rng.randbytes(6 * MiB))
    (src / "keep.bin").write_bytes(rng.randbytes(3 * MiB))
    repo_path = tmp_path / "repo"
    repo = sk_repo(repo_path, pack_size=MiB)
    backup(repo, [str(src)])
    (src / "video.bin").unlink()
    for i in range(0, 40, 3):
        (src / "docs" / f"doc{i:02d}.txt").unlink()
    (src / "docs" / "new.txt").write_bytes(rng.randbytes(200 * 1024))
    backup(repo, [str(src)])
    repo.close()
    return repo_path, src, sk_repo


def _forget_all_but_latest(repo: Any) -> None:
    decided = plan_forget(repo.list_snapshots(), KeepRules(last=1))
    assert len(decided.remove) == 1
    assert forget(repo, decided.remove).removed


def test_prune_frees_the_forgotten_data_and_restic_accepts_the_result(
    two_backups: tuple[Path, Path, Any], restic: Any, tmp_path: Path
) -> None:
    repo_path, src, sk_repo = two_backups
    before = _size(repo_path)
    repo = sk_repo(repo_path, create=False, pack_size=MiB)
    _forget_all_but_latest(repo)
    phases: list[str] = []

    class Sink:
        def progress(self, p: Progress) -> None:
            phases.append(p.phase)

    s = prune(repo, PruneOptions(max_unused=0), progress=Sink())
    after = _size(repo_path)
    assert s.packs_removed >= 1 and s.packs_repacked >= 1 and s.blobs_repacked >= 1
    assert before - after >= 6 * MiB - MiB // 2  # the deleted video at least (random: incompressible)
    assert s.bytes_freed == pytest.approx(before - after, rel=0.02)
    assert s.unused_bytes_after == 0
    assert set(s.to_dict()) >= {"packs_removed", "bytes_freed", "failed"}
    assert "reading trees" in phases and phases[-1] == "done"

    restic(repo_path, "check", "--read-data")
    reopened = sk_repo(repo_path, create=False)
    assert check(reopened).ok
    _restore_equals(restic, repo_path, src, tmp_path / "restored")
    # nothing left for a second prune, and restic finds nothing unused either
    again = prune(sk_repo(repo_path, create=False), PruneOptions(max_unused=0))
    assert again.packs_removed == again.packs_repacked == again.index_files_rewritten == 0
    out = restic(repo_path, "prune", "--dry-run", "--max-unused", "0").stdout.decode()
    assert re.search(r"total prune:\s+0 blobs / 0 B", out), out


def test_a_dry_run_changes_nothing(two_backups: tuple[Path, Path, Any]) -> None:
    repo_path, _, sk_repo = two_backups
    repo = sk_repo(repo_path, create=False)
    _forget_all_but_latest(repo)
    before = {k: _files(repo_path, k) for k in ("data", "index")}
    s = prune(repo, PruneOptions(dry_run=True, max_unused=0))
    assert s.dry_run and s.packs_removed >= 1 and s.bytes_removed > 0
    assert {k: _files(repo_path, k) for k in ("data", "index")} == before


def test_the_default_tolerance_leaves_partly_used_packs_alone(
    two_backups: tuple[Path, Path, Any], restic: Any
) -> None:
    repo_path, _, sk_repo = two_backups
    repo = sk_repo(repo_path, create=False)
    _forget_all_but_latest(repo)
    loose = prune(repo, PruneOptions(dry_run=True, max_unused=1.0))
    assert loose.packs_repacked == 0 and loose.packs_removed >= 1
    strict = prune(sk_repo(repo_path, create=False), PruneOptions(dry_run=True, max_unused=0))
    assert strict.packs_repacked > 0
    s = prune(sk_repo(repo_path, create=False), PruneOptions(max_unused=1.0))
    assert s.packs_repacked == 0 and s.unused_bytes_after > 0
    restic(repo_path, "check", "--read-data")


def test_leftovers_of_an_interrupted_backup_are_removed(tmp_path: Path, sk_repo: Any, restic: Any) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(random.Random(1).randbytes(2 * MiB))
    repo_path = tmp_path / "repo"
    repo = sk_repo(repo_path)
    backup(repo, [str(src)])
    # a pack uploaded by a backup that died before writing its index
    (src / "b.bin").write_bytes(random.Random(2).randbytes(2 * MiB))
    index_before = set(_files(repo_path, "index"))
    interrupted = sk_repo(repo_path, create=False)
    interrupted.save_blob(BlobType.DATA, (src / "b.bin").read_bytes())
    interrupted.flush()  # the pack and its index ...
    for name in set(_files(repo_path, "index")) - index_before:
        (repo_path / "index" / name).unlink()  # ... but the index never made it
    assert "not referenced" in restic(repo_path, "check").stdout.decode()
    s = prune(sk_repo(repo_path, create=False))
    assert s.unreferenced_packs == 1 and s.packs_removed == 1
    out = restic(repo_path, "check", "--read-data").stdout.decode()
    assert "not referenced" not in out


def test_a_snapshot_with_missing_data_stops_prune_before_any_change(
    two_backups: tuple[Path, Path, Any],
) -> None:
    repo_path, _, sk_repo = two_backups
    repo = sk_repo(repo_path, create=False)
    _forget_all_but_latest(repo)
    # lose the pack that holds keep.bin's data (the latest snapshot needs it)
    keep_blobs = {b.id for b in _blobs_of_file(repo, "keep.bin")}
    victim = next(p for p, blobs in repo.index.by_pack().items() if keep_blobs & {b.id for b in blobs})
    (repo_path / "data" / victim[:2] / victim).unlink()
    before = {k: _files(repo_path, k) for k in ("data", "index", "snapshots")}
    with pytest.raises(IntegrityError, match=r"missing from the repository.*without changing anything"):
        prune(sk_repo(repo_path, create=False))
    assert {k: _files(repo_path, k) for k in ("data", "index", "snapshots")} == before


def _blobs_of_file(repo: Any, name: str) -> list[Any]:

    snap = repo.find_snapshot("latest")
    tree = decode_tree(repo.load_blob(BlobType.TREE, snap.tree))
    while True:
        names = {os.fsdecode(n.name): n for n in tree}
        if name in names:
            return [repo.index.lookup(BlobType.DATA, c)[1] for c in names[name].content or []]
        sub = next(n for n in tree if n.type == "dir")
        tree = decode_tree(repo.load_blob(BlobType.TREE, sub.subtree))


def test_cancel_during_repacking_removes_nothing_and_a_later_prune_finishes(
    two_backups: tuple[Path, Path, Any], restic: Any, tmp_path: Path
) -> None:
    repo_path, src, sk_repo = two_backups
    repo = sk_repo(repo_path, create=False)
    _forget_all_but_latest(repo)
    cancel = CancelToken()

    class CancelWhileRepacking:
        def progress(self, p: Progress) -> None:
            if p.phase == "repacking":
                cancel.cancel()

    packs_before = set(_files(repo_path, "data"))
    index_before = set(_files(repo_path, "index"))
    with pytest.raises(Cancelled):
        prune(repo, PruneOptions(max_unused=0), progress=CancelWhileRepacking(), cancel=cancel)
    assert packs_before <= set(_files(repo_path, "data"))  # nothing removed
    assert index_before == set(_files(repo_path, "index"))
    restic(repo_path, "check", "--read-data")
    s = prune(sk_repo(repo_path, create=False), PruneOptions(max_unused=0))
    assert s.packs_repacked >= 1
    restic(repo_path, "check", "--read-data")
    _restore_equals(restic, repo_path, src, tmp_path / "restored")


def test_safekeep_prunes_a_repository_restic_wrote(tmp_path: Path, sk_repo: Any, restic: Any) -> None:
    rng = random.Random(5)
    src = tmp_path / "src"
    src.mkdir()
    (src / "old.bin").write_bytes(rng.randbytes(4 * MiB))
    (src / "stays.txt").write_bytes(rng.randbytes(100 * 1024))
    repo_path = tmp_path / "repo"
    restic(repo_path, "init", "--repository-version", "2")
    restic(repo_path, "backup", str(src))
    (src / "old.bin").unlink()
    restic(repo_path, "backup", str(src))
    restic(repo_path, "forget", "--keep-last", "1")
    before = _size(repo_path)
    s = prune(sk_repo(repo_path, create=False))
    assert s.packs_removed + s.packs_repacked >= 1
    assert before - _size(repo_path) >= 4 * MiB - 64 * 1024
    restic(repo_path, "check", "--read-data")
    _restore_equals(restic, repo_path, src, tmp_path / "restored")


def test_restic_prunes_what_safekeep_pruned(
    two_backups: tuple[Path, Path, Any], restic: Any, tmp_path: Path
) -> None:
    repo_path, src, sk_repo = two_backups
    repo = sk_repo(repo_path, create=False)
    _forget_all_but_latest(repo)
    prune(repo)
    (src / "later.txt").write_text("after the prune\n")
    backup(sk_repo(repo_path, create=False), [str(src)], BackupOptions())
    restic(repo_path, "forget", "--keep-last", "1", "--prune")
    restic(repo_path, "check", "--read-data")
    shutil.rmtree(tmp_path / "restored", ignore_errors=True)
    _restore_equals(restic, repo_path, src, tmp_path / "restored")


class _LockedPacks:
    """The local storage, except that pack files cannot be removed (an S3 Object Lock or a key
    without delete permission answers the same way)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def remove(self, h: Any, *, cancel: Any = None) -> None:
        if h.type is FileType.PACK:
            raise PermissionDenied(f"{h.path()} is protected by Object Lock.", hint="Wait for its end.")
        self._inner.remove(h)


def test_packs_the_storage_refuses_to_remove_are_reported_and_removed_later(
    two_backups: tuple[Path, Path, Any], restic: Any, tmp_path: Path
) -> None:
    repo_path, src, sk_repo = two_backups
    _forget_all_but_latest(sk_repo(repo_path, create=False))
    locked = Repository.open(_LockedPacks(open_backend(str(repo_path))), "pw")
    try:
        s = prune(locked, PruneOptions(max_unused=0))
    finally:
        locked.close()
    assert s.failed and all(path.startswith("data/") and "Object Lock" in why for path, why in s.failed)
    assert len(s.failed) == s.packs_removed + s.packs_repacked
    restic(repo_path, "check", "--read-data")  # still whole: the kept packs are merely unreferenced
    later = prune(sk_repo(repo_path, create=False), PruneOptions(max_unused=0))
    assert later.unreferenced_packs == len(s.failed) and later.packs_removed == len(s.failed)
    assert not later.failed
    restic(repo_path, "check", "--read-data")
    _restore_equals(restic, repo_path, src, tmp_path / "restored")
