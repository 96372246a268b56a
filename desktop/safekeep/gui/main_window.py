"""The main window: a dashboard with a card per plan, and the activity (history) view.

A card shows the plan's state in words and with a state icon (shape, not only colour), when it
last succeeded and how long ago, and each destination's state, with a "Back up now" button.
The activity view lists past runs with what was skipped and why, in plain words. Everything
is loaded from the engine in the background and refreshed after each job event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from PySide6.QtCore import QTimer
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
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
from safekeep.gui import icons, texts
from safekeep.gui.background import Background
from safekeep.gui.engine import Engine, PlanStatus
from safekeep.state.model import Destination, Outcome, Reason, Run

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
    def __init__(self, window: MainWindow, status: PlanStatus, destinations: dict[str, Destination]) -> None:
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
        if status.progress is not None and status.state is Outcome.RUNNING:
            p = status.progress
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
        buttons.addStretch(1)
        layout.addLayout(buttons)


class MainWindow(QMainWindow):
    def __init__(self, engine: Engine, background: Background, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.background = background
        self.setWindowTitle(self.tr("Safekeep"))
        self.setWindowIcon(icons.app_icon())
        self.resize(820, 600)
        self.tabs = QTabWidget()
        self.setCentralWidget(self.tabs)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        self.cards_host = QWidget()
        self.cards = QVBoxLayout(self.cards_host)
        self.cards.addStretch(1)
        scroll.setWidget(self.cards_host)
        self.tabs.addTab(scroll, self.tr("&Dashboard"))
        self.activity = QListWidget()
        self.activity.setWordWrap(True)
        self.activity.setObjectName("activity")
        self.tabs.addTab(self.activity, self.tr("&Activity"))
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
        self.reload()

    def reload(self) -> None:
        engine = self.engine

        def load() -> tuple[Sequence[PlanStatus], list[Destination], list[Run]]:
            return engine.status(), engine.destinations(), engine.history(None, 100)

        self.background.run(load, self._loaded, self._error)

    def _loaded(self, data: tuple[Sequence[PlanStatus], list[Destination], list[Run]]) -> None:
        statuses, dests, runs = data
        by_id = {d.id: d for d in dests}
        while self.cards.count() > 1:
            item = self.cards.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.hide()
                widget.setParent(None)
        for i, status in enumerate(statuses):
            self.cards.insertWidget(i, PlanCard(self, status, by_id))
        names = {s.plan.id: s.plan.name for s in statuses}
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

    def closeEvent(self, event: QCloseEvent) -> None:
        self._unsubscribe()
        super().closeEvent(event)
