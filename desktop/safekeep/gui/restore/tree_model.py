"""The folders of a snapshot as a lazily loaded Qt item model (the left side of Browse).

:class:`FolderTreeModel` shows one snapshot's *folders* only (one column: the name); what a
folder holds, files and folders, is shown beside it by
:class:`~safekeep.gui.restore.contents_model.FolderContentsModel`. A folder's sub-folders are
read only when the view asks for them (``canFetchMore``/``fetchMore``, i.e. when the folder is
expanded) or when :meth:`FolderTreeModel.locate` goes through it: :meth:`Catalog.listing` runs
in the background, the sub-folders are picked out, sorted by name and turned into nodes there
too, and the GUI thread inserts them in growing batches, one batch per turn of the event loop.

Each node keeps its row, its parent and the catalog :class:`~safekeep.state.catalog.Entry`.
Changing the snapshot (:meth:`FolderTreeModel.show_snapshot`) resets the model; results of
reads started for an earlier snapshot are dropped (a generation number).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtWidgets import QApplication, QStyle

from safekeep.common.cancel import CancelToken
from safekeep.gui.restore.session import CatalogSession
from safekeep.state.catalog import Catalog, Entry

log = logging.getLogger(__name__)

BATCH = 2000
"""Rows inserted per turn of the event loop (the first batch; later ones grow)."""
SLICE = 4096
"""Nodes made in the background between two chances for the GUI thread to run Python."""

ModelIndex = QModelIndex | QPersistentModelIndex

_FOLDER_FLAGS = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
_NO_FLAGS = Qt.ItemFlag.NoItemFlags

TYPE_WORDS = {
    "file": "File",
    "dir": "Folder",
    "symlink": "Link",
    "dev": "Device",
    "chardev": "Device",
    "fifo": "Pipe",
    "socket": "Socket",
}


class Load(Enum):
    NOT_LOADED = "not loaded"
    LOADING = "loading"
    LOADED = "loaded"
    FAILED = "failed"


class Node:
    """One row: an entry of a folder of the snapshot (the root node is the snapshot's ``/``)."""

    __slots__ = ("children", "entry", "incoming", "parent", "path", "row", "state", "waiting")

    def __init__(self, entry: Entry, path: str, parent: Node | None, row: int) -> None:
        self.entry = entry
        self.path = path
        self.parent = parent
        self.row = row
        self.children: list[Node] = []
        self.incoming: list[Node] = []  # read, not inserted yet
        self.state = Load.NOT_LOADED if entry.is_dir else Load.LOADED
        self.waiting: list[Callable[[Node], None]] = []

    @property
    def is_dir(self) -> bool:
        return self.entry.is_dir

    def child(self, name: str) -> Node | None:
        for c in self.children:
            if c.entry.name == name:
                return c
        return None


def _root() -> Node:
    return Node(Entry("/", "dir", 0, 0, None, None), "/", None, 0)


def local_time(dt: datetime) -> str:
    return dt.astimezone().strftime("%Y-%m-%d %H:%M")


def join(folder: str, name: str) -> str:
    """The path of ``name`` in the snapshot folder ``folder``."""
    return f"{'' if folder == '/' else folder}/{name}"


def folder_nodes(parent: Node, entries: Sequence[Entry]) -> list[Node]:
    """The nodes of the sub-folders among ``entries``, by name; made a slice at a time, with a
    pause in between so that the GUI thread gets to run (this runs in the background)."""
    folders = sorted((e for e in entries if e.type == "dir"), key=lambda e: (e.name.casefold(), e.name))
    out: list[Node] = []
    for start in range(0, len(folders), SLICE):
        out.extend(
            Node(e, join(parent.path, e.name), parent, start + i)
            for i, e in enumerate(folders[start : start + SLICE])
        )
        time.sleep(0)
    return out


class FolderTreeModel(QAbstractItemModel):
    """The folders of one snapshot, read folder by folder in the background."""

    folder_loaded = Signal(str)
    """A folder's rows are all in the model (its snapshot path)."""
    folder_failed = Signal(str, object)
    """A folder could not be read (its path and the exception)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session: CatalogSession | None = None
        self.snapshot_id = ""
        self.root = _root()
        self.generation = 0
        self._queue: list[Node] = []  # folders with rows waiting to be inserted
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._insert_batch)
        self._folder_icon = QApplication.style().standardIcon(QStyle.StandardPixmap.SP_DirIcon)

    # ---------------------------------------------------------------- which snapshot

    def show_snapshot(self, session: CatalogSession | None, snapshot_id: str) -> None:
        """Show another snapshot (or nothing); its root folder starts loading at once."""
        self.beginResetModel()
        self.generation += 1
        self.session = session
        self.snapshot_id = snapshot_id
        self.root = _root()
        self._queue = []
        self.endResetModel()
        if session is not None and snapshot_id:
            self._load(self.root)

    @property
    def loading(self) -> bool:
        """Some folder is being read or inserted."""
        return bool(self._queue) or self._any_loading(self.root)

    def _any_loading(self, node: Node) -> bool:
        if node.state is Load.LOADING:
            return True
        return any(
            c.is_dir and c.state is not Load.NOT_LOADED and self._any_loading(c) for c in node.children
        )

    # ---------------------------------------------------------------- Qt model

    def node(self, index: ModelIndex) -> Node:
        node = index.internalPointer() if index.isValid() else None
        return node if isinstance(node, Node) else self.root

    def index_of(self, node: Node, column: int = 0) -> QModelIndex:
        if node is self.root or node.parent is None:
            return QModelIndex()
        return self.createIndex(node.row, column, node)

    def index(self, row: int, column: int, parent: ModelIndex = QModelIndex()) -> QModelIndex:  # noqa: B008
        node = parent.internalPointer() if parent.isValid() else self.root
        children = node.children
        if 0 <= row < len(children) and column == 0:
            return self.createIndex(row, column, children[row])
        return QModelIndex()

    def parent(self, index: ModelIndex = QModelIndex()) -> QModelIndex:  # type: ignore[override]  # noqa: B008
        if not index.isValid():
            return QModelIndex()
        node = self.node(index)
        parent = node.parent
        if parent is None or parent is self.root:
            return QModelIndex()
        return self.createIndex(parent.row, 0, parent)

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        if parent.isValid() and parent.column() != 0:
            return 0
        return len(self.node(parent).children)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 1

    def hasChildren(self, parent: ModelIndex = QModelIndex()) -> bool:  # noqa: B008
        node = parent.internalPointer() if parent.isValid() else self.root
        if node.state is Load.LOADED:  # called for every row at each layout of the view: kept cheap
            return bool(node.children)
        return True

    def canFetchMore(self, parent: ModelIndex) -> bool:
        node = self.node(parent)
        return node.is_dir and node.state is Load.NOT_LOADED and self.session is not None

    def fetchMore(self, parent: ModelIndex) -> None:
        node = self.node(parent)
        if node.is_dir and node.state is Load.NOT_LOADED:
            self._load(node)

    def flags(self, index: ModelIndex) -> Qt.ItemFlag:
        return _FOLDER_FLAGS if index.isValid() else _NO_FLAGS

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.tr("Folders")
        return None

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        node = self.node(index)
        if role == Qt.ItemDataRole.DisplayRole:
            return node.entry.name
        if role == Qt.ItemDataRole.DecorationRole:
            return self._folder_icon
        if role == Qt.ItemDataRole.ToolTipRole:
            return node.path
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"{self.tr('Folder')} {node.entry.name}"
        return None

    # ---------------------------------------------------------------- loading

    def _load(self, node: Node) -> None:
        session = self.session
        if session is None:
            return
        node.state = Load.LOADING
        generation, snapshot, path = self.generation, self.snapshot_id, node.path

        def read(catalog: Catalog, cancel: CancelToken) -> list[Node]:
            return folder_nodes(node, catalog.listing(snapshot, path, cancel=cancel).entries())

        session.call(
            read,
            lambda nodes: self._read(generation, node, nodes),
            lambda exc: self._failed(generation, node, exc),
        )

    def _read(self, generation: int, node: Node, nodes: list[Node]) -> None:
        if generation != self.generation:
            return
        node.incoming = nodes
        self._queue.append(node)
        if not self._timer.isActive():
            self._timer.start()

    def _failed(self, generation: int, node: Node, exc: BaseException) -> None:
        if generation != self.generation:
            return
        node.state = Load.FAILED
        log.warning("could not list %s of snapshot %s: %s", node.path, self.snapshot_id[:8], exc)
        waiting, node.waiting = node.waiting, []
        for callback in waiting:
            callback(node)
        self.folder_failed.emit(node.path, exc)

    def _insert_batch(self) -> None:
        if not self._queue:
            return
        node = self._queue[0]
        start = len(node.children)
        # each insertion makes the view lay out the folder's rows again: growing batches keep
        # the number of layouts small (about log2 of the rows) and the first rows show at once
        batch = node.incoming[start : start + max(BATCH, start)]
        if batch:
            self.beginInsertRows(self.index_of(node), start, start + len(batch) - 1)
            node.children.extend(batch)
            self.endInsertRows()
        if len(node.children) >= len(node.incoming):
            self._queue.pop(0)
            node.incoming = []
            node.state = Load.LOADED
            if not node.children:  # the expand arrow goes away
                index = self.index_of(node)
                if index.isValid():
                    self.dataChanged.emit(index, index)
            waiting, node.waiting = node.waiting, []
            for callback in waiting:
                callback(node)
            self.folder_loaded.emit(node.path)
        if self._queue:
            self._timer.start()

    # ---------------------------------------------------------------- finding a path

    def locate(self, path: str, found: Callable[[QModelIndex], None]) -> None:
        """Load the folders down to ``path``, then call ``found`` with its index (invalid: not there)."""
        parts = [p for p in path.split("/") if p]
        generation = self.generation

        def step(node: Node, rest: list[str]) -> None:
            if generation != self.generation:
                return
            if not rest:
                found(self.index_of(node))
                return
            if node.state is Load.FAILED:
                found(QModelIndex())
                return
            if node.state is not Load.LOADED:
                node.waiting.append(lambda n: step(n, rest))
                if node.state is Load.NOT_LOADED:
                    self._load(node)
                return
            child = node.child(rest[0])
            if child is None:
                found(QModelIndex())
                return
            step(child, rest[1:])

        step(self.root, parts)
