"""Retention rules beyond what the restic 0.14 oracle covers (tests/integration/test_forget_restic.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from safekeep.core.forget import KeepRules, apply_policy, group_key, plan_forget
from safekeep.core.format.snapshot import Snapshot
from safekeep.state.model import Retention


def _snap(n: int, t: datetime, host: str = "pc", paths: tuple[str, ...] = ("/data",)) -> Snapshot:
    return Snapshot(time=t, tree=bytes(32), paths=list(paths), hostname=host, id=f"{n:064x}")


def _every_six_hours(days: int) -> list[Snapshot]:
    start = datetime(2026, 1, 1, 1, tzinfo=UTC)
    return [_snap(i, start + timedelta(hours=6 * i)) for i in range(days * 4)]


def test_no_limit_keeps_the_newest_snapshot_of_every_period() -> None:
    snaps = _every_six_hours(10)
    d = apply_policy(snaps, KeepRules(daily=-1))
    assert len(d.keep) == 10  # one per day, however many days
    assert all(s.time.hour == 19 for s in d.keep)  # the day's newest (01, 07, 13, 19 h)
    assert len(d.remove) == 30


def test_an_empty_policy_removes_nothing() -> None:
    snaps = _every_six_hours(3)
    d = apply_policy(snaps, KeepRules())
    assert not d.remove and len(d.keep) == 12
    assert KeepRules().empty() and not KeepRules(last=1).empty()


def test_rules_keep_the_newest_first_and_say_why() -> None:
    snaps = _every_six_hours(3)
    d = apply_policy(snaps, KeepRules(last=2, daily=2))
    newest = sorted(snaps, key=lambda s: s.time, reverse=True)
    assert [s.id for s in d.keep] == [newest[0].id, newest[1].id, newest[4].id]
    assert d.reasons[newest[0].id] == ("last snapshot", "daily snapshot")
    assert d.reasons[newest[4].id] == ("daily snapshot",)


def test_periods_are_read_in_the_zone_the_snapshot_was_taken_in() -> None:
    # 23:30 and 00:30 UTC are the same local day (evening) for a snapshot taken at UTC-5
    utc_minus_5 = timezone(timedelta(hours=-5))
    a = _snap(1, datetime(2026, 3, 1, 23, 30, tzinfo=UTC).astimezone(utc_minus_5))
    b = _snap(2, datetime(2026, 3, 2, 0, 30, tzinfo=UTC).astimezone(utc_minus_5))
    assert [s.id for s in apply_policy([a, b], KeepRules(daily=5)).keep] == [b.id]
    a_utc = _snap(1, datetime(2026, 3, 1, 23, 30, tzinfo=UTC))
    b_utc = _snap(2, datetime(2026, 3, 2, 0, 30, tzinfo=UTC))
    assert len(apply_policy([a_utc, b_utc], KeepRules(daily=5)).keep) == 2


def test_groups_are_kept_separately() -> None:
    t = datetime(2026, 5, 1, tzinfo=UTC)
    snaps = [_snap(i, t + timedelta(days=i), host="a" if i % 2 else "b") for i in range(6)]
    plan = plan_forget(snaps, KeepRules(last=1))
    assert len(plan.groups) == 2 and len(plan.keep) == 2 and len(plan.remove) == 4
    assert len(plan_forget(snaps, KeepRules(last=1), frozenset()).keep) == 1


def test_invalid_rules_and_groupings_are_refused() -> None:
    with pytest.raises(ValueError, match="keep-daily"):
        KeepRules(daily=-2)
    with pytest.raises(ValueError, match="cannot group by colour"):
        group_key(_every_six_hours(1)[0], frozenset({"colour"}))
    assert KeepRules(hourly=24, daily=-1).describe() == "keep 24 hourly, all daily snapshots"


def test_a_plans_retention_in_plain_words() -> None:
    assert Retention().describe() == "every backup (nothing is removed)"
    assert Retention(keep_last=10).describe() == "the last 10 backups"
    assert Retention(keep_daily=7).describe() == "the last 7 daily backups"
    recommended = Retention(keep_hourly=24, keep_daily=7, keep_weekly=5, keep_monthly=12, keep_yearly=5)
    assert recommended.describe() == "the last 24 hourly, 7 daily, 5 weekly, 12 monthly and 5 yearly backups"
    mixed = Retention(keep_last=3, keep_daily=7, keep_monthly=-1)
    assert mixed.describe() == "the last 3 backups and the last 7 daily and all monthly backups"
