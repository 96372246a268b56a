"""apply_metadata restores mode, owner, xattrs and ns timestamps, reporting problems as warnings."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from safekeep.core.format.tree import MODE_DIR, MODE_STICKY, GoTime
from safekeep.core.fs.nodes import node_from_path
from safekeep.core.fs.restore_meta import apply_metadata


def test_round_trip_file_metadata(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_text("x")
    os.chmod(src, 0o4751)
    os.utime(src, ns=(1_000_000_123, 2_000_000_456))
    node = node_from_path(str(src), b"src", os.lstat(src), with_atime=True)
    try:
        os.setxattr(src, "user.k", b"v")
        node.extended_attributes = [(b"user.k", b"v")]
    except OSError:
        pass

    dst = tmp_path / "dst"
    dst.write_text("x")
    assert apply_metadata(str(dst), node) == []
    st = os.lstat(dst)
    assert stat.S_IMODE(st.st_mode) == 0o4751
    assert st.st_mtime_ns == 2_000_000_456
    assert st.st_atime_ns == 1_000_000_123
    assert (st.st_uid, st.st_gid) == (node.uid, node.gid)
    for name, value in node.extended_attributes:
        assert os.getxattr(dst, name) == value


def test_metadata_through_a_descriptor(tmp_path: Path) -> None:
    """The restorer applies a file's metadata through its open descriptor, before the file is
    renamed: the result is the same, and the path given names the file in warnings."""
    src = tmp_path / "src"
    src.write_text("x")
    os.chmod(src, 0o640)
    os.utime(src, ns=(3_000_000_001, 4_000_000_002))
    node = node_from_path(str(src), b"src", os.lstat(src), with_atime=True)
    try:
        os.setxattr(src, "user.k", b"through fd")
        node.extended_attributes = [(b"user.k", b"through fd")]
    except OSError:
        pass
    dst = tmp_path / "dst"
    fd = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"x")
        assert apply_metadata(str(tmp_path / "shown-name"), node, fd=fd) == []
        node.extended_attributes = [(b"nonamespace.k", b"v")]  # no such namespace: refused
        warnings = apply_metadata(str(tmp_path / "shown-name"), node, fd=fd)
    finally:
        os.close(fd)
    st = os.lstat(dst)
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_atime_ns, st.st_mtime_ns) == (3_000_000_001, 4_000_000_002)
    assert (st.st_uid, st.st_gid) == (node.uid, node.gid)
    if hasattr(os, "getxattr") and os.listxattr(src):
        assert os.getxattr(dst, "user.k") == b"through fd"
    assert not (tmp_path / "shown-name").exists()
    assert len(warnings) == 1 and "shown-name" in warnings[0]


def test_directory_sticky_and_times(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    node = node_from_path(str(d), b"d", os.lstat(d))
    node.mode = MODE_DIR | MODE_STICKY | 0o770
    node.mtime = node.atime = GoTime(5 * 10**9 + 7, 3600)
    assert apply_metadata(str(d), node) == []
    st = os.lstat(d)
    assert stat.S_IMODE(st.st_mode) == 0o1770
    assert st.st_mtime_ns == 5 * 10**9 + 7


def test_symlink_times_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.write_text("x")
    before = os.lstat(target).st_mtime_ns
    link = tmp_path / "l"
    os.symlink("t", link)
    node = node_from_path(str(link), b"l", os.lstat(link))
    node.mtime = node.atime = GoTime(3 * 10**9, 0)
    assert apply_metadata(str(link), node) == []
    assert os.lstat(link).st_mtime_ns == 3 * 10**9
    assert os.lstat(target).st_mtime_ns == before


def test_errors_become_warnings(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    node = node_from_path(str(f), b"f", os.lstat(f))
    node.extended_attributes = [(b"bogus-namespace.x", b"1")]
    warnings = apply_metadata(str(f), node)
    assert len(warnings) == 1 and "extended attribute" in warnings[0]
    missing = apply_metadata(str(tmp_path / "missing"), node)
    assert missing and all(str(tmp_path / "missing") in w for w in missing)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_chown_as_root(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    node = node_from_path(str(f), b"f", os.lstat(f))
    node.uid, node.gid = 12345, 23456
    assert apply_metadata(str(f), node) == []
    assert (os.lstat(f).st_uid, os.lstat(f).st_gid) == (12345, 23456)
