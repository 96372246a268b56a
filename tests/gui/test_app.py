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


def test_dashboard_card_back_up_now_and_activity(
    qtbot: QtBot, engine: Service, home: Path, tmp_path: Path, screenshots: Path
) -> None:
    dest = engine.add_destination("USB disk", str(tmp_path / "repo"), password="pw-1234567890-abc")
    plan = engine.save_plan(
        Plan(new_id(), "Office files", (str(home / "Documents"),), (dest.id,), excludes=("*.tmp",))
    )
    background = Background()
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
    assert window.grab().save(str(screenshots / "main-dashboard.png"))
    window.tabs.setCurrentIndex(1)
    assert window.grab().save(str(screenshots / "main-activity.png"))
    window.close()
    qtbot.waitUntil(lambda: not background.busy, timeout=WAIT_MS)
