"""The main window: a dashboard with a card per plan, the backups list, and the activity view.

A card shows the plan's state in words and with a state icon (shape, not only colour), when it
last succeeded and how long ago, and each destination's state, with a "Back up now" button.
The activity view lists past runs with what was skipped and why, in plain words. Everything
is loaded from the engine in the background and refreshed after each job event.

The "Backups" tab lists a plan's snapshots on each of its destinations (newest first) and
restores a whole snapshot into a folder the person chooses. "Restore files…" on a card and in
that tab opens the restore window (:mod:`safekeep.gui.restore`): browse, search, versions,
deleted files, and restoring chosen files and folders.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from safekeep.common.errors import SafekeepError
from safekeep.core.format.snapshot import Snapshot
from safekeep.gui import icons, texts
from safekeep.gui.background import Background
from safekeep.gui.chart import HistoryChart, points
from safekeep.gui.engine import Engine, PlanStatus, Triggers
from safekeep.gui.notifications import Notifier
from safekeep.gui.restore import RestoreWindow
from safekeep.gui.settings_view import SettingsView
from safekeep.state.model import Destination, Outcome, Plan, Reason, Run

STATE_OF_OUTCOME = {
    Outcome.SUCCESS: icons.State.IDLE,
    Outcome.WARNING: icons.State.WARNING,
    Outcome.CANCELLED: icons.State.WARNING,
    Outcome.INTERRUPTED: icons.State.WARNING,
    Outcome.FAILED: icons.State.ERROR,
    Outcome.RUNNING: icons.State.RUNNING,
    Outcome.QUEUED: icons.State.PAUSED,
}

OUTCOME_WORDS = {
    Outcome.SUCCESS: "Backed up",
    Outcome.WARNING: "Backed up, but some files were skipped",
    Outcome.CANCELLED: "The last backup was cancelled",
    Outcome.INTERRUPTED: "The last backup was interrupted",
    Outcome.FAILED: "The last backup failed",
    Outcome.RUNNING: "Backing up now",
    Outcome.QUEUED: "Waiting for its first backup",
}


def _now() -> datetime:
    return datetime.now(UTC)


class PlanCard(QFrame):
    def __init__(
        self,
        window: MainWindow,
        status: PlanStatus,
        destinations: dict[str, Destination],
        next_run: datetime | None = None,
    ) -> None:
        super().__init__()
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setObjectName(f"card-{status.plan.id}")
        layout = QHBoxLayout(self)
        icon = QLabel()
        icon.setPixmap(icons.state_pixmap(STATE_OF_OUTCOME[status.state], 48))
        layout.addWidget(icon)
        text = QVBoxLayout()
        title = QLabel(f"<b>{status.plan.name}</b>")
        text.addWidget(title)
        self.state = QLabel(self.tr(OUTCOME_WORDS[status.state]))
        self.state.setObjectName("state")
        text.addWidget(self.state)
        now = _now()
        if status.last_success is not None:
            then = datetime.fromtimestamp(status.last_success, UTC)
            last = self.tr("Last successful backup: {when} ({age})").format(
                when=texts.when(then, now), age=texts.age(then, now)
            )
        else:
            last = self.tr("No successful backup yet")
        text.addWidget(QLabel(last))
        if next_run is not None:
            text.addWidget(QLabel(self.tr("Next backup: {when}").format(when=texts.when(next_run, now))))
        if status.progress is not None and status.state is Outcome.RUNNING:
            p = status.progress
            if p.phase == "retention":
                text.addWidget(QLabel(self.tr("Removing old backups the plan no longer keeps…")))
            else:
                done = texts.size(p.bytes_done) + (
                    f" / {texts.size(p.bytes_total)}" if p.bytes_total >= 0 else ""
                )
                text.addWidget(QLabel(self.tr("{files} files, {size}").format(files=p.files_done, size=done)))
        if status.last_run is not None:
            size = sum(r.bytes for r in status.last_run.results)
            if size:
                text.addWidget(
                    QLabel(self.tr("Size of the backed-up files: {size}").format(size=texts.size(size)))
                )
        for dest_id in status.plan.destination_ids:
            dest = destinations.get(dest_id)
            outcome = status.destinations.get(dest_id)
            words = self.tr(OUTCOME_WORDS[outcome]) if outcome else self.tr("not backed up yet")
            text.addWidget(QLabel("• " + (dest.name if dest else dest_id) + ": " + words))
        layout.addLayout(text, 1)
        buttons = QVBoxLayout()
        self.backup = QPushButton(self.tr("&Back up now"))
        self.backup.setEnabled(status.state is not Outcome.RUNNING)
        plan_id = status.plan.id
        self.backup.clicked.connect(lambda: window.back_up_now(plan_id))
        buttons.addWidget(self.backup)
        self.restore = QPushButton(self.tr("&Restore files…"))
        self.restore.clicked.connect(lambda: window.open_restore(plan_id))
        buttons.addWidget(self.restore)
        buttons.addStretch(1)
        layout.addLayout(buttons)


class MainWindow(QMainWindow):
    plans_changed = Signal()
    """A plan was changed here (the trigger host reads the plans again)."""

    def __init__(
        self,
        engine: Engine,
        background: Background,
        parent: QWidget | None = None,
        *,
        triggers: Triggers | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        super().__init__(parent)
        self.engine = engine
        self.background = background
        self.triggers = triggers
        self.notifier = notifier
        self.setWindowTitle(self.tr("Safekeep"))
        self.setWindowIcon(icons.app_icon())
        self.resize(820, 600)
        self.tabs = QTabWidget()
        self.setCentralWidget(self.tabs)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        self.cards_host = QWidget()
        self.cards = QVBoxLayout(self.cards_host)
        self.chart = HistoryChart()
        self.chart.setObjectName("history-chart")
        self.cards.addWidget(self.chart)
        self.cards.addStretch(1)
        scroll.setWidget(self.cards_host)
        self.tabs.addTab(scroll, self.tr("&Dashboard"))
        self.activity = QListWidget()
        self.activity.setWordWrap(True)
        self.activity.setObjectName("activity")
        self.backups = BackupsView(self)
        self.tabs.addTab(self.backups, self.tr("Bac&kups"))
        self.tabs.addTab(self.activity, self.tr("&Activity"))
        self.settings = SettingsView(engine, background, notifier=notifier)
        self.settings.plan_saved.connect(self._plan_saved)
        self.tabs.addTab(self.settings, self.tr("&Settings"))
        self.keep_running = False
        """Closing only hides the window (the tray icon keeps the app running)."""
        self.message = QLabel()
        self.statusBar().addWidget(self.message, 1)
        self._pending = False
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(500)
        self._debounce.timeout.connect(self.reload)
        relay = background.relay(lambda _event: self._debounce.start())
        self._unsubscribe = engine.subscribe(relay)
        self.loaded = False
        self.restore_window: RestoreWindow | None = None
        self.reload()

    def reload(self) -> None:
        engine = self.engine

        triggers = self.triggers

        def load() -> tuple[Sequence[PlanStatus], list[Destination], list[Run], dict[str, datetime | None]]:
            statuses = engine.status()
            nexts = {s.plan.id: triggers.next_run(s.plan.id) for s in statuses} if triggers else {}
            return statuses, engine.destinations(), engine.history(None, 100), nexts

        self.background.run(load, self._loaded, self._error)

    def _loaded(
        self, data: tuple[Sequence[PlanStatus], list[Destination], list[Run], dict[str, datetime | None]]
    ) -> None:
        statuses, dests, runs, nexts = data
        by_id = {d.id: d for d in dests}
        while self.cards.count() > 2:  # the cards, then the chart and the stretch
            item = self.cards.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.hide()
                widget.setParent(None)
        for i, status in enumerate(statuses):
            self.cards.insertWidget(i, PlanCard(self, status, by_id, nexts.get(status.plan.id)))
        names = {s.plan.id: s.plan.name for s in statuses}
        if not any(s.running_id for s in statuses) and self.message.text() == self.tr("Backing up…"):
            self.message.setText("")
        if statuses:
            first = statuses[0].plan
            self.chart.set_points(
                points(runs, first.id), self.tr("“{plan}”: size and files backed up").format(plan=first.name)
            )
        self.backups.set_plans([s.plan for s in statuses], by_id)
        self.activity.clear()
        for run in runs:
            self.activity.addItem(self._activity_item(run, names, by_id))
        self.loaded = True

    def _activity_item(
        self, run: Run, names: dict[str, str], dests: dict[str, Destination]
    ) -> QListWidgetItem:
        started = datetime.fromtimestamp(run.started, UTC)
        lines = [
            f"{texts.when(started, _now())} — {names.get(run.plan_id, run.plan_id)}: "
            + self.tr(OUTCOME_WORDS[run.outcome])
        ]
        for r in run.results:
            name = dests[r.destination_id].name if r.destination_id in dests else r.destination_id
            line = f"    {name}: " + self.tr("{files} files, {size} new").format(
                files=r.files, size=texts.size(r.bytes_added)
            )
            if r.error:
                line += " — " + r.error
            lines.append(line)
            for s in r.skipped[:20]:
                lines.append(
                    "        " + self.tr("Skipped {path}: {reason}").format(path=s.path, reason=s.reason)
                )
            if len(r.skipped) > 20:
                lines.append("        " + self.tr("… and {n} more skipped").format(n=len(r.skipped) - 20))
        return QListWidgetItem(icons.state_icon(STATE_OF_OUTCOME[run.outcome]), "\n".join(lines))

    def back_up_now(self, plan_id: str) -> None:
        engine = self.engine
        self.message.setText(self.tr("Starting the backup…"))
        self.background.run(
            lambda: engine.run_plan(plan_id, Reason.MANUAL, "Back up now"),
            self._started,
            self._error,
        )

    def _started(self, _run_id: str) -> None:
        self.message.setText(self.tr("Backing up…"))
        self.reload()

    def _error(self, exc: BaseException) -> None:
        text = exc.user_text() if isinstance(exc, SafekeepError) else f"{type(exc).__name__}: {exc}"
        self.message.setText(text)

    def _plan_saved(self, _plan: Plan) -> None:
        self.plans_changed.emit()
        self.reload()

    def show_backups(self, plan_id: str = "") -> None:
        """Open the Backups tab on a plan's snapshots (the entry point of restoring)."""
        self.tabs.setCurrentWidget(self.backups)
        self.backups.show_plan(plan_id)

    def open_restore(self, plan_id: str = "") -> RestoreWindow:
        """Show the restore window (one for the app), on a plan's backups if ``plan_id`` is given."""
        window = self.restore_window
        if window is None:
            window = self.restore_window = RestoreWindow(self.engine, self.background, plan_id)
        elif plan_id:
            window.show_plan(plan_id)
        window.show()
        window.raise_()
        window.activateWindow()
        return window

    def shutdown(self) -> None:
        """Stop listening to the engine (the app quits)."""
        self._unsubscribe()
        self._unsubscribe = lambda: None
        if self.restore_window is not None:
            self.restore_window.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.keep_running:
            self.shutdown()
        super().closeEvent(event)


