"""The restore window's modes besides the folder tree, and the details pane of Browse.

Each mode is a widget with :meth:`picks` (what it has selected, for Restore and Open) and a
``picked`` signal when that changes. Its catalog queries go through the window's
:class:`~safekeep.gui.restore.session.CatalogSession`; each emits ``ready`` when its result is
shown (tests and screenshots wait for it). A result that arrives after a newer question was
asked is dropped (a counter per view).

* :class:`DetailsPane` — the selected item of Browse: size, modified, type, and its versions,
  each with "Restore this version" (a menu: to the original place or another folder) and Open.
* :class:`SearchView` — a name or pattern across every snapshot; results grouped by path with
  each version below; double-click reveals the item in Browse, in the snapshot of that version.
* :class:`VersionsView` — every distinct version of one file or folder.
* :class:`DeletedView` — what older snapshots hold that the chosen one does not.
* :class:`CompareView` — files added, removed and changed between two snapshots.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QScrollArea,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from safekeep.common.cancel import CancelToken
from safekeep.gui import texts
from safekeep.gui.restore.restoring import Pick, error_text
from safekeep.gui.restore.session import CatalogSession
from safekeep.gui.restore.tree_model import TYPE_WORDS, local_time
from safekeep.state.catalog import Catalog, Change, DeletedFile, Diff, Entry, FileVersions, Version

T = TypeVar("T")

PICK = Qt.ItemDataRole.UserRole
SHOW_LIMIT = 10_000
"""Rows a list shows at most (the rest is counted)."""


class Host(Protocol):
    """What the modes need of the window."""

    @property
    def session(self) -> CatalogSession | None: ...

    @property
    def snapshot_id(self) -> str: ...

    def snapshot_words(self, snapshot_id: str) -> str: ...

    def reveal(self, snapshot_id: str, path: str) -> None: ...

    def restore_picks(self, picks: Sequence[Pick], *, elsewhere: bool) -> None: ...

    def open_pick(self, pick: Pick) -> None: ...


def _tree(columns: Sequence[str], name: str) -> QTreeWidget:
    tree = QTreeWidget()
    tree.setObjectName(name)
    tree.setHeaderLabels(list(columns))
    tree.setUniformRowHeights(True)
    tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    tree.setAlternatingRowColors(True)
    tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)
    header = tree.header()
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    header.setStretchLastSection(False)
    for col in range(1, len(columns)):
        header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
    return tree


def _picks_of(tree: QTreeWidget) -> list[Pick]:
    out = []
    for item in tree.selectedItems():
        pick = item.data(0, PICK)
        if isinstance(pick, Pick):
            out.append(pick)
    return out


def type_words(kind: str) -> str:
    return TYPE_WORDS.get(kind, kind)


def seen_words(v: Version) -> str:
    """When a version was seen: one backup, or first and last."""
    first, last = local_time(v.first.time), local_time(v.last.time)
    n = len(v.snapshots)
    if n == 1:
        return first
    if first == last:
        return f"{first} ({n} backups)"
    return f"{first} – {last} ({n} backups)"


def size_words(kind: str, size: int) -> str:
    return texts.size(size) if kind != "dir" or size else ""


class _Mode(QWidget):
    picked = Signal()
    ready = Signal()

    def __init__(self, host: Host) -> None:
        super().__init__()
        self.host = host
        self.asked = 0
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setObjectName("note")

    def picks(self) -> list[Pick]:
        return []

    def _ask(self, fn: Callable[[Catalog, CancelToken], T], show: Callable[[T], None]) -> None:
        session = self.host.session
        self.asked += 1
        asked = self.asked
        if session is None:
            return

        def done(result: T) -> None:
            if asked == self.asked:
                show(result)
                self.ready.emit()

        def failed(exc: BaseException) -> None:
            if asked == self.asked:
                self.note.setText("✘ " + error_text(exc))
                self.ready.emit()

        session.call(fn, done, failed)

    def _incomplete(self) -> str:
        session = self.host.session
        if session is not None and not session.complete:
            return " " + self.tr("(Still indexing: backups not indexed yet are not included.)")
        return ""


class DetailsPane(_Mode):
    """Size, modified, type and the other versions of the item selected in Browse."""

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self.setObjectName("details")
        self.path = ""
        self.entry: Entry | None = None
        self.versions: list[Version] = []
        layout = QVBoxLayout(self)
        self.title = QLabel(self.tr("Choose a file or folder to see its details."))
        self.title.setObjectName("details-title")
        self.title.setWordWrap(True)
        layout.addWidget(self.title)
        form = QFormLayout()
        self.kind = QLabel()
        self.size_text = QLabel()
        self.modified = QLabel()
        self.where = QLabel()
        self.where.setWordWrap(True)
        self.where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow(self.tr("Type:"), self.kind)
        form.addRow(self.tr("Size:"), self.size_text)
        form.addRow(self.tr("Modified:"), self.modified)
        form.addRow(self.tr("Where:"), self.where)
        layout.addLayout(form)
        self.heading = QLabel(self.tr("<b>Versions in the backups</b>"))
        layout.addWidget(self.heading)
        self.versions_area = QScrollArea()
        self.versions_area.setObjectName("details-versions")
        self.versions_area.setWidgetResizable(True)
        self.versions_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.versions_area.setFrameShape(QFrame.Shape.NoFrame)
        self.cards_host = QWidget()
        self.cards = QVBoxLayout(self.cards_host)
        self.cards.setContentsMargins(0, 0, 0, 0)
        self.cards.addStretch(1)
        self.versions_area.setWidget(self.cards_host)
        layout.addWidget(self.versions_area, 1)
        layout.addWidget(self.note)
        self.buttons: list[QPushButton] = []
        self.show_entry("", None)

    def _clear_cards(self) -> None:
        while self.cards.count() > 1:  # the cards, then the stretch
            item = self.cards.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.hide()
                widget.deleteLater()
        self.buttons = []

    def show_entry(self, path: str, entry: Entry | None) -> None:
        self.path, self.entry = path, entry
        self._clear_cards()
        self.versions = []
        self.note.setText("")
        visible = entry is not None
        for w in (self.kind, self.size_text, self.modified, self.where, self.heading, self.versions_area):
            w.setVisible(visible)
        if entry is None:
            self.title.setText(self.tr("Choose a file or folder to see its details."))
            self.asked += 1
            return
        self.title.setText(f"<b>{entry.name}</b>")
        self.kind.setText(self.tr(type_words(entry.type)))
        self.size_text.setText(texts.size(entry.size) if not entry.is_dir else self.tr("(a folder)"))
        self.modified.setText(local_time(entry.mtime))
        self.where.setText(path)
        self.note.setText(self.tr("Looking for other versions…"))

        def versions(catalog: Catalog, cancel: CancelToken) -> list[Version]:
            return catalog.versions(path, cancel=cancel)

        self._ask(versions, self._show_versions)

    def _show_versions(self, result: list[Version]) -> None:
        self.versions = list(reversed(result))  # newest first
        self._clear_cards()
        shown = self.entry.version_key if self.entry is not None else None
        for i, v in enumerate(self.versions):
            self.cards.insertWidget(i, self._card(v, this=_key(v) == shown))
        n = len(self.versions)
        if n == 0:
            words = self.tr("Not in the indexed backups yet.")
        else:
            words = self.tr("1 version.") if n == 1 else self.tr("{n} different versions.").format(n=n)
        self.note.setText(words + self._incomplete())

    def _card(self, v: Version, *, this: bool) -> QFrame:
        card = QFrame()
        card.setFrameShape(QFrame.Shape.StyledPanel)
        card.setObjectName("version-card")
        box = QVBoxLayout(card)
        box.setContentsMargins(8, 6, 8, 6)
        size = size_words(v.type, v.size)
        head = self.tr("<b>Modified {when}</b>").format(when=local_time(v.mtime))
        if size:
            head += f" · {size}"
        if this:
            head += " " + self.tr("(this one)")
        top = QLabel(head)
        top.setWordWrap(True)
        box.addWidget(top)
        seen = QLabel(self.tr("In the backups of {when}").format(when=seen_words(v)))
        seen.setWordWrap(True)
        box.addWidget(seen)
        row = QHBoxLayout()
        pick = Pick(v.last.id, self.path, v.type, v.size)
        button = QPushButton(self.tr("Restore this version"))
        button.setObjectName("restore-version")
        menu = QMenu(button)
        here = menu.addAction(self.tr("To its original place"))
        here.triggered.connect(functools.partial(self.host.restore_picks, [pick], elsewhere=False))
        there = menu.addAction(self.tr("To another folder…"))
        there.triggered.connect(functools.partial(self.host.restore_picks, [pick], elsewhere=True))
        button.setMenu(menu)
        row.addWidget(button)
        if v.type == "file":
            opener = QPushButton(self.tr("Open"))
            opener.setObjectName("open-version")
            opener.setToolTip(
                self.tr("Open a copy of this version; the file on this computer is not touched")
            )
            opener.clicked.connect(functools.partial(self.host.open_pick, pick))
            row.addWidget(opener)
        row.addStretch(1)
        box.addLayout(row)
        self.buttons.append(button)
        return card


def _key(v: Version) -> tuple[str, bytes | None, int, int]:
    """A version's :attr:`Entry.version_key` (a folder's size is not part of it)."""
    return (v.type, v.content, 0 if v.type == "dir" else v.size, v.mtime_ns)


class SearchView(_Mode):
    """Search every snapshot by name or pattern; results grouped by path, each version below."""

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self.results: list[FileVersions] = []
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        label = QLabel(self.tr("&Find:"))
        self.box = QLineEdit()
        self.box.setObjectName("search-box")
        self.box.setPlaceholderText(self.tr("A name or a pattern: budget*.xlsx, *minutes*"))
        self.box.setClearButtonEnabled(True)
        label.setBuddy(self.box)
        self.box.returnPressed.connect(self.search)
        self.go = QPushButton(self.tr("&Search"))
        self.go.clicked.connect(self.search)
        row.addWidget(label)
        row.addWidget(self.box, 1)
        row.addWidget(self.go)
        layout.addLayout(row)
        self.tree = _tree(
            [
                self.tr("Name"),
                self.tr("Folder"),
                self.tr("Size"),
                self.tr("Modified"),
                self.tr("In the backups of"),
            ],
            "search-results",
        )
        self.tree.header().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.tree.itemSelectionChanged.connect(self.picked)
        self.tree.itemDoubleClicked.connect(self._reveal)
        self.tree.itemActivated.connect(self._reveal)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.note)
        self.note.setText(self.tr("Search every backup of this copy for a file or folder by name."))

    def search(self, pattern: str | None = None) -> None:
        if pattern is not None:
            self.box.setText(pattern)
        text = self.box.text().strip()
        if not text:
            return
        self.tree.clear()
        self.note.setText(self.tr("Searching…"))

        def find(catalog: Catalog, cancel: CancelToken) -> list[FileVersions]:
            return catalog.search(text, cancel=cancel)

        self._ask(find, self._show)

    def _show(self, result: list[FileVersions]) -> None:
        self.results = result
        self.tree.clear()
        for fv in result:
            newest = fv.versions[-1]
            folder, _, name = fv.path.rpartition("/")
            top = QTreeWidgetItem(
                [
                    name + ("/" if fv.type == "dir" else ""),
                    folder or "/",
                    size_words(fv.type, newest.size),
                    local_time(newest.mtime),
                    seen_words_all(fv),
                ]
            )
            top.setToolTip(0, fv.path)
            top.setToolTip(1, folder or "/")
            top.setData(0, PICK, Pick(newest.last.id, fv.path, fv.type, newest.size))
            for v in reversed(fv.versions):
                child = QTreeWidgetItem(
                    [
                        self.tr("version of {when}").format(when=local_time(v.mtime)),
                        "",
                        size_words(v.type, v.size),
                        local_time(v.mtime),
                        seen_words(v),
                    ]
                )
                child.setData(0, PICK, Pick(v.last.id, fv.path, v.type, v.size))
                top.addChild(child)
            self.tree.addTopLevelItem(top)
            top.setExpanded(len(fv.versions) > 1)
        n = len(result)
        words = (
            self.tr("Nothing found.")
            if n == 0
            else (self.tr("1 item found.") if n == 1 else self.tr("{n} items found.").format(n=n))
        )
        self.note.setText(
            words
            + " "
            + self.tr("Double-click an item to see it in its folder.") * bool(n)
            + self._incomplete()
        )

    def _reveal(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        pick = item.data(0, PICK)
        if isinstance(pick, Pick):
            self.host.reveal(pick.snapshot_id, pick.path)

    def picks(self) -> list[Pick]:
        return _picks_of(self.tree)


def seen_words_all(fv: FileVersions) -> str:
    n = len(fv.versions)
    first, last = local_time(fv.versions[0].first.time), local_time(fv.versions[-1].last.time)
    versions = "1 version" if n == 1 else f"{n} versions"
    return f"{first} – {last} ({versions})" if first != last else f"{first} ({versions})"


class VersionsView(_Mode):
    """Every distinct version of one file or folder, newest first; restore or open any of them."""

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self.path = ""
        self.versions: list[Version] = []
        layout = QVBoxLayout(self)
        self.title = QLabel(self.tr("Choose a file or folder in Browse or Search to see its versions."))
        self.title.setObjectName("versions-title")
        self.title.setWordWrap(True)
        layout.addWidget(self.title)
        self.tree = _tree(
            [
                self.tr("Modified"),
                self.tr("Size"),
                self.tr("First seen"),
                self.tr("Last seen"),
                self.tr("Backups"),
            ],
            "versions",
        )
        self.tree.setRootIsDecorated(False)
        self.tree.itemSelectionChanged.connect(self.picked)
        self.tree.itemDoubleClicked.connect(self._reveal)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.note)

    def show_path(self, path: str) -> None:
        if not path:
            return
        self.path = path
        self.title.setText(self.tr("<b>Versions of</b> {path}").format(path=path))
        self.tree.clear()
        self.note.setText(self.tr("Looking for versions…"))

        def versions(catalog: Catalog, cancel: CancelToken) -> list[Version]:
            return catalog.versions(path, cancel=cancel)

        self._ask(versions, self._show)

    def _show(self, result: list[Version]) -> None:
        self.versions = list(reversed(result))
        self.tree.clear()
        for v in self.versions:
            item = QTreeWidgetItem(
                [
                    local_time(v.mtime),
                    size_words(v.type, v.size),
                    local_time(v.first.time),
                    local_time(v.last.time),
                    str(len(v.snapshots)),
                ]
            )
            item.setData(0, PICK, Pick(v.last.id, self.path, v.type, v.size))
            self.tree.addTopLevelItem(item)
        n = len(self.versions)
        text = (
            self.tr("Not in any indexed backup.")
            if n == 0
            else (self.tr("1 version.") if n == 1 else self.tr("{n} different versions.").format(n=n))
        )
        self.note.setText(text + self._incomplete())

    def _reveal(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        pick = item.data(0, PICK)
        if isinstance(pick, Pick):
            self.host.reveal(pick.snapshot_id, pick.path)

    def picks(self) -> list[Pick]:
        return _picks_of(self.tree)


class DeletedView(_Mode):
    """What older snapshots hold that the chosen one does not, with the last backup that had each."""

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self.found: list[DeletedFile] = []
        self.shown_for = ""
        layout = QVBoxLayout(self)
        self.title = QLabel()
        self.title.setWordWrap(True)
        self.title.setObjectName("deleted-title")
        layout.addWidget(self.title)
        self.tree = _tree(
            [
                self.tr("Deleted file or folder"),
                self.tr("Size"),
                self.tr("Modified"),
                self.tr("Last in the backup of"),
            ],
            "deleted",
        )
        self.tree.setRootIsDecorated(False)
        self.tree.itemSelectionChanged.connect(self.picked)
        self.tree.itemDoubleClicked.connect(self._reveal)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.note)

    def refresh(self) -> None:
        snapshot = self.host.snapshot_id
        self.shown_for = snapshot
        self.tree.clear()
        if not snapshot:
            self.title.setText(self.tr("Choose a backup in the list."))
            return
        self.title.setText(
            self.tr("Files and folders that older backups have and the backup of {when} does not:").format(
                when=self.host.snapshot_words(snapshot)
            )
        )
        self.note.setText(self.tr("Looking for deleted files…"))

        def deleted(catalog: Catalog, cancel: CancelToken) -> list[DeletedFile]:
            return catalog.deleted(snapshot, cancel=cancel)

        self._ask(deleted, self._show)

    def _show(self, result: list[DeletedFile]) -> None:
        self.found = result
        self.tree.clear()
        items = []
        for d in result[:SHOW_LIMIT]:
            e = d.entry
            item = QTreeWidgetItem(
                [
                    d.path + ("/" if e.is_dir else ""),
                    size_words(e.type, e.size),
                    local_time(e.mtime),
                    self.host.snapshot_words(d.last_snapshot.id),
                ]
            )
            item.setToolTip(0, d.path)
            item.setData(0, PICK, Pick(d.last_snapshot.id, d.path, e.type, e.size))
            items.append(item)
        self.tree.addTopLevelItems(items)
        n = len(result)
        text = (
            self.tr("No deleted files.")
            if n == 0
            else (self.tr("1 deleted item.") if n == 1 else self.tr("{n} deleted items.").format(n=n))
        )
        if n > SHOW_LIMIT:
            text += " " + self.tr("The first {n} are listed.").format(n=SHOW_LIMIT)
        self.note.setText(text + self._incomplete())

    def _reveal(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        pick = item.data(0, PICK)
        if isinstance(pick, Pick):
            self.host.reveal(pick.snapshot_id, pick.path)

    def picks(self) -> list[Pick]:
        return _picks_of(self.tree)


class CompareView(_Mode):
    """Added, removed and changed files between two snapshots."""

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self.diff: Diff | None = None
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        first = QLabel(self.tr("Compare the backup of &"))
        self.older = QComboBox()
        self.older.setObjectName("compare-older")
        first.setBuddy(self.older)
        second = QLabel(self.tr("with &the backup of"))
        self.newer = QComboBox()
        self.newer.setObjectName("compare-newer")
        second.setBuddy(self.newer)
        self.go = QPushButton(self.tr("C&ompare"))
        self.go.clicked.connect(self.compare)
        for w in (first, self.older, second, self.newer, self.go):
            row.addWidget(w)
        row.addStretch(1)
        layout.addLayout(row)
        self.tree = _tree([self.tr("File"), self.tr("Before"), self.tr("After")], "compare-results")
        self.tree.itemSelectionChanged.connect(self.picked)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.note)
        self.groups: dict[str, QTreeWidgetItem] = {}

    def set_snapshots(self, choices: Sequence[tuple[str, str]]) -> None:
        """(snapshot ID, words) newest first; the two newest are chosen."""
        for combo, default in ((self.older, 1), (self.newer, 0)):
            current = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            for snap_id, words in choices:
                combo.addItem(words, snap_id)
            i = combo.findData(current) if current else -1
            combo.setCurrentIndex(i if i >= 0 else min(default, combo.count() - 1))
            combo.blockSignals(False)

    def compare(self) -> None:
        a, b = str(self.older.currentData() or ""), str(self.newer.currentData() or "")
        if not a or not b:
            return
        self.tree.clear()
        self.note.setText(self.tr("Comparing…"))

        def diff(catalog: Catalog, cancel: CancelToken) -> tuple[str, str, Diff]:
            return a, b, catalog.diff(a, b, cancel=cancel)

        self._ask(diff, self._show)

    def _show(self, result: tuple[str, str, Diff]) -> None:
        a, b, diff = result
        self.diff = diff
        self.tree.clear()
        self.groups = {}
        added = [c for c in diff.added if c.after is not None and not c.after.is_dir]
        removed = [c for c in diff.removed if c.before is not None and not c.before.is_dir]
        for key, words, changes, snap in (
            ("added", self.tr("Added ({n})"), added, b),
            ("removed", self.tr("Removed ({n})"), removed, a),
            ("changed", self.tr("Changed ({n})"), list(diff.changed), b),
        ):
            group = QTreeWidgetItem([words.format(n=len(changes)), "", ""])
            group.setFlags(group.flags() & ~Qt.ItemFlag.ItemIsSelectable)
            self.groups[key] = group
            group.addChildren([self._item(c, snap) for c in changes[:SHOW_LIMIT]])
            self.tree.addTopLevelItem(group)
            group.setExpanded(True)
        self.note.setText(
            self.tr("{a} added, {c} changed, {r} removed.").format(
                a=len(added), c=len(diff.changed), r=len(removed)
            )
        )

    def _item(self, c: Change, snapshot: str) -> QTreeWidgetItem:
        def words(e: Entry | None) -> str:
            return "" if e is None else f"{size_words(e.type, e.size)}, {local_time(e.mtime)}"

        item = QTreeWidgetItem([c.path, words(c.before), words(c.after)])
        item.setToolTip(0, c.path)
        e = c.after or c.before
        assert e is not None
        item.setData(0, PICK, Pick(snapshot, c.path, e.type, e.size))
        return item

    def picks(self) -> list[Pick]:
        return _picks_of(self.tree)
