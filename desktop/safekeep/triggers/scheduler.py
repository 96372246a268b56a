"""The scheduler: starts plans' runs when their schedule, a retry or an event says so.

The engine gives the scheduler:

- each plan's :class:`PlanSchedule` (its parsed schedule rules, retry delays, whether its
  destination needs the network) through :meth:`Scheduler.set_plans`;
- a :class:`SchedulerStore` that keeps one small :class:`ScheduleState` per plan across restarts
  (the last schedule slot handled, a pause, the retry counter, the last successful backup);
- a ``start(plan_id, reason, reason_text)`` callback that starts a run without waiting for it, and
  later calls :meth:`Scheduler.report_outcome` when the run has ended;
- optionally a ``network_up()`` probe and an ``alert(plan_id, failures)`` callback.

:meth:`Scheduler.tick` is the whole decision, pure apart from the store and the callbacks, so it is
tested with a fake clock; :meth:`Scheduler.run_forever` calls it in a loop of bounded sleeps.

Rules of the game:

- **On time vs catch-up.** A run that starts within ``on_time_tolerance`` of its slot, with no
  earlier slot missed, is a ``schedule`` run. If slots were missed (the computer slept, was off,
  Safekeep was not running, or the plan was still busy) exactly *one* ``catch-up`` run starts,
  however many slots were missed. Any run that starts covers every slot up to that moment.
- **First sight.** A plan the store has no state for starts counting from now: no run for slots
  before it was scheduled.
- **Pause** (:meth:`~Scheduler.pause_for`, :meth:`~Scheduler.pause_until_tomorrow`,
  :meth:`~Scheduler.resume`): slots that fall inside a pause are skipped, not caught up. Retries and
  requested runs (file changes, disk connected) wait until the pause ends, then start once.
- **Retry.** After a failed run the plan runs again after ``retry_delays[0]``, then
  ``retry_delays[1]`` ... ; a failure after the last retry calls ``alert`` once and stops retrying
  (the regular schedule goes on). A success clears the streak; a manual run restarts it from the
  first delay.
- **Network.** A due run of a plan whose destination needs the network waits while ``network_up()``
  is false and starts, with its original reason, when it returns.
- **Removable disk.** :meth:`~Scheduler.disk_connected` starts a ``disk-connected`` run when the
  plan's last successful backup is older than its latest schedule slot (or, for a plan without a
  schedule, older than ``disk_recent``).
- Only one run per plan at a time: while a plan runs, what becomes due waits for the outcome.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any, Protocol

from safekeep.common.cancel import CancelToken
from safekeep.common.clock import SYSTEM_CLOCK, Clock
from safekeep.triggers.reasons import RunReason
from safekeep.triggers.rules import Rule, local_zone, resolve_local

log = logging.getLogger(__name__)

FOREVER = datetime.max.replace(tzinfo=UTC)
"""``paused_until`` for a pause that lasts until :meth:`Scheduler.resume`."""

DEFAULT_RETRY_DELAYS = (300, 900, 3600, 3 * 3600)
_MAX_COUNTED_MISSES = 1000


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What the scheduler remembers about one plan between restarts (all times aware, UTC).

    ``last_slot``: the latest schedule slot that has been handled (run, caught up or skipped).
    ``last_success``: when the last successful run ended (the engine may fill it from its history).
    ``paused_until``: end of a pause (:data:`FOREVER` until resumed), None when not paused.
    ``failures``: failed runs in a row; ``next_retry``: when the next retry is due;
    ``alerted``: whether the alert for this streak of failures has been given.
    """

    last_slot: datetime | None = None
    last_success: datetime | None = None
    paused_until: datetime | None = None
    failures: int = 0
    next_retry: datetime | None = None
    alerted: bool = False

    def to_dict(self) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return None if t is None else t.isoformat()

        return {
            "last_slot": iso(self.last_slot),
            "last_success": iso(self.last_success),
            "paused_until": iso(self.paused_until),
            "failures": self.failures,
            "next_retry": iso(self.next_retry),
            "alerted": self.alerted,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ScheduleState:
        if not d:
            return cls()

        def when(key: str) -> datetime | None:
            value = d.get(key)
            if not value:
                return None
            t = datetime.fromisoformat(str(value))
            return t if t.tzinfo is not None else t.replace(tzinfo=UTC)

        return cls(
            last_slot=when("last_slot"),
            last_success=when("last_success"),
            paused_until=when("paused_until"),
            failures=int(d.get("failures") or 0),
            next_retry=when("next_retry"),
            alerted=bool(d.get("alerted", False)),
        )


class SchedulerStore(Protocol):
    """Keeps each plan's :class:`ScheduleState` (the engine implements it on the app database)."""

    def get(self, plan_id: str) -> ScheduleState:
        """The plan's state; ``ScheduleState()`` for a plan never seen."""
        ...

    def set(self, plan_id: str, state: ScheduleState) -> None: ...


class MemoryScheduleStore:
    """A :class:`SchedulerStore` in memory (tests, and hosts that need no persistence)."""

    def __init__(self, initial: Mapping[str, ScheduleState] | None = None) -> None:
        self._states: dict[str, ScheduleState] = dict(initial or {})
        self._lock = threading.Lock()

    def get(self, plan_id: str) -> ScheduleState:
        with self._lock:
            return self._states.get(plan_id, ScheduleState())

    def set(self, plan_id: str, state: ScheduleState) -> None:
        with self._lock:
            self._states[plan_id] = state


@dataclass(frozen=True, slots=True)
class PlanSchedule:
    """What the scheduler needs to know about one plan.

    ``rules``: the plan's schedule rules (empty for a plan run only by hand, file changes or
    events); ``retry_delays``: seconds to wait before each retry after a failure;
    ``needs_network``: whether its destinations are reached over the network; ``name`` for logs.
    """

    plan_id: str
    rules: tuple[Rule, ...] = ()
    retry_delays: tuple[int, ...] = DEFAULT_RETRY_DELAYS
    needs_network: bool = False
    name: str = ""


@dataclass(frozen=True, slots=True)
class SchedulerOptions:
    """Tuning; the defaults suit a desktop."""

    on_time_tolerance: timedelta = timedelta(minutes=10)
    """A run that starts later than this after its slot is a catch-up."""
    max_sleep: float = 60.0
    """The longest single sleep, so a wall-clock jump (suspend, clock change) is noticed soon."""
    network_poll: float = 30.0
    """How often a run waiting for the network checks again."""
    clock_jump: float = 30.0
    """A difference between wall-clock and monotonic time over one sleep that counts as a jump."""
    disk_recent: timedelta = timedelta(hours=1)
    """For a plan without a schedule: a disk connected this soon after a successful backup starts none."""


@dataclass(frozen=True, slots=True)
class StartedRun:
    """A run the scheduler started (returned by :meth:`Scheduler.tick`)."""

    plan_id: str
    reason: RunReason
    reason_text: str


StartRun = Callable[[str, RunReason, str], None]
"""``start(plan_id, reason, reason_text)``: start the run and return at once."""
Alert = Callable[[str, int], None]
"""``alert(plan_id, failures)``: the last retry failed too; tell a person."""
Wait = Callable[[float, CancelToken], None]
"""``wait(seconds, cancel)``: sleep up to ``seconds``; may return early."""


class Scheduler:
    """Starts runs that are due. Thread-safe: events may arrive from any thread."""

    def __init__(
        self,
        store: SchedulerStore,
        start: StartRun,
        *,
        clock: Clock = SYSTEM_CLOCK,
        tz: tzinfo | None = None,
        network_up: Callable[[], bool] | None = None,
        alert: Alert | None = None,
        options: SchedulerOptions = SchedulerOptions(),
    ) -> None:
        self._store = store
        self._start = start
        self._clock = clock
        self._tz = tz if tz is not None else local_zone()
        self._network_up = network_up
        self._alert = alert
        self.options = options
        self._plans: dict[str, PlanSchedule] = {}
        self._running: set[str] = set()
        self._requests: dict[str, tuple[RunReason, str]] = {}
        self._waiting_network: dict[str, tuple[RunReason, str]] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()

    # -- configuration ------------------------------------------------------------------------

    def set_plans(self, plans: Iterable[PlanSchedule]) -> None:
        """Replace the set of scheduled plans. A plan whose rules changed starts counting from now."""
        now = self._now()
        with self._lock:
            new = {p.plan_id: p for p in plans}
            for pid, plan in new.items():
                old = self._plans.get(pid)
                if old is not None and old.rules != plan.rules:
                    st = self._store.get(pid)
                    slot = self._latest_slot(plan, now)
                    if st.last_slot is not None and slot is not None and slot > st.last_slot:
                        self._store.set(pid, replace(st, last_slot=slot))
            for pid in set(self._plans) - set(new):
                self._requests.pop(pid, None)
                self._waiting_network.pop(pid, None)
            self._plans = new
        self.wake()

    @property
    def tz(self) -> tzinfo:
        return self._tz

    # -- queries for the window and the command line ------------------------------------------

    def next_run(self, plan_id: str, now: datetime | None = None) -> datetime | None:
        """When the plan will next run by schedule or retry; None if paused or never."""
        now = self._now(now)
        with self._lock:
            plan = self._plans.get(plan_id)
            if plan is None:
                return None
            st = self._store.get(plan_id)
            if st.paused_until is not None and now < st.paused_until:
                if st.paused_until == FOREVER:
                    return None
                now = st.paused_until
            times = [t for t in (self._next_slot(plan, now), st.next_retry) if t is not None]
            return min(times) if times else None

    def paused_until(self, plan_id: str) -> datetime | None:
        """The end of the plan's pause (:data:`FOREVER` until resumed), or None."""
        st = self._store.get(plan_id)
        if st.paused_until is not None and self._now() < st.paused_until:
            return st.paused_until
        return None

    def waiting_for_network(self, plan_id: str) -> bool:
        with self._lock:
            return plan_id in self._waiting_network

    def is_running(self, plan_id: str) -> bool:
        with self._lock:
            return plan_id in self._running

    # -- events from the engine ---------------------------------------------------------------

    def note_started(self, plan_id: str) -> None:
        """A run of the plan started elsewhere (by hand, or from another program): it covers every
        slot up to now, and nothing else starts for the plan until its outcome is reported."""
        now = self._now()
        with self._lock:
            self._running.add(plan_id)
            self._requests.pop(plan_id, None)
            self._waiting_network.pop(plan_id, None)
            plan = self._plans.get(plan_id)
            if plan is not None:
                st = self._store.get(plan_id)
                slot = self._latest_slot(plan, now)
                if slot is not None and (st.last_slot is None or slot > st.last_slot):
                    self._store.set(plan_id, replace(st, last_slot=slot))

    def report_outcome(
        self, plan_id: str, failed: bool, manual: bool = False, *, cancelled: bool = False
    ) -> None:
        """A run of the plan ended. ``failed`` schedules a retry (or the alert after the last one);
        success clears the failure streak; ``manual`` restarts the retry sequence; a ``cancelled``
        run changes nothing but lets the plan run again."""
        now = self._now()
        alert_failures = 0
        with self._lock:
            self._running.discard(plan_id)
            plan = self._plans.get(plan_id)
            delays = plan.retry_delays if plan is not None else DEFAULT_RETRY_DELAYS
            st = self._store.get(plan_id)
            if manual:
                st = replace(st, failures=0, next_retry=None, alerted=False)
            if cancelled:
                pass
            elif not failed:
                st = replace(st, failures=0, next_retry=None, alerted=False, last_success=now)
            else:
                n = st.failures + 1
                if n <= len(delays):
                    st = replace(st, failures=n, next_retry=now + timedelta(seconds=delays[n - 1]))
                    log.info("plan %s failed; retry %d of %d in %d s", plan_id, n, len(delays), delays[n - 1])
                else:
                    if not st.alerted:
                        alert_failures = n
                    st = replace(st, failures=n, next_retry=None, alerted=True)
                    log.warning("plan %s failed %d times in a row; no more retries", plan_id, n)
            self._store.set(plan_id, st)
        if alert_failures and self._alert is not None:
            try:
                self._alert(plan_id, alert_failures)
            except Exception:
                log.exception("the failure alert for plan %s could not be given", plan_id)
        self.wake()

    def request_run(self, plan_id: str, reason: RunReason, reason_text: str = "") -> bool:
        """Ask for a run (e.g. files changed). It starts at the next tick, once, or after the plan's
        current run or pause ends. False if the plan is unknown."""
        with self._lock:
            if plan_id not in self._plans:
                return False
            self._requests.setdefault(plan_id, (reason, reason_text))
        self.wake()
        return True

    def disk_connected(self, plan_id: str) -> bool:
        """The plan's removable destination was connected: ask for a run if the last successful
        backup is older than the plan's schedule. True if a run was requested."""
        now = self._now()
        with self._lock:
            plan = self._plans.get(plan_id)
            if plan is None:
                return False
            st = self._store.get(plan_id)
            last = st.last_success
            if plan.rules:
                slot = self._latest_slot(plan, now)
                due = last is None or (slot is not None and slot > last)
            else:
                due = last is None or now - last >= self.options.disk_recent
            if not due:
                log.info("plan %s: backup disk connected, but the last backup is recent enough", plan_id)
                return False
        return self.request_run(plan_id, RunReason.DISK_CONNECTED, "the backup disk was connected")

    # -- pause ----------------------------------------------------------------------------------

    def pause_until(self, until: datetime, plan_id: str | None = None) -> None:
        """Pause one plan (or all) until ``until`` (aware)."""
        until = until.astimezone(UTC)
        with self._lock:
            for pid in self._targets(plan_id):
                self._store.set(pid, replace(self._store.get(pid), paused_until=until))
        log.info("paused %s until %s", plan_id or "all plans", "resumed" if until == FOREVER else until)
        self.wake()

    def pause_for(self, seconds: float, plan_id: str | None = None) -> None:
        self.pause_until(self._now() + timedelta(seconds=seconds), plan_id)

    def pause_until_tomorrow(self, plan_id: str | None = None) -> None:
        """Pause until the start (00:00 local time) of the next day."""
        today = self._now().astimezone(self._tz).date()
        self.pause_until(
            resolve_local(datetime.combine(today + timedelta(days=1), time(0, 0)), self._tz), plan_id
        )

    def pause_indefinitely(self, plan_id: str | None = None) -> None:
        self.pause_until(FOREVER, plan_id)

    def resume(self, plan_id: str | None = None) -> None:
        """End a pause now; slots that fell inside it are skipped."""
        now = self._now()
        with self._lock:
            for pid in self._targets(plan_id):
                st = self._store.get(pid)
                if st.paused_until is not None:
                    self._store.set(pid, self._end_pause(self._plans.get(pid), st, min(now, st.paused_until)))
        log.info("resumed %s", plan_id or "all plans")
        self.wake()

    # -- the decision -----------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> list[StartedRun]:
        """Start every run that is due at ``now``; return what was started."""
        now = self._now(now)
        network: list[bool] = []

        def network_ok() -> bool:
            if not network:
                up = True
                if self._network_up is not None:
                    try:
                        up = bool(self._network_up())
                    except Exception:
                        log.exception("the network check failed; assuming the network is down")
                        up = False
                network.append(up)
            return network[0]

        with self._lock:
            started = [
                run
                for plan in list(self._plans.values())
                if (run := self._decide(plan, now, network_ok)) is not None
            ]
        for run in started:
            log.info("starting plan %s: %s (%s)", run.plan_id, run.reason.value, run.reason_text)
            try:
                self._start(run.plan_id, run.reason, run.reason_text)
            except Exception:
                log.exception("plan %s could not be started", run.plan_id)
                self.report_outcome(run.plan_id, failed=True)
        return started

    def _decide(self, plan: PlanSchedule, now: datetime, network_ok: Callable[[], bool]) -> StartedRun | None:
        pid = plan.plan_id
        st = orig = self._store.get(pid)
        if st.paused_until is not None and now >= st.paused_until:
            st = self._end_pause(plan, st, st.paused_until)
            log.info("plan %s: the pause has ended", pid)
        paused = st.paused_until is not None
        slot = self._latest_slot(plan, now)
        due_slot: datetime | None = None
        if slot is not None:
            if st.last_slot is None:
                st = replace(st, last_slot=slot)  # first sight: count from here
            elif slot > st.last_slot:
                if paused:
                    log.info("plan %s: skipping the run scheduled for %s (paused)", pid, self._fmt(slot))
                    st = replace(st, last_slot=slot)
                else:
                    due_slot = slot
        retry_due = not paused and st.next_retry is not None and now >= st.next_retry
        request = None if paused else self._requests.get(pid)
        run: StartedRun | None = None
        if pid not in self._running and (due_slot is not None or retry_due or request is not None):
            waited = self._waiting_network.get(pid)
            if waited is not None:
                reason, text = waited
            elif due_slot is not None:
                assert st.last_slot is not None
                reason, text = self._slot_reason(plan, st.last_slot, due_slot, now)
            elif retry_due:
                reason, text = (
                    RunReason.RETRY,
                    f"retry {st.failures} of {len(plan.retry_delays)} after a failed run",
                )
            else:
                assert request is not None
                reason, text = request
            if plan.needs_network and not network_ok():
                if waited is None:
                    log.info("plan %s is due (%s) but the network is down; waiting", pid, reason.value)
                    self._waiting_network[pid] = (reason, text)
            else:
                if waited is not None:
                    text = f"{text} (started when the network came back)" if text else "the network came back"
                if slot is not None:
                    st = replace(st, last_slot=slot)
                st = replace(st, next_retry=None)
                self._running.add(pid)
                self._requests.pop(pid, None)
                self._waiting_network.pop(pid, None)
                run = StartedRun(pid, reason, text)
        if st != orig:
            self._store.set(pid, st)
        return run

    def _slot_reason(
        self, plan: PlanSchedule, last_slot: datetime, slot: datetime, now: datetime
    ) -> tuple[RunReason, str]:
        missed: list[datetime] = []
        t = last_slot
        while len(missed) < _MAX_COUNTED_MISSES:
            nxt = self._next_slot(plan, t)
            if nxt is None or nxt > slot:
                break
            missed.append(nxt)
            t = nxt
        if len(missed) <= 1 and now - slot <= self.options.on_time_tolerance:
            return RunReason.SCHEDULE, f"scheduled for {self._fmt(slot)}"
        if len(missed) <= 1:
            return RunReason.CATCH_UP, f"catching up the run scheduled for {self._fmt(slot)}"
        count = f"{len(missed)}+" if len(missed) >= _MAX_COUNTED_MISSES else str(len(missed))
        return (
            RunReason.CATCH_UP,
            f"catching up {count} missed scheduled runs ({self._fmt(missed[0])} to {self._fmt(slot)})",
        )

    def _end_pause(self, plan: PlanSchedule | None, st: ScheduleState, end: datetime) -> ScheduleState:
        """Clear the pause; the slots inside it (up to ``end``) count as handled."""
        st = replace(st, paused_until=None)
        if plan is not None:
            slot = self._latest_slot(plan, end)
            if slot is not None and (st.last_slot is None or slot > st.last_slot):
                st = replace(st, last_slot=slot)
        return st

    # -- the loop -------------------------------------------------------------------------------

    def next_wake(self, now: datetime | None = None) -> datetime:
        """When :meth:`tick` next has something to do (at most ``max_sleep`` from now)."""
        now = self._now(now)
        candidates = [now + timedelta(seconds=self.options.max_sleep)]
        with self._lock:
            for pid, plan in self._plans.items():
                if pid in self._running:
                    continue
                st = self._store.get(pid)
                paused = st.paused_until is not None and now < st.paused_until
                if paused and st.paused_until is not None:
                    if st.paused_until != FOREVER:
                        candidates.append(st.paused_until)
                    continue
                if pid in self._waiting_network:
                    candidates.append(now + timedelta(seconds=self.options.network_poll))
                elif pid in self._requests:
                    candidates.append(now)
                nxt = self._next_slot(plan, now)
                if nxt is not None:
                    candidates.append(nxt)
                if st.next_retry is not None:
                    candidates.append(max(st.next_retry, now))
        return min(candidates)

    def wake(self) -> None:
        """Cut the current sleep of :meth:`run_forever` short (something changed)."""
        self._wake.set()

    def run_forever(self, cancel: CancelToken, *, wait: Wait | None = None) -> None:
        """Tick, sleep until the next due time (never longer than ``max_sleep``), repeat until
        ``cancel``. A jump of the wall clock against the monotonic clock during a sleep (suspend
        and resume, a clock change) is logged; the next tick catches up whatever it made due."""
        do_wait = wait if wait is not None else self._wait
        log.info("scheduler started (%d plans)", len(self._plans))
        while not cancel.cancelled:
            self._wake.clear()
            wall0, mono0 = self._now(), self._clock.monotonic()
            try:
                self.tick(wall0)
                delay = (self.next_wake(wall0) - wall0).total_seconds()
            except Exception:
                log.exception("the scheduler's tick failed; trying again later")
                delay = self.options.max_sleep
            do_wait(min(max(delay, 0.0), self.options.max_sleep), cancel)
            wall1, mono1 = self._now(), self._clock.monotonic()
            jump = (wall1 - wall0).total_seconds() - (mono1 - mono0)
            if abs(jump) > self.options.clock_jump:
                log.info("the clock jumped by %+.0f s (sleep, hibernation or a clock change)", jump)
        log.info("scheduler stopped")

    def _wait(self, seconds: float, cancel: CancelToken) -> None:
        end = self._clock.monotonic() + seconds
        while not cancel.cancelled and not self._wake.is_set():
            remaining = end - self._clock.monotonic()
            if remaining <= 0:
                return
            self._wake.wait(min(remaining, 0.5))

    # -- helpers --------------------------------------------------------------------------------

    def _now(self, now: datetime | None = None) -> datetime:
        t = now if now is not None else self._clock.now()
        if t.tzinfo is None:
            raise ValueError(f"the scheduler needs timezone-aware times, got {t!r}")
        return t.astimezone(UTC)

    def _targets(self, plan_id: str | None) -> list[str]:
        return list(self._plans) if plan_id is None else [plan_id]

    def _latest_slot(self, plan: PlanSchedule, at: datetime) -> datetime | None:
        slots = [s for r in plan.rules if (s := r.previous_slot(at, self._tz)) is not None]
        return max(slots) if slots else None

    def _next_slot(self, plan: PlanSchedule, after: datetime) -> datetime | None:
        return min((r.next_after(after, self._tz) for r in plan.rules), default=None)

    def _fmt(self, t: datetime) -> str:
        return t.astimezone(self._tz).strftime("%a %d %b %Y %H:%M")
