"""Scheduler decisions on a fake clock: due runs, catch-up, pause, retry, network wait, disk connected."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from safekeep.common.cancel import CancelToken
from safekeep.common.clock import FakeClock
from safekeep.state.model import Reason
from safekeep.triggers.reasons import RunReason
from safekeep.triggers.rules import parse_rule
from safekeep.triggers.scheduler import (
    FOREVER,
    MemoryScheduleStore,
    PlanSchedule,
    Scheduler,
    ScheduleState,
    StartedRun,
)

BERLIN = ZoneInfo("Europe/Berlin")
DAILY_22 = parse_rule("daily", {"times": ["22:00"]})
P = "plan1"


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN).astimezone(UTC)  # type: ignore[arg-type, misc]


class Host:
    """The engine's side: records starts and alerts, and says whether the network is up."""

    def __init__(self) -> None:
        self.started: list[tuple[str, RunReason, str]] = []
        self.alerts: list[tuple[str, int]] = []
        self.network = True
        self.fail_start = False

    def start(self, plan_id: str, reason: RunReason, text: str) -> None:
        if self.fail_start:
            raise OSError("the worker could not be started")
        self.started.append((plan_id, reason, text))

    def alert(self, plan_id: str, failures: int) -> None:
        self.alerts.append((plan_id, failures))

    def reasons(self) -> list[RunReason]:
        return [r for _, r, _ in self.started]


def make(
    start: datetime,
    *plans: PlanSchedule,
    store: MemoryScheduleStore | None = None,
) -> tuple[Scheduler, Host, FakeClock, MemoryScheduleStore]:
    clock = FakeClock(start)
    host = Host()
    store = store or MemoryScheduleStore()
    sched = Scheduler(
        store,
        host.start,
        clock=clock,
        tz=BERLIN,
        network_up=lambda: host.network,
        alert=host.alert,
    )
    sched.set_plans(plans or [PlanSchedule(P, (DAILY_22,))])
    return sched, host, clock, store


def advance_to(clock: FakeClock, t: datetime) -> None:
    clock.advance((t - clock.now()).total_seconds())


# ---------------------------------------------------------------------------------------------
# Due runs and catch-up


def test_due_run_starts_once_on_schedule() -> None:
    sched, host, clock, _ = make(berlin(2026, 6, 1, 10, 0))
    assert sched.tick() == []  # first sight: counting starts now
    assert sched.next_run(P) == berlin(2026, 6, 1, 22, 0)
    advance_to(clock, berlin(2026, 6, 1, 21, 59))
    assert sched.tick() == []
    advance_to(clock, berlin(2026, 6, 1, 22, 0))
    assert sched.tick() == [StartedRun(P, RunReason.SCHEDULE, "scheduled for Mon 01 Jun 2026 22:00")]
    assert sched.is_running(P)
    assert sched.tick() == []
    sched.report_outcome(P, failed=False)
    clock.advance(600)
    assert sched.tick() == []
    advance_to(clock, berlin(2026, 6, 2, 22, 3))
    assert [r.reason for r in sched.tick()] == [RunReason.SCHEDULE]
    assert len(host.started) == 2


def test_catch_up_after_three_day_sleep_gives_exactly_one_run() -> None:
    sched, host, clock, store = make(berlin(2026, 6, 1, 21, 0))
    sched.tick()
    clock.advance(3 * 86400 + 2 * 3600)  # asleep from Monday 21:00 to Thursday 23:00
    runs = sched.tick()
    assert [r.reason for r in runs] == [RunReason.CATCH_UP]
    assert "4 missed scheduled runs" in runs[0].reason_text
    assert store.get(P).last_slot == berlin(2026, 6, 4, 22, 0)
    sched.report_outcome(P, failed=False)
    for _ in range(10):
        clock.advance(60)
        assert sched.tick() == []
    advance_to(clock, berlin(2026, 6, 5, 22, 0))
    assert [r.reason for r in sched.tick()] == [RunReason.SCHEDULE]
    assert host.reasons() == [RunReason.CATCH_UP, RunReason.SCHEDULE]


