"""The main window's dashboard and activity view, and the single-instance guard."""

from __future__ import annotations

import uuid
from pathlib import Path

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from safekeep.engine.service import Service
from safekeep.gui.background import Background
from safekeep.gui.main_window import MainWindow, PlanCard
from safekeep.gui.single_instance import SingleInstance, notify_running, server_name
from safekeep.state.model import Outcome, Plan, new_id

WAIT_MS = 60_000


def test_second_launch_asks_the_first_to_show(qtbot: QtBot) -> None:
    name = server_name(f"-test-{uuid.uuid4().hex[:8]}")
    assert not notify_running(name)  # nobody listens yet
    instance = SingleInstance(name)
    assert instance.listen()
    try:
        with qtbot.waitSignal(instance.show_requested, timeout=WAIT_MS):
            assert notify_running(name)
    finally:
        instance.close()
    assert not notify_running(name)


def test_dashboard_back_up_now_chart_activity_and_restore(
    qtbot: QtBot, engine: Service, background: Background, home: Path, tmp_path: Path, screenshots: Path
) -> None:
    dest = engine.add_destination("USB disk", str(tmp_path / "repo"), password="pw-1234567890-abc")
    plan = engine.save_plan(
        Plan(new_id(), "Office files", (str(home / "Documents"),), (dest.id,), excludes=("*.tmp",))
    )
    window = MainWindow(engine, background)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.loaded, timeout=WAIT_MS)
    card = window.findChild(PlanCard, f"card-{plan.id}")
    assert card is not None
    assert card.state.text() == "Waiting for its first backup"
    qtbot.mouseClick(card.backup, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: window.activity.count() == 1 and engine.history()[0].finished is not None, timeout=WAIT_MS
    )
    window.reload()
    qtbot.waitUntil(
        lambda: (
            (c := window.findChild(PlanCard, f"card-{plan.id}")) is not None and c.state.text() == "Backed up"
        ),
        timeout=WAIT_MS,
    )
    assert engine.history()[0].outcome is Outcome.SUCCESS
    assert "Office files: Backed up" in window.activity.item(0).text()
    assert "USB disk: 2 files" in window.activity.item(0).text()
    # a second backup with one more file: the chart has two points, the second one larger
    (home / "Documents" / "minutes.txt").write_text("the board met\n" * 500)
    qtbot.mouseClick(window.findChild(PlanCard, f"card-{plan.id}").backup, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(window.chart.points) == 2, timeout=WAIT_MS)
    first, second = window.chart.points
    assert (first.files, second.files) == (2, 3) and second.bytes > first.bytes
    assert window.grab().save(str(screenshots / "main-dashboard.png"))
    window.tabs.setCurrentWidget(window.activity)
    assert window.grab().save(str(screenshots / "main-activity.png"))

    # "Restore files…" on the card opens the restore window on the plan's backups
    qtbot.mouseClick(window.findChild(PlanCard, f"card-{plan.id}").restore, Qt.MouseButton.LeftButton)
    restore_window = window.restore_window
    assert restore_window is not None and restore_window.isVisible()
    qtbot.waitUntil(lambda: restore_window.timeline.count() == 2, timeout=WAIT_MS)
    assert restore_window.plan_id == plan.id
    restore_window.close()
    # the Backups tab restores a whole snapshot into a folder
    with qtbot.waitSignal(window.backups.loaded, timeout=WAIT_MS):
        window.show_backups(plan.id)
    assert window.tabs.currentWidget() is window.backups
    assert window.backups.list.count() == 2
    window.backups.list.setCurrentRow(0)
    assert window.grab().save(str(screenshots / "main-backups.png"))
    target = tmp_path / "restored"
    window.backups.restore_to(str(target))
    qtbot.waitUntil(lambda: window.backups.info.text()[:1] in ("✔", "✘"), timeout=WAIT_MS)
    assert "The files are restored" in window.backups.info.text()
    restored = target / str(home / "Documents").lstrip("/") / "minutes.txt"
    assert restored.read_text() == (home / "Documents" / "minutes.txt").read_text()
    window.close()
    qtbot.waitUntil(lambda: not background.busy, timeout=WAIT_MS)


def test_app_opens_the_wizard_without_a_plan_and_the_dashboard_with_one(
    qtbot: QtBot, engine: Service, home: Path, tmp_path: Path
) -> None:
    from safekeep.gui.app import App
    from safekeep.gui.wizard import SetupWizard

    app_home = tmp_path / "app"  # the engine fixture's folder: the app opens its own service on it
    first = App(home=app_home, host_triggers=False)
    first.start()
    qtbot.waitUntil(lambda: first.ready, timeout=WAIT_MS)
    assert isinstance(first.window, SetupWizard)
    first.window.close()
    first.shutdown()

    dest = engine.add_destination("USB disk", str(tmp_path / "repo"), password="pw-1234567890-abc")
    engine.save_plan(Plan(new_id(), "Office files", (str(home / "Documents"),), (dest.id,)))
    second = App(home=app_home, host_triggers=False)
    second.start()
    qtbot.waitUntil(lambda: second.ready, timeout=WAIT_MS)
    assert isinstance(second.window, MainWindow)
    restore_window = second.open_restore("")
    assert restore_window is second.window.restore_window and restore_window.isVisible()
    second.window.close()
    second.shutdown()
