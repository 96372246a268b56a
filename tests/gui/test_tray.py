"""The tray icon with the real engine: state, tooltip, menu actions, pause, notifications.

These run offscreen (the menu's actions are triggered directly); the test with a real tray host
and a real notification server is in ``test_tray_x11.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from safekeep.engine.service import PlanStatus, RunProgress, Service
from safekeep.gui import icons
from safekeep.gui.background import Background
from safekeep.gui.engine import Triggers, open_triggers
from safekeep.gui.tray import Tray, TrayView, overall_state, tooltip_text
from safekeep.state.model import DestinationResult, Outcome, Plan, Reason, Run, new_id

WAIT_MS = 60_000
PASSWORD = "tray-test-password-1234"


def make_plan(engine: Service, source: Path, repo: Path, name: str = "Office files") -> Plan:
    dest = engine.add_destination(f"{name} disk", str(repo), password=PASSWORD)
    return engine.save_plan(Plan(new_id(), name, (str(source),), (dest.id,)))


def _status(state: Outcome, *, running: bool = False, progress: RunProgress | None = None) -> PlanStatus:
    plan = Plan("p1", "Office", ("/srv/office",), ("d1",))
    run = Run(
        "r1",
        "p1",
        "backup",
        Reason.SCHEDULE,
        "",
        started=0.0,
        outcome=state,
        results=(
            DestinationResult("d1", state, error="The disk is full." if state is Outcome.FAILED else ""),
        ),
    )
    return PlanStatus(plan, state, run, 1_700_000_000.0, "r2" if running else "", progress)


def test_state_shape_follows_the_worst_plan() -> None:
    assert overall_state([]) is icons.State.IDLE
    assert overall_state([_status(Outcome.SUCCESS)]) is icons.State.IDLE
    assert overall_state([_status(Outcome.SUCCESS)], paused=True) is icons.State.PAUSED
    assert overall_state([_status(Outcome.SUCCESS), _status(Outcome.WARNING)]) is icons.State.WARNING
    assert overall_state([_status(Outcome.FAILED), _status(Outcome.WARNING)]) is icons.State.ERROR
    assert overall_state([_status(Outcome.FAILED), _status(Outcome.RUNNING, running=True)]) is (
        icons.State.RUNNING
    )


def test_tooltip_says_progress_last_and_next_run() -> None:
    now = datetime.fromtimestamp(1_700_000_000.0 + 7200, UTC)
    progress = RunProgress("d1", "backup", 10, 40, 250_000_000, 1_000_000_000, "/srv/office/a")
    running = TrayView([_status(Outcome.RUNNING, running=True, progress=progress)], {}, None)
    text = tooltip_text(running, now)
    assert "Backing up" in text and "25%" in text and "250.0 MB of 1.0 GB" in text
    assert "last backup" in text and "2 hours ago" in text
    cleaning = RunProgress("d1", "retention", 3, -1, 0, -1, "reading trees")
    text = tooltip_text(TrayView([_status(Outcome.RUNNING, running=True, progress=cleaning)], {}, None), now)
    assert "removing old backups" in text and "%" not in text
    failed = TrayView([_status(Outcome.FAILED)], {"p1": now.replace(hour=22, minute=0)}, None)
    text = tooltip_text(failed, now)
    assert "A backup failed" in text and "The disk is full." in text
    assert "next backup" in text and "22:00" in text


@pytest.fixture()
def triggers(engine: Service, tmp_path: Path) -> Iterator[Triggers]:
    host = open_triggers(engine, tmp_path / "host")
    host.start()
    yield host
    host.stop()


def make_tray(
    qtbot: QtBot, engine: Service, background: Background, triggers: Triggers | None = None
) -> Tray:
    tray = Tray(engine, background, triggers=triggers)
    tray.notifier.use_dbus = False  # no notification server offscreen: recorded, shown by the tray
    with qtbot.waitSignal(tray.refreshed, timeout=WAIT_MS):
        tray.show()
    return tray


def test_back_up_now_notifies_the_first_success_once(
    qtbot: QtBot, engine: Service, background: Background, home: Path, tmp_path: Path
) -> None:
    plan = make_plan(engine, home / "Documents", tmp_path / "usb")
    tray = make_tray(qtbot, engine, background)
    assert "no backup yet" in tray.icon.toolTip()
    for attempt in (1, 2):
        with qtbot.waitSignal(tray.run_ended, timeout=WAIT_MS) as ended:
            tray.backup_action.trigger()
        run = ended.args[0]
        assert run.outcome is Outcome.SUCCESS and run.plan_id == plan.id
        qtbot.waitUntil(lambda: tray.state is icons.State.IDLE, timeout=WAIT_MS)
        assert len(tray.notifier.sent) == 1, attempt  # only the first success is announced
    assert tray.notifier.sent[0].title == "Your files are protected"
    assert "Office files" in tray.notifier.sent[0].body
    qtbot.waitUntil(lambda: "last backup today" in tray.icon.toolTip(), timeout=WAIT_MS)
    assert len(engine.snapshots(plan.destination_ids[0])) == 2
    tray.close()


def test_a_failed_backup_turns_the_icon_to_error_and_notifies(
    qtbot: QtBot, engine: Service, background: Background, home: Path, tmp_path: Path
) -> None:
    make_plan(engine, home / "Documents", tmp_path / "usb")
    (tmp_path / "usb" / "config").unlink()  # the repository is damaged: every backup fails
    tray = make_tray(qtbot, engine, background)
    with qtbot.waitSignal(tray.run_ended, timeout=WAIT_MS) as ended:
        tray.backup_action.trigger()
    assert ended.args[0].outcome is Outcome.FAILED
    qtbot.waitUntil(lambda: tray.state is icons.State.ERROR, timeout=WAIT_MS)
    (note,) = tray.notifier.sent
    assert note.title == "The backup “Office files” failed"
    assert "A backup failed" in tray.icon.toolTip()
    tray.close()


def test_pause_and_resume_through_the_trigger_host(
    qtbot: QtBot,
    engine: Service,
    background: Background,
    triggers: Triggers,
    home: Path,
    tmp_path: Path,
    screenshots: Path,
) -> None:
    plan = make_plan(engine, home / "Documents", tmp_path / "usb")
    engine.save_plan(Plan(plan.id, plan.name, plan.sources, plan.destination_ids, triggers=plan.triggers))
    triggers.reload()
    tray = make_tray(qtbot, engine, background, triggers)
    assert not tray.resume_action.isEnabled()
    tray.pause_hour.trigger()
    qtbot.waitUntil(lambda: tray.state is icons.State.PAUSED, timeout=WAIT_MS)
    assert tray.resume_action.isEnabled()
    assert "Backups are paused" in tray.icon.toolTip() and "paused until" in tray.icon.toolTip()
    assert triggers.paused_until(plan.id) is not None
    tray.menu.adjustSize()
    assert tray.menu.grab().save(str(screenshots / "tray-menu-offscreen.png"))
    tray.resume_action.trigger()
    qtbot.waitUntil(lambda: tray.state is icons.State.IDLE, timeout=WAIT_MS)
    assert triggers.paused_until(plan.id) is None
    tray.pause_tomorrow.trigger()
    qtbot.waitUntil(lambda: tray.state is icons.State.PAUSED, timeout=WAIT_MS)
    tray.close()
