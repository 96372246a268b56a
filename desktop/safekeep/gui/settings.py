"""The app's own settings, kept in the app database (``AppDatabase.get_setting``).

These are the settings of this computer's app, not of a plan: whether desktop notifications are
shown. Reading and writing them touches the database: call these in the background.
"""

from __future__ import annotations

from safekeep.gui.engine import Engine

NOTIFICATIONS = "gui.notifications"
"""``True`` (the default) or ``False``: desktop notifications on failure and first success."""


def notifications_enabled(engine: Engine) -> bool:
    return bool(engine.db.get_setting(NOTIFICATIONS, True))


def set_notifications(engine: Engine, enabled: bool) -> None:
    engine.db.set_setting(NOTIFICATIONS, bool(enabled))
    engine.audit_event("settings-change", "notifications", "success", enabled=bool(enabled))
