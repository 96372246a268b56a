"""What one folder of a snapshot holds, as a flat Qt table model (the right side of Browse).

:class:`FolderContentsModel` shows the files and folders of one folder (columns: name, size,
modified). :meth:`FolderContentsModel.show_folder` reads the folder in the background
(:meth:`Catalog.listing`, then its entries made in bulk) and works out the order of the rows
there too; the GUI thread then swaps the rows in at once. A table view asks only for the rows
it shows, so a folder of 100,000 entries costs the GUI thread nothing more than a folder of ten.

Order
    The rows of the folder are ``entries[order[row]]``: the entries stay as the catalog lists
    them, and *order* is a list of positions. By name (the default), folders first; by size or
    by modification time, folders first as well, ties in name order; descending is the
    ascending order reversed. Sorting (:meth:`FolderContentsModel.sort`, called by the view's
    header) computes another order in the background — in slices of :data:`SLICE` positions
    merged pairwise, with a pause between steps, so that no single step holds Python's lock
    long enough for the window to stall — and the GUI thread swaps it in, keeping the selection.

Results of reads or sorts started for another folder or snapshot are dropped (a generation
number).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtWidgets import QApplication, QStyle

from safekeep.common.cancel import CancelToken
from safekeep.gui import texts
from safekeep.gui.restore.session import CatalogSession
from safekeep.gui.restore.tree_model import TYPE_WORDS, join, local_time
from safekeep.state.catalog import Catalog, Entry

log = logging.getLogger(__name__)

ModelIndex = QModelIndex | QPersistentModelIndex

NAME, SIZE, MODIFIED = range(3)
COLUMNS = 3
SLICE = 8192
"""Positions sorted in one step in the background (a few milliseconds)."""

_FLAGS = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


def _pause() -> None:
    """Let other threads (the GUI's) take Python's lock."""
    time.sleep(0)


def _sorted(positions: list[int], key: Callable[[int], Any]) -> list[int]:
    """``sorted(positions, key=key)``, stable, in short steps: slices sorted one by one, then
    merged pairwise (each merge is one pass of the sort over two sorted runs)."""
    runs = [sorted(positions[i : i + SLICE], key=key) for i in range(0, len(positions), SLICE)]
    _pause()
    while len(runs) > 1:
        merged = []
        for i in range(0, len(runs), 2):
            merged.append(sorted(runs[i] + runs[i + 1], key=key) if i + 1 < len(runs) else runs[i])
            _pause()
        runs = merged
    return runs[0] if runs else []


def _folders_first(order: list[int], is_dir: Sequence[bool]) -> list[int]:
    return [i for i in order if is_dir[i]] + [i for i in order if not is_dir[i]]


def inverse(order: list[int]) -> list[int]:
    """``rows`` with ``rows[order[row]] == row``: where each position is shown."""
    rows = [0] * len(order)
    for row, position in enumerate(order):
        rows[position] = row
    return rows


def name_order(entries: Sequence[Entry]) -> list[int]:
    """Positions of ``entries`` by name (case-insensitive), folders first."""
    keys = [e.name.casefold() for e in entries]
    _pause()
    order = _sorted(list(range(len(entries))), keys.__getitem__)
    return _folders_first(order, [e.type == "dir" for e in entries])


def ordering(entries: Sequence[Entry], by_name: list[int], column: int, descending: bool) -> list[int]:
    """Positions of ``entries`` sorted by ``column`` (folders first, ties in name order ``by_name``)."""
    if column == SIZE:
        keys: list[int] = [e.size for e in entries]
    elif column == MODIFIED:
        keys = [e.mtime_ns for e in entries]
    else:
        keys = []
    _pause()
    order = _sorted(by_name, keys.__getitem__) if keys else list(by_name)
    if keys:
        order = _folders_first(order, [e.type == "dir" for e in entries])
    if descending:
        order.reverse()
    return order


@dataclass(frozen=True, slots=True)
class _Rows:
    """A folder as read in the background: its entries, their name order and the order asked for."""

    entries: list[Entry]
    by_name: list[int]
    order: list[int]
    sorted_by: tuple[int, bool]


class FolderContentsModel(QAbstractTableModel):
    """The files and folders of one folder of a snapshot, in a chosen order."""

    folder_shown = Signal(str)
    """The rows of a folder are all in the model (its snapshot path)."""
    folder_failed = Signal(str, object)
    """A folder could not be read (its path and the exception)."""
    sorted_now = Signal()
    """The rows are in the order last asked for."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session: CatalogSession | None = None
        self.snapshot_id = ""
        self.folder = ""
        self.entries: Sequence[Entry] = []
        self.order: list[int] = []
        self.generation = 0
        self.sort_column = NAME
        self.descending = False
        self.sorted_by: tuple[int, bool] = (NAME, False)
        """The order the rows are in now (column, descending)."""
        self._by_name: list[int] = []
        self._reading = False
        self._sorting = 0
        self._sorting_to: tuple[int, bool] | None = None
        self._waiting: list[Callable[[], object]] = []
        style = QApplication.style()
        self._folder_icon = style.standardIcon(QStyle.StandardPixmap.SP_DirIcon)
        self._file_icon = style.standardIcon(QStyle.StandardPixmap.SP_FileIcon)
        self._link_icon = style.standardIcon(QStyle.StandardPixmap.SP_FileLinkIcon)

    @property
    def loading(self) -> bool:
        """The folder is being read, or its rows sorted."""
        return self._reading or self._sorting > 0

    # ---------------------------------------------------------------- which folder

    def show_folder(
        self,
        session: CatalogSession | None,
        snapshot_id: str,
        folder: str,
        then: Callable[[], object] | None = None,
    ) -> None:
        """Show another folder (or nothing); ``then`` runs once its rows are in (not if it fails,
        nor if another folder is asked for before)."""
        self.beginResetModel()
        self.generation += 1
        self.session, self.snapshot_id, self.folder = session, snapshot_id, folder
        self.entries, self.order, self._by_name = [], [], []
        self._sorting = 0
        self._waiting = [then] if then is not None else []
        self.endResetModel()
        self._reading = session is not None and bool(snapshot_id) and bool(folder)
        if not self._reading:
            return
        assert session is not None
        generation, column, descending = self.generation, self.sort_column, self.descending

        def read(catalog: Catalog, cancel: CancelToken) -> _Rows:
            entries = catalog.listing(snapshot_id, folder, cancel=cancel).entries()
            _pause()
            by_name = name_order(entries)
            if column == NAME and not descending:
                return _Rows(entries, by_name, by_name, (column, descending))
            return _Rows(
                entries, by_name, ordering(entries, by_name, column, descending), (column, descending)
            )

        session.call(
            read, lambda rows: self._read(generation, rows), lambda exc: self._failed(generation, exc)
        )

    def when_shown(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` once the folder's rows are in (at once if they are)."""
        if self._reading:
            self._waiting.append(callback)
        else:
            callback()

    def _read(self, generation: int, rows: _Rows) -> None:
        if generation != self.generation:
            return
        self.beginResetModel()
        self.entries, self._by_name, self.order = rows.entries, rows.by_name, rows.order
        self.sorted_by = rows.sorted_by
        self._reading = False
        self.endResetModel()
        waiting, self._waiting = self._waiting, []
        for callback in waiting:
            callback()
        self.folder_shown.emit(self.folder)
        if self.sorted_by != (self.sort_column, self.descending):
            self.sort(
                self.sort_column,
                Qt.SortOrder.DescendingOrder if self.descending else Qt.SortOrder.AscendingOrder,
            )
        else:
            self.sorted_now.emit()

    def _failed(self, generation: int, exc: BaseException) -> None:
        if generation != self.generation:
            return
        self._reading = False
        self._waiting = []
        log.warning("could not list %s of snapshot %s: %s", self.folder, self.snapshot_id[:8], exc)
        self.folder_failed.emit(self.folder, exc)

    # ---------------------------------------------------------------- sorting

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Put the rows in another order (worked out in the background)."""
        if not 0 <= column < COLUMNS:
            return
        descending = order == Qt.SortOrder.DescendingOrder
        self.sort_column, self.descending = column, descending
        if self._reading:
            return  # the rows are sorted once read
        session, entries, by_name, generation = self.session, self.entries, self._by_name, self.generation
        if self._sorting and self._sorting_to == (column, descending):
            return  # on its way (the view asks twice: for the header's indicator, then for itself)
        if session is None or not entries or (column, descending) == self.sorted_by:
            if not self._sorting:
                self.sorted_by = (column, descending)
                self.sorted_now.emit()
            return
        self._sorting += 1
        self._sorting_to = (column, descending)

        def work(_catalog: Catalog, _cancel: CancelToken) -> tuple[list[int], list[int]]:
            new = ordering(entries, by_name, column, descending)
            return new, inverse(new)

        session.call(
            work,
            lambda result: self._sorted(generation, column, descending, *result),
            lambda exc: self._sort_failed(generation, exc),
        )

    def _sort_failed(self, generation: int, exc: BaseException) -> None:
        if generation == self.generation:
            self._sorting -= 1
            log.warning("could not sort %s: %s", self.folder, exc)

    def _sorted(
        self, generation: int, column: int, descending: bool, new: list[int], rows: list[int]
    ) -> None:
        if generation != self.generation:
            return
        self._sorting -= 1
        if (column, descending) != (self.sort_column, self.descending):
            return  # another order was asked for since; its result follows
        self.layoutAboutToBeChanged.emit()
        old = self.order
        persistent = self.persistentIndexList()  # the selection and the current row, kept
        moved = [self.index(rows[old[i.row()]], i.column()) for i in persistent]
        self.order = new
        if persistent:
            self.changePersistentIndexList(persistent, moved)
        self.sorted_by = (column, descending)
        self.layoutChanged.emit()
        self.sorted_now.emit()

    # ---------------------------------------------------------------- Qt model

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.order)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else COLUMNS

    def flags(self, index: ModelIndex) -> Qt.ItemFlag:
        return _FLAGS if index.isValid() else Qt.ItemFlag.NoItemFlags

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return (self.tr("Name"), self.tr("Size"), self.tr("Modified"))[section]
        if role == Qt.ItemDataRole.TextAlignmentRole and section == SIZE:
            return _RIGHT
        return None

    def entry(self, index: ModelIndex) -> Entry | None:
        """The entry shown at ``index`` (any column), or None."""
        row = index.row()
        if not index.isValid() or not 0 <= row < len(self.order):
            return None
        return self.entries[self.order[row]]

    def path(self, index: ModelIndex) -> str:
        """The snapshot path of the entry at ``index`` ("" if none)."""
        e = self.entry(index)
        return join(self.folder, e.name) if e is not None else ""

    def row_of(self, name: str) -> int:
        """The row showing ``name`` (-1: not in this folder, or not read yet)."""
        position = next((i for i, e in enumerate(self.entries) if e.name == name), -1)
        return self.order.index(position) if position >= 0 else -1

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        row = index.row()
        if not index.isValid() or not 0 <= row < len(self.order):
            return None
        e = self.entries[self.order[row]]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == NAME:
                return e.name
            if col == SIZE:
                return "" if e.type == "dir" else texts.size(e.size)
            return local_time(e.mtime)
        if role == Qt.ItemDataRole.DecorationRole and col == NAME:
            if e.type == "dir":
                return self._folder_icon
            return self._link_icon if e.type == "symlink" else self._file_icon
        if role == Qt.ItemDataRole.TextAlignmentRole and col == SIZE:
            return _RIGHT
        if role == Qt.ItemDataRole.ToolTipRole and col == NAME:
            return join(self.folder, e.name)
        if role == Qt.ItemDataRole.AccessibleTextRole and col == NAME:
            return f"{self.tr(TYPE_WORDS.get(e.type, e.type))} {e.name}"
        return None