def test_catch_up_with_an_interval_rule() -> None:
    every_15 = PlanSchedule(P, (parse_rule("interval", {"minutes": 15}),))
    sched, host, clock, _ = make(berlin(2026, 6, 1, 21, 0), every_15)
    sched.tick()
    clock.advance(3 * 86400)
    assert [r.reason for r in sched.tick()] == [RunReason.CATCH_UP]
    sched.report_outcome(P, failed=False)
    assert sched.tick() == []
    clock.advance(15 * 60)
    assert [r.reason for r in sched.tick()] == [RunReason.SCHEDULE]


def test_run_forever_catches_up_once_after_a_suspend() -> None:
    sched, host, clock, _ = make(berlin(2026, 6, 1, 21, 0))
    cancel = CancelToken()
    end = berlin(2026, 6, 6, 23, 0)
    waits: list[float] = []

    def start_and_finish(plan_id: str, reason: RunReason, text: str) -> None:
        host.started.append((plan_id, reason, text))
        sched.report_outcome(plan_id, failed=False)

    sched._start = start_and_finish

    def wait(seconds: float, token: CancelToken) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            clock.advance(3 * 86400)  # the laptop's lid is closed for three days
        else:
            clock.sleep(seconds)
        if clock.now() >= end:
            token.cancel()

    sched.run_forever(cancel, wait=wait)
    assert all(0 <= w <= sched.options.max_sleep for w in waits)
    # Monday 21:00 + 3 days asleep: one catch-up on Thursday, then Thursday, Friday and Saturday on time
    assert host.reasons() == [RunReason.CATCH_UP, RunReason.SCHEDULE, RunReason.SCHEDULE, RunReason.SCHEDULE]


def test_clock_jump_is_noticed(caplog: pytest.LogCaptureFixture) -> None:
    sched, _host, clock, _ = make(berlin(2026, 6, 1, 10, 0))
    cancel = CancelToken()

    def wait(seconds: float, token: CancelToken) -> None:
        clock._now += timedelta(hours=5)  # wall clock moves, monotonic does not: a suspend
        token.cancel()

    with caplog.at_level(logging.INFO, logger="safekeep.triggers.scheduler"):
        sched.run_forever(cancel, wait=wait)
    assert "the clock jumped by +18000 s" in caplog.text


def test_late_single_slot_is_a_catch_up_and_small_delay_is_on_time() -> None:
    sched, host, clock, _ = make(berlin(2026, 6, 1, 21, 0))
    sched.tick()
    advance_to(clock, berlin(2026, 6, 1, 22, 9))
    assert [r.reason for r in sched.tick()] == [RunReason.SCHEDULE]
    sched.report_outcome(P, failed=False)
    advance_to(clock, berlin(2026, 6, 2, 22, 30))
    runs = sched.tick()
    assert [r.reason for r in runs] == [RunReason.CATCH_UP]
    assert runs[0].reason_text == "catching up the run scheduled for Tue 02 Jun 2026 22:00"


def test_missed_slots_while_switched_off_are_caught_up_from_the_store() -> None:
    store = MemoryScheduleStore({P: ScheduleState(last_slot=berlin(2026, 5, 29, 22, 0))})
    sched, host, _clock, _ = make(berlin(2026, 6, 1, 9, 0), store=store)
    assert [r.reason for r in sched.tick()] == [RunReason.CATCH_UP]
    assert host.started[0][2].startswith("catching up 2 missed scheduled runs")


def test_slot_passing_during_a_long_run_gives_one_follow_up() -> None:
    hourly = PlanSchedule(P, (parse_rule("interval", {"minutes": 60}),))
    sched, host, clock, _ = make(berlin(2026, 6, 1, 9, 30), hourly)
    sched.tick()
    advance_to(clock, berlin(2026, 6, 1, 10, 0))
    assert len(sched.tick()) == 1
    for _ in range(30):  # the run takes 2.5 hours
        clock.advance(300)
        assert sched.tick() == []
    sched.report_outcome(P, failed=False)
    assert [r.reason for r in sched.tick()] == [RunReason.CATCH_UP]
    assert sched.tick() == []


