"""Running a restore from the window: conflicts, the worker run with progress, and the summary.

A :class:`Pick` is one selected item (snapshot, path, type). :class:`RestoreFlow` takes the picks
of one destination, groups them by snapshot (one engine restore per snapshot, one after the
other) and goes through the steps, every engine call in the background:

1. With the policy "ask": ``restore_conflicts`` for each group; if anything is in the way, the
   :class:`~safekeep.gui.restore.dialogs.ConflictDialog` asks, and its answers become the
   restores' ``decisions`` (items not listed get the "Apply to all" choice; Cancel stops here).
2. ``restore`` for each group with the progress dialog; its job events arrive on the GUI thread
   through :meth:`Background.relay`; Cancel cancels the running part and the rest do not start.
3. ``restore_report`` of each part; the :class:`~safekeep.gui.restore.dialogs.SummaryDialog`.

The engine writes the audit entry of each restore.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget

from safekeep.common.errors import SafekeepError
from safekeep.core.restorer import ConflictScan, RestoredItem, RestoreReport
from safekeep.engine.events import JobEvent
from safekeep.gui.background import Background
from safekeep.gui.engine import Engine
from safekeep.gui.restore.dialogs import (
    KEEP_BOTH,
    ConflictDialog,
    ProgressDialog,
    Question,
    SummaryDialog,
    Totals,
)
from safekeep.state.model import Outcome, Run

log = logging.getLogger(__name__)

ASK = "ask"
POLICIES = (
    (ASK, "Ask me"),
    (KEEP_BOTH, "Keep both"),
    ("overwrite", "Overwrite"),
    ("skip", "Skip"),
)
ORIGINAL_PLACE = "/"


def error_text(exc: BaseException) -> str:
    """An exception in plain words: the engine's message and hint, never a traceback."""
    if isinstance(exc, SafekeepError):
        return exc.user_text()
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}."
    return f"Something went wrong: {exc or type(exc).__name__}."


@dataclass(frozen=True, slots=True)
class Pick:
    """One selected item: a path of a snapshot (``type`` as in the catalog: "file", "dir", ...)."""

    snapshot_id: str
    path: str
    type: str = "file"
    size: int = 0


def group_picks(picks: Sequence[Pick]) -> list[tuple[str, tuple[str, ...]]]:
    """(snapshot, paths) in the order first picked; a path inside another picked one is dropped."""
    groups: dict[str, list[str]] = {}
    for p in picks:
        paths = groups.setdefault(p.snapshot_id, [])
        if p.path not in paths:
            paths.append(p.path)
    out = []
    for snap, paths in groups.items():
        kept = [p for p in paths if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in paths)]
        out.append((snap, tuple(kept)))
    return out


@dataclass(slots=True)
class _Part:
    snapshot_id: str
    paths: tuple[str, ...]
    decisions: dict[str, str] = field(default_factory=dict)
    run_id: str = ""
    run: Run | None = None
    report: RestoreReport | None = None
    error: str = ""


