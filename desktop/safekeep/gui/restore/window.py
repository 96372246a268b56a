"""The restore window: choose a copy and a snapshot, find what to restore, and restore it.

Layout: the plan and copy (destination) choosers at the top; the timeline of snapshots on the
left; the modes in tabs (Browse: the folder tree, the chosen folder's contents and the details
pane, as in a file manager; Search, Versions, Deleted, Compare); the restore bar at the bottom
(conflict policy, "Restore to original place", "Restore to another folder…", "Open"); a status
line with the index's progress. See :mod:`safekeep.gui.restore`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSize, Qt, QUrl, Signal
from PySide6.QtGui import QCloseEvent, QDesktopServices, QKeySequence, QPainter, QPaintEvent, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QStyle,
    QTableView,
    QTabWidget,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from safekeep.common.cancel import CancelToken
from safekeep.core.format.snapshot import Snapshot
from safekeep.gui import icons, texts
from safekeep.gui.background import Background
from safekeep.gui.engine import Engine
from safekeep.gui.restore.contents_model import MODIFIED, NAME, SIZE, FolderContentsModel
from safekeep.gui.restore.modes import CompareView, DeletedView, DetailsPane, SearchView, VersionsView
from safekeep.gui.restore.restoring import ASK, ORIGINAL_PLACE, POLICIES, Pick, RestoreFlow, error_text
from safekeep.gui.restore.session import CatalogSession
from safekeep.gui.restore.tree_model import FolderTreeModel, join, local_time
from safekeep.state.catalog import Catalog, Diff, Entry
from safekeep.state.model import Destination, Plan

log = logging.getLogger(__name__)

PLAN_TAG_PREFIX = "plan:"
SIZE_SETTING = "gui.restore_window.size"
OTHER = ""  # the "plan" of destinations no plan uses


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed in a snapshot since the one before it (files, not folders)."""

    added: int
    changed: int
    removed: int

    @staticmethod
    def of(diff: Diff) -> Changes:
        return Changes(
            sum(1 for c in diff.added if c.after is not None and not c.after.is_dir),
            len(diff.changed),
            sum(1 for c in diff.removed if c.before is not None and not c.before.is_dir),
        )


def snapshot_size(snap: Snapshot) -> int | None:
    summary = snap.summary or {}
    value = summary.get("total_bytes_processed")
    return value if isinstance(value, int) else None


def belongs_to(snap: Snapshot, plan_id: str) -> bool:
    """A snapshot of this plan (tagged ``plan:<id>``), or one no plan made (restic, older tools)."""
    plan_tags = [t for t in snap.tags if t.startswith(PLAN_TAG_PREFIX)]
    return not plan_id or not plan_tags or PLAN_TAG_PREFIX + plan_id in plan_tags


class PathLabel(QLabel):
    """A one-line label that shortens its text in the middle when it does not fit (a long path
    keeps its start and its end; the whole text stays in :meth:`text` and the tooltip)."""

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        rect = self.contentsRect()
        shown = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideMiddle, rect.width())
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.drawText(rect, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), shown)

    def minimumSizeHint(self) -> QSize:
        return QSize(40, super().minimumSizeHint().height())


