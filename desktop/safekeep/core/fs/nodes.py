"""Build the tree node restic 0.14 builds for a path on Linux (``NodeFromFileInfo``).

What restic 0.14 records (verified against ``/usr/bin/restic`` 0.14.0, go1.19.8):

- every type: ``mode`` (Go ``FileMode``, see :func:`go_mode_from_st_mode`), ``mtime``, ``atime``,
  ``ctime``, ``uid``, ``gid``, ``user``/``group`` (names; empty if unknown), ``inode``,
  ``device_id`` (``st_dev``);
- ``file``: also ``size`` and ``links``; ``content`` is filled by the archiver (``[]`` for an
  empty file, never ``null``);
- ``symlink``: ``links`` and ``linktarget`` (no size, no extended attributes);
- ``dev``/``chardev``: ``links`` and ``device`` (``st_rdev``);
- ``dir``, ``fifo``, ``socket``: nothing more (no size, no links). The archiver skips sockets.
- extended attributes for everything except symlinks, in ``listxattr`` order (not sorted);
  ``ENOTSUP``/``ENODATA`` on listing means "none", an attribute that cannot be read is skipped.
- timestamps carry nanoseconds and the *local* zone's UTC offset at that instant (Go's
  ``time.Unix`` in ``time.Local``; Python's ``localtime`` honours ``TZ`` the same way).
- unless ``--with-atime`` is given, the archiver replaces ``atime`` by ``mtime``
  (``with_atime=False`` here, the default, does the same).

User and group names come from ``pwd``/``grp`` (NSS); Go's pure-Go ``os/user`` reads
``/etc/passwd``/``/etc/group`` only, so names can differ where NSS has other sources.
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import pwd
import stat
import time

from safekeep.core.format.tree import GoTime, Node, go_mode_from_st_mode

__all__ = ["UnsupportedFileTypeError", "UserCache", "local_go_time", "node_from_path", "node_type"]

log = logging.getLogger(__name__)

_NO_XATTRS = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA}


class UnsupportedFileTypeError(ValueError):
    """The path is of a type restic cannot record (``invalid node type``)."""


class UserCache:
    """Cached uid → user name and gid → group name lookups ("" when unknown), like restic's."""

    def __init__(self) -> None:
        self._users: dict[int, str] = {}
        self._groups: dict[int, str] = {}

    def user(self, uid: int) -> str:
        name = self._users.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = ""
            self._users[uid] = name
        return name

    def group(self, gid: int) -> str:
        name = self._groups.get(gid)
        if name is None:
            try:
                name = grp.getgrgid(gid).gr_name
            except KeyError:
                name = ""
            self._groups[gid] = name
        return name


_DEFAULT_CACHE = UserCache()


def local_go_time(ns: int) -> GoTime:
    """The instant ``ns`` (Unix nanoseconds) in the local time zone, as Go's ``time.Unix``."""
    sec = ns // 1_000_000_000
    offset = _HOUR_OFFSETS.get(sec // 3600) if time.tzname is _zone[0] else None
    if offset is None:
        offset = _local_offset(sec)
    return GoTime(ns, offset)


# UTC offset of each hour that has one offset throughout (checked at both ends), so most file
# times skip ``localtime`` (file times cluster in few hours). ``time.tzset()`` replaces
# ``time.tzname``, which empties the cache: the zone is the one ``localtime`` would use.
_HOUR_OFFSETS: dict[int, int] = {}
_zone: list[object] = [time.tzname]


def _local_offset(sec: int) -> int:
    if time.tzname is not _zone[0]:
        _HOUR_OFFSETS.clear()
        _zone[0] = time.tzname
    offset = time.localtime(sec).tm_gmtoff
    hour = sec // 3600
    start = hour * 3600
    if time.localtime(start).tm_gmtoff == offset == time.localtime(start + 3599).tm_gmtoff:
        if len(_HOUR_OFFSETS) >= 8192:
            _HOUR_OFFSETS.clear()
        _HOUR_OFFSETS[hour] = offset
    return offset


def node_type(st_mode: int) -> str:
    """restic's node type for an ``st_mode``; ``UnsupportedFileTypeError`` for unknown types."""
    fmt = stat.S_IFMT(st_mode)
    kind = _TYPES.get(fmt)
    if kind is None:
        raise UnsupportedFileTypeError(f"invalid node type (st_mode {st_mode:#o})")
    return kind


_TYPES = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "chardev",
    stat.S_IFBLK: "dev",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}


def _xattrs(path: str | bytes) -> list[tuple[bytes, bytes]]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return []
        raise
    out: list[tuple[bytes, bytes]] = []
    for attr in names:
        try:
            value = os.getxattr(path, attr, follow_symlinks=False)
        except OSError as exc:
            log.warning("cannot read extended attribute %s of %r: %s", attr, path, exc)
            continue
        out.append((os.fsencode(attr), value))
    return out


def node_from_path(
    path: str | bytes,
    name: bytes,
    st: os.stat_result,
    *,
    user_cache: UserCache | None = None,
    with_atime: bool = False,
) -> Node:
    """The node restic 0.14's archiver records for ``path`` (an absolute path, ``lstat`` = ``st``).

    ``content`` is left for the caller: ``[]`` for files (append blob IDs), ``None`` otherwise;
    ``subtree`` is left ``None``. Raises ``OSError`` from reading the link target or listing
    xattrs, ``UnsupportedFileTypeError`` for unknown file types.
    """
    cache = user_cache if user_cache is not None else _DEFAULT_CACHE
    kind = node_type(st.st_mode)
    mtime = local_go_time(st.st_mtime_ns)
    node = Node(
        name=name,
        type=kind,
        mode=go_mode_from_st_mode(st.st_mode),
        mtime=mtime,
        atime=local_go_time(st.st_atime_ns) if with_atime else mtime,
        ctime=local_go_time(st.st_ctime_ns),
        uid=st.st_uid,
        gid=st.st_gid,
        user=cache.user(st.st_uid),
        group=cache.group(st.st_gid),
        inode=st.st_ino,
        device_id=st.st_dev,
    )
    if kind == "file":
        node.size = st.st_size
        node.links = st.st_nlink
        node.content = []
    elif kind == "symlink":
        node.links = st.st_nlink
        node.linktarget = os.readlink(os.fsencode(path))
    elif kind in ("dev", "chardev"):
        node.links = st.st_nlink
        node.device = st.st_rdev
    if kind != "symlink":
        node.extended_attributes = _xattrs(path)
    return node
