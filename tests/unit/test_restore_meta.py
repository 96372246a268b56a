"""apply_metadata restores mode, owner, xattrs and ns timestamps, reporting problems as warnings."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from safekeep.core.format.tree import MODE_DIR, MODE_STICKY, GoTime, Node
from safekeep.core.fs.nodes import node_from_path
from safekeep.core.fs.restore_meta import apply_metadata


def _source_node(tmp_path: Path) -> Node:
    """The node of a file with setuid, ns times and (where the file system allows) an xattr."""
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
    return node


@pytest.mark.parametrize("through_fd", [False, True])
def test_round_trip_file_metadata(tmp_path: Path, through_fd: bool) -> None:
    """By path, or (as the restorer does before a file takes its name) through its descriptor."""
    node = _source_node(tmp_path)
    dst = tmp_path / "dst"
    dst.write_text("x")
    if through_fd:
        fd = os.open(dst, os.O_RDWR)
        try:  # the path given only names the file in warnings
            assert apply_metadata(str(tmp_path / "shown-name"), node, fd=fd) == []
        finally:
            os.close(fd)
    else:
        assert apply_metadata(str(dst), node) == []
    st = os.lstat(dst)
    assert stat.S_IMODE(st.st_mode) == 0o4751
    assert st.st_mtime_ns == 2_000_000_456
    assert st.st_atime_ns == 1_000_000_123
    assert (st.st_uid, st.st_gid) == (node.uid, node.gid)
    for name, value in node.extended_attributes:
        assert os.getxattr(dst, name) == value


def test_warnings_through_a_descriptor_name_the_path_given(tmp_path: Path) -> None:
    node = _source_node(tmp_path)
    node.extended_attributes = [(b"nonamespace.k", b"v")]  # no such namespace: refused
    fd = os.open(tmp_path / "dst", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        warnings = apply_metadata(str(tmp_path / "shown-name"), node, fd=fd)
    finally:
        os.close(fd)
    assert len(warnings) == 1 and "shown-name" in warnings[0] and "nonamespace.k" in warnings[0]
    assert not (tmp_path / "shown-name").exists()


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
