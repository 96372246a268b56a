"""A private X desktop for the tray tests: Xvfb, a tray host (trayer) and a notification server.

:func:`x_desktop` starts, on a free display number, ``Xvfb``; a private D-Bus session bus
(``dbus-daemon --session``); ``dunst`` on that bus and display (the freedesktop notification
server; ``dunstctl history`` shows what reached it); and ``trayer``, a system tray host at the
screen's top right, so ``QSystemTrayIcon`` has somewhere to live. The apps a test starts get
:attr:`XDesktop.env` (``DISPLAY``, ``DBUS_SESSION_BUS_ADDRESS``, ``QT_QPA_PLATFORM=xcb``).

Everything is stopped by PID at the end of the session. A missing program fails the test in CI
(``tests.servers.require``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.servers import require

PROGRAMS = ("Xvfb", "dbus-daemon", "dunst", "dunstctl", "trayer", "xdotool", "xwininfo")
SCREEN = (1280, 800)
TRAY_HEIGHT = 24


@dataclass
class XDesktop:
    display: str
    bus: str
    folder: Path
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True) -> str:
        """Run an X or D-Bus tool (xdotool, dunstctl, ...) on this desktop; its output."""
        done = subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, timeout=30, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def notifications(self) -> list[dict[str, Any]]:
        """Closed notifications (newest first): ``summary``, ``body``, ``appname``."""
        history = json.loads(self.run("dunstctl", "history"))
        out = []
        for item in history["data"][0]:
            out.append({k: v.get("data") for k, v in item.items() if isinstance(v, dict)})
        return out

    def displayed(self) -> int:
        """How many notifications are on the screen now."""
        return int(self.run("dunstctl", "count", "displayed").strip() or 0)

    def close_notifications(self) -> None:
        """Close what is shown (closed notifications go to the history)."""
        self.run("dunstctl", "close-all")

    def screenshot(self, path: Path) -> None:
        """The whole screen as a PNG (ImageMagick's ``import``)."""
        self.run("import", "-display", self.display, "-window", "root", str(path))

    def tray_icons(self) -> list[tuple[int, int, int, int]]:
        """``(x, y, width, height)`` of each icon docked in the tray host, left to right."""
        panel = self.run("xdotool", "search", "--onlyvisible", "--class", "trayer", check=False).split()
        icons = []
        for wid in panel:
            tree = self.run("xwininfo", "-children", "-id", wid, check=False)
            for line in tree.splitlines():
                line = line.strip()
                if not line.startswith("0x"):
                    continue
                child = line.split()[0]
                info = self.run("xwininfo", "-id", child, check=False)
                geom = _geometry(info)
                if geom is not None and geom[2] > 1 and geom[3] > 1:
                    icons.append(geom)
        return sorted(icons)


def _geometry(info: str) -> tuple[int, int, int, int] | None:
    values: dict[str, int] = {}
    for line in info.splitlines():
        key, _, value = line.strip().partition(":")
        if key in ("Absolute upper-left X", "Absolute upper-left Y", "Width", "Height", "Map State"):
            try:
                values[key] = int(value.strip())
            except ValueError:
                if "IsViewable" not in value:
                    return None
    if len(values) < 4:
        return None
    return (
        values["Absolute upper-left X"],
        values["Absolute upper-left Y"],
        values["Width"],
        values["Height"],
    )


def _free_display() -> int:
    for n in range(90, 190):
        if not os.path.exists(f"/tmp/.X{n}-lock") and not os.path.exists(f"/tmp/.X11-unix/X{n}"):
            return n
    raise RuntimeError("no free X display number between :90 and :189")


def _wait(condition: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    require(False, f"{what} did not start within {timeout:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def x_desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XDesktop]:
    """Xvfb + private D-Bus + dunst + trayer; see :class:`XDesktop`."""
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    require(not missing, f"programs for the X desktop tests are missing: {', '.join(missing)}")
    folder = tmp_path_factory.mktemp("xdesktop")
    procs: list[subprocess.Popen[bytes]] = []
    logs = []

    def start(name: str, args: list[str], env: dict[str, str], **kw: Any) -> subprocess.Popen[bytes]:
        log = open(folder / f"{name}.log", "wb")  # noqa: SIM115 - closed at the end
        logs.append(log)
        proc = subprocess.Popen(args, env=env, stderr=log, **kw)
        procs.append(proc)
        return proc

    try:
        n = _free_display()
        display = f":{n}"
        base = dict(os.environ, HOME=str(folder), XDG_RUNTIME_DIR=str(folder))
        base.pop("DBUS_SESSION_BUS_ADDRESS", None)
        xvfb = start(
            "xvfb",
            ["Xvfb", display, "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24", "-nolisten", "tcp"],
            base,
            stdout=subprocess.DEVNULL,
        )
        _wait(lambda: os.path.exists(f"/tmp/.X11-unix/X{n}") or xvfb.poll() is not None, "Xvfb")
        require(xvfb.poll() is None, "Xvfb exited: " + (folder / "xvfb.log").read_text(errors="replace"))
        dbus = start(
            "dbus",
            ["dbus-daemon", "--session", "--nofork", "--print-address=1"],
            base,
            stdout=subprocess.PIPE,
        )
        assert dbus.stdout is not None
        bus = dbus.stdout.readline().decode().strip()
        require(bool(bus), "dbus-daemon printed no address")
        env = dict(base, DISPLAY=display, DBUS_SESSION_BUS_ADDRESS=bus, QT_QPA_PLATFORM="xcb")
        desktop = XDesktop(display, bus, folder, env)
        start("dunst", ["dunst"], env, stdout=subprocess.DEVNULL)

        def dunst_up() -> bool:
            done = subprocess.run(
                ["dunstctl", "is-paused"], env=env, capture_output=True, timeout=10, check=False
            )
            return done.returncode == 0

        _wait(dunst_up, "dunst")
        start(
            "trayer",
            [
                "trayer",
                "--edge", "top",
                "--align", "right",
                "--widthtype", "request",
                "--height", str(TRAY_HEIGHT),
                "--SetDockType", "true",
                "--transparent", "false",
            ],
            env,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(
            lambda: bool(desktop.run("xdotool", "search", "--class", "trayer", check=False).strip()), "trayer"
        )
        yield desktop
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for log in logs:
            log.close()
