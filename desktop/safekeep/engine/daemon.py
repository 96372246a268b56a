"""The trigger host: what starts backups without a person (``safekeep daemon`` and the app).

:class:`TriggerHost` connects the triggers package to the :class:`~.service.Service`:

* the **scheduler** gets every enabled plan's schedule rules and its remembered state (kept in
  the app database, so catch-up after a shutdown works), and starts runs through the service;
* the **file watcher** observes the folders of plans with a ``file-change`` trigger (ignoring
  Safekeep's own folders and local repositories), and asks the scheduler for a run;
* the **removable-disk poller** notices a plan's USB disk being connected;
* the **control server** accepts ``safekeep trigger --plan NAME --reason TEXT`` from other
  programs (see :mod:`.control`).

Every run's outcome is reported back to the scheduler (retries with backoff after failures) and
to the watcher (changes during a run give exactly one follow-up run). Only one host runs per user.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safekeep.common.cancel import CancelToken
from safekeep.common.clock import SYSTEM_CLOCK, Clock
from safekeep.common.errors import SafekeepError
from safekeep.engine.control import ControlServer, HostLock
from safekeep.engine.events import JobEvent
from safekeep.engine.service import Service
from safekeep.state import paths
from safekeep.state.model import Outcome, Plan, Reason, Run, SchedulerState
from safekeep.storage.registry import parse_location
from safekeep.triggers.reasons import RunReason
from safekeep.triggers.removable import RemovablePoller
from safekeep.triggers.rules import SCHEDULE_KINDS, InvalidSchedule, Rule, parse_rule
from safekeep.triggers.scheduler import PlanSchedule, Scheduler, ScheduleState
from safekeep.triggers.watcher import ChangeBatch, ChangeWatcher, WatchSpec, parse_watch_params

log = logging.getLogger(__name__)


def _ts(t: datetime | None) -> float | None:
    return t.timestamp() if t is not None else None


def _dt(t: float | None) -> datetime | None:
    return datetime.fromtimestamp(t, UTC) if t is not None else None


class DatabaseScheduleStore:
    """The scheduler's memory, in the app database (survives restarts: catch-up needs it).

    The database keeps the last slot, the pause, the failure count and the next retry; the last
    success comes from the run history, and "alerted" is a failure streak with no retry left.
    """

    def __init__(self, service: Service) -> None:
        self._service = service

    def get(self, plan_id: str) -> ScheduleState:
        s = self._service.db.scheduler_state(plan_id)
        return ScheduleState(
            last_slot=_dt(s.last_scheduled),
            last_success=_dt(self._service.db.last_success(plan_id)),
            paused_until=_dt(s.paused_until),
            failures=s.retry_attempt,
            next_retry=_dt(s.next_retry),
            alerted=s.retry_attempt > 0 and s.next_retry is None,
        )

    def set(self, plan_id: str, state: ScheduleState) -> None:
        try:
            self._service.db.set_scheduler_state(
                SchedulerState(
                    plan_id=plan_id,
                    last_scheduled=_ts(state.last_slot),
                    paused_until=_ts(state.paused_until),
                    retry_attempt=state.failures,
                    next_retry=_ts(state.next_retry),
                )
            )
        except SafekeepError as exc:  # the plan was removed meanwhile
            log.info("not keeping the schedule of plan %s: %s", plan_id, exc)


def schedule_rules(plan: Plan) -> tuple[Rule, ...]:
    rules = []
    for t in plan.triggers:
        if t.kind in SCHEDULE_KINDS:
            try:
                rules.append(parse_rule(t.kind, t.params))
            except InvalidSchedule as exc:
                log.warning("plan %s has a schedule that cannot be used: %s", plan.name, exc)
    return tuple(rules)


def local_folder(location: str) -> str | None:
    """The folder of a local destination, or None for storage reached over the network."""
    loc = parse_location(location)
    return os.path.abspath(loc.path) if loc.scheme == "local" else None


class TriggerHost:
    """Runs the scheduler, the watcher, the disk poller and the control server for one user."""

    def __init__(
        self,
        service: Service,
        *,
        clock: Clock = SYSTEM_CLOCK,
        folder: Path | None = None,
        disk_interval: float = 5.0,
    ) -> None:
        self.service = service
        self.clock = clock
        self._folder = folder or paths.data_dir()
        self._lock = HostLock(self._folder)
        self._cancel = CancelToken()
        self.scheduler = Scheduler(
            DatabaseScheduleStore(service), self._start_scheduled, clock=clock, alert=self._alert
        )
        self.watcher = ChangeWatcher(self._on_change, clock=clock)
        self.disks = RemovablePoller(self._on_disk, interval=disk_interval)
        self.control = ControlServer(self._folder, self._on_request)
        self._threads: list[threading.Thread] = []
        self._run_plan: dict[str, str] = {}  # run id -> plan id, for runs this host watches
        self._mutex = threading.Lock()
        self._unsubscribe = service.subscribe(self._on_event)

    # -- life ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._lock.acquire()
        self.reload()
        self.watcher.start()
        self.control.start()
        for name, target in (("scheduler", self.scheduler.run_forever), ("disks", self.disks.run_forever)):
            t = threading.Thread(target=target, args=(self._cancel,), name=name, daemon=True)
            t.start()
            self._threads.append(t)
        log.info("trigger host started (pid %d)", os.getpid())

    def stop(self) -> None:
        self._cancel.cancel()
        self.scheduler.wake()
        self.control.stop()
        self.watcher.stop()
        for t in self._threads:
            t.join(10)
        self._unsubscribe()
        self._lock.release()

    def wait(self, cancel: CancelToken) -> None:
        """Block until ``cancel`` (the daemon's main thread)."""
        while not cancel.cancelled:
            cancel.wait(1.0)

    def reload(self) -> None:
        """Read the plans again (after one was added, changed or removed)."""
        plans = [p for p in self.service.plans() if p.enabled]
        dests = {d.id: d for d in self.service.destinations()}
        ignore = [str(paths.data_dir()), str(paths.cache_dir()), str(paths.config_dir())]
        for d in dests.values():
            folder = local_folder(d.location)
            if folder:
                ignore.append(folder)
        schedules, watches, removable = [], [], {}
        for plan in plans:
            plan_dests = [dests[i] for i in plan.destination_ids if i in dests]
            schedules.append(
                PlanSchedule(
                    plan.id,
                    schedule_rules(plan),
                    retry_delays=plan.retry.delays,
                    needs_network=any(local_folder(d.location) is None for d in plan_dests),
                    name=plan.name,
                )
            )
            for t in plan.triggers:
                if t.kind == "file-change":
                    quiet, max_delay = parse_watch_params(t.params)
                    watches.append(
                        WatchSpec(plan.id, plan.sources, plan.excludes, tuple(ignore), quiet, max_delay)
                    )
                if t.kind == "disk-connected":
                    for d in plan_dests:
                        folder = local_folder(d.location)
                        if folder:
                            removable[f"{plan.id}|{d.id}"] = folder
        self.scheduler.set_plans(schedules)
        self.watcher.set_plans(watches)
        self.disks.set_locations(removable)

    # -- pause ---------------------------------------------------------------------------------

    def pause_for(self, seconds: float) -> None:
        self.scheduler.pause_for(seconds)

    def pause_until_tomorrow(self) -> None:
        self.scheduler.pause_until_tomorrow()

    def resume(self) -> None:
        self.scheduler.resume()

    def next_run(self, plan_id: str) -> datetime | None:
        return self.scheduler.next_run(plan_id)

    def paused_until(self, plan_id: str) -> datetime | None:
        return self.scheduler.paused_until(plan_id)

    # -- starting runs -------------------------------------------------------------------------

    def _start_scheduled(self, plan_id: str, reason: RunReason, text: str) -> None:
        self._start(plan_id, Reason(reason.value), text)

    def _start(self, plan_id: str, reason: Reason, text: str) -> str:
        run_id = self.service.run_plan(plan_id, reason, text)
        with self._mutex:
            self._run_plan[run_id] = plan_id
        self.watcher.run_started(plan_id)
        threading.Thread(target=self._follow, args=(run_id, plan_id, reason), daemon=True).start()
        return run_id

    def _follow(self, run_id: str, plan_id: str, reason: Reason) -> None:
        run = self.service.wait(run_id)
        self._finished(run, plan_id, manual=reason in (Reason.MANUAL, Reason.EXTERNAL))

    def _finished(self, run: Run, plan_id: str, *, manual: bool) -> None:
        with self._mutex:
            self._run_plan.pop(run.id, None)
        failed = run.outcome in (Outcome.FAILED, Outcome.INTERRUPTED)
        self.scheduler.report_outcome(plan_id, failed, manual, cancelled=run.outcome is Outcome.CANCELLED)
        self.watcher.run_finished(plan_id)

    def _on_event(self, event: JobEvent) -> None:
        """Runs started by someone else in this process (the window's "Back up now")."""
        if event.kind != "started":
            return
        with self._mutex:
            known = event.run_id in self._run_plan
        if known:
            return
        run = self.service.db.run(event.run_id)
        if run is None:
            return
        with self._mutex:
            self._run_plan[run.id] = run.plan_id
        self.scheduler.note_started(run.plan_id)
        self.watcher.run_started(run.plan_id)
        threading.Thread(target=self._follow, args=(run.id, run.plan_id, Reason.MANUAL), daemon=True).start()

    def _on_change(self, batch: ChangeBatch) -> None:
        self.scheduler.request_run(batch.plan_id, RunReason.CHANGE, batch.describe())

    def _on_disk(self, key: str) -> None:
        plan_id = key.split("|", 1)[0]
        self.scheduler.disk_connected(plan_id)

    def _alert(self, plan_id: str, failures: int) -> None:
        plan = self.service.db.plan(plan_id)
        name = plan.name if plan else plan_id
        log.error("the backup plan %s failed %d times in a row; it needs attention", name, failures)
        self.service.audit_event("alert", f"plan {name}", "failed", failures=failures)

    def _on_request(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "trigger":
            plan = self.service.plan(str(request.get("plan", "")))
            run_id = self._start(plan.id, Reason.EXTERNAL, str(request.get("reason", "")))
            return {"ok": True, "run_id": run_id, "plan": plan.name}
        if op == "reload":
            self.reload()
            return {"ok": True}
        if op == "wait":
            run = self.service.wait(str(request.get("run_id", "")), timeout=float(request.get("timeout", 0)))
            return {"ok": True, "run": run.to_dict()}
        return {"ok": False, "error": f"Unknown request {op!r}."}
