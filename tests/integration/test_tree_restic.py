"""restic 0.14 is the oracle: its tree blobs must equal what Safekeep encodes for the same paths."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from safekeep.core.format.tree import Node, decode_tree, encode_tree
from safekeep.core.fs.nodes import UserCache, node_from_path

pytestmark = pytest.mark.restic

TZ = "Europe/Berlin"  # a non-UTC zone, so the offset handling is exercised


def _restic(restic_bin: str, repo: Path, *args: str) -> bytes:
    env = dict(os.environ, RESTIC_PASSWORD="x", TZ=TZ, RESTIC_CACHE_DIR=str(repo) + "-cache")
    return subprocess.run(
        [restic_bin, "-r", str(repo), *args], env=env, capture_output=True, check=True
    ).stdout


def _populate(src: Path) -> bool:
    """Create the awkward tree; returns whether user xattrs are supported."""
    src.mkdir()
    b = bytes(src)
    (src / "unicode é 😀 \u200d").write_text("u")
    (src / "with space").write_text("s" * 3000)
    (src / "new\nline").write_text("n")
    (src / 'quote"back\\slash').write_text("q")
    (src / "<html>&amp;").write_text("h")
    (src / ("L" * 255)).write_text("long")
    with open(os.path.join(b, b"bad\xff\xfeutf8"), "wb") as f:
        f.write(b"\x00\x01")
    (src / "empty").write_bytes(b"")
    (src / "kib").write_bytes(os.urandom(5 * 1024))
    (src / "hard1").write_text("hardlinked")
    os.link(src / "hard1", src / "hard2")
    os.symlink("kib", src / "symlink")
    os.mkfifo(src / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "socket"))  # restic 0.14 skips sockets
    sock.close()
    xattrs = True
    try:
        os.setxattr(src / "kib", "user.zeta", b"z")
        os.setxattr(src / "kib", "user.alpha", b"")
    except OSError:
        xattrs = False
    (src / "setuid").write_text("x")
    os.chmod(src / "setuid", 0o4751)
    sub = src / "sub dir"
    sub.mkdir()
    (sub / "inner").write_text("inner")
    os.chmod(sub, 0o1777)
    lossy = src / "lossy"
    lossy.mkdir()
    os.symlink(b"\xff\xfe-target", os.path.join(bytes(lossy), b"badlink"))
    with contextlib.suppress(OSError):  # needs CAP_MKNOD
        os.mknod(src / "chardev", 0o620 | 0o020000, os.makedev(1, 3))
    return xattrs


def _expected_tree(path: bytes, cache: UserCache) -> tuple[bytes, dict[bytes, bytes]]:
    """Our encoding of the directory at ``path``; also returns all subtree blobs by path."""
    blobs: dict[bytes, bytes] = {}
    nodes: list[Node] = []
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        st = os.lstat(full)
        node = node_from_path(full, name, st, user_cache=cache)
        if node.type == "socket":
            continue
        if node.type == "file":
            with open(full, "rb") as f:
                data = f.read()
            assert len(data) < 512 * 1024
            node.content = [hashlib.sha256(data).digest()] if data else []
        elif node.type == "dir":
            sub, sub_blobs = _expected_tree(full, cache)
            blobs.update(sub_blobs)
            node.subtree = hashlib.sha256(sub).digest()
        nodes.append(node)
    blob = encode_tree(nodes, write_linktarget_raw=False)  # 0.14 stores bad link targets lossily
    blobs[path] = blob
    return blob, blobs


def test_trees_match_restic(restic_bin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", TZ)
    time.tzset()
    try:
        src = tmp_path / "src"
        xattrs = _populate(src)
        repo = tmp_path / "repo"
        _restic(restic_bin, repo, "init", "--repository-version", "2")
        _restic(restic_bin, repo, "backup", str(src))
        snap = json.loads(_restic(restic_bin, repo, "snapshots", "--json"))[0]

        def cat(tree_id: str) -> bytes:
            return _restic(restic_bin, repo, "cat", "blob", tree_id)

        # Walk down from the root to src's parent.
        tree_id = snap["tree"]
        for comp in str(tmp_path).strip("/").split("/"):
            nodes = decode_tree(cat(tree_id))
            tree_id = next(n for n in nodes if n.name == comp.encode()).subtree.hex()  # type: ignore[union-attr]
        parent_blob = cat(tree_id)
        parent_nodes = decode_tree(parent_blob)
        assert encode_tree(parent_nodes) == parent_blob
        cache = UserCache()
        src_node = node_from_path(str(src), b"src", os.lstat(src), user_cache=cache)
        expected_src, blobs = _expected_tree(bytes(src), cache)
        src_node.subtree = hashlib.sha256(expected_src).digest()
        assert parent_nodes == [src_node]

        # Every tree below src: restic's bytes == our encoding, and decode/encode is exact.
        pending = [(bytes(src), parent_nodes[0].subtree)]
        seen = 0
        while pending:
            path, sub_id = pending.pop()
            assert sub_id is not None
            blob = cat(sub_id.hex())
            assert hashlib.sha256(blob).digest() == sub_id
            assert blob == blobs[path], path
            nodes = decode_tree(blob)
            if path.endswith(b"/lossy"):
                # restic 0.14 stores an invalid-UTF-8 link target lossily (U+FFFD per bad byte).
                assert nodes[0].linktarget == "\ufffd\ufffd-target".encode()
                # Safekeep's own default keeps the real bytes in linktarget_raw
                ours = decode_tree(
                    encode_tree(
                        [
                            node_from_path(
                                os.path.join(path, b"badlink"),
                                b"badlink",
                                os.lstat(os.path.join(path, b"badlink")),
                            )
                        ]
                    )
                )
                assert ours[0].linktarget == b"\xff\xfe-target"
            else:
                assert encode_tree(nodes) == blob
            seen += 1
            pending += [(os.path.join(path, n.name), n.subtree) for n in nodes if n.type == "dir"]
        assert seen == 3

        src_nodes = {n.name: n for n in decode_tree(blobs[bytes(src)])}
        assert b"socket" not in src_nodes
        assert src_nodes[b"empty"].content == [] and src_nodes[b"empty"].size == 0
        assert src_nodes[b"hard1"].inode == src_nodes[b"hard2"].inode
        assert src_nodes[b"hard1"].links == 2
        assert src_nodes[b"fifo"].content is None and src_nodes[b"fifo"].links == 0
        assert src_nodes[b"sub dir"].links == 0 and src_nodes[b"sub dir"].size == 0
        assert src_nodes[b"symlink"].extended_attributes == []
        assert src_nodes[b"kib"].mtime.offset in (3600, 7200)
        if xattrs:
            assert src_nodes[b"kib"].extended_attributes == [(b"user.zeta", b"z"), (b"user.alpha", b"")]
    finally:
        monkeypatch.undo()
        time.tzset()
