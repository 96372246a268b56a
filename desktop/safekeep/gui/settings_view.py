"""The Settings tab: bandwidth limits, notifications, start at login, and changing a plan.

* **Bandwidth**: per destination, the most it may send (upload) and fetch (download), in KiB/s;
  0 means no limit. Saved on the destination (``Destination.upload_limit_kib`` /
  ``download_limit_kib``) with an audit log entry; the next job uses them.
* **Notifications**: desktop notifications on a failed backup and a plan's first success
  (:mod:`~safekeep.gui.settings`).
* **Start at login**: :mod:`~safekeep.gui.autostart`.
* **Plans**: each plan with a "Change…" button opening the :class:`~.plan_editor.PlanEditor`.

Every read and write runs in the background; the controls are enabled once loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from safekeep.common.errors import SafekeepError
from safekeep.gui import autostart, settings
from safekeep.gui.background import Background
from safekeep.gui.engine import Engine
from safekeep.gui.notifications import Notifier
from safekeep.gui.plan_editor import PlanEditor
from safekeep.state.model import Destination, Plan

MAX_KIB = 10_000_000


@dataclass(frozen=True)
class Loaded:
    destinations: list[Destination]
    plans: list[Plan]
    notifications: bool
    autostart: bool


def _limit(value: int) -> int | None:
    return value or None


def save_limits(engine: Engine, changes: list[Destination]) -> None:
    """Save changed bandwidth limits (blocks) with one audit entry per destination."""
    for dest in changes:
        engine.db.save_destination(dest)
        engine.audit_event(
            "destination-change",
            f"destination {dest.name} ({dest.location})",
            "success",
            destination_id=dest.id,
            upload_limit_kib=dest.upload_limit_kib,
            download_limit_kib=dest.download_limit_kib,
        )


class SettingsView(QWidget):
    loaded = Signal()
    saved = Signal(str)
    """What was saved, in words (also shown on the page)."""
    plan_saved = Signal(object)

    def __init__(
        self,
        engine: Engine,
        background: Background,
        *,
        notifier: Notifier | None = None,
        home: Path | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.engine = engine
        self.background = background
        self.notifier = notifier
        self.home = home
        self.destinations: list[Destination] = []
        self.plans: list[Plan] = []
        self.editor: PlanEditor | None = None
        layout = QVBoxLayout(self)

        general = QGroupBox(self.tr("This computer"))
        g = QVBoxLayout(general)
        self.notifications = QCheckBox(
            self.tr("Show a &notification when a backup fails or the first one succeeds")
        )
        self.notifications.setObjectName("notifications")
        self.notifications.toggled.connect(self._notifications_toggled)
        g.addWidget(self.notifications)
        self.autostart = QCheckBox(self.tr("&Start Safekeep when I log in (recommended)"))
        self.autostart.setObjectName("autostart")
        self.autostart.toggled.connect(self._autostart_toggled)
        g.addWidget(self.autostart)
        layout.addWidget(general)

        bandwidth = QGroupBox(self.tr("Bandwidth"))
        b = QVBoxLayout(bandwidth)
        note = QLabel(
            self.tr(
                "Limit how fast backups send and fetch data, so the office's internet stays usable. "
                "0 means no limit. 1,000 KiB/s is about 8 Mbit/s."
            )
        )
        note.setWordWrap(True)
        b.addWidget(note)
        self.grid = QGridLayout()
        b.addLayout(self.grid)
        row = QHBoxLayout()
        self.save_limits = QPushButton(self.tr("Save &limits"))
        self.save_limits.clicked.connect(self._save_limits)
        row.addWidget(self.save_limits)
        row.addStretch(1)
        b.addLayout(row)
        self.uploads: dict[str, QSpinBox] = {}
        self.downloads: dict[str, QSpinBox] = {}
        layout.addWidget(bandwidth)

        plans = QGroupBox(self.tr("Backup plans"))
        self.plans_box = QVBoxLayout(plans)
        layout.addWidget(plans)
        self.message = QLabel()
        self.message.setObjectName("settings-message")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        layout.addStretch(1)
        self._loading = True
        self.setEnabled(False)
        self.reload()

    # -- loading -------------------------------------------------------------------------------

    def reload(self) -> None:
        engine = self.engine

        def load() -> Loaded:
            return Loaded(
                engine.destinations(),
                engine.plans(),
                settings.notifications_enabled(engine),
                autostart.enabled(),
            )

        self.background.run(load, self._loaded, self._error)

    def _loaded(self, data: Loaded) -> None:
        self._loading = True
        self.destinations, self.plans = data.destinations, data.plans
        self.notifications.setChecked(data.notifications)
        self.autostart.setChecked(data.autostart)
        self._fill_limits()
        self._fill_plans()
        self._loading = False
        self.setEnabled(True)
        self.loaded.emit()

    def _fill_limits(self) -> None:
        while self.grid.count():
            item = self.grid.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        self.uploads.clear()
        self.downloads.clear()
        self.grid.addWidget(QLabel(self.tr("<b>Destination</b>")), 0, 0)
        self.grid.addWidget(QLabel(self.tr("<b>Upload (KiB/s)</b>")), 0, 1)
        self.grid.addWidget(QLabel(self.tr("<b>Download (KiB/s)</b>")), 0, 2)
        for i, dest in enumerate(self.destinations, start=1):
            name = QLabel(dest.name)
            self.grid.addWidget(name, i, 0)
            for col, value, store in (
                (1, dest.upload_limit_kib, self.uploads),
                (2, dest.download_limit_kib, self.downloads),
            ):
                spin = QSpinBox()
                spin.setRange(0, MAX_KIB)
                spin.setSingleStep(100)
                spin.setSpecialValueText(self.tr("no limit"))
                spin.setValue(value or 0)
                spin.setAccessibleName(
                    f"{dest.name}: " + (self.tr("upload") if col == 1 else self.tr("download"))
                )
                self.grid.addWidget(spin, i, col)
                store[dest.id] = spin
            name.setBuddy(self.uploads[dest.id])
        self.save_limits.setEnabled(bool(self.destinations))

    def _fill_plans(self) -> None:
        while self.plans_box.count():
            item = self.plans_box.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        for plan in self.plans:
            row = QWidget()
            h = QHBoxLayout(row)
            h.setContentsMargins(0, 0, 0, 0)
            label = QLabel(plan.name + "\n" + self.tr("Keeps {what}").format(what=plan.retention.describe()))
            label.setObjectName(f"plan-{plan.id}")
            h.addWidget(label, 1)
            edit = QPushButton(self.tr("&Change…"))
            edit.setObjectName(f"edit-{plan.id}")
            edit.clicked.connect(lambda _checked=False, p=plan: self.edit_plan(p))
            h.addWidget(edit)
            self.plans_box.addWidget(row)
        if not self.plans:
            self.plans_box.addWidget(QLabel(self.tr("No plan yet.")))

    # -- changes -------------------------------------------------------------------------------

    def limit_changes(self) -> list[Destination]:
        out = []
        for dest in self.destinations:
            up = _limit(self.uploads[dest.id].value())
            down = _limit(self.downloads[dest.id].value())
            if (up, down) != (dest.upload_limit_kib, dest.download_limit_kib):
                out.append(replace(dest, upload_limit_kib=up, download_limit_kib=down))
        return out

    def _save_limits(self) -> None:
        changes = self.limit_changes()
        if not changes:
            self._said(self.tr("Nothing to save: the limits are unchanged."))
            return
        engine = self.engine
        self.save_limits.setEnabled(False)

        def done(_: object) -> None:
            self.save_limits.setEnabled(True)
            self._said(
                self.tr("Saved the bandwidth limits of {names}.").format(
                    names=", ".join(d.name for d in changes)
                )
            )
            self.reload()

        self.background.run(lambda: save_limits(engine, changes), done, self._error)

    def _notifications_toggled(self, on: bool) -> None:
        if self._loading:
            return
        engine = self.engine
        if self.notifier is not None:
            self.notifier.enabled = on
        words = self.tr("Notifications are on.") if on else self.tr("Notifications are off.")
        self.background.run(
            lambda: settings.set_notifications(engine, on), lambda _: self._said(words), self._error
        )

    def _autostart_toggled(self, on: bool) -> None:
        if self._loading:
            return

        def done(where: object) -> None:
            self._said(
                self.tr("Safekeep starts when you log in ({where}).").format(where=where)
                if on
                else self.tr("Safekeep no longer starts when you log in.")
            )

        self.background.run(lambda: autostart.set_enabled(on), done, self._error)

    def edit_plan(self, plan: Plan) -> PlanEditor:
        self.editor = PlanEditor(self.engine, self.background, plan, home=self.home, parent=self)
        self.editor.saved.connect(self._plan_saved)
        self.editor.show()
        return self.editor

    def _plan_saved(self, plan: Plan) -> None:
        self._said(self.tr("Saved the plan “{plan}”.").format(plan=plan.name))
        self.plan_saved.emit(plan)
        self.reload()

    def _said(self, text: str) -> None:
        self.message.setText(text)
        self.saved.emit(text)

    def _error(self, exc: BaseException) -> None:
        self.setEnabled(True)
        self.save_limits.setEnabled(True)
        text = exc.user_text() if isinstance(exc, SafekeepError) else f"{type(exc).__name__}: {exc}"
        self.message.setText("✘ " + text)
        self.saved.emit(text)
