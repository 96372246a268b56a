"""Interoperability with the real ``restic`` 0.14: each program reads what the other wrote.

restic is the oracle: repositories Safekeep writes must pass ``restic check --read-data`` and
restore byte for byte (with metadata) through ``restic restore``, and Safekeep must restore what
``restic backup`` wrote, in repository versions 1 and 2, compressed or not.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from safekeep.core.archiver import BackupOptions, backup
from safekeep.core.format.pack import BlobType
from safekeep.core.format.tree import decode_tree
from safekeep.core.restorer import RestoreOptions, restore

pytestmark = pytest.mark.restic

BIG = 20 * 1024 * 1024
T0 = 1_600_000_000_123_456_789  # a fixed mtime with nanoseconds


def _semi_compressible(size: int, seed: int) -> bytes:
    """Half random, half repetitive text, in 64 KiB blocks: compresses to roughly 55 %."""
    rng = random.Random(seed)
    out = bytearray()
    text = b"The quick brown fox jumps over the lazy dog. " * 800
    while len(out) < size:
        out += rng.randbytes(32 * 1024)
        out += text[: 32 * 1024]
    return bytes(out[:size])


def make_rich_tree(src: Path, *, big: int = BIG) -> bool:
    """A tree with every kind of entry restic records; returns whether xattrs work here."""
    src.mkdir()
    (src / "big.bin").write_bytes(_semi_compressible(big, 1))
    docs = src / "docs"
    (docs / "sub" / "deeper").mkdir(parents=True)
    for i in range(12):
        (docs / f"note{i:02d}.txt").write_text(f"note {i}\n" * (i * 37 + 1))
    (docs / "sub" / "deeper" / "leaf.txt").write_text("leaf\n")
    (docs / "sub" / "random.dat").write_bytes(random.Random(2).randbytes(700 * 1024))
    (src / "empty").write_bytes(b"")
    (src / "emptydir").mkdir()
    os.symlink("docs/note01.txt", src / "rel-link")
    os.symlink("/nonexistent/target", src / "dangling-link")
    (src / "hard1").write_text("shared by two names\n")
    os.link(src / "hard1", src / "hard2")
    (src / "docs" / "hard3").write_bytes(b"three names")
    os.link(src / "docs" / "hard3", src / "docs" / "sub" / "hard3b")
    os.link(src / "docs" / "hard3", src / "hard3c")
    (src / "script.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(src / "script.sh", 0o755)
    (src / "secret").write_text("s3cret")
    os.chmod(src / "secret", 0o600)
    (src / "sticky").mkdir()
    (src / "sticky" / "f").write_text("f")
    os.chmod(src / "sticky", 0o1750)
    xattrs = True
    (src / "tagged").write_text("has xattrs")
    try:
        os.setxattr(src / "tagged", "user.comment", b"hello \x00 world")
        os.setxattr(src / "tagged", "user.empty", b"")
    except OSError:
        xattrs = False
    # set times last, deepest first, so creating entries does not move a folder's mtime
    all_paths = sorted((p for p in src.rglob("*")), key=lambda p: -len(p.parts))
    for i, p in enumerate(all_paths + [src]):
        ns = T0 + i * 1_000_000_007
        os.utime(p, ns=(ns, ns), follow_symlinks=False)
    return xattrs


@pytest.fixture(scope="module")
def rich_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("rich") / "src"
    make_rich_tree(src)
    return src


def _sk_backup(repo: Any, paths: list[Path], **kw: Any) -> Any:
    snap, summary = backup(repo, [str(p) for p in paths], BackupOptions(**kw))
    assert summary.errors == []
    return snap, summary


def _sk_restore(repo: Any, snap: Any, target: Path, **kw: Any) -> Any:
    summary = restore(repo, snap, str(target), RestoreOptions(**kw))
    assert summary.errors == []
    return summary


def _walk_to(repo: Any, tree_id: bytes, path: str) -> bytes:
    """The subtree ID of the folder at absolute ``path`` below the tree ``tree_id``."""
    for part in os.fsencode(path).strip(b"/").split(b"/"):
        nodes = {n.name: n for n in decode_tree(repo.load_blob(BlobType.TREE, tree_id))}
        node = nodes[part]
        assert node.type == "dir" and node.subtree is not None
        tree_id = node.subtree
    return tree_id


def _restic_snapshot_ids(restic: Any, repo: Path) -> list[str]:
    return [s["id"] for s in sorted(restic.json(repo, "snapshots"), key=lambda s: s["time"])]


def test_restic_checks_and_restores_what_safekeep_wrote(
    tmp_path: Path, rich_src: Path, restic: Any, sk_repo: Any, trees: Any
) -> None:
    repo_dir = tmp_path / "repo"
    repo = sk_repo(repo_dir)
    snap, summary = _sk_backup(repo, [rich_src])
    assert summary.files_new > 0 and summary.data_blobs > 3  # the big file spans several chunks

    restic(repo_dir, "check", "--read-data")
    snaps = restic.json(repo_dir, "snapshots")
    assert [s["id"] for s in snaps] == [snap.id]
    assert snaps[0]["paths"] == [str(rich_src)]

    target = tmp_path / "by-restic"
    restic(repo_dir, "restore", "latest", "--target", str(target))
    expected = trees.state(rich_src)
    trees.assert_same(expected, trees.state(trees.snapshot_root(target, rich_src)))

    # and Safekeep's own restore gives the same
    mine = tmp_path / "by-safekeep"
    _sk_restore(repo, snap, mine)
    trees.assert_same(expected, trees.state(trees.snapshot_root(mine, rich_src)))


def test_restic_cat_config_matches(tmp_path: Path, restic: Any, sk_repo: Any) -> None:
    repo = sk_repo(tmp_path / "repo")
    cfg = restic.json(tmp_path / "repo", "cat", "config")
    assert cfg == {
        "version": repo.config.version,
        "id": repo.config.id,
        "chunker_polynomial": repo.config.chunker_polynomial,
    }


@pytest.mark.parametrize(
    ("version", "compression"), [("1", None), ("2", "auto"), ("2", "off")], ids=["v1", "v2-auto", "v2-off"]
)
def test_safekeep_restores_what_restic_wrote(
    tmp_path: Path,
    rich_src: Path,
    restic: Any,
    sk_repo: Any,
    trees: Any,
    version: str,
    compression: str | None,
) -> None:
    repo_dir = tmp_path / "repo"
    restic(repo_dir, "init", "--repository-version", version)
    restic(repo_dir, "backup", str(rich_src), *(["--compression", compression] if compression else []))
    (restic_id,) = _restic_snapshot_ids(restic, repo_dir)

    repo = sk_repo(repo_dir, create=False)
    assert repo.version == int(version)
    snaps = repo.list_snapshots()
    assert [s.id for s in snaps] == [restic_id]
    assert snaps[0].paths == [str(rich_src)]

    compressed = {t: 0 for t in BlobType}
    for _, blob in repo.index.blobs():
        if blob.uncompressed_length:
            compressed[blob.type] += 1
    if version == "1":
        assert compressed == {BlobType.DATA: 0, BlobType.TREE: 0}
    elif compression == "off":
        assert compressed[BlobType.DATA] == 0 and compressed[BlobType.TREE] > 0
    else:
        assert compressed[BlobType.DATA] > 0 and compressed[BlobType.TREE] > 0

    target = tmp_path / "out"
    _sk_restore(repo, repo.find_snapshot("latest"), target)
    trees.assert_same(trees.state(rich_src), trees.state(trees.snapshot_root(target, rich_src)))


def test_restic_and_safekeep_take_turns(tmp_path: Path, restic: Any, sk_repo: Any, trees: Any) -> None:
    src = tmp_path / "src"
    make_rich_tree(src, big=3 * 1024 * 1024)
    repo_dir = tmp_path / "repo"
    restic(repo_dir, "init", "--repository-version", "2")
    restic(repo_dir, "backup", str(src))
    (first,) = _restic_snapshot_ids(restic, repo_dir)
    n_files = sum(1 for p in src.rglob("*") if p.is_file() and not p.is_symlink())

    # Safekeep after restic: restic's snapshot is the parent and unchanged files are not read
    (src / "added-by-step-2.txt").write_text("two")
    repo = sk_repo(repo_dir, create=False)
    snap2, s2 = _sk_backup(repo, [src])
    assert s2.parent == first
    assert s2.files_new == 1
    assert s2.files_changed == 0
    assert s2.files_unmodified == n_files
    assert s2.data_blobs == 1  # only the new file's content was stored
    repo.close()

    (src / "big.bin").write_bytes(_semi_compressible(3 * 1024 * 1024, 7))
    restic(repo_dir, "backup", str(src))
    restic_latest = _restic_snapshot_ids(restic, repo_dir)[-1]
    state_3 = trees.state(src)

    (src / "docs" / "note03.txt").write_text("edited by step 4")
    repo = sk_repo(repo_dir, create=False)
    snap4, s4 = _sk_backup(repo, [src])
    assert s4.parent == restic_latest
    assert s4.files_changed == 1
    assert s4.files_unmodified == n_files  # n_files - 1 unchanged + the step-2 file
    state_4 = trees.state(src)

    restic(repo_dir, "check", "--read-data")
    assert len(_restic_snapshot_ids(restic, repo_dir)) == 4

    out3 = tmp_path / "sk-restores-restic"
    _sk_restore(repo, repo.find_snapshot(restic_latest), out3)
    trees.assert_same(state_3, trees.state(trees.snapshot_root(out3, src)))

    out4 = tmp_path / "restic-restores-sk"
    restic(repo_dir, "restore", snap4.id, "--target", str(out4))
    trees.assert_same(state_4, trees.state(trees.snapshot_root(out4, src)))


def test_unchanged_folder_gets_the_same_tree_id_from_both(tmp_path: Path, restic: Any, sk_repo: Any) -> None:
    """Tree encoding is byte-identical to restic's, so an unchanged folder dedups across programs.

    atime: restic 0.14 stores ``atime = mtime`` unless ``--with-atime`` is given (and Safekeep does
    the same), so reading the files in between does not change any node. To be robust against a
    restic that did store atime, the comparison is also made against restic's *second* run, made
    after Safekeep's (both then see the same atime).
    """
    base = tmp_path / "data"
    shared = base / "shared"
    (shared / "a" / "b").mkdir(parents=True)
    rng = random.Random(3)
    for i in range(8):
        (shared / f"f{i}").write_bytes(rng.randbytes(rng.randrange(0, 500 * 1024)))
    (shared / "a" / "x.txt").write_text("x")
    (shared / "a" / "b" / "y.txt").write_text("y")
    os.symlink("a/x.txt", shared / "link")
    repo_dir = tmp_path / "repo"
    restic(repo_dir, "init", "--repository-version", "2")
    restic(repo_dir, "backup", str(base))
    repo = sk_repo(repo_dir, create=False)
    snap_sk, _ = _sk_backup(repo, [base])
    restic(repo_dir, "backup", str(base))
    first, middle, second = _restic_snapshot_ids(restic, repo_dir)
    assert middle == snap_sk.id
    repo.close()
    repo = sk_repo(repo_dir, create=False)

    ids = [_walk_to(repo, repo.load_snapshot(s).tree, str(shared)) for s in (first, snap_sk.id, second)]
    assert ids[0] == ids[1] == ids[2]
    raw = json.loads(repo.load_blob(BlobType.TREE, ids[0]))
    for node in raw["nodes"]:
        assert node["atime"] == node["mtime"]  # restic 0.14 default: no atime
    restic(repo_dir, "check")


def test_safekeep_reads_after_restic_prune(tmp_path: Path, restic: Any, sk_repo: Any, trees: Any) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(4)
    for i in range(20):
        (src / f"f{i}").write_bytes(rng.randbytes(200 * 1024))
    repo_dir = tmp_path / "repo"
    repo = sk_repo(repo_dir, pack_size=1024 * 1024)
    _sk_backup(repo, [src])
    for i in range(0, 20, 2):
        (src / f"f{i}").unlink()
    (src / "new").write_bytes(rng.randbytes(300 * 1024))
    snap2, _ = _sk_backup(repo, [src])
    repo.close()
    state = trees.state(src)

    out = restic(repo_dir, "forget", "--keep-last", "1", "--prune").stdout.decode()
    assert "remove 1 snapshots" in out or "removed" in out.lower()
    restic(repo_dir, "check", "--read-data")

    repo = sk_repo(repo_dir, create=False)
    assert [s.id for s in repo.list_snapshots()] == [snap2.id]
    target = tmp_path / "out"
    _sk_restore(repo, repo.find_snapshot("latest"), target)
    trees.assert_same(state, trees.state(trees.snapshot_root(target, src)))
    # and Safekeep can keep writing into the pruned repository
    (src / "after").write_text("after prune")
    _sk_backup(repo, [src])
    repo.close()
    restic(repo_dir, "check", "--read-data")
    shutil.rmtree(target)