def test_a_plan_with_changed_rules_counts_from_now() -> None:
    sched, host, clock, store = make(berlin(2026, 6, 1, 21, 0))
    sched.tick()
    advance_to(clock, berlin(2026, 6, 2, 12, 0))
    sched.set_plans([PlanSchedule(P, (parse_rule("daily", {"times": ["08:00"]}),))])
    # the 22:00 of yesterday was never run but the schedule is new: nothing to catch up
    assert sched.tick() == []
    advance_to(clock, berlin(2026, 6, 3, 8, 0))
    assert [r.reason for r in sched.tick()] == [RunReason.SCHEDULE]


def test_next_wake_is_the_next_slot_but_never_beyond_max_sleep() -> None:
    sched, _host, clock, _ = make(berlin(2026, 6, 1, 21, 59, 30))
    sched.tick()
    assert sched.next_wake() == berlin(2026, 6, 1, 22, 0)
    advance_to(clock, berlin(2026, 6, 1, 10, 0) + timedelta(days=1))
    assert sched.next_wake() == clock.now() + timedelta(seconds=sched.options.max_sleep)


# ---------------------------------------------------------------------------------------------
# Pause


def test_pause_for_an_hour_skips_the_slot_inside_it() -> None:
    sched, host, clock, _ = make(berlin(2026, 6, 1, 21, 30))
    sched.tick()
    sched.pause_for(3600)
    assert sched.paused_until(P) == berlin(2026, 6, 1, 22, 30)
    assert sched.next_run(P) == berlin(2026, 6, 2, 22, 0)
    advance_to(clock, berlin(2026, 6, 1, 22, 0))
    assert sched.tick() == []
    advance_to(clock, berlin(2026, 6, 1, 22, 31))
    assert sched.tick() == []
    assert sched.paused_until(P) is None
    advance_to(clock, berlin(2026, 6, 2, 22, 0))
    assert [r.reason for r in sched.tick()] == [RunReason.SCHEDULE]


def test_pause_until_tomorrow_ends_at_local_midnight() -> None:
    sched, host, clock, _ = make(berlin(2026, 6, 1, 10, 0))
    sched.tick()
    sched.pause_until_tomorrow()
    assert sched.paused_until(P) == berlin(2026, 6, 2, 0, 0)
    advance_to(clock, berlin(2026, 6, 1, 22, 0))
    assert sched.tick() == []
    advance_to(clock, berlin(2026, 6, 2, 0, 1))
    assert sched.tick() == []
    advance_to(clock, berlin(2026, 6, 2, 22, 0))
    assert [r.reason for r in sched.tick()] == [RunReason.SCHEDULE]


def test_pause_until_resumed_then_resume() -> None:
    sched, host, clock, store = make(berlin(2026, 6, 1, 10, 0))
    sched.tick()
    sched.pause_indefinitely()
    assert sched.paused_until(P) == FOREVER
    assert sched.next_run(P) is None
    clock.advance(3 * 86400)
    assert sched.tick() == []
    sched.resume()
    assert sched.paused_until(P) is None
    assert sched.tick() == []  # what fell inside the pause is skipped
    advance_to(clock, berlin(2026, 6, 4, 22, 0))
    assert [r.reason for r in sched.tick()] == [RunReason.SCHEDULE]


def test_slot_missed_while_asleep_after_a_pause_ended_is_caught_up() -> None:
    sched, host, clock, _ = make(berlin(2026, 6, 1, 10, 0))
    sched.tick()
    sched.pause_for(3600)
    clock.advance(2 * 86400)  # asleep; the pause ended long ago
    assert [r.reason for r in sched.tick()] == [RunReason.CATCH_UP]


def test_change_request_during_a_pause_runs_once_after_it() -> None:
    plan = PlanSchedule(P)
    sched, host, clock, _ = make(berlin(2026, 6, 1, 10, 0), plan)
    sched.pause_for(3600)
    assert sched.request_run(P, RunReason.CHANGE, "12 files changed")
    assert sched.request_run(P, RunReason.CHANGE, "3 more files changed")
    assert sched.tick() == []
    clock.advance(3601)
    assert sched.tick() == [StartedRun(P, RunReason.CHANGE, "12 files changed")]
    sched.report_outcome(P, failed=False)
    assert sched.tick() == []
    assert not sched.request_run("unknown", RunReason.CHANGE)


