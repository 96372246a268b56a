"""Schedule rules: pure functions from a trigger's ``(kind, params)`` to the instants it runs.

A :class:`Rule` has *slots*, the instants at which the plan should run. ``next_after(t, tz)`` is
the first slot strictly after ``t``; ``previous_slot(t, tz)`` the last slot at or before ``t`` (the
scheduler uses it to see whether a slot was missed). Both take and return timezone-aware
datetimes; results are in UTC.

Kinds and their params (the model's ``Trigger``):

- ``interval``: ``minutes`` (or ``hours``). Slots lie on a fixed grid of that period, aligned to
  local midnight in standard (winter) time: "every 6 hours" runs at 00:00, 06:00, 12:00, 18:00 in
  winter and one hour later on the clock in summer, always exactly six hours apart.
- ``daily``: ``times``, a list of ``"HH:MM"``.
- ``weekly``: ``weekdays`` (0 = Monday .. 6 = Sunday, or names such as ``"mon"``) and ``times``.
- ``monthly``: ``days`` (1..31, or -1 for the last day of the month) and ``times``. A day the month
  does not have (the 31st in April) is skipped, as cron does; -1 always runs.
- ``cron``: ``expression``, five fields (minute hour day-of-month month day-of-week) with ``*``,
  ranges ``a-b``, steps ``*/n`` and ``a-b/n``, lists ``a,b``, month and weekday names, 0 or 7 for
  Sunday, and the macros ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``. As in
  Vixie cron, when both day fields are restricted a day matches if *either* matches; when one
  starts with ``*`` both must match.

Calendar rules work in local wall-clock time. On a spring-forward day a time inside the gap
(02:30 in Europe/Berlin) runs once, at the first instant after the gap (03:00); on a fall-back day
a repeated time runs once, at its first occurrence. Several local times that fall into the same
gap become a single slot.
"""

from __future__ import annotations

import abc
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from safekeep.common.errors import SafekeepError

log = logging.getLogger(__name__)

SCHEDULE_KINDS = frozenset({"interval", "daily", "weekly", "monthly", "cron"})
"""Trigger kinds that are time schedules (``file-change`` and ``disk-connected`` are events)."""

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
LAST_DAY = -1
"""In a monthly rule's ``days``: the last day of the month."""

_HORIZON_DAYS = 29 * 366  # longer than any gap between matching days of a valid rule
_MAX_INTERVAL_MINUTES = 31 * 24 * 60


class InvalidSchedule(SafekeepError):
    """A schedule trigger's parameters cannot be understood."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message, hint=hint or "Correct the plan's schedule and save it again.")


# ---------------------------------------------------------------------------------------------
# Local time <-> UTC


def resolve_local(wall: datetime, tz: tzinfo) -> datetime:
    """The UTC instant at which the naive local time ``wall`` happens in ``tz``.

    An ambiguous time (repeated when clocks go back) gives its first occurrence; a time that does
    not exist (skipped when clocks go forward) gives the first instant after the gap.
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    other = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = min(first, other), max(first, other)
    # The wall time of instants in [lo, hi] is below ``wall`` before the transition and above it
    # from the transition on: find the transition to the second.
    lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
    while lo_s < hi_s:
        mid = (lo_s + hi_s) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(tz).replace(tzinfo=None) > wall:
            hi_s = mid
        else:
            lo_s = mid + 1
    return datetime.fromtimestamp(lo_s, UTC)


def _aware(t: datetime, what: str) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {t!r}")
    return t.astimezone(UTC)


def local_zone() -> tzinfo:
    """The computer's time zone, as a zone with its daylight-saving rules where it can be found."""
    name = os.environ.get("TZ", "").lstrip(":")
    candidates = [name] if name else []
    try:
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for key in candidates:
        if not key or key.startswith("/"):
            continue
        try:
            return ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    try:
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        pass
    fixed = datetime.now().astimezone().tzinfo
    log.warning("the local time zone's daylight-saving rules are unknown; using a fixed UTC offset")
    return fixed if fixed is not None else UTC


# ---------------------------------------------------------------------------------------------
# Rules


class Rule(abc.ABC):
    """A schedule: a set of instants (slots) at which a plan should run."""

    @abc.abstractmethod
    def next_after(self, after: datetime, tz: tzinfo) -> datetime:
        """The first slot strictly after ``after`` (aware), in UTC."""

    @abc.abstractmethod
    def previous_slot(self, at: datetime, tz: tzinfo) -> datetime | None:
        """The last slot at or before ``at`` (aware), in UTC; None if there is none."""

    @abc.abstractmethod
    def describe(self) -> str:
        """The schedule in plain English, e.g. "every day at 22:00"."""


