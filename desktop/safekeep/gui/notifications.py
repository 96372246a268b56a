"""Desktop notifications: a failed backup, and the first backup that succeeded.

On Linux a notification goes straight to the desktop's notification server over D-Bus (the
freedesktop ``org.freedesktop.Notifications.Notify`` call, sent with ``jeepney``; Qt's own D-Bus
module sends that call with the wrong argument types). Where there is no such server (Windows,
macOS, a desktop without one) the tray icon's balloon (:meth:`QSystemTrayIcon.showMessage`) is
used instead. Sending happens in the background: a D-Bus call may block.
"""

from __future__ import annotations

import enum
import logging
import sys
from dataclasses import dataclass

from PySide6.QtWidgets import QSystemTrayIcon

from safekeep.gui.background import Background

log = logging.getLogger(__name__)

APP_NAME = "Safekeep"
ICON_NAME = "safekeep"
TIMEOUT_MS = 10_000
NOTIFY_REPLY_TIMEOUT = 5.0


class Urgency(enum.IntEnum):
    """The freedesktop urgency levels."""

    LOW = 0
    NORMAL = 1
    CRITICAL = 2


@dataclass(frozen=True)
class Notification:
    title: str
    body: str
    urgency: Urgency = Urgency.NORMAL


def send_freedesktop(note: Notification) -> int:
    """Send ``note`` to the session bus's notification server; its id. Blocks; raises on failure.

    Raises ``ImportError`` without jeepney, ``KeyError``/``OSError`` without a session bus, and
    jeepney's ``DBusErrorResponse`` when no notification server answers.
    """
    # jeepney has no type information; Linux only, imported when a notification is sent
    from jeepney import DBusAddress, new_method_call  # type: ignore[import-untyped]  # noqa: PLC0415
    from jeepney.io.blocking import open_dbus_connection  # type: ignore[import-untyped]  # noqa: PLC0415

    address = DBusAddress(
        "/org/freedesktop/Notifications",
        bus_name="org.freedesktop.Notifications",
        interface="org.freedesktop.Notifications",
    )
    hints = {"urgency": ("y", int(note.urgency)), "desktop-entry": ("s", ICON_NAME)}
    message = new_method_call(
        address,
        "Notify",
        "susssasa{sv}i",
        (APP_NAME, 0, ICON_NAME, note.title, note.body, [], hints, TIMEOUT_MS),
    )
    with open_dbus_connection(bus="SESSION") as conn:
        reply = conn.send_and_get_reply(message, timeout=NOTIFY_REPLY_TIMEOUT)
    body = reply.body
    return int(body[0]) if body else 0


class Notifier:
    """Shows notifications: freedesktop D-Bus where there is one, else the tray's balloon."""

    def __init__(self, background: Background, tray: QSystemTrayIcon | None = None) -> None:
        self.background = background
        self.tray = tray
        self.enabled = True
        self.use_dbus = sys.platform.startswith("linux")
        self.sent: list[Notification] = []
        """What was shown (the latest last), for the windows' own record."""

    def notify(self, note: Notification) -> None:
        if not self.enabled:
            log.info("notifications are off; not shown: %s", note.title)
            return
        self.sent.append(note)
        if not self.use_dbus:
            self._balloon(note)
            return

        def failed(exc: BaseException) -> None:
            log.info("no desktop notification server (%s); using the tray icon's message", exc)
            self._balloon(note)

        self.background.run(lambda: send_freedesktop(note), None, failed)

    def _balloon(self, note: Notification) -> None:
        if self.tray is None or not self.tray.isVisible():
            log.warning("cannot show the notification %r: no notification server and no tray", note.title)
            return
        icon = (
            QSystemTrayIcon.MessageIcon.Critical
            if note.urgency is Urgency.CRITICAL
            else QSystemTrayIcon.MessageIcon.Information
        )
        self.tray.showMessage(note.title, note.body, icon, TIMEOUT_MS)
