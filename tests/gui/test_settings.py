"""Settings: start at login (XDG autostart), notifications, bandwidth limits, the plan editor."""

from __future__ import annotations

import configparser
import plistlib
import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QPushButton
from pytestqt.qtbot import QtBot

from safekeep.engine.service import Service
from safekeep.gui import autostart, settings
from safekeep.gui.background import Background
from safekeep.gui.main_window import MainWindow
from safekeep.gui.plan_editor import PlanEditor, preset_of
from safekeep.gui.settings_view import SettingsView
from safekeep.gui.wizard.draft import DEFAULT_RETENTION, SchedulePreset, triggers_for
from safekeep.state.model import Trigger
from tests.gui.test_tray import make_plan

WAIT_MS = 60_000


def test_xdg_autostart_entry_written_and_removed(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path)}
    assert not autostart.enabled("linux", env)
    where = autostart.set_enabled(True, platform="linux", env=env, argv=["/opt/Safe keep/bin/safekeep"])
    assert where == tmp_path / "config" / "autostart" / "safekeep.desktop"
    entry = configparser.ConfigParser(interpolation=None)
    entry.read(where)
    assert entry["Desktop Entry"]["Type"] == "Application"
    assert entry["Desktop Entry"]["Exec"] == '"/opt/Safe keep/bin/safekeep"'
    assert autostart.enabled("linux", env)
    autostart.set_enabled(False, platform="linux", env=env)
    assert not where.exists() and not autostart.enabled("linux", env)
    # without XDG_CONFIG_HOME the entry goes to ~/.config/autostart
    assert autostart.xdg_autostart_file({"HOME": str(tmp_path)}) == (
        tmp_path / ".config" / "autostart" / "safekeep.desktop"
    )


def test_launch_agent_and_windows_command_line() -> None:
    agent = plistlib.loads(autostart.launch_agent(["/Applications/Safekeep.app/Contents/MacOS/Safekeep"]))
    assert agent["Label"] == "org.safekeep.app" and agent["RunAtLoad"] is True
    assert agent["ProgramArguments"] == ["/Applications/Safekeep.app/Contents/MacOS/Safekeep"]
    line = autostart.windows_command_line([r"C:\Program Files\Safekeep\safekeep.exe"])
    assert line == r'"C:\Program Files\Safekeep\safekeep.exe"'
    assert autostart.command()[:1] == [sys.executable]


def test_schedule_presets_recognised_for_the_editor() -> None:
    for preset in (SchedulePreset.ON_CHANGE, SchedulePreset.HOURLY, SchedulePreset.NIGHTLY):
        assert preset_of(triggers_for(preset))[0] is preset
    weekly = (Trigger("weekly", {"weekdays": [0, 2], "times": ["18:30"]}),)
    assert preset_of(weekly) == (SchedulePreset.CUSTOM, "18:30", (0, 2))


def make_settings(qtbot: QtBot, engine: Service, background: Background) -> SettingsView:
    view = SettingsView(engine, background)
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.loaded, timeout=WAIT_MS):
        view.show()
    return view


def test_checkboxes_write_autostart_and_notifications(
    qtbot: QtBot, engine: Service, background: Background, tmp_path: Path
) -> None:
    view = make_settings(qtbot, engine, background)
    entry = tmp_path / "xdg-config" / "autostart" / "safekeep.desktop"  # XDG_CONFIG_HOME of the fixture
    assert view.notifications.isChecked() and not view.autostart.isChecked()
    with qtbot.waitSignal(view.saved, timeout=WAIT_MS):
        view.autostart.click()
    assert entry.is_file()
    assert "-m safekeep" in entry.read_text()
    with qtbot.waitSignal(view.saved, timeout=WAIT_MS):
        view.autostart.click()
    assert not entry.exists()
    with qtbot.waitSignal(view.saved, timeout=WAIT_MS):
        view.notifications.click()
    assert settings.notifications_enabled(engine) is False
    assert engine.audit.verify().entries[-1].action == "settings-change"