class BackupsView(QWidget):
    """A plan's snapshots on one of its destinations, and restoring one into a folder."""

    loaded = Signal()

    def __init__(self, window: MainWindow) -> None:
        super().__init__()
        self.window_ = window
        self.plans: list[Plan] = []
        self.destinations: dict[str, Destination] = {}
        self.wanted = ""
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        label = QLabel(self.tr("&Backups of:"))
        self.choice = QComboBox()
        self.choice.setObjectName("backups-of")
        label.setBuddy(self.choice)
        self.choice.currentIndexChanged.connect(self._chosen)
        row.addWidget(label)
        row.addWidget(self.choice, 1)
        layout.addLayout(row)
        self.list = QListWidget()
        self.list.setObjectName("snapshots")
        self.list.itemSelectionChanged.connect(self._selection)
        layout.addWidget(self.list, 1)
        self.info = QLabel()
        self.info.setWordWrap(True)
        layout.addWidget(self.info)
        buttons = QHBoxLayout()
        self.files = QPushButton(self.tr("Restore &files…"))
        self.files.setObjectName("restore-files")
        self.files.clicked.connect(lambda: window.open_restore(self._plan_id() or self.wanted))
        buttons.addWidget(self.files)
        self.restore = QPushButton(self.tr("&Restore this backup to a folder…"))
        self.restore.setEnabled(False)
        self.restore.clicked.connect(self._pick_target)
        buttons.addWidget(self.restore)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self.snapshots: list[Snapshot] = []
        self.restore_run = ""

    def set_plans(self, plans: list[Plan], destinations: dict[str, Destination]) -> None:
        keys = [(p.id, d) for p in plans for d in p.destination_ids if d in destinations]
        if keys == [self.choice.itemData(i) for i in range(self.choice.count())]:
            return
        self.plans, self.destinations = plans, destinations
        self.choice.blockSignals(True)
        self.choice.clear()
        for plan in plans:
            for dest_id in plan.destination_ids:
                dest = destinations.get(dest_id)
                if dest is not None:
                    self.choice.addItem(f"{plan.name} — {dest.name}", (plan.id, dest_id))
        self.choice.blockSignals(False)
        if self.wanted:
            self.show_plan(self.wanted)

    def show_plan(self, plan_id: str) -> None:
        self.wanted = plan_id
        for i in range(self.choice.count()):
            if not plan_id or self.choice.itemData(i)[0] == plan_id:
                if self.choice.currentIndex() == i:
                    self._chosen()
                else:
                    self.choice.setCurrentIndex(i)
                return

    def _plan_id(self) -> str:
        data = self.choice.currentData()
        return str(data[0]) if data else ""

    def current_destination(self) -> str:
        data = self.choice.currentData()
        return str(data[1]) if data else ""

    def _chosen(self) -> None:
        dest_id = self.current_destination()
        self.list.clear()
        self.snapshots = []
        if not dest_id:
            return
        self.info.setText(self.tr("Reading the list of backups…"))
        engine = self.window_.engine
        self.window_.background.run(lambda: (dest_id, engine.snapshots(dest_id)), self._loaded, self._failed)

    def _loaded(self, result: tuple[str, list[Snapshot]]) -> None:
        dest_id, snaps = result
        if dest_id != self.current_destination():
            return
        self.snapshots = list(reversed(snaps))
        self.list.clear()
        now = _now()
        for snap in self.snapshots:
            when = snap.time.astimezone(UTC)
            files = (snap.summary or {}).get("total_files_processed")
            text = f"{texts.when(when, now)} ({texts.age(when, now)})"
            if files is not None:
                text += " — " + self.tr("{n} files").format(n=files)
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, snap.id)
            self.list.addItem(item)
        self.info.setText(
            self.tr("{n} backup(s). Choose one to restore its files.").format(n=len(snaps))
            if snaps
            else self.tr("There is no backup here yet.")
        )
        self.loaded.emit()

    def _failed(self, exc: BaseException) -> None:
        text = exc.user_text() if isinstance(exc, SafekeepError) else f"{type(exc).__name__}: {exc}"
        self.info.setText(text)
        self.loaded.emit()

    def _selection(self) -> None:
        self.restore.setEnabled(bool(self.list.selectedItems()))

    def selected_snapshot(self) -> str:
        items = self.list.selectedItems()
        return str(items[0].data(Qt.ItemDataRole.UserRole)) if items else ""

    def _pick_target(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self.tr("Restore the files into this folder"))
        if folder:
            self.restore_to(folder)

    def restore_to(self, folder: str) -> None:
        snap, dest = self.selected_snapshot(), self.current_destination()
        if not snap or not dest:
            return
        engine = self.window_.engine
        self.info.setText(self.tr("Restoring into {folder}…").format(folder=folder))
        self.restore.setEnabled(False)

        def work() -> Run:
            self.restore_run = run_id = engine.restore(dest, snap, folder)
            return engine.wait(run_id)

        self.window_.background.run(work, lambda run: self._restored(run, folder), self._failed)

    def _restored(self, run: Run, folder: str) -> None:
        self.restore.setEnabled(True)
        if run.outcome in (Outcome.SUCCESS, Outcome.WARNING):
            self.info.setText(self.tr("✔ The files are restored in {folder}.").format(folder=folder))
        else:
            errors = "; ".join(r.error for r in run.results if r.error)
            self.info.setText(self.tr("✘ The restore did not complete: {error}").format(error=errors))
