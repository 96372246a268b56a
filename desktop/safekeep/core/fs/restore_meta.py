"""Apply a tree node's metadata to a restored path, as restic's ``RestoreMetadata`` does.

Order matters: ownership first (``chown`` clears setuid/setgid), then mode, then extended
attributes, then timestamps last (every other change touches ``ctime``/``mtime`` of the inode).
For directories the caller must apply metadata *after* all children have been restored, because
creating children changes the directory's mtime and a read-only mode would block them.

Failures are not raised: a restore should carry on. :func:`apply_metadata` returns a list of
warnings (one line each) for the caller's ``on_error`` policy. Ownership is only changed when
running as root or when the node's owner is the current user (group changes need membership);
``EPERM`` is ignored silently. Symlink modes cannot be set on Linux and are skipped.
"""

from __future__ import annotations

import errno
import os
import stat

from safekeep.core.format.tree import Node, st_mode_perm_from_go_mode

__all__ = ["apply_metadata"]


def apply_metadata(
    path: str | bytes, node: Node, *, follow_symlinks: bool = False, fd: int | None = None
) -> list[str]:
    """Restore owner, mode, xattrs and atime/mtime (ns) of ``node`` onto ``path``; return warnings.

    ``fd``: an open descriptor of ``path`` (a regular file): each change goes through it where the
    platform allows, which spares the kernel a path lookup per change; ``path`` still names the
    file in warnings.
    """
    warnings: list[str] = []
    shown = os.fsdecode(path)
    is_link = node.type == "symlink" and not follow_symlinks

    def target(func: object) -> tuple[str | bytes | int, bool]:
        """Where ``func`` applies a change, and its ``follow_symlinks`` (a descriptor takes only
        True, which is the file itself)."""
        # os.setxattr takes a descriptor too, though os.supports_fd does not list it
        if fd is not None and (func in os.supports_fd or func is getattr(os, "setxattr", None)):
            return fd, True
        return path, follow_symlinks

    if os.geteuid() == 0 or node.uid == os.geteuid():
        where, follow = target(os.chown)
        try:
            os.chown(where, node.uid, node.gid, follow_symlinks=follow)
        except OSError as exc:
            if exc.errno != errno.EPERM:
                warnings.append(f"{shown}: cannot set owner {node.uid}:{node.gid}: {exc.strerror}")

    if not is_link:
        where, _ = target(os.chmod)
        try:
            os.chmod(where, st_mode_perm_from_go_mode(node.mode), follow_symlinks=True)
        except OSError as exc:
            warnings.append(f"{shown}: cannot set mode {stat.filemode(node.mode & 0o7777)}: {exc.strerror}")

    for name, value in node.extended_attributes:
        where, follow = target(os.setxattr)
        try:
            os.setxattr(where, name, value, follow_symlinks=follow)
        except OSError as exc:
            warnings.append(f"{shown}: cannot set extended attribute {os.fsdecode(name)}: {exc.strerror}")

    where, follow = target(os.utime)
    try:
        os.utime(where, ns=(node.atime.ns, node.mtime.ns), follow_symlinks=follow)
    except OSError as exc:
        warnings.append(f"{shown}: cannot set timestamps: {exc.strerror}")
    return warnings