class RestoreWindow(QMainWindow):
    """Find files and folders in a plan's backups and restore them."""

    snapshots_loaded = Signal()
    """The timeline shows the chosen copy's snapshots (or why it cannot)."""
    changes_ready = Signal()
    """Every snapshot of the timeline shows what changed."""
    restore_finished = Signal()
    """A restore flow ended (its summary was closed, or it was cancelled before it began)."""
    opened_file = Signal(str)
    """An old version was copied to a temporary folder and handed to the desktop (its path)."""

    def __init__(
        self,
        engine: Engine,
        background: Background,
        plan_id: str = "",
        parent: QWidget | None = None,
        *,
        open_url: Callable[[QUrl], object] | None = None,
    ) -> None:
        super().__init__(parent)
        self.engine = engine
        self.background = background
        self.open_url: Callable[[QUrl], object] = open_url or QDesktopServices.openUrl
        self.wanted_plan = plan_id
        self.plans: list[Plan] = []
        self.destinations: dict[str, Destination] = {}
        self.session: CatalogSession | None = None
        self.snapshots: list[Snapshot] = []  # newest first
        self.changes: dict[str, Changes] = {}
        self.sizes: dict[str, int] = {}
        self.flow: RestoreFlow | None = None
        self.loaded = False
        self._chain = 0
        self.shown_folder = ""
        """The folder Browse shows the contents of (a path of the chosen snapshot)."""
        self._folder_entry: Entry | None = None
        self._nav = 0  # counts the folders asked for: a later request wins over an earlier one
        self.setWindowTitle(self.tr("Restore files — Safekeep"))
        self.setWindowIcon(icons.app_icon())
        self.setObjectName("restore-window")
        self.resize(1100, 700)
        self._build()
        self._load_size()
        self._load_choices()

    # ---------------------------------------------------------------- building

    def _build(self) -> None:
        central = QWidget()
        outer = QVBoxLayout(central)
        top = QHBoxLayout()
        plan_label = QLabel(self.tr("&Plan:"))
        self.plan_choice = QComboBox()
        self.plan_choice.setObjectName("plan-choice")
        plan_label.setBuddy(self.plan_choice)
        self.plan_choice.currentIndexChanged.connect(self._plan_chosen)
        copy_label = QLabel(self.tr("&Copy on:"))
        self.copy_choice = QComboBox()
        self.copy_choice.setObjectName("copy-choice")
        copy_label.setBuddy(self.copy_choice)
        self.copy_choice.currentIndexChanged.connect(self._copy_chosen)
        top.addWidget(plan_label)
        top.addWidget(self.plan_choice, 1)
        top.addSpacing(16)
        top.addWidget(copy_label)
        top.addWidget(self.copy_choice, 1)
        outer.addLayout(top)
        self.banner = QLabel()
        self.banner.setObjectName("banner")
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet("QLabel#banner { background: #fdecea; color: #611a15; padding: 6px; }")
        self.banner.hide()
        outer.addWidget(self.banner)

        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        timeline_label = QLabel(self.tr("&Backups (newest first):"))
        self.timeline = QListWidget()
        self.timeline.setObjectName("timeline")
        self.timeline.setAccessibleName(self.tr("Backups"))
        self.timeline.setUniformItemSizes(False)
        self.timeline.setWordWrap(True)
        self.timeline.setSpacing(3)
        timeline_label.setBuddy(self.timeline)
        self.timeline.currentItemChanged.connect(lambda *_: self._snapshot_chosen())
        left_layout.addWidget(timeline_label)
        left_layout.addWidget(self.timeline, 1)
        split.addWidget(left)

        self.modes = QTabWidget()
        self.modes.setObjectName("modes")
        # Browse: the folders on the left, what the chosen folder holds beside them, the details
        browse = QSplitter(Qt.Orientation.Horizontal)
        self.model = FolderTreeModel(self)
        self.tree = QTreeView()
        self.tree.setObjectName("folder-tree")
        self.tree.setAccessibleName(self.tr("Folders in the backup"))
        self.tree.setModel(self.model)
        self.tree.setHeaderHidden(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setIndentation(14)
        # deep folders scroll sideways instead of having their names cut short
        self.tree.header().setStretchLastSection(False)
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.selectionModel().currentChanged.connect(lambda *_: self._tree_current())
        self.model.folder_failed.connect(lambda _path, exc: self._show_error(exc))
        browse.addWidget(self.tree)

        contents = QWidget()
        contents_layout = QVBoxLayout(contents)
        contents_layout.setContentsMargins(0, 0, 0, 0)
        where = QHBoxLayout()
        self.up_button = QToolButton()
        self.up_button.setObjectName("folder-up")
        self.up_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_FileDialogToParent))
        self.up_button.setToolTip(self.tr("Up to the folder that holds this one (Backspace)"))
        self.up_button.setAccessibleName(self.tr("Up one folder"))
        self.up_button.setAutoRaise(True)
        self.up_button.clicked.connect(self.open_parent)
        self.folder_label = PathLabel()
        self.folder_label.setObjectName("folder-label")
        self.folder_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        where.addWidget(self.up_button)
        where.addWidget(self.folder_label, 1)
        contents_layout.addLayout(where)
        self.contents = FolderContentsModel(self)
        self.table = QTableView()
        self.table.setObjectName("folder-contents")
        self.table.setAccessibleName(self.tr("Files and folders in the chosen folder"))
        self.table.setModel(self.contents)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.setAlternatingRowColors(True)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setTabKeyNavigation(False)
        self.table.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        rows = self.table.verticalHeader()
        rows.hide()
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # never asks the rows for their height
        rows.setDefaultSectionSize(self.fontMetrics().height() + 8)
        header = self.table.horizontalHeader()
        header.setHighlightSections(False)
        header.setStretchLastSection(False)
        header.setSectionResizeMode(NAME, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(SIZE, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(MODIFIED, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(SIZE, 80)
        header.resizeSection(MODIFIED, 125)
        header.setSortIndicator(NAME, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)  # the model sorts in the background
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._picked())
        self.table.selectionModel().currentChanged.connect(lambda *_: self._browse_current())
        self.table.activated.connect(self._activated)  # double-click, or Enter
        self.contents.folder_failed.connect(lambda _path, exc: self._show_error(exc))
        self.contents.folder_shown.connect(lambda _path: self._folder_words())
        self.contents.modelReset.connect(self._folder_words)
        contents_layout.addWidget(self.table, 1)
        QShortcut(QKeySequence(Qt.Key.Key_Backspace), self.table, self.open_parent)
        QShortcut(QKeySequence("Alt+Up"), browse, self.open_parent)
        browse.addWidget(contents)
        self.details = DetailsPane(self)
        browse.addWidget(self.details)
        browse.setStretchFactor(0, 2)
        browse.setStretchFactor(1, 5)
        browse.setStretchFactor(2, 3)
        browse.setSizes([190, 420, 260])
        self.browse = browse
        self.search = SearchView(self)
        self.versions = VersionsView(self)
        self.deleted = DeletedView(self)
        self.compare = CompareView(self)
        self.modes.addTab(browse, self.tr("B&rowse"))
        self.modes.addTab(self.search, self.tr("&Search"))
        self.modes.addTab(self.versions, self.tr("&Versions"))
        self.modes.addTab(self.deleted, self.tr("&Deleted files"))
        self.modes.addTab(self.compare, self.tr("Co&mpare"))
        self.modes.currentChanged.connect(lambda _i: self._mode_changed())
        for view in (self.search, self.versions, self.deleted, self.compare):
            view.picked.connect(self._picked)
        split.addWidget(self.modes)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 4)
        split.setSizes([260, 840])
        outer.addWidget(split, 1)

        bar = QHBoxLayout()
        self.picked_label = QLabel()
        self.picked_label.setObjectName("picked")
        self.picked_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        bar.addWidget(self.picked_label, 1)
        policy_label = QLabel(self.tr("If a file is already &there:"))
        self.policy = QComboBox()
        self.policy.setObjectName("conflict-policy")
        for value, words in POLICIES:
            self.policy.addItem(self.tr(words), value)
        policy_label.setBuddy(self.policy)
        bar.addWidget(policy_label)
        bar.addWidget(self.policy)
        self.restore_here = QPushButton(self.tr("Restore to &original place"))
        self.restore_here.setObjectName("restore-original")
        self.restore_here.clicked.connect(lambda: self.restore_picks(self.picks(), elsewhere=False))
        self.restore_elsewhere = QPushButton(self.tr("Restore to &another folder…"))
        self.restore_elsewhere.setObjectName("restore-elsewhere")
        self.restore_elsewhere.clicked.connect(lambda: self.restore_picks(self.picks(), elsewhere=True))
        self.open_button = QPushButton(self.tr("Op&en"))
        self.open_button.setObjectName("open")
        self.open_button.setToolTip(
            self.tr("Open a copy of this version; the file on this computer is not touched")
        )
        self.open_button.clicked.connect(self._open_selected)
        for b in (self.restore_here, self.restore_elsewhere, self.open_button):
            bar.addWidget(b)
        outer.addLayout(bar)
        self.setCentralWidget(central)
        self.status = QLabel()
        self.status.setObjectName("status")
        self.statusBar().addWidget(self.status, 1)
        order: list[tuple[QWidget, QWidget]] = [
            (self.plan_choice, self.copy_choice),
            (self.copy_choice, self.timeline),
            (self.timeline, self.modes),
            (self.modes, self.tree),
            (self.tree, self.up_button),
            (self.up_button, self.table),
            (self.table, self.details.versions_area),
            (self.details.versions_area, self.policy),
            (self.policy, self.restore_here),
            (self.restore_here, self.restore_elsewhere),
            (self.restore_elsewhere, self.open_button),
        ]
        for first, second in order:
            QWidget.setTabOrder(first, second)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Find), self, self.focus_search)
        self._picked()

    def focus_search(self) -> None:
        self.modes.setCurrentWidget(self.search)
        self.search.box.setFocus()

    # ---------------------------------------------------------------- size

    def _load_size(self) -> None:
        db = self.engine.db
        self.background.run(lambda: db.get_setting(SIZE_SETTING, None), self._size_loaded, lambda _e: None)

    def _size_loaded(self, value: object) -> None:
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
            self.resize(QSize(max(600, value[0]), max(400, value[1])))

    def sizeHint(self) -> QSize:
        return QSize(1100, 700)

    # ---------------------------------------------------------------- plan and copy

    def _load_choices(self) -> None:
        engine = self.engine
        self.status.setText(self.tr("Reading the plans…"))
        self.background.run(
            lambda: (engine.plans(), engine.destinations()), self._choices_loaded, self._show_error
        )

    def _choices_loaded(self, loaded: tuple[list[Plan], list[Destination]]) -> None:
        plans, dests = loaded
        self.plans = plans
        self.destinations = {d.id: d for d in dests}
        used = {d for p in plans for d in p.destination_ids}
        self.plan_choice.blockSignals(True)
        self.plan_choice.clear()
        for plan in plans:
            self.plan_choice.addItem(plan.name, plan.id)
        if any(d not in used for d in self.destinations):
            self.plan_choice.addItem(self.tr("Other backups (no plan)"), OTHER)
        self.plan_choice.blockSignals(False)
        self.status.setText("")
        if self.plan_choice.count() == 0:
            self._set_banner(self.tr("There are no backups to restore from yet. Set up a plan first."))
            self.loaded = True
            self.snapshots_loaded.emit()
            return
        self.show_plan(self.wanted_plan)

    def show_plan(self, plan_id: str) -> None:
        """Choose a plan (its first copy); an unknown or empty id keeps the current choice."""
        i = self.plan_choice.findData(plan_id) if plan_id else -1
        if i < 0:
            i = max(0, self.plan_choice.currentIndex())
        if i == self.plan_choice.currentIndex():
            self._plan_chosen()
        else:
            self.plan_choice.setCurrentIndex(i)

    @property
    def plan_id(self) -> str:
        data = self.plan_choice.currentData()
        return str(data) if data else ""

    @property
    def destination_id(self) -> str:
        data = self.copy_choice.currentData()
        return str(data) if data else ""

    def _plan_chosen(self) -> None:
        plan_id = self.plan_id
        if plan_id:
            plan = next((p for p in self.plans if p.id == plan_id), None)
            ids = [d for d in (plan.destination_ids if plan else ()) if d in self.destinations]
        else:
            used = {d for p in self.plans for d in p.destination_ids}
            ids = [d for d in self.destinations if d not in used]
        self.copy_choice.blockSignals(True)
        self.copy_choice.clear()
        for dest_id in ids:
            self.copy_choice.addItem(self.destinations[dest_id].name, dest_id)
        self.copy_choice.setEnabled(len(ids) > 1)
        self.copy_choice.blockSignals(False)
        self._copy_chosen()

    def show_copy(self, destination_id: str) -> None:
        i = self.copy_choice.findData(destination_id)
        if i >= 0 and i != self.copy_choice.currentIndex():
            self.copy_choice.setCurrentIndex(i)

    def _copy_chosen(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
        self._chain += 1
        self.snapshots = []
        self.changes = {}
        self.sizes = {}
        self.timeline.clear()
        self.model.show_snapshot(None, "")
        self._show_nothing()
        self._set_banner("")
        self.loaded = False
        dest_id = self.destination_id
        if not dest_id:
            self.loaded = True
            self.snapshots_loaded.emit()
            return
        session = CatalogSession(self.engine, self.background, dest_id, self)
        session.indexing.connect(self._indexing)
        session.indexed.connect(self._indexed)
        session.failed.connect(self._show_error)
        self.session = session
        self.status.setText(
            self.tr("Opening the backups on {name}…").format(name=self.destinations[dest_id].name)
        )
        session.start()

        def snapshots(catalog: Catalog, cancel: CancelToken) -> list[Snapshot]:
            return sorted(
                catalog.repo.list_snapshots(cancel=cancel), key=lambda s: (s.time, s.id), reverse=True
            )

        session.call(snapshots, lambda snaps: self._snapshots(session, snaps), self._snapshots_failed)

    def _snapshots_failed(self, exc: BaseException) -> None:
        self._show_error(exc)
        self.loaded = True
        self.snapshots_loaded.emit()

    # ---------------------------------------------------------------- the timeline

    def _snapshots(self, session: CatalogSession, snaps: list[Snapshot]) -> None:
        if session is not self.session:
            return
        plan_id = self.plan_id
        self.snapshots = [s for s in snaps if belongs_to(s, plan_id)]
        self.timeline.blockSignals(True)
        self.timeline.clear()
        for snap in self.snapshots:
            item = QListWidgetItem()
            item.setData(Qt.ItemDataRole.UserRole, snap.id)
            self.timeline.addItem(item)
            size = snapshot_size(snap)
            if size is not None:
                self.sizes[snap.id] = size
            self._update_item(item, snap)
        self.timeline.blockSignals(False)
        self.compare.set_snapshots([(s.id, self.snapshot_words(s.id)) for s in self.snapshots])
        if not self.snapshots:
            self._set_banner(self.tr("There is no backup on this copy yet."))
        if self.status.text().startswith(self.tr("Opening")):
            self.status.setText("")
        self.loaded = True
        if self.snapshots:
            self.timeline.setCurrentRow(0)
        self.snapshots_loaded.emit()
        if session.complete:
            self._compute_changes()

    def _when(self, snap: Snapshot) -> str:
        """Date and time in local time; with seconds when another snapshot has the same minute."""
        when = local_time(snap.time)
        if sum(1 for s in self.snapshots if local_time(s.time) == when) > 1:
            when = snap.time.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        return when

    def _update_item(self, item: QListWidgetItem, snap: Snapshot) -> None:
        when = self._when(snap)
        size = self.sizes.get(snap.id)
        parts = [texts.size(size)] if size is not None else []
        ch = self.changes.get(snap.id)
        if ch is not None:
            words = [
                w.format(n=n)
                for w, n in (
                    (self.tr("{n} added"), ch.added),
                    (self.tr("{n} changed"), ch.changed),
                    (self.tr("{n} removed"), ch.removed),
                )
                if n
            ]
            parts.append(", ".join(words) if words else self.tr("no changes"))
        elif snap is self.snapshots[-1]:
            parts.append(self.tr("the first backup"))
        else:
            parts.append(self.tr("changes: …"))
        item.setText(f"{when}\n" + " · ".join(parts))
        host = f" — {snap.hostname}" if snap.hostname else ""
        item.setToolTip(f"{snap.id[:8]}{host}\n" + "\n".join(snap.paths))
        item.setData(Qt.ItemDataRole.AccessibleTextRole, item.text().replace("\n", ", "))

    def snapshot_words(self, snapshot_id: str) -> str:
        snap = next((s for s in self.snapshots if s.id == snapshot_id), None)
        return self._when(snap) if snap is not None else snapshot_id[:8]

    @property
    def snapshot_id(self) -> str:
        item = self.timeline.currentItem()
        return str(item.data(Qt.ItemDataRole.UserRole)) if item is not None else ""

    def show_snapshot(self, snapshot_id: str) -> None:
        for row in range(self.timeline.count()):
            if self.timeline.item(row).data(Qt.ItemDataRole.UserRole) == snapshot_id:
                self.timeline.setCurrentRow(row)
                return

    def _snapshot_chosen(self) -> None:
        snap = self.snapshot_id
        if snap == self.model.snapshot_id:
            return
        self.model.show_snapshot(self.session, snap)
        self._show_nothing()
        self._open_source_folder(snap)
        if self.modes.currentWidget() is self.deleted:
            self.deleted.refresh()
        self._picked()

    def _show_nothing(self) -> None:
        self._nav += 1
        self.shown_folder = ""
        self._folder_entry = None
        self.contents.show_folder(None, "", "")
        self.details.show_entry("", None)

    def _open_source_folder(self, snapshot_id: str) -> None:
        """Open the folder the snapshot backed up (its first path), or ``/`` if it is not a folder."""
        snap = next((s for s in self.snapshots if s.id == snapshot_id), None)
        if snap is None:
            return
        path = snap.paths[0].replace("\\", "/") if snap.paths else "/"
        nav = self._nav

        def found(ok: bool) -> None:
            if nav == self._nav and self.model.snapshot_id == snapshot_id:
                self.open_folder(path if ok else "/")

        self._find_folder(path, found)

    def _find_folder(self, path: str, found: Callable[[bool], None]) -> None:
        """Load the folder tree down to ``path``, then call ``found`` (False: no such folder)."""
        if not [p for p in path.split("/") if p]:
            found(True)
            return
        self.model.locate(path, lambda index: found(index.isValid()))

    def _compute_changes(self) -> None:
        """What changed in each snapshot, newest first, one at a time in the background."""
        session = self.session
        if session is None:
            return
        chain = self._chain
        todo = [
            (self.snapshots[i].id, self.snapshots[i + 1].id)
            for i in range(len(self.snapshots) - 1)
            if self.snapshots[i].id not in self.changes
        ]
        sizes = [s for s in self.snapshots if s.id not in self.sizes]

        def totals(catalog: Catalog, _cancel: CancelToken) -> dict[str, int]:
            out = {}
            for s in sizes:
                found = catalog.tree_totals(s.tree)
                if found is not None:
                    out[s.id] = found[1]
            return out

        def got_totals(found: dict[str, int]) -> None:
            if chain == self._chain:
                self.sizes.update(found)
                self._refresh_items()

        session.call(totals, got_totals)

        def step(i: int) -> None:
            if chain != self._chain:
                return
            if i >= len(todo):
                self.changes_ready.emit()
                return
            newer, older = todo[i]

            def diff(catalog: Catalog, cancel: CancelToken) -> Changes:
                return Changes.of(catalog.diff(older, newer, cancel=cancel))

            def got(ch: Changes) -> None:
                if chain != self._chain:
                    return
                self.changes[newer] = ch
                self._refresh_items()
                step(i + 1)

            def failed(exc: BaseException) -> None:
                log.warning("could not compare snapshot %s with the one before: %s", newer[:8], exc)
                step(i + 1)

            session.call(diff, got, failed)

        step(0)

    def _refresh_items(self) -> None:
        for row, snap in enumerate(self.snapshots):
            item = self.timeline.item(row)
            if item is not None:
                self._update_item(item, snap)

    # ---------------------------------------------------------------- indexing

    def _indexing(self, numbers: tuple[int, int, int]) -> None:
        done, total, _entries = numbers
        if done < total:
            self.status.setText(self.tr("Indexing backup {n} of {total}…").format(n=done + 1, total=total))

    def _indexed(self) -> None:
        n = len(self.snapshots)
        self.status.setText(
            self.tr("Search index up to date ({n} backups).").format(n=n)
            if n != 1
            else self.tr("Search index up to date.")
        )
        if self.loaded:
            self._compute_changes()

    # ---------------------------------------------------------------- modes

    def _mode_changed(self) -> None:
        mode = self.modes.currentWidget()
        if mode is self.deleted and self.deleted.shown_for != self.snapshot_id:
            self.deleted.refresh()
        elif mode is self.versions:
            path = self._browse_path()
            if path and path != self.versions.path:
                self.versions.show_path(path)
        self._picked()

    def _browse_path(self) -> str:
        """The path Browse has selected: the item chosen in the folder, else the folder."""
        index = self.table.currentIndex()
        return self.contents.path(index) if index.isValid() else self.shown_folder

    # ---------------------------------------------------------------- browsing

    def open_folder(self, path: str, then: Callable[[], object] | None = None) -> None:
        """Show what the folder ``path`` of the chosen snapshot holds, and that folder in the
        tree; ``then`` runs once its rows are in."""
        snap = self.snapshot_id
        if not snap or self.session is None:
            return
        self._nav += 1
        if path != self.shown_folder or self.contents.snapshot_id != snap:
            self.shown_folder = path
            self._folder_entry = None
            self.contents.show_folder(self.session, snap, path, then)
            self.details.show_entry("", None)
            self._folder_words()
        elif then is not None:
            self.contents.when_shown(then)
        self._follow_in_tree(path)
        self._picked()

    def open_parent(self) -> None:
        """Show the folder that holds the one shown."""
        if self.shown_folder not in ("", "/"):
            name = self.shown_folder.rstrip("/").rpartition("/")[2]
            self.open_folder(self.shown_folder.rpartition("/")[0] or "/", lambda: self._select_name(name))

    def _follow_in_tree(self, path: str) -> None:
        """Open the tree down to ``path`` and make it the tree's current folder."""
        snap = self.model.snapshot_id

        def found(index: QModelIndex) -> None:
            if path != self.shown_folder or self.model.snapshot_id != snap:
                return
            if index.isValid():
                node = self.model.node(index)
                self._folder_entry = node.entry
                parent = index.parent()
                while parent.isValid():
                    self.tree.expand(parent)
                    parent = parent.parent()
                self.tree.setCurrentIndex(index)
                self.tree.scrollTo(index)
            else:
                self.tree.setCurrentIndex(QModelIndex())
            if not self.table.currentIndex().isValid():
                self._browse_current()
            self._picked()

        if path == "/":
            found(QModelIndex())
        else:
            self.model.locate(path, found)

    def _tree_current(self) -> None:
        index = self.tree.currentIndex()
        if not index.isValid():
            return
        path = self.model.node(index).path
        if path != self.shown_folder:
            self.open_folder(path)

    def _activated(self, index: QModelIndex) -> None:
        entry = self.contents.entry(index)
        if entry is not None and entry.type == "dir":
            self.open_folder(self.contents.path(index))

    def _folder_words(self) -> None:
        folder = self.shown_folder
        if not folder:
            self.folder_label.setText("")
        elif self.contents.loading and not self.contents.rowCount():
            self.folder_label.setText(self.tr("{path} — reading…").format(path=folder))
        else:
            n = self.contents.rowCount()
            count = self.tr("empty") if n == 0 else self.tr("1 item") if n == 1 else self.tr("{n} items")
            self.folder_label.setText(f"{folder} — " + count.format(n=f"{n:,}"))
        self.folder_label.setToolTip(folder)
        self.up_button.setEnabled(folder not in ("", "/"))

    def _browse_current(self) -> None:
        index = self.table.currentIndex()
        entry = self.contents.entry(index)
        if entry is not None:
            self.details.show_entry(self.contents.path(index), entry)
        elif self._folder_entry is not None:
            self.details.show_entry(self.shown_folder, self._folder_entry)
        else:
            self.details.show_entry("", None)

    def show_versions(self, path: str) -> None:
        self.modes.setCurrentWidget(self.versions)
        self.versions.show_path(path)

    def reveal(self, snapshot_id: str, path: str) -> None:
        """Show ``path`` of a snapshot in Browse: choose the snapshot, open its folder, select it."""
        self.modes.setCurrentWidget(self.browse)
        self.show_snapshot(snapshot_id)
        self.locate(path)

    def locate(self, path: str, found: Callable[[QModelIndex], None] | None = None) -> None:
        """Open the folder that holds ``path`` (in the tree and the table) and select ``path`` in
        the table; ``found`` gets its index in the table (invalid: not in this snapshot)."""
        folder, _, name = path.rstrip("/").rpartition("/")
        folder = folder or "/"
        self._nav += 1  # wins over folders asked for before (the snapshot's own folder)
        nav = self._nav

        def missing() -> None:
            self.status.setText(self.tr("{path} is not in this backup.").format(path=path))
            if found is not None:
                found(QModelIndex())

        def select() -> None:
            index = self._select_name(name)
            if not index.isValid():
                missing()
            elif found is not None:
                found(index)

        def opened(ok: bool) -> None:
            if nav != self._nav:
                return  # another folder was asked for meanwhile
            if ok:
                self.open_folder(folder, select)
            else:
                missing()

        if not name:  # the snapshot's root
            self.open_folder("/")
            if found is not None:
                found(QModelIndex())
            return
        self._find_folder(folder, opened)

    def _select_name(self, name: str) -> QModelIndex:
        """Select the row ``name`` of the folder shown (the invalid index if it is not there)."""
        row = self.contents.row_of(name)
        if row < 0:
            return QModelIndex()
        index = self.contents.index(row, NAME)
        self.table.setCurrentIndex(index)
        self.table.selectionModel().select(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        )
        self.table.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtCenter)
        self.table.setFocus()
        return index

    # ---------------------------------------------------------------- what is selected

    def picks(self) -> list[Pick]:
        mode = self.modes.currentWidget()
        if mode is self.browse:
            snap = self.snapshot_id
            out = []
            for index in sorted(self.table.selectionModel().selectedRows(NAME), key=QModelIndex.row):
                e = self.contents.entry(index)
                if e is not None:
                    out.append(Pick(snap, join(self.shown_folder, e.name), e.type, e.size))
            if not out and self._folder_entry is not None and self.shown_folder not in ("", "/"):
                out.append(Pick(snap, self.shown_folder, "dir", 0))  # nothing chosen inside: the folder
            return out
        if isinstance(mode, (SearchView, VersionsView, DeletedView, CompareView)):
            return mode.picks()
        return []

    def _picked(self) -> None:
        picks = self.picks()
        n = len(picks)
        if n == 0:
            self.picked_label.setText(
                self.tr("Select files or folders to restore (Ctrl or Shift for several).")
            )
        elif n == 1:
            name = picks[0].path.rstrip("/").rpartition("/")[2] or "/"
            self.picked_label.setText(self.tr("Selected: {name}").format(name=name))
            self.picked_label.setToolTip(picks[0].path)
        else:
            self.picked_label.setText(self.tr("{n} items selected").format(n=n))
        busy = self.flow is not None
        self.restore_here.setEnabled(n > 0 and not busy)
        self.restore_elsewhere.setEnabled(n > 0 and not busy)
        self.open_button.setEnabled(n == 1 and picks[0].type == "file")

    # ---------------------------------------------------------------- restoring

    def restore_picks(self, picks: Sequence[Pick], *, elsewhere: bool) -> None:
        """Restore to the original place, or ask for a folder and restore into it."""
        if not picks:
            return
        if elsewhere:
            folder = QFileDialog.getExistingDirectory(self, self.tr("Restore into this folder"))
            if not folder:
                return
            self.restore_to(picks, folder)
        else:
            self.restore_to(picks, ORIGINAL_PLACE)

    def restore_to(
        self, picks: Sequence[Pick], target: str, *, policy: str | None = None
    ) -> RestoreFlow | None:
        """Start restoring ``picks`` into ``target`` (``/``: the original place; else flattened)."""
        if self.flow is not None or not picks or not self.destination_id:
            return None
        chosen = policy if policy is not None else str(self.policy.currentData() or ASK)
        flow = RestoreFlow(
            self.engine,
            self.background,
            self.destination_id,
            picks,
            target=target,
            flatten=target != ORIGINAL_PLACE,
            policy=chosen,
            parent=self,
            open_folder=self._open_folder,
        )
        self.flow = flow
        flow.finished.connect(self._flow_finished)
        self._picked()
        self.status.setText(self.tr("Restoring…"))
        flow.start()
        return flow

    def _flow_finished(self) -> None:
        flow, self.flow = self.flow, None
        if flow is not None:
            flow.deleteLater()
        self.status.setText("")
        self._picked()
        self.restore_finished.emit()

    def _open_folder(self, folder: str) -> None:
        if folder:
            self.open_url(QUrl.fromLocalFile(folder))

    def _open_selected(self) -> None:
        picks = self.picks()
        if len(picks) == 1:
            self.open_pick(picks[0])

    def open_pick(self, pick: Pick) -> None:
        """Copy this version of a file to a private temporary folder and open it there."""
        dest, engine = self.destination_id, self.engine
        if not dest or pick.type != "file":
            return
        self.status.setText(self.tr("Opening a copy of {path}…").format(path=pick.path))

        def done(path: object) -> None:
            self.status.setText(
                self.tr("Opened a copy of {path} (the original is not touched).").format(path=pick.path)
            )
            self.open_url(QUrl.fromLocalFile(str(path)))
            self.opened_file.emit(str(path))

        self.background.run(
            lambda: engine.open_version(dest, pick.snapshot_id, pick.path), done, self._show_error
        )

    # ---------------------------------------------------------------- errors and closing

    def _show_error(self, exc: object) -> None:
        text = error_text(exc) if isinstance(exc, BaseException) else str(exc)
        self._set_banner("✘ " + text)
        self.status.setText("")

    def _set_banner(self, text: str) -> None:
        self.banner.setText(text)
        self.banner.setVisible(bool(text))

    def closeEvent(self, event: QCloseEvent) -> None:
        size = [self.width(), self.height()]
        db = self.engine.db
        self.background.run(lambda: db.set_setting(SIZE_SETTING, size), None, lambda _e: None)
        if self.session is not None:
            self.session.close()
            self.session = None
        self._chain += 1
        super().closeEvent(event)
