"""RFC3339Nano timestamps as Go writes them, for snapshot, key and lock files.

Go's ``time.RFC3339Nano`` trims trailing zeros of the fraction and writes ``Z`` for a zero UTC
offset. Python datetimes carry microseconds; restic's nanoseconds are truncated when parsed
(these timestamps are informational, so that loses nothing a person can see). Tree nodes need
exact nanoseconds and use ``tree.GoTime`` instead.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)


def format_time(dt: datetime) -> str:
    if dt.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{dt.microsecond:06d}".rstrip("0")
    if frac:
        base += "." + frac
    offset = dt.utcoffset() or timedelta(0)
    if offset == timedelta(0):
        return base + "Z"
    total = int(offset.total_seconds())
    sign = "+" if total >= 0 else "-"
    total = abs(total)
    return f"{base}{sign}{total // 3600:02d}:{total % 3600 // 60:02d}"


def parse_time(text: str) -> datetime:
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(f"not an RFC3339 time: {text!r}")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    micro = int((m.group(7) or "0").ljust(9, "0")[:6])
    if m.group(8):
        tz: timezone = UTC
    else:
        delta = timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
        tz = timezone(delta if m.group(9) == "+" else -delta)
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)


def local_now(now: datetime) -> datetime:
    """``now`` expressed in the machine's local time zone, as restic records times."""
    return now.astimezone()
