"""``safekeep`` without a command: the desktop app.

:func:`main` sets up the application, makes sure only one runs per user (a second launch shows
the running one's window), opens the engine in the background, starts the trigger host
(scheduler, file watcher, ``safekeep trigger`` socket; unless ``safekeep daemon`` runs already)
and then shows the tray icon and the first-run wizard when there is no plan yet, or the main
window otherwise. Closing the window leaves the tray icon running; Quit in its menu ends the app.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QApplication, QMessageBox, QSystemTrayIcon, QWidget

from safekeep import __version__
from safekeep.common.errors import SafekeepError
from safekeep.gui import icons, settings
from safekeep.gui.background import Background
from safekeep.gui.engine import Engine, Triggers, open_engine, open_triggers
from safekeep.gui.main_window import MainWindow
from safekeep.gui.notifications import Notifier
from safekeep.gui.single_instance import SingleInstance, notify_running, server_name
from safekeep.gui.tray import Tray
from safekeep.gui.wizard import SetupWizard
from safekeep.state.model import Plan

log = logging.getLogger(__name__)


class App(QObject):
    """Owns the windows, the tray icon and the trigger host; created once the QApplication exists."""

    def __init__(
        self,
        *,
        home: Path | None = None,
        instance: SingleInstance | None = None,
        triggers_folder: Path | None = None,
        host_triggers: bool = True,
    ) -> None:
        super().__init__()
        self.home = home
        self.triggers_folder = triggers_folder
        self.host_triggers = host_triggers
        self.background = Background(self)
        self.engine: Engine | None = None
        self.triggers: Triggers | None = None
        self.tray: Tray | None = None
        self.main: MainWindow | None = None
        self.wizard: SetupWizard | None = None
        self.ready = False
        if instance is not None:
            instance.show_requested.connect(self.raise_window)

    @property
    def window(self) -> QWidget | None:
        return self.wizard if self.wizard is not None and self.wizard.isVisible() else self.main

    def start(self) -> None:
        self.background.run(lambda: open_engine(self.home), self._engine_opened, self._fatal)

    def _engine_opened(self, engine: Engine) -> None:
        self.engine = engine
        if not self.host_triggers:
            self._load_plans()
            return
        folder = self.triggers_folder

        def start() -> Triggers:
            triggers = open_triggers(engine, folder)
            triggers.start()
            return triggers

        self.background.run(start, self._triggers_started, self._no_triggers)

    def _triggers_started(self, triggers: Triggers) -> None:
        self.triggers = triggers
        self._load_plans()

    def _no_triggers(self, exc: BaseException) -> None:
        text = exc.user_text() if isinstance(exc, SafekeepError) else f"{type(exc).__name__}: {exc}"
        log.warning("scheduled backups are not started by this window: %s", text)
        self._load_plans()

    def _load_plans(self) -> None:
        engine = self.engine
        assert engine is not None
        self.background.run(
            lambda: (engine.plans(), settings.notifications_enabled(engine)), self._plans_loaded, self._fatal
        )

    def _plans_loaded(self, loaded: tuple[list[Plan], bool]) -> None:
        assert self.engine is not None
        plans, notify = loaded
        if QSystemTrayIcon.isSystemTrayAvailable():
            self.tray = Tray(self.engine, self.background, triggers=self.triggers)
            self.tray.notifier.enabled = notify
            self.tray.open_requested.connect(self.open_main)
            self.tray.restore_requested.connect(self.open_restore)
            self.tray.quit_requested.connect(self.quit)
            self.tray.show()
            QApplication.setQuitOnLastWindowClosed(False)
        if not plans:
            self.wizard = SetupWizard(self.engine, self.background)
            self.wizard.finished.connect(self._wizard_finished)
            self.wizard.show()
        else:
            self.open_main()
        self.ready = True

    def _wizard_finished(self, _result: int) -> None:
        wizard = self.wizard
        assert wizard is not None
        if wizard.created_plan() is None:
            self.quit()
            return
        self.reload_triggers()
        self.open_main()

    def reload_triggers(self) -> None:
        """Read the plans again in the trigger host (after the wizard or the plan editor)."""
        if self.triggers is not None:
            self.background.run(self.triggers.reload)

    def _main_window(self) -> MainWindow:
        assert self.engine is not None
        if self.main is None:
            self.main = MainWindow(
                self.engine, self.background, triggers=self.triggers, notifier=self._notifier()
            )
            self.main.keep_running = self.tray is not None
            self.main.plans_changed.connect(self.reload_triggers)
        return self.main

    def open_main(self) -> QWidget:
        self.main = self._main_window()
        self.main.show()
        self.main.raise_()
        self.main.activateWindow()
        return self.main

    def _notifier(self) -> Notifier | None:
        return self.tray.notifier if self.tray is not None else None

    def open_restore(self, plan_id: str) -> QWidget:
        """The restore window (the tray's "Restore files…"), on the plan's backups."""
        return self._main_window().open_restore(plan_id)

    def raise_window(self) -> None:
        window = self.window
        if window is None and self.engine is not None:
            window = self.open_main()
        if window is not None:
            window.show()
            window.raise_()
            window.activateWindow()

    def quit(self) -> None:
        QApplication.quit()

    def shutdown(self) -> None:
        """After the event loop ended: stop the trigger host and wait for background calls."""
        if self.tray is not None:
            self.tray.close()
        if self.main is not None:
            self.main.shutdown()
        if self.triggers is not None:
            self.triggers.stop()
            self.triggers = None
        self.background.wait_for_done(5_000)

    def _fatal(self, exc: BaseException) -> None:
        text = exc.user_text() if isinstance(exc, SafekeepError) else f"{type(exc).__name__}: {exc}"
        log.error("Safekeep cannot start: %s", text, exc_info=exc)
        QMessageBox.critical(None, QApplication.translate("App", "Safekeep"), text)
        QApplication.exit(1)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the desktop app until it quits; returns the exit status."""
    args = list(sys.argv if argv is None else argv)
    app = QApplication.instance() or QApplication(args)
    assert isinstance(app, QApplication)
    app.setApplicationName("Safekeep")
    app.setApplicationVersion(__version__)
    app.setOrganizationName("Safekeep")
    app.setDesktopFileName("safekeep")
    app.setWindowIcon(icons.app_icon())
    name = server_name()
    if notify_running(name):
        log.info("Safekeep is already running; asked it to show its window")
        return 0
    instance = SingleInstance(name)
    instance.listen()
    controller = App(instance=instance)
    controller.start()
    try:
        return app.exec()
    finally:
        controller.shutdown()
        instance.close()
