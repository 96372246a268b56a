"""The local file system seen through restic's eyes.

``nodes`` turns an ``lstat`` result into the :class:`~safekeep.core.format.tree.Node` that restic
0.14 records for the same path on Linux (same fields, same omissions, local-time timestamps), so
trees written by Safekeep and by restic for one directory have the same ID. ``restore_meta``
applies a node's metadata back to a restored path (mode, owner, xattrs, timestamps), best effort,
returning warnings instead of failing a restore. ``safepath`` joins names read from a repository
onto a restore target and refuses anything that would escape it (``..``, ``/`` in a name,
symlinked parents). ``scan`` walks the folders to back up in a background thread, ahead of the
archiver and in its order.
"""
