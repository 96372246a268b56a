"""The real app on a real X desktop: its tray icon in a real tray host, its real menu, and a
notification that reaches a real notification server.

The app runs as ``python -m safekeep`` (no arguments) in its own process on the private Xvfb
display of :func:`tests.servers.xdisplay.x_desktop`; the test drives it only from outside, with
``xdotool`` (right-click on the icon, keys in the menu) and ``safekeep trigger``, and checks the
result in the app database and the repository.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from safekeep.engine.service import Service
from safekeep.state.model import Outcome, Run
from tests.gui.conftest import TEST_KDF
from tests.gui.test_tray import make_plan
from tests.servers.xdisplay import XDesktop

TIMEOUT = 90.0


def wait_for(condition: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class RunningApp:
    def __init__(self, desktop: XDesktop, app_home: Path, log: Path) -> None:
        self.desktop = desktop
        self.env = dict(
            desktop.env, SAFEKEEP_HOME=str(app_home), SAFEKEEP_SECRETS="file", SAFEKEEP_TEST_KDF=TEST_KDF
        )
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "safekeep"], env=self.env, stdout=self._out, stderr=subprocess.STDOUT
        )

    def icon(self) -> tuple[int, int, int, int]:
        found: list[tuple[int, int, int, int]] = []

        def docked() -> bool:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")
            found[:] = self.desktop.tray_icons()
            return bool(found)

        wait_for(docked, "the tray icon to dock in trayer")
        return found[-1]

    def open_menu(self) -> None:
        x, y, w, h = self.icon()
        self.desktop.run("xdotool", "mousemove", str(x + w // 2), str(y + h // 2), "click", "3")
        wait_for(self.menu_visible, "the tray menu", 20)

    def menu_visible(self) -> bool:
        out = self.desktop.run("xdotool", "search", "--onlyvisible", "--name", "^Safekeep menu$", check=False)
        return bool(out.strip())

    def keys(self, *keys: str) -> None:
        self.desktop.run("xdotool", "key", "--delay", "100", *keys)

    def stop(self) -> int:
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
            return self.proc.wait(timeout=30)
        finally:
            self._out.close()


@pytest.fixture()
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Service, Path]]:
    from tests.gui.conftest import close_service, open_service

    app_home = tmp_path / "app"
    service = open_service(app_home, monkeypatch)
    yield service, app_home
    close_service(service)


def finished_runs(service: Service, plan_id: str) -> list[Run]:
    return [r for r in service.history(plan_id) if r.kind == "backup" and r.finished is not None]


def test_right_click_the_real_tray_icon_and_back_up_now(
    x_desktop: XDesktop, app_env: tuple[Service, Path], home: Path, tmp_path: Path, screenshots: Path
) -> None:
    service, app_home = app_env
    plan = make_plan(service, home / "Documents", tmp_path / "usb")
    app = RunningApp(x_desktop, app_home, tmp_path / "app.log")
    try:
        app.open_menu()
        x_desktop.screenshot(screenshots / "tray-menu-x11.png")
        app.keys("Down", "Return")  # the first item: Back up now
        wait_for(lambda: finished_runs(service, plan.id), "the backup to finish")
        (run,) = finished_runs(service, plan.id)
        assert run.outcome is Outcome.SUCCESS, run
        assert run.reason_text == "Back up now (tray)"
        (snap,) = service.snapshots(plan.destination_ids[0])
        assert snap.id == run.results[0].snapshot_id
        wait_for(x_desktop.displayed, "a notification on the screen", 30)
        x_desktop.screenshot(screenshots / "notification-first-success.png")
        x_desktop.close_notifications()
        wait_for(
            lambda: any(n["summary"] == "Your files are protected" for n in x_desktop.notifications()),
            "the first-success notification in the history",
            30,
        )
        app.open_menu()
        app.keys("Up", "Return")  # the last item: Quit
        assert app.proc.wait(timeout=30) == 0, app.log.read_text(errors="replace")
    finally:
        app.stop()


def test_a_failed_backup_reaches_the_notification_server(
    x_desktop: XDesktop, app_env: tuple[Service, Path], home: Path, tmp_path: Path, screenshots: Path
) -> None:
    service, app_home = app_env
    plan = make_plan(service, home / "Documents", tmp_path / "usb", name="Accounts")
    (tmp_path / "usb" / "config").unlink()  # a damaged repository: the backup fails
    app = RunningApp(x_desktop, app_home, tmp_path / "app.log")
    try:
        app.icon()  # the app is up (and so is its trigger socket)
        subprocess.run(
            [sys.executable, "-m", "safekeep", "trigger", "--plan", "Accounts", "--reason", "test"],
            env=app.env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_for(lambda: finished_runs(service, plan.id), "the backup to end")
        wait_for(x_desktop.displayed, "a notification on the screen", 30)
        x_desktop.screenshot(screenshots / "notification-failure.png")
        x_desktop.close_notifications()
        wait_for(
            lambda: any(n["summary"] == "The backup “Accounts” failed" for n in x_desktop.notifications()),
            "the failure notification in the history",
            30,
        )
        note = next(n for n in x_desktop.notifications() if "failed" in n["summary"])
        assert note["appname"] == "Safekeep"
        assert "Open Safekeep" in note["body"]
    finally:
        assert app.stop() in (0, -15)
