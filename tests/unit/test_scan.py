"""The background scan: the archiver's order, exclusions, bounded read-ahead, safe fallback."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from safekeep.core.archiver import Archiver, BackupOptions, start_scan
from safekeep.core.format.keys import KDFParams
from safekeep.core.fs.exclude import Excluder
from safekeep.core.fs.scan import Scan
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.storage.providers.memory import MemoryBackend

CHEAP = KDFParams(16, 1, 1)


@pytest.fixture()
def repo() -> Any:
    r = Repository.init(MemoryBackend(), "pw", options=RepositoryOptions(kdf=CHEAP))
    yield r
    r.close()


def _tree(root: Path) -> None:
    """Nested folders whose byte order differs from a case-insensitive or str order."""
    for rel in ("B/x/deep/f", "B/x/g", "a/1", "a/Z/2", "a/b.tmp", "C", "a/é/3", "a/e/4", "empty/"):
        p = root / rel
        if rel.endswith("/"):
            p.mkdir(parents=True, exist_ok=True)
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(rel)
    os.symlink("a", root / "link-to-a")


def _walk_order(root: bytes, excluder: Excluder) -> list[bytes]:
    """The folders in the order the archiver enters them: depth-first, names sorted as bytes."""
    out = [root]
    for name in sorted(os.listdir(root)):
        child = os.path.join(root, name)
        if excluder.excluded(child):
            continue
        if os.path.isdir(child) and not os.path.islink(child):
            out += _walk_order(child, excluder)
    return out


def test_listings_come_in_the_archivers_order_without_excluded_entries(tmp_path: Path) -> None:
    _tree(tmp_path)
    root = os.fsencode(tmp_path)
    excluder = Excluder(["*.tmp", "deep"])
    scan = Scan([root], excluder, limit=1).start()
    try:
        for folder in _walk_order(root, excluder):
            listing = scan.take(folder)
            assert listing is not None and listing.path == folder and listing.error is None
            names = [e.name for e in listing.entries]
            expected = sorted(n for n in os.listdir(folder) if not excluder.excluded(os.path.join(folder, n)))
            assert names == expected
            for e in listing.entries:
                assert e.node is not None and e.node.name == e.name and e.path == os.path.join(folder, e.name)
        assert scan.take(b"/nowhere") is None  # the walk is over
    finally:
        scan.close()


def test_a_different_order_stops_the_scan_and_the_caller_reads_directly(tmp_path: Path) -> None:
    _tree(tmp_path)
    root = os.fsencode(tmp_path)
    scan = Scan([root], Excluder([]), limit=2).start()
    try:
        assert scan.take(os.path.join(root, b"a")) is None  # not the first listing
        assert scan.take(root) is None  # stopped for good
    finally:
        scan.close()


def _snapshot_tree(repo: Repository, src: Path, options: BackupOptions, scan: Scan | None) -> bytes:
    snap, summary = Archiver(repo, options, scan=scan).backup([str(src)])
    assert summary.errors == []
    assert snap.tree is not None
    return snap.tree


@pytest.mark.parametrize("limit", [1, 4096])
def test_backup_with_a_scan_equals_backup_reading_directly(
    tmp_path: Path, repo: Repository, limit: int
) -> None:
    src = tmp_path / "src"
    _tree(src)
    options = BackupOptions(excludes=("*.tmp",), hostname="h", use_parent=False)
    direct = Scan([], Excluder([])).start()  # walks nothing: the archiver reads everything itself
    expected = _snapshot_tree(repo, src, options, direct)
    assert direct.taken == 0
    folders = len(_walk_order(os.fsencode(src), Excluder(["*.tmp"])))
    scan = Scan([os.fsencode(src)], Excluder(["*.tmp"]), limit=limit).start()
    assert _snapshot_tree(repo, src, options, scan) == expected
    assert scan.taken == folders  # every folder came from the scan
    scan = start_scan([str(src)], options)
    assert _snapshot_tree(repo, src, options, scan) == expected
    assert scan.taken == folders
    # a scan of other paths (a caller's mistake) costs speed, not correctness
    other = tmp_path / "src" / "a"
    assert _snapshot_tree(repo, src, options, start_scan([str(other)], options)) == expected


def test_scan_of_several_sources_and_a_file_source(tmp_path: Path, repo: Repository) -> None:
    src = tmp_path / "src"
    _tree(src)
    (tmp_path / "lone.txt").write_text("alone")
    paths = [str(src / "B"), str(tmp_path / "lone.txt"), str(src / "a")]
    options = BackupOptions(hostname="h", use_parent=False)
    snap1, _ = Archiver(repo, options, scan=Scan([], Excluder([])).start()).backup(paths)
    scan = start_scan(paths, options)
    snap2, _ = Archiver(repo, options, scan=scan).backup(paths)
    assert snap1.tree == snap2.tree
    assert scan.taken == len(_walk_order(os.fsencode(src / "B"), Excluder([]))) + len(
        _walk_order(os.fsencode(src / "a"), Excluder([]))
    )
