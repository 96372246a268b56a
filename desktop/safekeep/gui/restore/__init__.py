"""The restore window: find any file in any backup and get it back with a few clicks.

Concepts
--------
Source
    Which backups the window shows: a plan and one of its destinations (a plan with several
    destinations keeps several copies; the person chooses which one to restore from).
    Destinations that no plan uses (a repository made by restic, added by hand) are listed
    under "Other backups".

Session (:class:`~safekeep.gui.restore.session.CatalogSession`)
    The destination's catalog (:class:`safekeep.state.catalog.Catalog`), kept open while the
    window shows that destination. It is opened and brought up to date in the background
    ("Indexing backup 3 of 30…" in the status line); browsing works before the index is
    complete, because the catalog reads a snapshot's trees from the repository until it is
    indexed. Every catalog call runs off the GUI thread, its result comes back on it.

Timeline
    The snapshots, newest first, with date and time (local), size and what changed since the
    previous one (files added, changed, removed), computed lazily one snapshot after another.

Modes (tabs)
    *Browse* a snapshot as a file manager does: its folders on the left
    (:class:`~safekeep.gui.restore.tree_model.FolderTreeModel`, loaded folder by folder), what
    the chosen folder holds beside them (:class:`~safekeep.gui.restore.contents_model.FolderContentsModel`:
    a flat table read and sorted in the background; the view asks only for the rows it shows,
    so a folder of 100,000 entries never freezes the window), and a details pane for the item
    chosen there (size, modified, type, other versions);
    *Search* all snapshots by name or pattern; the *Versions* of a file or folder; *Deleted*
    files (what older snapshots hold that the chosen one does not); *Compare* two snapshots.

Selection (:class:`~safekeep.gui.restore.restoring.Pick`)
    What a mode has selected: (snapshot, path, type) triples. A restore groups them by snapshot.

Restoring (:class:`~safekeep.gui.restore.restoring.RestoreFlow`)
    To the original place (target ``/``) or into another folder (``flatten``: each selected item
    lands directly in that folder). The conflict policy is Ask (the default: the conflicts are
    listed first and the person decides per item or for all), Keep both, Overwrite or Skip. The
    restore runs in a worker process with a progress dialog and Cancel; a summary dialog then
    says what went where. Opening an old version restores one file into a private temporary
    folder and hands it to the desktop's default application; the original is never touched.
"""

from __future__ import annotations

from safekeep.gui.restore.window import RestoreWindow

__all__ = ["RestoreWindow"]