class RestoreFlow(QObject):
    """One restore from the window, from the conflict question to the summary."""

    finished = Signal()
    """The flow is over (done, cancelled or failed); :attr:`summary` is shown if it got that far."""

    def __init__(
        self,
        engine: Engine,
        background: Background,
        destination_id: str,
        picks: Sequence[Pick],
        *,
        target: str,
        flatten: bool,
        policy: str,
        parent: QWidget,
        open_folder: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(parent)
        self.engine = engine
        self.background = background
        self.destination_id = destination_id
        self.target = target
        self.flatten = flatten
        self.policy = policy
        self.window = parent
        self.open_folder = open_folder
        self.parts = [_Part(snap, paths) for snap, paths in group_picks(picks)]
        self.default_policy = policy if policy != ASK else KEEP_BOTH
        self.conflicts: ConflictDialog | None = None
        self.progress: ProgressDialog | None = None
        self.summary: SummaryDialog | None = None
        self.cancelled = False
        self.done = False
        self.error = ""
        self._current = -1

    # ---------------------------------------------------------------- 1. conflicts

    def start(self) -> None:
        if not self.parts:
            self._finish()
            return
        if self.policy != ASK:
            self._run_next()
            return
        engine, dest, target, flatten = self.engine, self.destination_id, self.target, self.flatten
        parts = [(p.snapshot_id, p.paths) for p in self.parts]

        def scan() -> list[tuple[str, ConflictScan]]:
            return [
                (snap, engine.restore_conflicts(dest, snap, target, paths=paths, flatten=flatten))
                for snap, paths in parts
            ]

        self.background.run(scan, self._scanned, self._failed_early)

    def _scanned(self, scans: list[tuple[str, ConflictScan]]) -> None:
        questions = [
            Question(snap, c) for snap, scan in scans for c in scan.conflicts if c.kind in ("file", "type")
        ]
        if not questions:
            self._run_next()
            return
        more = any(scan.more for _, scan in scans)
        dialog = ConflictDialog(questions, more=more, parent=self.window)
        dialog.setModal(True)
        dialog.accepted.connect(self._answered)
        dialog.rejected.connect(self._declined)
        self.conflicts = dialog
        dialog.open()

    def _answered(self) -> None:
        dialog = self.conflicts
        assert dialog is not None
        self.default_policy = dialog.default_policy
        decisions = dialog.decisions()
        for part in self.parts:
            part.decisions = decisions.get(part.snapshot_id, {})
        self.conflicts = None
        dialog.deleteLater()
        self._run_next()

    def _declined(self) -> None:
        if self.conflicts is not None:
            self.conflicts.deleteLater()
            self.conflicts = None
        self.cancelled = True
        self._finish()

    def _failed_early(self, exc: BaseException) -> None:
        self.error = error_text(exc)
        self._show_summary()

    # ---------------------------------------------------------------- 2. the runs

    def _run_next(self) -> None:
        if self.progress is None:
            self.progress = ProgressDialog(self.window)
            self.progress.cancel_requested.connect(self.cancel)
            self.progress.open()
        self._current += 1
        if self.cancelled or self._current >= len(self.parts):
            self._collect()
            return
        part = self.parts[self._current]
        self.progress.show_part(self._current + 1, len(self.parts))
        engine, dest = self.engine, self.destination_id
        relay = self.background.relay(self._event)
        target, flatten, policy = self.target, self.flatten, self.default_policy

        def start() -> str:
            part.run_id = engine.restore(
                dest,
                part.snapshot_id,
                target,
                paths=part.paths,
                conflict=policy,
                decisions=part.decisions or None,
                flatten=flatten,
                on_event=relay,
            )
            if self.cancelled:
                engine.cancel(part.run_id)
            return part.run_id

        def wait() -> Run:
            start()
            return engine.wait(part.run_id)

        self.background.run(
            wait, lambda run: self._ended(part, run), lambda exc: self._part_failed(part, exc)
        )

    def _event(self, event: JobEvent) -> None:
        if self.progress is None:
            return
        if event.kind == "progress":
            self.progress.show_progress(event.data)

    def cancel(self) -> None:
        """Stop the running part; the others do not start (the progress dialog's Cancel)."""
        self.cancelled = True
        engine = self.engine
        running = [p.run_id for p in self.parts if p.run_id and p.run is None]
        if running:
            self.background.run(lambda: [engine.cancel(run_id) for run_id in running])

    def _ended(self, part: _Part, run: Run) -> None:
        part.run = run
        if run.outcome is Outcome.CANCELLED:
            self.cancelled = True
        part.error = "; ".join(r.error for r in run.results if r.error)
        self._run_next()

    def _part_failed(self, part: _Part, exc: BaseException) -> None:
        part.error = error_text(exc)
        self._run_next()

    # ---------------------------------------------------------------- 3. the summary

    def _collect(self) -> None:
        engine = self.engine
        parts = [p for p in self.parts if p.run_id]

        def reports() -> list[RestoreReport | None]:
            return [engine.restore_report(p.run_id) for p in parts]

        def got(found: list[RestoreReport | None]) -> None:
            for part, report in zip(parts, found, strict=True):
                part.report = report
            self._show_summary()

        def failed(exc: BaseException) -> None:
            self.error = error_text(exc)
            self._show_summary()

        self.background.run(reports, got, failed)

    def totals(self) -> Totals:
        reports = [p.report for p in self.parts if p.report is not None]
        return Totals(
            restored=sum(r.restored for r in reports),
            overwritten=sum(r.overwritten for r in reports),
            kept_both=sum(r.kept_both for r in reports),
            skipped=sum(r.skipped for r in reports),
            failed=sum(r.failed for r in reports),
            verified=sum(r.verified for r in reports),
            omitted=sum(r.items_omitted for r in reports),
        )

    def items(self) -> list[RestoredItem]:
        return [it for p in self.parts if p.report is not None for it in p.report.items]

    def folder(self) -> str:
        """The folder "Open folder" shows: the chosen one, or where the items went."""
        if self.target != ORIGINAL_PLACE:
            return self.target
        places = [os.path.dirname(it.target_path) for it in self.items() if it.action != "failed"]
        if not places:
            places = [os.path.dirname(p) for part in self.parts for p in part.paths]
        try:
            return os.path.commonpath(places) if places else ""
        except ValueError:
            return places[0]

    def _show_summary(self) -> None:
        if self.progress is not None:
            self.progress.done(0)
            self.progress.deleteLater()
            self.progress = None
        totals = self.totals()
        problems = [self.error] if self.error else []
        problems += [
            p.error for p in self.parts if p.error and not (self.cancelled and _cancel_words(p.error))
        ]
        if self.cancelled:
            headline = self.tr(
                "The restore was cancelled. What was restored before it stopped is complete; "
                "nothing half-written was left behind."
            )
        elif problems or totals.failed:
            headline = self.tr("The restore finished with problems.")
        else:
            headline = self.tr("The restore is complete.")
        self.summary = SummaryDialog(
            totals,
            self.items(),
            headline=headline,
            problems=problems,
            folder=self.folder(),
            open_folder=self.open_folder,
            parent=self.window,
        )
        self.summary.finished.connect(lambda _r: self._finish())
        self.summary.open()

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        self.finished.emit()


def _cancel_words(error: str) -> bool:
    return "cancel" in error.lower()
