"""Start at login: make the desktop start Safekeep (its tray icon) when the person logs in.

Each system has its own place for this; :func:`enabled` and :func:`set_enabled` pick it:

* **Linux and other freedesktop systems**: an XDG autostart entry,
  ``$XDG_CONFIG_HOME/autostart/safekeep.desktop`` (``~/.config/autostart`` by default), as the
  XDG Autostart specification describes. Removing the file turns it off.
* **Windows**: the value ``Safekeep`` under ``HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\
  CurrentVersion\\Run`` holding the quoted command line (no administrator rights needed).
* **macOS**: a LaunchAgent, ``~/Library/LaunchAgents/org.safekeep.app.plist`` with
  ``RunAtLoad`` (launchd reads it at the next login).

The command started is :func:`command`: the frozen app's own executable, or this Python running
``-m safekeep`` (no arguments: the app). These calls touch the disk or the registry: call them in
the background.
"""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from safekeep.common.errors import SafekeepError

APP_ID = "safekeep"
LAUNCH_AGENT_LABEL = "org.safekeep.app"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
RUN_VALUE = "Safekeep"


class AutostartError(SafekeepError):
    """The login item could not be written or removed."""


def command() -> list[str]:
    """How to start the app: the frozen executable, or ``python -m safekeep``."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "safekeep"]


def desktop_entry(argv: Sequence[str]) -> str:
    """The XDG autostart entry that starts ``argv``."""
    return "\n".join(
        [
            "[Desktop Entry]",
            "Type=Application",
            "Name=Safekeep",
            "Comment=Keeps your files backed up",
            "Exec=" + " ".join(_desktop_quote(a) for a in argv),
            "Icon=safekeep",
            "Terminal=false",
            "Categories=Utility;Archiving;",
            "X-GNOME-Autostart-enabled=true",
            "",
        ]
    )


def _desktop_quote(arg: str) -> str:
    """Quote an argument for a .desktop ``Exec`` key (its own rules, close to the shell's)."""
    if arg and all(c.isalnum() or c in "-_./=:+," for c in arg):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`").replace("$", "\\$")
    return f'"{escaped}"'


def xdg_autostart_file(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    config = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(config) / "autostart" / f"{APP_ID}.desktop"


def launch_agent_file(home: Path | None = None) -> Path:
    return (home or Path.home()) / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT_LABEL}.plist"


def launch_agent(argv: Sequence[str]) -> bytes:
    """The LaunchAgent property list that starts ``argv`` at login."""
    return plistlib.dumps(
        {
            "Label": LAUNCH_AGENT_LABEL,
            "ProgramArguments": list(argv),
            "RunAtLoad": True,
            "ProcessType": "Interactive",
        }
    )


def enabled(platform: str = sys.platform, env: Mapping[str, str] | None = None) -> bool:
    """Whether Safekeep starts at login (for this user)."""
    if platform == "win32":
        return _windows_get() is not None
    if platform == "darwin":
        return launch_agent_file().is_file()
    return xdg_autostart_file(env).is_file()


def set_enabled(
    on: bool,
    *,
    platform: str = sys.platform,
    env: Mapping[str, str] | None = None,
    argv: Sequence[str] | None = None,
) -> Path | str:
    """Turn starting at login on or off; where it is kept (a file, or the registry value's key)."""
    argv = list(argv or command())
    try:
        if platform == "win32":
            _windows_set(windows_command_line(argv) if on else None)
            return "HKEY_CURRENT_USER\\" + RUN_KEY
        path = launch_agent_file() if platform == "darwin" else xdg_autostart_file(env)
        if on:
            path.parent.mkdir(parents=True, exist_ok=True)
            data = launch_agent(argv) if platform == "darwin" else desktop_entry(argv).encode()
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        else:
            path.unlink(missing_ok=True)
        return path
    except OSError as exc:
        raise AutostartError(
            f"Safekeep could not {'set up' if on else 'turn off'} starting at login: {exc}",
            hint="Check that your user may write to its settings folder, then try again.",
        ) from exc


def windows_command_line(argv: Sequence[str]) -> str:
    """A Windows command line for ``argv`` (the quoting rules of the C runtime)."""
    return subprocess.list2cmdline(list(argv))


def _windows_get() -> str | None:  # pragma: no cover - Windows only
    if sys.platform != "win32":
        raise AutostartError("The Windows registry exists only on Windows.")
    import winreg  # noqa: PLC0415 - Windows only

    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
            value, _kind = winreg.QueryValueEx(key, RUN_VALUE)
            return str(value)
    except FileNotFoundError:
        return None


def _windows_set(line: str | None) -> None:  # pragma: no cover - Windows only
    if sys.platform != "win32":
        raise AutostartError("The Windows registry exists only on Windows.")
    import winreg  # noqa: PLC0415 - Windows only

    with winreg.CreateKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
        if line is None:
            try:
                winreg.DeleteValue(key, RUN_VALUE)
            except FileNotFoundError:
                pass
        else:
            winreg.SetValueEx(key, RUN_VALUE, 0, winreg.REG_SZ, line)