def test_bandwidth_limits_saved_on_the_destination_and_audited(
    qtbot: QtBot, engine: Service, background: Background, home: Path, tmp_path: Path
) -> None:
    plan = make_plan(engine, home / "Documents", tmp_path / "usb")
    view = make_settings(qtbot, engine, background)
    dest_id = plan.destination_ids[0]
    view.uploads[dest_id].setValue(500)
    view.downloads[dest_id].setValue(2000)
    with qtbot.waitSignal(view.loaded, timeout=WAIT_MS):
        view.save_limits.click()
    (dest,) = engine.destinations()
    assert (dest.upload_limit_kib, dest.download_limit_kib) == (500, 2000)
    assert "Saved the bandwidth limits" in view.message.text()
    entry = engine.audit.verify().entries[-1]
    assert entry.action == "destination-change"
    view.uploads[dest_id].setValue(0)  # 0: no limit
    with qtbot.waitSignal(view.loaded, timeout=WAIT_MS):
        view.save_limits.click()
    assert engine.destinations()[0].upload_limit_kib is None


def test_plan_editor_changes_folders_exclusions_and_schedule(
    qtbot: QtBot, engine: Service, background: Background, home: Path, tmp_path: Path, screenshots: Path
) -> None:
    plan = make_plan(engine, home / "Documents", tmp_path / "usb")
    window = MainWindow(engine, background)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.loaded, timeout=WAIT_MS)
    window.tabs.setCurrentWidget(window.settings)
    qtbot.waitUntil(lambda: bool(window.settings.plans), timeout=WAIT_MS)
    assert window.settings.uploads  # the destination's row is there
    plan_label = window.settings.findChild(QLabel, f"plan-{plan.id}")
    assert plan_label is not None and "Keeps every backup (nothing is removed)" in plan_label.text()
    qtbot.waitUntil(
        lambda: (
            (b := window.settings.findChild(QPushButton, f"edit-{plan.id}")) is not None and b.isVisible()
        ),
        timeout=WAIT_MS,
    )
    qtbot.wait(100)  # the new rows' layout is applied by the event loop
    assert window.grab().save(str(screenshots / "main-settings.png"))
    window.settings.home = home  # the person's home: its usual folders are offered
    editor = window.settings.edit_plan(window.settings.plans[0])
    assert isinstance(editor, PlanEditor)
    qtbot.addWidget(editor)
    assert editor.sources.chosen() == [str(home / "Documents")]  # Desktop offered, not ticked
    assert editor.sources.folders.count() == 2
    editor.sources.folders.item(1).setCheckState(Qt.CheckState.Checked)
    editor.sources.excludes.appendPlainText("*.bak")
    assert editor.grab().save(str(screenshots / "plan-editor-sources.png"))
    editor.next()
    editor.schedule.options[SchedulePreset.HOURLY].click()
    keep = editor.schedule.retention
    assert keep.choice.currentData() == "everything"  # the plan keeps every backup so far
    assert "nothing is ever removed" in keep.summary.text()
    keep.choice.setCurrentIndex(keep.choice.findData("recommended"))
    qtbot.wait(50)  # the longer description's layout is applied by the event loop
    assert editor.grab().save(str(screenshots / "plan-editor-schedule.png"))
    with qtbot.waitSignal(window.plans_changed, timeout=WAIT_MS):
        editor.button(editor.WizardButton.FinishButton).click()
    saved = engine.plan(plan.id)
    assert saved.sources == (str(home / "Documents"), str(home / "Desktop"))
    assert "*.bak" in saved.excludes
    assert saved.triggers == triggers_for(SchedulePreset.HOURLY)
    assert saved.retention == DEFAULT_RETENTION
    assert saved.destination_ids == plan.destination_ids
    assert engine.audit.verify().entries[-1].action == "plan-change"
    window.close()
