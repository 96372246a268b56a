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


def apply_metadata(path: str | bytes, node: Node, *, follow_symlinks: bool = False) -> list[str]:
    """Restore owner, mode, xattrs and atime/mtime (ns) of ``node`` onto ``path``; return warnings."""
    warnings: list[str] = []
    shown = os.fsdecode(path)
    is_link = node.type == "symlink" and not follow_symlinks

    if os.geteuid() == 0 or node.uid == os.geteuid():
        try:
            os.chown(path, node.uid, node.gid, follow_symlinks=follow_symlinks)
        except OSError as exc:
            if exc.errno != errno.EPERM:
                warnings.append(f"{shown}: cannot set owner {node.uid}:{node.gid}: {exc.strerror}")

    if not is_link:
        try:
            os.chmod(path, st_mode_perm_from_go_mode(node.mode), follow_symlinks=True)
        except OSError as exc:
            warnings.append(f"{shown}: cannot set mode {stat.filemode(node.mode & 0o7777)}: {exc.strerror}")

    for name, value in node.extended_attributes:
        try:
            os.setxattr(path, name, value, follow_symlinks=follow_symlinks)
        except OSError as exc:
            warnings.append(f"{shown}: cannot set extended attribute {os.fsdecode(name)}: {exc.strerror}")

    try:
        os.utime(path, ns=(node.atime.ns, node.mtime.ns), follow_symlinks=follow_symlinks)
    except OSError as exc:
        warnings.append(f"{shown}: cannot set timestamps: {exc.strerror}")
    return warnings
