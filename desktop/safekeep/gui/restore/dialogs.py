"""The dialogs of a restore: conflicts to decide, progress with Cancel, and the summary.

:class:`ConflictDialog` lists the selected items whose place is taken (what is there now and
what the backup has: size and date) with a choice per item — Keep both, Overwrite, Skip — and
"Apply to all". A folder where the backup has a file (or the reverse) is never replaced: such an
item can only be skipped. :class:`ProgressDialog` shows a running restore's numbers from its job
events. :class:`SummaryDialog` says what the restore did: counts, and each item's source and
target, with "Open folder".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from safekeep.core.restorer import Conflict, RestoredItem
from safekeep.gui import texts

KEEP_BOTH, OVERWRITE, SKIP = "keep-both", "overwrite", "skip"

CHOICES = (
    (KEEP_BOTH, "Keep both"),
    (OVERWRITE, "Overwrite"),
    (SKIP, "Skip"),
)

ACTION_WORDS = {
    "restored": "Restored",
    "overwritten": "Replaced the existing file",
    "kept-both": "Restored beside the existing file",
    "skipped": "Skipped (the existing file was kept)",
    "failed": "Failed",
}


def _time(mtime: float) -> str:
    try:
        return datetime.fromtimestamp(mtime, UTC).astimezone().strftime("%Y-%m-%d %H:%M")
    except (OverflowError, OSError, ValueError):
        return ""


@dataclass(frozen=True, slots=True)
class Question:
    """One conflict to decide, and which restore (snapshot) it belongs to."""

    snapshot_id: str
    conflict: Conflict


class ConflictDialog(QDialog):
    """Ask what to do with each item whose place is taken; :meth:`decisions` after ``accept``."""

    def __init__(
        self, questions: Sequence[Question], *, more: bool = False, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("conflict-dialog")
        self.setWindowTitle(self.tr("Some files are already there"))
        self.questions = list(questions)
        layout = QVBoxLayout(self)
        n = len(self.questions)
        intro = QLabel(
            self.tr(
                "{n} of the items to restore already exist where they would go. "
                "Choose for each one what to do."
            ).format(n=n)
            if n != 1
            else self.tr("One of the items to restore already exists where it would go. Choose what to do.")
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        if more:
            extra = QLabel(
                self.tr(
                    "There are more than can be listed here: the choice in “Apply to all” is used for them."
                )
            )
            extra.setWordWrap(True)
            layout.addWidget(extra)
        self.table = QTreeWidget()
        self.table.setObjectName("conflicts")
        self.table.setRootIsDecorated(False)
        self.table.setUniformRowHeights(True)
        self.table.setHeaderLabels(
            [
                self.tr("Name"),
                self.tr("Folder"),
                self.tr("Already there"),
                self.tr("In the backup"),
                self.tr("What to do"),
            ]
        )
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.combos: list[QComboBox] = []
        for q in self.questions:
            c = q.conflict
            folder, name = os.path.split(c.target_path)
            item = QTreeWidgetItem(
                [
                    name,
                    folder,
                    f"{texts.size(c.existing_size)}, {_time(c.existing_mtime)}",
                    f"{texts.size(c.backup_size)}, {_time(c.backup_mtime)}",
                    "",
                ]
            )
            item.setToolTip(0, c.target_path)
            item.setToolTip(1, folder)
            self.table.addTopLevelItem(item)
            combo = QComboBox()
            if c.kind == "type":
                combo.addItem(self.tr("Skip (a folder and a file cannot replace each other)"), SKIP)
            else:
                for value, words in CHOICES:
                    combo.addItem(self.tr(words), value)
            combo.setAccessibleName(self.tr("What to do with {path}").format(path=c.target_path))
            self.table.setItemWidget(item, 4, combo)
            self.combos.append(combo)
        header = self.table.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        for col in (2, 3, 4):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        layout.addWidget(self.table, 1)
        row = QHBoxLayout()
        label = QLabel(self.tr("Apply to &all:"))
        self.all_choice = QComboBox()
        self.all_choice.setObjectName("apply-to-all")
        for value, words in CHOICES:
            self.all_choice.addItem(self.tr(words), value)
        label.setBuddy(self.all_choice)
        self.apply_all = QPushButton(self.tr("A&pply"))
        self.apply_all.clicked.connect(lambda: self.choose_all(str(self.all_choice.currentData())))
        row.addWidget(label)
        row.addWidget(self.all_choice)
        row.addWidget(self.apply_all)
        row.addStretch(1)
        layout.addLayout(row)
        buttons = QDialogButtonBox()
        self.ok = buttons.addButton(self.tr("&Restore"), QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.ok.setDefault(True)
        self.resize(900, 380)

    def choose(self, index: int, policy: str) -> None:
        combo = self.combos[index]
        i = combo.findData(policy)
        if i >= 0:
            combo.setCurrentIndex(i)

    def choose_all(self, policy: str) -> None:
        self.all_choice.setCurrentIndex(max(0, self.all_choice.findData(policy)))
        for i in range(len(self.combos)):
            self.choose(i, policy)

    @property
    def default_policy(self) -> str:
        """For conflicts not listed (more than could be listed, or new since the scan)."""
        return str(self.all_choice.currentData())

    def decisions(self) -> dict[str, dict[str, str]]:
        """Snapshot ID -> (snapshot path -> policy) for every listed conflict."""
        out: dict[str, dict[str, str]] = {}
        for q, combo in zip(self.questions, self.combos, strict=True):
            out.setdefault(q.snapshot_id, {})[q.conflict.snapshot_path] = str(combo.currentData())
        return out


class ProgressDialog(QDialog):
    """A running restore: files and bytes done, the current file, and Cancel."""

    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("restore-progress")
        self.setWindowTitle(self.tr("Restoring"))
        self.setWindowModality(Qt.WindowModality.WindowModal)
        layout = QVBoxLayout(self)
        self.headline = QLabel(self.tr("Starting the restore…"))
        self.headline.setObjectName("headline")
        layout.addWidget(self.headline)
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)
        self.bar.setAccessibleName(self.tr("Restore progress"))
        layout.addWidget(self.bar)
        self.numbers = QLabel()
        layout.addWidget(self.numbers)
        self.current = QLabel()
        self.current.setWordWrap(True)
        self.current.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.current)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.cancel_button = QPushButton(self.tr("&Cancel"))
        self.cancel_button.clicked.connect(self._cancel)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.resize(520, 170)

    def _cancel(self) -> None:
        self.cancel_button.setEnabled(False)
        self.headline.setText(self.tr("Stopping the restore…"))
        self.cancel_requested.emit()

    def reject(self) -> None:  # Escape and the title bar's close button cancel, they do not hide
        if self.cancel_button.isEnabled():
            self._cancel()

    def show_part(self, part: int, parts: int) -> None:
        if self.cancel_button.isEnabled():
            text = self.tr("Restoring…")
            if parts > 1:
                text = self.tr("Restoring (part {part} of {parts})…").format(part=part, parts=parts)
            self.headline.setText(text)

    def show_progress(self, data: dict[str, object]) -> None:
        files_done = _int(data.get("files_done"))
        files_total = _int(data.get("files_total"), -1)
        done = _int(data.get("bytes_done"))
        total = _int(data.get("bytes_total"), -1)
        if total > 0:
            self.bar.setRange(0, 1000)
            self.bar.setValue(min(1000, int(done * 1000 / total)))
            size = self.tr("{done} of {total}").format(done=texts.size(done), total=texts.size(total))
        else:
            size = texts.size(done)
        files = (
            self.tr("{done} of {total} files").format(done=files_done, total=files_total)
            if files_total >= 0
            else self.tr("{done} files").format(done=files_done)
        )
        self.numbers.setText(f"{files}, {size}")
        path = str(data.get("current_path") or "")
        if path:
            self.current.setText(path)


def _int(value: object, default: int = 0) -> int:
    return value if isinstance(value, int) else default


@dataclass(frozen=True, slots=True)
class Totals:
    """What one or more restores did (counts add up over the parts of a restore)."""

    restored: int = 0
    overwritten: int = 0
    kept_both: int = 0
    skipped: int = 0
    failed: int = 0
    verified: int = 0
    omitted: int = 0


class SummaryDialog(QDialog):
    """What a restore did: counts, each item's way, errors in plain words, and "Open folder"."""

    def __init__(
        self,
        totals: Totals,
        items: Sequence[RestoredItem],
        *,
        headline: str,
        problems: Sequence[str] = (),
        folder: str = "",
        open_folder: Callable[[str], None] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("restore-summary")
        self.setWindowTitle(self.tr("Restore finished"))
        self.folder = folder
        layout = QVBoxLayout(self)
        self.headline = QLabel(headline)
        self.headline.setObjectName("headline")
        self.headline.setWordWrap(True)
        layout.addWidget(self.headline)
        grid = QGridLayout()
        self.counts: dict[str, QLabel] = {}
        rows = (
            ("restored", self.tr("Restored:"), totals.restored),
            ("overwritten", self.tr("    of which replaced an existing file:"), totals.overwritten),
            ("kept-both", self.tr("    of which restored beside an existing file:"), totals.kept_both),
            ("skipped", self.tr("Skipped (the existing file was kept):"), totals.skipped),
            ("failed", self.tr("Failed:"), totals.failed),
            ("verified", self.tr("Checked against the backup after writing:"), totals.verified),
        )
        for i, (key, words, n) in enumerate(rows):
            grid.addWidget(QLabel(words), i, 0)
            value = QLabel(str(n))
            value.setObjectName(f"count-{key}")
            value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            grid.addWidget(value, i, 1)
            self.counts[key] = value
        grid.setColumnStretch(2, 1)
        layout.addLayout(grid)
        for problem in problems:
            label = QLabel("✘ " + problem)
            label.setWordWrap(True)
            label.setObjectName("problem")
            layout.addWidget(label)
        self.items = QTreeWidget()
        self.items.setObjectName("restored-items")
        self.items.setRootIsDecorated(False)
        self.items.setUniformRowHeights(True)
        self.items.setHeaderLabels(
            [self.tr("From the backup"), self.tr("Restored to"), self.tr("What happened")]
        )
        self.items.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        for it in items:
            words = self.tr(ACTION_WORDS.get(it.action, it.action))
            if it.error:
                words += ": " + it.error
            row = QTreeWidgetItem([it.snapshot_path, it.target_path, words])
            for col, tip in ((0, it.snapshot_path), (1, it.target_path), (2, words)):
                row.setToolTip(col, tip)
            self.items.addTopLevelItem(row)
        header = self.items.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        layout.addWidget(self.items, 1)
        if totals.omitted:
            layout.addWidget(QLabel(self.tr("… and {n} more items not listed").format(n=totals.omitted)))
        buttons = QDialogButtonBox()
        self.open_button = buttons.addButton(self.tr("&Open folder"), QDialogButtonBox.ButtonRole.ActionRole)
        self.open_button.setEnabled(bool(folder) and open_folder is not None)
        if open_folder is not None:
            self.open_button.clicked.connect(lambda: open_folder(self.folder))
        close = buttons.addButton(QDialogButtonBox.StandardButton.Close)
        close.setDefault(True)
        buttons.rejected.connect(self.accept)
        layout.addWidget(buttons)
        self.resize(820, 460)