def test_pause_one_plan_leaves_the_others() -> None:
    a, b = PlanSchedule("a", (DAILY_22,)), PlanSchedule("b", (DAILY_22,))
    sched, host, clock, _ = make(berlin(2026, 6, 1, 21, 0), a, b)
    sched.tick()
    sched.pause_for(7200, "a")
    advance_to(clock, berlin(2026, 6, 1, 22, 0))
    assert [r.plan_id for r in sched.tick()] == ["b"]


# ---------------------------------------------------------------------------------------------
# Retry


def test_retry_backoff_sequence_then_one_alert() -> None:
    plan = PlanSchedule(P, retry_delays=(300, 900, 3600, 10800))
    sched, host, clock, store = make(berlin(2026, 6, 1, 10, 0), plan)
    sched.note_started(P)
    sched.report_outcome(P, failed=True)
    waited = []
    for attempt in range(1, 5):
        due = sched.next_run(P)
        assert due is not None
        waited.append(int((due - clock.now()).total_seconds()))
        advance_to(clock, due - timedelta(seconds=1))
        assert sched.tick() == []
        clock.advance(1)
        assert sched.tick() == [StartedRun(P, RunReason.RETRY, f"retry {attempt} of 4 after a failed run")]
        sched.report_outcome(P, failed=True)
    assert waited == [300, 900, 3600, 10800]
    assert host.alerts == [(P, 5)]
    assert sched.next_run(P) is None
    clock.advance(86400)
    assert sched.tick() == []
    sched.note_started(P)
    sched.report_outcome(P, failed=True)  # the streak goes on: no second alert
    assert host.alerts == [(P, 5)]


def test_success_clears_the_failure_streak() -> None:
    sched, host, clock, store = make(berlin(2026, 6, 1, 10, 0), PlanSchedule(P))
    sched.note_started(P)
    sched.report_outcome(P, failed=True)
    clock.advance(300)
    assert [r.reason for r in sched.tick()] == [RunReason.RETRY]
    sched.report_outcome(P, failed=False)
    st = store.get(P)
    assert (st.failures, st.next_retry, st.last_success) == (0, None, clock.now())
    sched.note_started(P)
    sched.report_outcome(P, failed=True)
    assert sched.next_run(P) == clock.now() + timedelta(seconds=300)


def test_manual_run_resets_the_retry_sequence() -> None:
    sched, host, clock, store = make(berlin(2026, 6, 1, 10, 0), PlanSchedule(P))
    for _ in range(3):
        sched.note_started(P)
        sched.report_outcome(P, failed=True)
    assert store.get(P).failures == 3
    sched.note_started(P)
    sched.report_outcome(P, failed=False, manual=True)
    assert store.get(P).failures == 0 and store.get(P).next_retry is None
    for _ in range(3):
        sched.note_started(P)
        sched.report_outcome(P, failed=True)
    sched.note_started(P)
    sched.report_outcome(P, failed=True, manual=True)  # a failed manual run starts again from the first delay
    assert store.get(P).failures == 1
    assert sched.next_run(P) == clock.now() + timedelta(seconds=300)


def test_cancelled_run_neither_retries_nor_counts_as_success() -> None:
    sched, host, clock, store = make(berlin(2026, 6, 1, 10, 0), PlanSchedule(P))
    sched.note_started(P)
    sched.report_outcome(P, failed=False, cancelled=True)
    assert store.get(P) == ScheduleState()
    assert not sched.is_running(P)


def test_a_start_that_raises_counts_as_a_failure() -> None:
    sched, host, clock, store = make(berlin(2026, 6, 1, 21, 0))
    sched.tick()
    host.fail_start = True
    advance_to(clock, berlin(2026, 6, 1, 22, 0))
    assert len(sched.tick()) == 1
    assert not sched.is_running(P)
    assert store.get(P).failures == 1
    host.fail_start = False
    clock.advance(300)
    assert [r for _, r, _ in host.started] == []
    assert [r.reason for r in sched.tick()] == [RunReason.RETRY]


