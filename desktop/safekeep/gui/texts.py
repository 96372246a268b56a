"""Numbers and times in words for the windows: sizes, ages, durations.

Kept apart from the widgets so the dashboard, the tray tooltip and the wizard say things the
same way. Everything goes through ``QCoreApplication.translate``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from PySide6.QtCore import QCoreApplication


def tr(text: str) -> str:
    return QCoreApplication.translate("Texts", text)


def size(n: int) -> str:
    value = float(n)
    for unit in (tr("bytes"), "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == tr("bytes") else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n}"  # pragma: no cover


def _count(n: int, one: str, many: str) -> str:
    return tr(one) if n == 1 else tr(many).format(n=n)


def age(then: datetime, now: datetime) -> str:
    """``5 minutes ago``, ``yesterday``, ``3 days ago``."""
    seconds = (now - then).total_seconds()
    if seconds < 60:
        return tr("just now")
    if seconds < 3600:
        return _count(int(seconds // 60), "1 minute ago", "{n} minutes ago")
    if seconds < 86400:
        return _count(int(seconds // 3600), "1 hour ago", "{n} hours ago")
    days = int(seconds // 86400)
    if days == 1:
        return tr("yesterday")
    return tr("{n} days ago").format(n=days)


def when(then: datetime, now: datetime) -> str:
    """A time of day for today, ``tomorrow 22:00``, or a date."""
    local = then.astimezone()
    today = now.astimezone().date()
    if local.date() == today:
        return tr("today at {time}").format(time=local.strftime("%H:%M"))
    if local.date() == today + timedelta(days=1):
        return tr("tomorrow at {time}").format(time=local.strftime("%H:%M"))
    if local.date() == today - timedelta(days=1):
        return tr("yesterday at {time}").format(time=local.strftime("%H:%M"))
    return local.strftime("%Y-%m-%d %H:%M")


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return tr("{n} s").format(n=seconds)
    if seconds < 3600:
        return tr("{m} min {s} s").format(m=seconds // 60, s=seconds % 60)
    return tr("{h} h {m} min").format(h=seconds // 3600, m=(seconds % 3600) // 60)
