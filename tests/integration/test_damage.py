"""A damaged or hostile repository: clear errors, exactly the affected files, nothing outside the
restore target and no half-written files left behind."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from safekeep.core.archiver import BackupOptions, backup
from safekeep.core.errors import UnsupportedVersion, WrongPassword
from safekeep.core.format.pack import BlobType
from safekeep.core.format.snapshot import Snapshot
from safekeep.core.format.tree import GoTime, Node, decode_tree, encode_tree
from safekeep.core.repository import Repository
from safekeep.core.restorer import RestoreOptions, restore
from safekeep.storage.compose import open_backend


def _leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if ".safekeep-" in p.name or p.name.endswith(".tmp")]


def test_wrong_password(tmp_path: Path, sk_repo: Any) -> None:
    sk_repo(tmp_path / "repo")
    with pytest.raises(WrongPassword) as info:
        Repository.open(open_backend(str(tmp_path / "repo")), "not the password")
    assert "Wrong password" in str(info.value)
    assert info.value.exit_code == 12


def test_unknown_repository_version(tmp_path: Path, sk_repo: Any) -> None:
    repo = sk_repo(tmp_path / "repo")
    cfg = json.loads(repo.config.to_json())
    cfg["version"] = 99
    path = tmp_path / "repo" / "config"
    os.chmod(path, 0o600)
    path.write_bytes(repo.key.seal(json.dumps(cfg).encode()))
    os.chmod(path, 0o400)
    with pytest.raises(UnsupportedVersion) as info:
        Repository.open(open_backend(str(tmp_path / "repo")), "pw")
    assert "version 99" in str(info.value)
    assert "Update Safekeep" in info.value.hint


@pytest.mark.restic
def test_damaged_packs_fail_exactly_their_files(tmp_path: Path, sk_repo: Any, restic: Any) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(5)
    contents = {f"f{i}": rng.randbytes(100 * 1024) for i in range(6)}  # incompressible, one blob each
    for name, data in contents.items():
        (src / name).write_bytes(data)
    repo_dir = tmp_path / "repo"
    repo = sk_repo(repo_dir, pack_size=64 * 1024)  # one blob per pack
    snap, _ = backup(repo, [str(src)], BackupOptions())

    root = {n.name: n for n in decode_tree(repo.load_blob(BlobType.TREE, snap.tree))}
    assert root  # walk down to the folder
    tree_id = snap.tree
    for part in str(src).strip("/").split("/"):
        nodes = {n.name: n for n in decode_tree(repo.load_blob(BlobType.TREE, tree_id))}
        tree_id = nodes[part.encode()].subtree
    files = {n.name.decode(): n for n in decode_tree(repo.load_blob(BlobType.TREE, tree_id))}

    def pack_of(name: str) -> Path:
        (blob_id,) = files[name].content
        pack_id, _ = repo.index.lookup(BlobType.DATA, blob_id)
        return repo_dir / "data" / pack_id[:2] / pack_id

    flipped, truncated = pack_of("f2"), pack_of("f4")
    assert flipped != truncated
    for p in (flipped, truncated):
        os.chmod(p, 0o600)
    raw = bytearray(flipped.read_bytes())
    raw[50 * 1024] ^= 0x01
    flipped.write_bytes(raw)
    # restic flags the flipped bit when it reads the data ...
    proc = restic(repo_dir, "check", "--read-data", check=False)
    assert proc.returncode != 0
    assert flipped.name[:8] in (proc.stdout + proc.stderr).decode()
    with open(truncated, "r+b") as f:
        f.truncate(30 * 1024)
    # ... and the truncated pack by its size alone (``--read-data`` would retry it for ~40 s)
    proc = restic(repo_dir, "check", check=False)
    assert proc.returncode != 0
    assert f"pack {truncated.name}: unexpected file size" in (proc.stdout + proc.stderr).decode()

    # Safekeep's checker names the damaged packs and the files they hold
    from safekeep.core.checker import CheckOptions, check

    result = check(repo, CheckOptions(read_data=True))
    by_pack = {pr.pack: pr for pr in result.errors if pr.pack}
    assert set(by_pack) == {flipped.name, truncated.name}, result.errors
    assert any(p.endswith("/f2") for p in by_pack[flipped.name].paths), by_pack[flipped.name]
    assert any(p.endswith("/f4") for p in by_pack[truncated.name].paths), by_pack[truncated.name]

    target = tmp_path / "out"
    summary = restore(repo, snap, str(target), RestoreOptions())
    out = Path(target, str(src).lstrip("/"))
    failed = sorted(os.path.basename(p) for p, _ in summary.errors)
    assert failed == ["f2", "f4"], summary.errors
    messages = dict((os.path.basename(p), m) for p, m in summary.errors)
    assert flipped.name[:16] in messages["f2"]  # names the damaged pack
    assert "truncated" in messages["f4"]
    assert sorted(os.listdir(out)) == ["f0", "f1", "f3", "f5"]
    for name in ("f0", "f1", "f3", "f5"):
        assert (out / name).read_bytes() == contents[name]
    assert _leftovers(target) == []
    assert summary.files_restored == 4


# ------------------------------------------------------------------ hostile snapshots


def _node(name: bytes, kind: str, **kw: Any) -> Node:
    t = GoTime(1_600_000_000 * 10**9)
    if kind == "file":
        kw.setdefault("content", [])
        kw.setdefault("mode", 0o644)
    if kind == "dir":
        kw.setdefault("mode", 0o20000000000 | 0o755)
    return Node(name=name, type=kind, mtime=t, atime=t, ctime=t, **kw)


def _file(repo: Repository, name: bytes, data: bytes) -> Node:
    res = repo.save_blob(BlobType.DATA, data)
    return _node(name, "file", content=[res.id], size=len(data))


def _tree(repo: Repository, nodes: list[Node]) -> bytes:
    return repo.save_blob(BlobType.TREE, encode_tree(sorted(nodes, key=lambda n: n.name))).id


def _snapshot(repo: Repository, root_nodes: list[Node]) -> Snapshot:
    tree = _tree(repo, root_nodes)
    repo.flush()
    from datetime import UTC, datetime

    snap = Snapshot(time=datetime(2026, 1, 1, tzinfo=UTC), tree=tree, paths=["/x"], hostname="h")
    repo.save_snapshot(snap)
    return snap


def test_hostile_names_write_nothing_outside(tmp_path: Path, sk_repo: Any) -> None:
    repo = sk_repo(tmp_path / "repo")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("untouched")
    before = sorted(p.name for p in outside.iterdir())

    inner = _tree(repo, [_file(repo, b"evil", b"pwned")])
    nodes = [
        _node(b"..", "dir", subtree=inner),
        _file(repo, b"../../etc/evil", b"pwned"),
        _file(repo, b"/abs", b"pwned"),
        _file(repo, b"a/b", b"pwned"),
        _node(b"link", "dir", subtree=_tree(repo, [_file(repo, b"inside", b"pwned")])),
        _file(repo, b"ok", b"fine"),
    ]
    snap = _snapshot(repo, nodes)

    target = tmp_path / "target"
    target.mkdir()
    os.symlink(outside, target / "link")  # planted before the restore
    summary = restore(repo, snap, str(target), RestoreOptions())

    assert sorted(p.name for p in outside.iterdir()) == before
    assert (outside / "keep").read_text() == "untouched"
    assert not (tmp_path / "evil").exists() and not Path("/abs").exists() and not Path("/etc/evil").exists()
    assert sorted(os.listdir(target)) == ["link", "ok"]
    assert os.path.islink(target / "link")  # left alone
    assert (target / "ok").read_text() == "fine"
    errors = [p for p, _ in summary.errors]
    for bad in ("/..", "/../../etc/evil", "//abs", "/a/b", "/link"):
        assert any(p == bad or p.endswith(bad) for p in errors), (bad, summary.errors)
    assert len(summary.errors) == 5
    assert _leftovers(target) == []


def test_missing_blob_fails_only_its_file(tmp_path: Path, sk_repo: Any) -> None:
    repo = sk_repo(tmp_path / "repo")
    ghost = bytes(range(32))
    snap = _snapshot(
        repo,
        [
            _file(repo, b"good", b"good data"),
            _node(b"ghost", "file", content=[ghost], size=10),
            _node(b"sub", "dir", subtree=_tree(repo, [_file(repo, b"also-good", b"more")])),
        ],
    )
    target = tmp_path / "t"
    summary = restore(repo, snap, str(target), RestoreOptions())
    assert [p for p, _ in summary.errors] == ["/ghost"]
    assert ghost.hex()[:12] in summary.errors[0][1]
    assert (target / "good").read_bytes() == b"good data"
    assert (target / "sub" / "also-good").read_bytes() == b"more"
    assert not (target / "ghost").exists()
    assert _leftovers(target) == []