def test_scheduled_slot_and_pending_retry_give_one_run() -> None:
    sched, host, clock, store = make(berlin(2026, 6, 1, 21, 58))
    sched.tick()
    sched.note_started(P)
    sched.report_outcome(P, failed=True)  # retry due at 22:03
    advance_to(clock, berlin(2026, 6, 1, 22, 0))
    assert [r.reason for r in sched.tick()] == [RunReason.SCHEDULE]
    sched.report_outcome(P, failed=False)
    clock.advance(600)
    assert sched.tick() == []


# ---------------------------------------------------------------------------------------------
# Network


def test_due_run_waits_for_the_network_and_keeps_its_reason() -> None:
    remote = PlanSchedule(P, (DAILY_22,), needs_network=True)
    local = PlanSchedule("local", (DAILY_22,))
    sched, host, clock, _ = make(berlin(2026, 6, 1, 21, 0), remote, local)
    sched.tick()
    host.network = False
    advance_to(clock, berlin(2026, 6, 1, 22, 0))
    assert [r.plan_id for r in sched.tick()] == ["local"]
    assert sched.waiting_for_network(P)
    assert sched.next_wake() == clock.now() + timedelta(seconds=sched.options.network_poll)
    advance_to(clock, berlin(2026, 6, 1, 23, 30))
    assert sched.tick() == []
    host.network = True
    clock.advance(30)
    runs = sched.tick()
    assert [(r.plan_id, r.reason) for r in runs] == [(P, RunReason.SCHEDULE)]
    assert runs[0].reason_text == "scheduled for Mon 01 Jun 2026 22:00 (started when the network came back)"
    assert not sched.waiting_for_network(P)


def test_network_probe_that_raises_counts_as_down() -> None:
    remote = PlanSchedule(P, needs_network=True)
    sched, host, clock, _ = make(berlin(2026, 6, 1, 21, 0), remote)

    def broken() -> bool:
        raise OSError("no route")

    sched._network_up = broken
    sched.request_run(P, RunReason.CHANGE, "files changed")
    assert sched.tick() == []
    assert sched.waiting_for_network(P)


# ---------------------------------------------------------------------------------------------
# Removable disk


def test_disk_connected_runs_when_the_last_backup_is_older_than_the_schedule() -> None:
    sched, host, clock, store = make(berlin(2026, 6, 1, 21, 0))
    sched.tick()
    assert sched.disk_connected(P)  # never backed up
    assert [r.reason for r in sched.tick()] == [RunReason.DISK_CONNECTED]
    sched.report_outcome(P, failed=False)
    clock.advance(600)
    assert not sched.disk_connected(P)  # backed up since the last slot
    advance_to(clock, berlin(2026, 6, 1, 22, 0))
    assert [r.reason for r in sched.tick()] == [RunReason.SCHEDULE]
    sched.report_outcome(P, failed=True)  # the disk was not there
    advance_to(clock, berlin(2026, 6, 1, 22, 3))
    assert sched.disk_connected(P)
    runs = sched.tick()
    assert [(r.reason, r.reason_text) for r in runs] == [
        (RunReason.DISK_CONNECTED, "the backup disk was connected")
    ]


def test_disk_connected_without_a_schedule() -> None:
    sched, host, clock, store = make(berlin(2026, 6, 1, 10, 0), PlanSchedule(P))
    store.set(P, ScheduleState(last_success=clock.now() - timedelta(minutes=30)))
    assert not sched.disk_connected(P)
    clock.advance(3600)
    assert sched.disk_connected(P)
    assert not sched.disk_connected("unknown")


# ---------------------------------------------------------------------------------------------
# State and reasons


def test_schedule_state_round_trips() -> None:
    st = ScheduleState(
        last_slot=berlin(2026, 6, 1, 22),
        last_success=berlin(2026, 6, 1, 22, 5),
        paused_until=FOREVER,
        failures=2,
        next_retry=berlin(2026, 6, 2, 1),
        alerted=True,
    )
    assert ScheduleState.from_dict(st.to_dict()) == st
    assert ScheduleState.from_dict(None) == ScheduleState()
    assert ScheduleState.from_dict(ScheduleState().to_dict()) == ScheduleState()


def test_run_reasons_are_app_reasons() -> None:
    for reason in RunReason:
        assert Reason(reason.value).value == reason.value