def describe(rule: Rule) -> str:
    """The schedule in plain English for the window and the command line."""
    return rule.describe()


@dataclass(frozen=True, slots=True)
class IntervalRule(Rule):
    """Every ``minutes`` minutes, on a grid aligned to local standard-time midnight."""

    minutes: int

    def _grid(self, t: datetime, tz: tzinfo) -> tuple[datetime, int]:
        local = t.astimezone(tz)
        std = (local.utcoffset() or timedelta(0)) - (local.dst() or timedelta(0))
        anchor = datetime(1970, 1, 1, tzinfo=UTC) - std
        return anchor, self.minutes * 60

    def next_after(self, after: datetime, tz: tzinfo) -> datetime:
        after = _aware(after, "after")
        anchor, period = self._grid(after, tz)
        elapsed = int((after - anchor).total_seconds() // 1)
        k = elapsed // period + 1
        return anchor + timedelta(seconds=k * period)

    def previous_slot(self, at: datetime, tz: tzinfo) -> datetime | None:
        at = _aware(at, "at")
        anchor, period = self._grid(at, tz)
        seconds = (at - anchor).total_seconds()
        k = int(seconds // period)
        return anchor + timedelta(seconds=k * period)

    def describe(self) -> str:
        if self.minutes % 60 == 0:
            hours = self.minutes // 60
            return "every hour" if hours == 1 else f"every {hours} hours"
        return "every minute" if self.minutes == 1 else f"every {self.minutes} minutes"


class _CalendarRule(Rule):
    """A rule whose slots are local times of day on matching days."""

    @abc.abstractmethod
    def _times_on(self, day: date) -> Sequence[time]:
        """The local times of day (ascending) at which the rule runs on ``day``; empty if none."""

    def next_after(self, after: datetime, tz: tzinfo) -> datetime:
        after = _aware(after, "after")
        day = after.astimezone(tz).date() - timedelta(days=1)
        for _ in range(_HORIZON_DAYS):
            for tod in self._times_on(day):
                slot = resolve_local(datetime.combine(day, tod), tz)
                if slot > after:
                    return slot
            day += timedelta(days=1)
        raise InvalidSchedule(f"The schedule {self.describe()!r} never runs.")

    def previous_slot(self, at: datetime, tz: tzinfo) -> datetime | None:
        at = _aware(at, "at")
        day = at.astimezone(tz).date() + timedelta(days=1)
        for _ in range(_HORIZON_DAYS):
            for tod in reversed(self._times_on(day)):
                slot = resolve_local(datetime.combine(day, tod), tz)
                if slot <= at:
                    return slot
            try:
                day -= timedelta(days=1)
            except OverflowError:
                return None
        return None


@dataclass(frozen=True, slots=True)
class DailyRule(_CalendarRule):
    times: tuple[time, ...]

    def _times_on(self, day: date) -> Sequence[time]:
        return self.times

    def describe(self) -> str:
        return f"every day at {_times_text(self.times)}"


@dataclass(frozen=True, slots=True)
class WeeklyRule(_CalendarRule):
    """On the chosen weekdays (0 = Monday) at the given times."""

    weekdays: tuple[int, ...]
    times: tuple[time, ...]

    def _times_on(self, day: date) -> Sequence[time]:
        return self.times if day.weekday() in self.weekdays else ()

    def describe(self) -> str:
        days = set(self.weekdays)
        if len(days) == 7:
            which = "every day"
        elif days == {0, 1, 2, 3, 4}:
            which = "every weekday (Monday to Friday)"
        else:
            which = "every " + _join([WEEKDAY_NAMES[d] for d in sorted(days)])
        return f"{which} at {_times_text(self.times)}"


@dataclass(frozen=True, slots=True)
class MonthlyRule(_CalendarRule):
    """On the given days of each month (-1 = the last day) at the given times."""

    days: tuple[int, ...]
    times: tuple[time, ...]

    def _times_on(self, day: date) -> Sequence[time]:
        if day.day in self.days:
            return self.times
        if LAST_DAY in self.days and (day + timedelta(days=1)).month != day.month:
            return self.times
        return ()

    def describe(self) -> str:
        names = [_ordinal(d) for d in sorted(d for d in self.days if d != LAST_DAY)]
        if LAST_DAY in self.days:
            names.append("the last day" if names else "last day")
        text = f"on the {_join(names)} of each month at {_times_text(self.times)}"
        if any(d > 28 for d in self.days):
            text += " (skipped in months without that day)"
        return text


@dataclass(frozen=True, slots=True)
class CronRule(_CalendarRule):
    """A five-field cron expression, read in local time."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0 = Sunday .. 6 = Saturday, as in cron
    dom_star: bool
    dow_star: bool

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days_of_month
        dow = (day.weekday() + 1) % 7 in self.days_of_week
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow

    def _times_on(self, day: date) -> Sequence[time]:
        if not self._day_matches(day):
            return ()
        return [time(h, m) for h in sorted(self.hours) for m in sorted(self.minutes)]

    def describe(self) -> str:
        return f"on the cron schedule “{self.expression}”"


# ---------------------------------------------------------------------------------------------
# Parsing


def parse_rule(kind: str, params: Mapping[str, Any]) -> Rule:
    """The rule for a schedule trigger, or :class:`InvalidSchedule` saying what is wrong."""
    if kind == "interval":
        return _parse_interval(params)
    if kind == "daily":
        return DailyRule(_parse_times(params))
    if kind == "weekly":
        return WeeklyRule(_parse_weekdays(params), _parse_times(params))
    if kind == "monthly":
        return MonthlyRule(_parse_days(params), _parse_times(params))
    if kind == "cron":
        expression = params.get("expression")
        if not isinstance(expression, str):
            raise InvalidSchedule("A cron schedule needs an 'expression', such as \"0 22 * * *\".")
        return parse_cron(expression)
    raise InvalidSchedule(
        f"{kind!r} is not a kind of schedule.",
        hint="Use one of: " + ", ".join(sorted(SCHEDULE_KINDS)) + ".",
    )


def _int(value: object, what: str) -> int:
    if isinstance(value, bool):
        raise InvalidSchedule(f"{what} must be a whole number, not {value!r}.")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise InvalidSchedule(f"{what} must be a whole number, not {value!r}.")


def _parse_interval(params: Mapping[str, Any]) -> IntervalRule:
    if "minutes" in params:
        minutes = _int(params["minutes"], "The interval in minutes")
    elif "hours" in params:
        minutes = _int(params["hours"], "The interval in hours") * 60
    else:
        raise InvalidSchedule("An interval schedule needs 'minutes' (or 'hours').")
    if not 1 <= minutes <= _MAX_INTERVAL_MINUTES:
        raise InvalidSchedule(
            f"An interval of {minutes} minutes is not possible.",
            hint="Choose between 1 minute and 31 days.",
        )
    return IntervalRule(minutes)


def _list(params: Mapping[str, Any], key: str, example: str) -> list[Any]:
    value = params.get(key)
    if value is None:
        raise InvalidSchedule(f"The schedule needs '{key}', for example {example}.")
    items = [value] if isinstance(value, str | int) else value
    if not isinstance(items, Sequence) or isinstance(items, bytes) or not items:
        raise InvalidSchedule(f"'{key}' must be a non-empty list, for example {example}.")
    return list(items)


def _parse_times(params: Mapping[str, Any]) -> tuple[time, ...]:
    out: set[time] = set()
    for item in _list(params, "times", '["22:00"]'):
        m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", str(item))
        if not m or int(m[1]) > 23 or int(m[2]) > 59:
            raise InvalidSchedule(
                f"{item!r} is not a time of day.",
                hint='Write times as HH:MM on a 24-hour clock, e.g. "22:00".',
            )
        out.add(time(int(m[1]), int(m[2])))
    return tuple(sorted(out))


_WEEKDAY_KEYS = {key: i for i, name in enumerate(WEEKDAY_NAMES) for key in (name.lower(), name[:3].lower())}


def _parse_weekdays(params: Mapping[str, Any]) -> tuple[int, ...]:
    out: set[int] = set()
    for item in _list(params, "weekdays", "[0, 2, 4] (Monday, Wednesday, Friday)"):
        if isinstance(item, str) and item.strip().lower() in _WEEKDAY_KEYS:
            out.add(_WEEKDAY_KEYS[item.strip().lower()])
            continue
        day = _int(item, "A weekday")
        if not 0 <= day <= 6:
            raise InvalidSchedule(f"{day} is not a weekday.", hint="Use 0 for Monday up to 6 for Sunday.")
        out.add(day)
    return tuple(sorted(out))


def _parse_days(params: Mapping[str, Any]) -> tuple[int, ...]:
    out: set[int] = set()
    for item in _list(params, "days", "[1] or [-1] for the last day of the month"):
        if isinstance(item, str) and item.strip().lower() == "last":
            out.add(LAST_DAY)
            continue
        day = _int(item, "A day of the month")
        if day != LAST_DAY and not 1 <= day <= 31:
            raise InvalidSchedule(
                f"{day} is not a day of the month.", hint="Use 1 to 31, or -1 for the last day of the month."
            )
        out.add(day)
    return tuple(sorted(out))


# Cron


_MONTHS = {
    n: i + 1
    for i, n in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_DOWS = {n: i for i, n in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_CRON_HINT = (
    'A cron expression has five fields: minute hour day-of-month month day-of-week, e.g. "30 22 * * 1-5" '
    "for 22:30 on weekdays."
)


@dataclass(frozen=True, slots=True)
class _CronField:
    name: str
    lo: int
    hi: int
    names: Mapping[str, int]

    def value(self, text: str, expr: str) -> int:
        key = text.lower()
        if key in self.names:
            return self.names[key]
        if not text.isdigit():
            raise InvalidSchedule(
                f"In the cron expression “{expr}”, {text!r} is not a valid {self.name}.", hint=_CRON_HINT
            )
        value = int(text)
        if not self.lo <= value <= self.hi:
            raise InvalidSchedule(
                f"In the cron expression “{expr}”, the {self.name} {value} is out of range "
                f"({self.lo}-{self.hi}).",
                hint=_CRON_HINT,
            )
        return value

    def parse(self, text: str, expr: str) -> frozenset[int]:
        values: set[int] = set()
        for item in text.split(","):
            if not item:
                raise InvalidSchedule(
                    f"In the cron expression “{expr}”, the {self.name} field has an empty item.",
                    hint=_CRON_HINT,
                )
            base, slash, step_text = item.partition("/")
            step = 1
            if slash:
                if not step_text.isdigit() or int(step_text) == 0:
                    raise InvalidSchedule(
                        f"In the cron expression “{expr}”, {step_text!r} is not a valid step.",
                        hint=_CRON_HINT,
                    )
                step = int(step_text)
            if base == "*":
                first, last = self.lo, self.hi
            elif "-" in base:
                a, _, b = base.partition("-")
                first, last = self.value(a, expr), self.value(b, expr)
                if first > last:
                    raise InvalidSchedule(
                        f"In the cron expression “{expr}”, the range {base} runs backwards.",
                        hint="Write ranges from low to high, e.g. 1-5.",
                    )
            else:
                first = self.value(base, expr)
                last = self.hi if slash else first
            values.update(range(first, last + 1, step))
        return frozenset(values)


_FIELDS = (
    _CronField("minute", 0, 59, {}),
    _CronField("hour", 0, 23, {}),
    _CronField("day of month", 1, 31, {}),
    _CronField("month", 1, 12, _MONTHS),
    _CronField("day of week", 0, 7, _DOWS),
)


def parse_cron(expression: str) -> CronRule:
    """A :class:`CronRule` for a five-field cron expression (or a macro such as ``@daily``)."""
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text.lower() not in _MACROS:
            raise InvalidSchedule(
                f"The cron macro {text!r} is not supported.",
                hint="Use @hourly, @daily, @weekly, @monthly or @yearly, or five fields.",
            )
        fields = _MACROS[text.lower()].split()
    else:
        fields = text.split()
    if len(fields) != 5:
        raise InvalidSchedule(
            f"The cron expression “{text}” has {len(fields)} fields instead of five.", hint=_CRON_HINT
        )
    parsed = [spec.parse(f, text) for f, spec in zip(fields, _FIELDS, strict=True)]
    dows = frozenset(d % 7 for d in parsed[4])
    rule = CronRule(
        expression=text,
        minutes=parsed[0],
        hours=parsed[1],
        days_of_month=parsed[2],
        months=parsed[3],
        days_of_week=dows,
        dom_star=fields[2].startswith("*"),
        dow_star=fields[4].startswith("*"),
    )
    # 28 years hold every combination of weekday and date (leap years included).
    day = date(2001, 1, 1)
    for _ in range(28 * 366):
        if rule._day_matches(day):
            return rule
        day += timedelta(days=1)
    raise InvalidSchedule(
        f"The cron expression “{text}” never runs (no month has that day).",
        hint="Check the day-of-month and month fields; for the end of a month use a monthly schedule "
        "on the last day.",
    )


# ---------------------------------------------------------------------------------------------
# Plain English


def _times_text(times: Sequence[time]) -> str:
    return _join([t.strftime("%H:%M") for t in times])


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
