"""``safekeep`` without a command: the desktop app.

:func:`main` sets up the application, makes sure only one runs per user (a second launch shows
the running one's window), opens the engine in the background and then shows the first-run
wizard when there is no plan yet, or the main window otherwise.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from safekeep import __version__
from safekeep.common.errors import SafekeepError
from safekeep.gui import icons
from safekeep.gui.background import Background
from safekeep.gui.engine import Engine, open_engine
from safekeep.gui.main_window import MainWindow
from safekeep.gui.single_instance import SingleInstance, notify_running, server_name
from safekeep.gui.wizard import SetupWizard
from safekeep.state.model import Plan

log = logging.getLogger(__name__)


class App(QObject):
    """Owns the windows; created once the QApplication exists."""

    def __init__(self, *, home: Path | None = None, instance: SingleInstance | None = None) -> None:
        super().__init__()
        self.home = home
        self.background = Background(self)
        self.engine: Engine | None = None
        self.window: QWidget | None = None
        if instance is not None:
            instance.show_requested.connect(self.raise_window)

    def start(self) -> None:
        self.background.run(lambda: open_engine(self.home), self._engine_opened, self._fatal)

    def _engine_opened(self, engine: Engine) -> None:
        self.engine = engine
        self.background.run(engine.plans, self._plans_loaded, self._fatal)

    def _plans_loaded(self, plans: list[Plan]) -> None:
        assert self.engine is not None
        if not plans:
            wizard = SetupWizard(self.engine, self.background)
            wizard.finished.connect(lambda _result: QApplication.quit())
            self.window = wizard
        else:
            self.window = MainWindow(self.engine, self.background)
        self.window.show()

    def raise_window(self) -> None:
        if self.window is not None:
            self.window.show()
            self.window.raise_()
            self.window.activateWindow()

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
        instance.close()
