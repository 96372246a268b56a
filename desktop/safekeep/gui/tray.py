"""The tray icon: the app's face once the first backup is made.

The icon shows one state for all plans together — idle (a tick), running (circling arrows),
warning (a triangle), error (an octagon), paused (bars) — each its own shape, not only its colour
(:func:`overall_state`). The tooltip says the state in words, the progress of a running backup,
when the last backup succeeded and when the next one is due (:func:`tooltip_text`).

The menu: Back up now, Pause (for an hour / until tomorrow / resume), Restore files…, Open
Safekeep, Quit. The tray follows every run to its end and sends a desktop notification when a
backup fails and when a plan's first backup succeeds (:class:`~.notifications.Notifier`).

Everything is read from the engine in the background, again after every job event (debounced),
when a running run ends, and once a minute for the ages and the next run in the tooltip. Each
read also takes the latest runs from the history: a run that ended since the last read (however
short it was, and whoever started it) is announced once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from safekeep.common.errors import SafekeepError
from safekeep.gui import icons, texts
from safekeep.gui.background import Background
from safekeep.gui.engine import Engine, PlanStatus, Triggers
from safekeep.gui.notifications import Notification, Notifier, Urgency
from safekeep.state.model import Outcome, Reason, Run

log = logging.getLogger(__name__)

HOUR = 3600.0
REFRESH_MS = 60_000
DEBOUNCE_MS = 300

_BAD = (Outcome.FAILED, Outcome.INTERRUPTED)
_WARN = (Outcome.WARNING, Outcome.CANCELLED)
_GOOD = (Outcome.SUCCESS, Outcome.WARNING)
RECENT = 50
"""How many of the latest runs each reload reads, to notice the ones that ended."""


def overall_state(statuses: Sequence[PlanStatus], *, paused: bool = False) -> icons.State:
    """Running beats everything (it is what is happening now); then error, warning, paused, idle."""
    states = [s.state for s in statuses]
    if any(s in (Outcome.RUNNING,) for s in states) or any(s.running_id for s in statuses):
        return icons.State.RUNNING
    if any(s in _BAD for s in states):
        return icons.State.ERROR
    if any(s in _WARN for s in states):
        return icons.State.WARNING
    if paused:
        return icons.State.PAUSED
    return icons.State.IDLE


_STATE_WORDS = {
    icons.State.IDLE: "Your files are backed up",
    icons.State.RUNNING: "Backing up",
    icons.State.WARNING: "Backed up, but some files were skipped",
    icons.State.ERROR: "A backup failed",
    icons.State.PAUSED: "Backups are paused",
}


@dataclass(frozen=True)
class TrayView:
    """What the tray last read from the engine."""

    statuses: Sequence[PlanStatus]
    next_runs: Mapping[str, datetime | None]
    paused_until: datetime | None


def tooltip_text(snap: TrayView, now: datetime) -> str:
    state = overall_state(snap.statuses, paused=snap.paused_until is not None)
    lines = ["Safekeep — " + texts.tr(_STATE_WORDS[state])]
    if not snap.statuses:
        lines.append(texts.tr("No backup plan yet"))
    for st in snap.statuses:
        prefix = f"{st.plan.name}: " if len(snap.statuses) > 1 else ""
        if st.running_id:
            p = st.progress
            if p is not None and p.phase == "retention":
                lines.append(prefix + texts.tr("removing old backups"))
            elif p is not None and p.bytes_total > 0:
                percent = int(100 * min(p.bytes_done, p.bytes_total) / p.bytes_total)
                lines.append(
                    prefix
                    + texts.tr("backing up, {percent}% ({done} of {total})").format(
                        percent=percent, done=texts.size(p.bytes_done), total=texts.size(p.bytes_total)
                    )
                )
            elif p is not None:
                lines.append(prefix + texts.tr("backing up, {files} files so far").format(files=p.files_done))
            else:
                lines.append(prefix + texts.tr("waiting to start"))
        if st.last_success is not None:
            then = datetime.fromtimestamp(st.last_success, UTC)
            lines.append(
                prefix
                + texts.tr("last backup {when} ({age})").format(
                    when=texts.when(then, now), age=texts.age(then, now)
                )
            )
        else:
            lines.append(prefix + texts.tr("no backup yet"))
        if st.state in _BAD and st.last_run is not None:
            errors = [r.error for r in st.last_run.results if r.error]
            if errors:
                lines.append(prefix + texts.tr("last attempt failed: {error}").format(error=errors[0]))
        nxt = snap.next_runs.get(st.plan.id)
        if nxt is not None:
            lines.append(prefix + texts.tr("next backup {when}").format(when=texts.when(nxt, now)))
    if snap.paused_until is not None:
        lines.append(texts.tr("paused until {when}").format(when=texts.when(snap.paused_until, now)))
    return "\n".join(lines)


def failure_note(plan_name: str, run: Run) -> Notification:
    errors = [r.error for r in run.results if r.error]
    body = errors[0] if errors else texts.tr("The backup ended: {outcome}.").format(outcome=run.outcome.value)
    return Notification(
        texts.tr("The backup “{plan}” failed").format(plan=plan_name),
        body + "\n" + texts.tr("Open Safekeep to see what happened."),
        Urgency.CRITICAL,
    )


def first_success_note(plan_name: str, run: Run) -> Notification:
    files = sum(r.files for r in run.results)
    size = sum(r.bytes for r in run.results)
    return Notification(
        texts.tr("Your files are protected"),
        texts.tr("The first backup of “{plan}” is complete: {files} files ({size}).").format(
            plan=plan_name, files=files, size=texts.size(size)
        ),
    )


class Tray(QObject):
    """The tray icon and its menu; emits what the app should do for the window items."""

    open_requested = Signal()
    restore_requested = Signal(str)
    """A plan id (empty when there is no plan)."""
    quit_requested = Signal()
    refreshed = Signal()
    run_ended = Signal(object)
    """A :class:`Run` the tray followed has ended (after any notification was sent)."""

    def __init__(
        self,
        engine: Engine,
        background: Background,
        *,
        triggers: Triggers | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.engine = engine
        self.background = background
        self.triggers = triggers
        self._now = now
        self.icon = QSystemTrayIcon(self)
        self.notifier = Notifier(background, self.icon)
        self.state = icons.State.IDLE
        self.snapshot = TrayView((), {}, None)
        self._following: set[str] = set()
        self._seen: set[str] | None = None
        self._names: dict[str, str] = {}
        self.menu = QMenu()
        self.menu.setObjectName("tray-menu")
        self.menu.setWindowTitle("Safekeep menu")
        self.backup_action = self._action(self.tr("&Back up now"), self.back_up_now)
        pause = self.menu.addMenu(self.tr("&Pause backups"))
        self.pause_menu = pause
        self.pause_hour = QAction(self.tr("For one &hour"), self)
        self.pause_hour.triggered.connect(lambda: self.pause(HOUR))
        self.pause_tomorrow = QAction(self.tr("Until &tomorrow"), self)
        self.pause_tomorrow.triggered.connect(self.pause_until_tomorrow)
        self.resume_action = QAction(self.tr("&Resume"), self)
        self.resume_action.triggered.connect(self.resume)
        for action in (self.pause_hour, self.pause_tomorrow, self.resume_action):
            pause.addAction(action)
        pause.setEnabled(triggers is not None)
        self.restore_action = self._action(self.tr("&Restore files…"), self._restore)
        self.open_action = self._action(self.tr("&Open Safekeep"), self.open_requested.emit)
        self.menu.addSeparator()
        self.quit_action = self._action(self.tr("&Quit"), self.quit_requested.emit)
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._activated)
        self._set_state(icons.State.IDLE)
        self.icon.setToolTip("Safekeep")
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.reload)
        self._tick = QTimer(self)
        self._tick.setInterval(REFRESH_MS)
        self._tick.timeout.connect(self.reload)
        relay = background.relay(lambda _event: self._debounce.start())
        self._unsubscribe = engine.subscribe(relay)

    def _action(self, text: str, slot: Callable[[], object]) -> QAction:
        action = QAction(text, self)
        action.triggered.connect(lambda _checked=False: slot())
        self.menu.addAction(action)
        return action

    # -- life --------------------------------------------------------------------------------------

    def show(self) -> None:
        self.icon.show()
        self._tick.start()
        self.reload()

    def close(self) -> None:
        self._tick.stop()
        self._debounce.stop()
        self._unsubscribe()
        self.icon.hide()

    # -- reading the engine ------------------------------------------------------------------------

    def reload(self) -> None:
        engine, triggers = self.engine, self.triggers
        seen = None if self._seen is None else frozenset(self._seen)

        def load() -> tuple[TrayView, list[Run], dict[str, int]]:
            statuses = engine.status()
            next_runs: dict[str, datetime | None] = {}
            paused: datetime | None = None
            if triggers is not None:
                for st in statuses:
                    next_runs[st.plan.id] = triggers.next_run(st.plan.id)
                    paused = paused or triggers.paused_until(st.plan.id)
            ended = [r for r in engine.history(None, RECENT) if r.kind == "backup" and r.finished is not None]
            successes: dict[str, int] = {}
            if seen is not None:
                for run in ended:
                    if run.id not in seen and run.outcome in _GOOD and run.plan_id not in successes:
                        successes[run.plan_id] = sum(
                            1
                            for r in engine.history(run.plan_id, 1000)
                            if r.kind == "backup" and r.outcome in _GOOD
                        )
            return TrayView(statuses, next_runs, paused), ended, successes

        self.background.run(load, self._loaded, self._error)

    def _loaded(self, loaded: tuple[TrayView, list[Run], dict[str, int]]) -> None:
        snap, ended, successes = loaded
        self.snapshot = snap
        self._names = {s.plan.id: s.plan.name for s in snap.statuses}
        self._set_state(overall_state(snap.statuses, paused=snap.paused_until is not None))
        self.icon.setToolTip(tooltip_text(snap, self._now()))
        self.resume_action.setEnabled(snap.paused_until is not None)
        self.backup_action.setEnabled(bool(snap.statuses))
        for st in snap.statuses:
            if st.running_id and st.running_id not in self._following:
                self._follow(st.running_id)
        if self._seen is None:  # what ended before the app started is not news
            self._seen = {r.id for r in ended}
        else:
            for run in reversed(ended):  # oldest first
                if run.id not in self._seen:
                    self._seen.add(run.id)
                    self._ended(run, successes.get(run.plan_id, 0))
        self.refreshed.emit()

    def _ended(self, run: Run, successes: int) -> None:
        name = self._names.get(run.plan_id, run.plan_id)
        if run.outcome in _BAD:
            self.notifier.notify(failure_note(name, run))
        elif run.outcome in _GOOD and successes == 1:
            self.notifier.notify(first_success_note(name, run))
        self.run_ended.emit(run)

    def _set_state(self, state: icons.State) -> None:
        self.state = state
        self.icon.setIcon(icons.tray_icon(state))

    def _follow(self, run_id: str) -> None:
        """Read everything again (in the background) as soon as a running run ends."""
        self._following.add(run_id)
        engine = self.engine

        def done(_run: Run) -> None:
            self._following.discard(run_id)
            self.reload()

        def failed(exc: BaseException) -> None:
            self._following.discard(run_id)
            self._error(exc)

        self.background.run(lambda: engine.wait(run_id), done, failed)

    def _error(self, exc: BaseException) -> None:
        text = exc.user_text() if isinstance(exc, SafekeepError) else f"{type(exc).__name__}: {exc}"
        log.error("the tray could not read the engine: %s", text)
        self.icon.setToolTip("Safekeep — " + text)

    # -- menu actions ------------------------------------------------------------------------------

    def back_up_now(self) -> None:
        """Start every plan now (a plan that is running already is left alone)."""
        engine = self.engine
        plan_ids = [s.plan.id for s in self.snapshot.statuses]

        def start() -> list[str]:
            ids = plan_ids or [p.id for p in engine.plans()]
            return [engine.run_plan(i, Reason.MANUAL, "Back up now (tray)") for i in ids]

        self.background.run(start, lambda _ids: self.reload(), self._error)

    def pause(self, seconds: float) -> None:
        triggers = self.triggers
        if triggers is not None:
            self.background.run(lambda: triggers.pause_for(seconds), lambda _: self.reload(), self._error)

    def pause_until_tomorrow(self) -> None:
        triggers = self.triggers
        if triggers is not None:
            self.background.run(triggers.pause_until_tomorrow, lambda _: self.reload(), self._error)

    def resume(self) -> None:
        triggers = self.triggers
        if triggers is not None:
            self.background.run(triggers.resume, lambda _: self.reload(), self._error)

    def _restore(self) -> None:
        statuses = self.snapshot.statuses
        self.restore_requested.emit(statuses[0].plan.id if statuses else "")

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (QSystemTrayIcon.ActivationReason.Trigger, QSystemTrayIcon.ActivationReason.DoubleClick):
            self.open_requested.emit()
