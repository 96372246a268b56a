"""Schedule rules: every kind, daylight-saving changes both ways, month ends, leap days, cron."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from safekeep.triggers.rules import (
    CronRule,
    DailyRule,
    IntervalRule,
    InvalidSchedule,
    MonthlyRule,
    Rule,
    WeeklyRule,
    describe,
    local_zone,
    parse_cron,
    parse_rule,
    resolve_local,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
UTC_ZONE = ZoneInfo("UTC")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[arg-type, misc]


def local(tz: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=tz, fold=fold)  # type: ignore[arg-type, misc]


def slots(rule: Rule, start: datetime, end: datetime, tz: ZoneInfo) -> list[datetime]:
    """Every slot in (start, end], by repeated next_after."""
    out: list[datetime] = []
    t = start
    while True:
        t = rule.next_after(t, tz)
        if t > end:
            return out
        assert t.tzinfo is not None and t.utcoffset() == timedelta(0)
        out.append(t)


def walls(times: list[datetime], tz: ZoneInfo) -> list[str]:
    return [t.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") for t in times]


# ---------------------------------------------------------------------------------------------
# Local time resolution


def test_resolve_local_normal_gap_and_fold() -> None:
    assert resolve_local(datetime(2026, 7, 1, 12, 0), BERLIN) == utc(2026, 7, 1, 10, 0)
    # spring forward in Berlin: 02:00 -> 03:00 on 29 March 2026 (01:00 UTC)
    assert resolve_local(datetime(2026, 3, 29, 2, 0), BERLIN) == utc(2026, 3, 29, 1, 0)
    assert resolve_local(datetime(2026, 3, 29, 2, 30), BERLIN) == utc(2026, 3, 29, 1, 0)
    assert resolve_local(datetime(2026, 3, 29, 2, 59), BERLIN) == utc(2026, 3, 29, 1, 0)
    assert resolve_local(datetime(2026, 3, 29, 3, 0), BERLIN) == utc(2026, 3, 29, 1, 0)
    # fall back in Berlin: 03:00 -> 02:00 on 25 October 2026; 02:30 happens twice, first at 00:30 UTC
    assert resolve_local(datetime(2026, 10, 25, 2, 30), BERLIN) == utc(2026, 10, 25, 0, 30)
    # New York: 02:00 -> 03:00 on 8 March 2026 (07:00 UTC); 01:30 twice on 1 November 2026
    assert resolve_local(datetime(2026, 3, 8, 2, 30), NEW_YORK) == utc(2026, 3, 8, 7, 0)
    assert resolve_local(datetime(2026, 11, 1, 1, 30), NEW_YORK) == utc(2026, 11, 1, 5, 30)


def test_naive_datetimes_are_refused() -> None:
    rule = parse_rule("daily", {"times": ["22:00"]})
    with pytest.raises(ValueError, match="timezone-aware"):
        rule.next_after(datetime(2026, 1, 1), BERLIN)
    with pytest.raises(ValueError, match="timezone-aware"):
        rule.previous_slot(datetime(2026, 1, 1), BERLIN)


# ---------------------------------------------------------------------------------------------
# Interval


def test_interval_minutes_grid_and_strictly_after() -> None:
    rule = parse_rule("interval", {"minutes": 15})
    assert rule == IntervalRule(15)
    assert rule.next_after(utc(2026, 1, 5, 10, 7, 30), BERLIN) == utc(2026, 1, 5, 10, 15)
    assert rule.next_after(utc(2026, 1, 5, 10, 15), BERLIN) == utc(2026, 1, 5, 10, 30)
    assert rule.previous_slot(utc(2026, 1, 5, 10, 15), BERLIN) == utc(2026, 1, 5, 10, 15)
    assert rule.previous_slot(utc(2026, 1, 5, 10, 29, 59), BERLIN) == utc(2026, 1, 5, 10, 15)


def test_interval_hours_aligned_to_local_midnight_and_unaffected_by_dst() -> None:
    rule = parse_rule("interval", {"hours": 6})
    got = slots(rule, utc(2026, 3, 28, 0, 0), utc(2026, 3, 30, 0, 0), BERLIN)
    # winter: on local midnight, 06, 12, 18; after the change one hour later on the clock
    assert walls(got, BERLIN)[:4] == [
        "2026-03-28 06:00 CET",
        "2026-03-28 12:00 CET",
        "2026-03-28 18:00 CET",
        "2026-03-29 00:00 CET",
    ]
    assert walls(got, BERLIN)[4] == "2026-03-29 07:00 CEST"
    assert all(b - a == timedelta(hours=6) for a, b in itertools.pairwise(got))
    back = slots(rule, utc(2026, 10, 24, 0, 0), utc(2026, 10, 27, 0, 0), BERLIN)
    assert all(b - a == timedelta(hours=6) for a, b in itertools.pairwise(back))


def test_interval_in_new_york_across_both_changes() -> None:
    rule = parse_rule("interval", {"minutes": 60})
    for start in (utc(2026, 3, 7, 12), utc(2026, 10, 31, 12)):
        got = slots(rule, start, start + timedelta(days=2), NEW_YORK)
        assert len(got) == 48
        assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(got))
        assert all(t.astimezone(NEW_YORK).minute == 0 for t in got)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"minutes": 0},
        {"minutes": -5},
        {"minutes": "abc"},
        {"minutes": True},
        {"hours": 800},
        {"minutes": 1.5},
    ],
)
def test_interval_bad_params(params: dict[str, object]) -> None:
    with pytest.raises(InvalidSchedule) as err:
        parse_rule("interval", params)
    assert err.value.hint


# ---------------------------------------------------------------------------------------------
# Daily


def test_daily_several_times() -> None:
    rule = parse_rule("daily", {"times": ["18:00", "8:00", "08:00"]})
    assert rule == DailyRule((datetime(1, 1, 1, 8).time(), datetime(1, 1, 1, 18).time()))
    got = slots(rule, utc(2026, 6, 1), utc(2026, 6, 3), BERLIN)
    assert walls(got, BERLIN) == [
        "2026-06-01 08:00 CEST",
        "2026-06-01 18:00 CEST",
        "2026-06-02 08:00 CEST",
        "2026-06-02 18:00 CEST",
    ]


@pytest.mark.parametrize(
    ("tz", "start", "expected"),
    [
        # spring forward: 02:30 does not exist; it runs once, at 03:00 (the first instant after the gap)
        (
            BERLIN,
            utc(2026, 3, 27),
            [
                "2026-03-27 02:30 CET",
                "2026-03-28 02:30 CET",
                "2026-03-29 03:00 CEST",
                "2026-03-30 02:30 CEST",
            ],
        ),
        # fall back: 02:30 happens twice; it runs once, at the first (summer time) occurrence
        (
            BERLIN,
            utc(2026, 10, 23),
            [
                "2026-10-23 02:30 CEST",
                "2026-10-24 02:30 CEST",
                "2026-10-25 02:30 CEST",
                "2026-10-26 02:30 CET",
            ],
        ),
        (
            NEW_YORK,
            utc(2026, 3, 6, 12),
            ["2026-03-07 02:30 EST", "2026-03-08 03:00 EDT", "2026-03-09 02:30 EDT", "2026-03-10 02:30 EDT"],
        ),
    ],
)
def test_daily_0230_runs_exactly_once_on_dst_days(tz: ZoneInfo, start: datetime, expected: list[str]) -> None:
    rule = parse_rule("daily", {"times": ["02:30"]})
    got = slots(rule, start, start + timedelta(days=4) - timedelta(minutes=1), tz)
    assert walls(got, tz) == expected


def test_daily_new_york_fall_back_ambiguous_0130_runs_once_first_occurrence() -> None:
    rule = parse_rule("daily", {"times": ["01:30"]})
    got = slots(rule, utc(2026, 10, 31, 12), utc(2026, 11, 2, 12), NEW_YORK)
    assert got == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    assert walls(got, NEW_YORK) == ["2026-11-01 01:30 EDT", "2026-11-02 01:30 EST"]


def test_two_times_in_the_same_gap_become_one_slot() -> None:
    rule = parse_rule("daily", {"times": ["02:15", "02:45", "03:00"]})
    got = slots(rule, utc(2026, 3, 28, 12), utc(2026, 3, 29, 12), BERLIN)
    assert walls(got, BERLIN) == ["2026-03-29 03:00 CEST"]


def test_previous_slot_daily_and_around_dst() -> None:
    rule = parse_rule("daily", {"times": ["22:00"]})
    assert rule.previous_slot(local(BERLIN, 2026, 6, 2, 21, 0), BERLIN) == local(BERLIN, 2026, 6, 1, 22, 0)
    assert rule.previous_slot(local(BERLIN, 2026, 6, 2, 22, 0), BERLIN) == local(BERLIN, 2026, 6, 2, 22, 0)
    gap = parse_rule("daily", {"times": ["02:30"]})
    assert gap.previous_slot(utc(2026, 3, 29, 0, 59), BERLIN) == local(BERLIN, 2026, 3, 28, 2, 30)
    assert gap.previous_slot(utc(2026, 3, 29, 1, 0), BERLIN) == utc(2026, 3, 29, 1, 0)
    # in the repeated hour, the second 02:30 is not a slot: the previous one is the first
    assert gap.previous_slot(local(BERLIN, 2026, 10, 25, 2, 45, fold=1), BERLIN) == utc(2026, 10, 25, 0, 30)


@pytest.mark.parametrize(
    "params",
    [{}, {"times": []}, {"times": ["25:00"]}, {"times": ["12:60"]}, {"times": ["noon"]}, {"times": 5}],
)
def test_daily_bad_times(params: dict[str, object]) -> None:
    with pytest.raises(InvalidSchedule):
        parse_rule("daily", params)


# ---------------------------------------------------------------------------------------------
# Weekly


def test_weekly_chosen_weekdays_with_names_and_numbers() -> None:
    rule = parse_rule("weekly", {"weekdays": [0, "wed", "Friday"], "times": ["09:00"]})
    assert isinstance(rule, WeeklyRule) and rule.weekdays == (0, 2, 4)
    got = slots(rule, utc(2026, 6, 1), utc(2026, 6, 14), BERLIN)  # Monday 1 June 2026
    assert [t.astimezone(BERLIN).strftime("%a %d") for t in got] == [
        "Mon 01",
        "Wed 03",
        "Fri 05",
        "Mon 08",
        "Wed 10",
        "Fri 12",
    ]


def test_weekly_once_a_week_over_dst() -> None:
    rule = parse_rule("weekly", {"weekdays": [6], "times": ["02:30"]})  # Sundays, as the DST changes
    got = slots(rule, utc(2026, 3, 20), utc(2026, 4, 6), BERLIN)
    assert walls(got, BERLIN) == ["2026-03-22 02:30 CET", "2026-03-29 03:00 CEST", "2026-04-05 02:30 CEST"]


@pytest.mark.parametrize("weekdays", [[7], [-1], ["someday"], []])
def test_weekly_bad_weekdays(weekdays: list[object]) -> None:
    with pytest.raises(InvalidSchedule):
        parse_rule("weekly", {"weekdays": weekdays, "times": ["09:00"]})


# ---------------------------------------------------------------------------------------------
# Monthly, month ends, leap days


def test_monthly_last_day_of_each_month_including_leap_february() -> None:
    rule = parse_rule("monthly", {"days": [-1], "times": ["18:00"]})
    got = slots(rule, utc(2027, 12, 1), utc(2028, 12, 31, 23), BERLIN)
    assert [t.astimezone(BERLIN).strftime("%Y-%m-%d") for t in got][:5] == [
        "2027-12-31",
        "2028-01-31",
        "2028-02-29",
        "2028-03-31",
        "2028-04-30",
    ]
    assert len(got) == 13
    non_leap = slots(rule, utc(2026, 2, 1), utc(2026, 3, 1), BERLIN)
    assert [t.astimezone(BERLIN).strftime("%m-%d") for t in non_leap] == ["02-28"]


def test_monthly_day_31_skips_short_months_and_day_29_needs_a_leap_year() -> None:
    rule = parse_rule("monthly", {"days": [31], "times": ["12:00"]})
    got = slots(rule, utc(2026, 1, 1), utc(2026, 12, 31, 23), BERLIN)
    assert [t.astimezone(BERLIN).month for t in got] == [1, 3, 5, 7, 8, 10, 12]
    feb29 = parse_rule("monthly", {"days": [29], "times": ["12:00"]})
    assert feb29.next_after(utc(2026, 2, 1), BERLIN) == local(BERLIN, 2026, 3, 29, 12)
    assert feb29.next_after(utc(2028, 2, 1), BERLIN) == local(BERLIN, 2028, 2, 29, 12)


def test_monthly_day_and_last_day_that_coincide_run_once() -> None:
    rule = parse_rule("monthly", {"days": [30, "last"], "times": ["07:00"]})
    assert isinstance(rule, MonthlyRule)
    got = slots(rule, utc(2026, 4, 1), utc(2026, 5, 31, 23), BERLIN)
    assert [t.astimezone(BERLIN).strftime("%m-%d") for t in got] == ["04-30", "05-30", "05-31"]


def test_monthly_previous_slot_across_year_end() -> None:
    rule = parse_rule("monthly", {"days": [-1], "times": ["18:00"]})
    assert rule.previous_slot(utc(2027, 1, 15), NEW_YORK) == local(NEW_YORK, 2026, 12, 31, 18)


@pytest.mark.parametrize("days", [[0], [32], [-2], ["first"], []])
def test_monthly_bad_days(days: list[object]) -> None:
    with pytest.raises(InvalidSchedule):
        parse_rule("monthly", {"days": days, "times": ["07:00"]})


# ---------------------------------------------------------------------------------------------
# Cron


def cron_walls(expr: str, start: datetime, end: datetime, tz: ZoneInfo = UTC_ZONE) -> list[str]:
    return walls(slots(parse_cron(expr), start, end, tz), tz)


def test_cron_fields_ranges_steps_lists_and_names() -> None:
    rule = parse_cron("5/20 9-17/4 * jan-mar mon-fri")
    assert rule.minutes == {5, 25, 45}
    assert rule.hours == {9, 13, 17}
    assert rule.months == {1, 2, 3}
    assert rule.days_of_week == {1, 2, 3, 4, 5}
    assert parse_cron("0,30 */6 1,15 * *").hours == {0, 6, 12, 18}
    assert parse_cron("0 0 * * 7").days_of_week == {0}  # 7 is Sunday too
    assert parse_cron("0 0 * * 5-7").days_of_week == {5, 6, 0}
    assert parse_cron("0 0 * * SUN,sat").days_of_week == {0, 6}


def test_cron_next_runs() -> None:
    assert cron_walls("30 22 * * 1-5", utc(2026, 6, 5), utc(2026, 6, 9)) == [
        "2026-06-05 22:30 UTC",  # Friday
        "2026-06-08 22:30 UTC",  # Monday
    ]
    assert cron_walls("*/20 * * * *", utc(2026, 6, 5, 23, 10), utc(2026, 6, 6, 0, 30)) == [
        "2026-06-05 23:20 UTC",
        "2026-06-05 23:40 UTC",
        "2026-06-06 00:00 UTC",
        "2026-06-06 00:20 UTC",
    ]


def test_cron_vixie_day_rule() -> None:
    # both day fields restricted: the 13th OR any Friday
    got = cron_walls("0 0 13 * 5", utc(2026, 2, 1), utc(2026, 3, 1))
    assert [g[:10] for g in got] == ["2026-02-06", "2026-02-13", "2026-02-20", "2026-02-27"]
    got = cron_walls("0 0 1 * 1", utc(2026, 5, 31), utc(2026, 6, 16))
    assert [g[:10] for g in got] == ["2026-06-01", "2026-06-08", "2026-06-15"]
    # one field starts with '*': both must match (odd days that are Mondays)
    got = cron_walls("0 0 */2 * 1", utc(2026, 5, 31), utc(2026, 7, 1))
    assert [g[:10] for g in got] == ["2026-06-01", "2026-06-15", "2026-06-29"]
    # dom only / dow only
    assert [g[:10] for g in cron_walls("0 0 * * 3", utc(2026, 6, 1), utc(2026, 6, 15))] == [
        "2026-06-03",
        "2026-06-10",
    ]


def test_cron_leap_day_and_century_rule() -> None:
    rule = parse_cron("0 12 29 2 *")
    assert rule.next_after(utc(2025, 1, 1), UTC_ZONE) == utc(2028, 2, 29, 12)
    assert rule.next_after(utc(2096, 3, 1), UTC_ZONE) == utc(2104, 2, 29, 12)  # 2100 is not a leap year
    assert rule.previous_slot(utc(2028, 2, 28), UTC_ZONE) == utc(2024, 2, 29, 12)


def test_cron_macros() -> None:
    assert parse_cron("@daily").hours == {0}
    assert parse_cron("@hourly").hours == set(range(24))
    assert parse_cron("@weekly").days_of_week == {0}
    assert parse_cron("@monthly").days_of_month == {1}
    assert parse_cron("@yearly").months == {1}
    assert isinstance(parse_rule("cron", {"expression": "@annually"}), CronRule)


def test_cron_every_15_minutes_over_dst_changes() -> None:
    rule = parse_cron("*/15 * * * *")
    spring = slots(rule, local(BERLIN, 2026, 3, 29, 1, 30), local(BERLIN, 2026, 3, 29, 3, 30), BERLIN)
    assert walls(spring, BERLIN) == [
        "2026-03-29 01:45 CET",
        "2026-03-29 03:00 CEST",  # 02:00 .. 02:45 do not exist; they all become this one run
        "2026-03-29 03:15 CEST",
        "2026-03-29 03:30 CEST",
    ]
    autumn = slots(rule, utc(2026, 10, 24, 23, 50), utc(2026, 10, 25, 2, 0), BERLIN)
    # the repeated hour runs once (its first occurrence); instants never repeat or go backwards
    assert len(autumn) == len(set(autumn)) and autumn == sorted(autumn)
    assert walls(autumn, BERLIN).count("2026-10-25 02:30 CEST") == 1
    assert "2026-10-25 02:30 CET" not in walls(autumn, BERLIN)


def test_cron_dst_new_york() -> None:
    rule = parse_cron("30 2 * * *")
    got = slots(rule, utc(2026, 3, 7), utc(2026, 3, 10), NEW_YORK)
    assert walls(got, NEW_YORK) == ["2026-03-07 02:30 EST", "2026-03-08 03:00 EDT", "2026-03-09 02:30 EDT"]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 0 * *", "fields instead of five"),
        ("0 0 * * * *", "fields instead of five"),
        ("60 0 * * *", "out of range"),
        ("0 24 * * *", "out of range"),
        ("0 0 0 * *", "out of range"),
        ("0 0 * 13 *", "out of range"),
        ("0 0 * * 8", "out of range"),
        ("*/0 * * * *", "not a valid step"),
        ("5-1 * * * *", "runs backwards"),
        ("0 0 * foo *", "not a valid month"),
        ("0 0 1,,2 * *", "empty item"),
        ("0 0 31 2 *", "never runs"),
        ("0 0 30,31 2 *", "never runs"),
        ("0 0 31 4,6,9,11 *", "never runs"),
        ("@reboot", "not supported"),
    ],
)
def test_cron_errors(expr: str, message: str) -> None:
    with pytest.raises(InvalidSchedule, match=message) as err:
        parse_cron(expr)
    assert err.value.hint


def test_cron_needs_an_expression_and_unknown_kinds_are_refused() -> None:
    with pytest.raises(InvalidSchedule, match="expression"):
        parse_rule("cron", {})
    with pytest.raises(InvalidSchedule, match="not a kind of schedule"):
        parse_rule("file-change", {})


# ---------------------------------------------------------------------------------------------
# Consistency of next_after / previous_slot for every kind


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("interval", {"minutes": 45}),
        ("daily", {"times": ["02:30", "23:59"]}),
        ("weekly", {"weekdays": [6], "times": ["02:00", "02:30"]}),
        ("monthly", {"days": [-1, 25], "times": ["01:30"]}),
        ("cron", {"expression": "*/20 1-3 * * *"}),
    ],
)
@pytest.mark.parametrize("tz", [BERLIN, NEW_YORK])
def test_previous_and_next_agree(kind: str, params: dict[str, object], tz: ZoneInfo) -> None:
    rule = parse_rule(kind, params)
    for start in (utc(2026, 3, 7, 0), utc(2026, 3, 28, 0), utc(2026, 10, 24, 0), utc(2026, 10, 31, 0)):
        t = start
        for _ in range(2 * 24 * 4):  # every 15 minutes for two days around each change
            prev = rule.previous_slot(t, tz)
            nxt = rule.next_after(t, tz)
            assert prev is not None and prev <= t < nxt
            assert rule.next_after(prev, tz) == nxt
            t += timedelta(minutes=15)


# ---------------------------------------------------------------------------------------------
# Plain English and the local zone


@pytest.mark.parametrize(
    ("kind", "params", "text"),
    [
        ("interval", {"minutes": 1}, "every minute"),
        ("interval", {"minutes": 15}, "every 15 minutes"),
        ("interval", {"hours": 1}, "every hour"),
        ("interval", {"minutes": 120}, "every 2 hours"),
        ("daily", {"times": ["22:00"]}, "every day at 22:00"),
        ("daily", {"times": ["08:00", "12:00", "18:00"]}, "every day at 08:00, 12:00 and 18:00"),
        (
            "weekly",
            {"weekdays": [0, 1, 2, 3, 4], "times": ["18:00"]},
            "every weekday (Monday to Friday) at 18:00",
        ),
        (
            "weekly",
            {"weekdays": [0, 2, 4], "times": ["09:00"]},
            "every Monday, Wednesday and Friday at 09:00",
        ),
        ("weekly", {"weekdays": list(range(7)), "times": ["09:00"]}, "every day at 09:00"),
        ("monthly", {"days": [-1], "times": ["18:00"]}, "on the last day of each month at 18:00"),
        ("monthly", {"days": [1, 15], "times": ["03:00"]}, "on the 1st and 15th of each month at 03:00"),
        (
            "monthly",
            {"days": [22, -1], "times": ["03:00"]},
            "on the 22nd and the last day of each month at 03:00",
        ),
        (
            "monthly",
            {"days": [31], "times": ["03:00"]},
            "on the 31st of each month at 03:00 (skipped in months without that day)",
        ),
        ("cron", {"expression": "0  3 * * 1-5"}, "on the cron schedule “0 3 * * 1-5”"),
    ],
)
def test_describe(kind: str, params: dict[str, object], text: str) -> None:
    assert describe(parse_rule(kind, params)) == text


def test_local_zone_follows_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    assert local_zone() == NEW_YORK
    monkeypatch.setenv("TZ", ":Europe/Berlin")
    assert local_zone() == BERLIN
