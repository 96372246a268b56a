"""The first-run setup wizard (a :class:`QWizard`), from welcome to the first backup."""

from __future__ import annotations

import enum
from pathlib import Path

from PySide6.QtCore import QSize, Signal
from PySide6.QtWidgets import QWidget, QWizard

from safekeep.gui import icons
from safekeep.gui.background import Background
from safekeep.gui.engine import Engine
from safekeep.gui.wizard.draft import SetupDraft
from safekeep.gui.wizard.pages_password import KitPage, PasswordPage
from safekeep.gui.wizard.pages_plan import FirstBackupPage, SchedulePage, SourcesPage, SummaryPage
from safekeep.gui.wizard.pages_storage import ProviderPage, TestPage, WelcomePage, WherePage, WizardContext
from safekeep.state.model import Plan


class PageId(enum.IntEnum):
    WELCOME = 0
    WHERE = 1
    PROVIDER = 2
    TEST = 3
    PASSWORD = 4
    KIT = 5
    SOURCES = 6
    SCHEDULE = 7
    SUMMARY = 8
    FIRST_BACKUP = 9


class SetupWizard(QWizard):
    """Gathers a :class:`SetupDraft` and creates the destination and plan through the engine."""

    plan_created = Signal(object)
    """Emitted with the new :class:`~safekeep.state.model.Plan` once its first run has started."""

    def __init__(
        self,
        engine: Engine,
        background: Background,
        *,
        home: Path | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("Set up Safekeep"))
        self.setWindowIcon(icons.app_icon())
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnLastPage, True)
        self.setOption(QWizard.WizardOption.NoCancelButtonOnLastPage, True)
        self.setMinimumSize(QSize(760, 600))
        self.ctx = WizardContext(SetupDraft(), engine, background, home or Path.home())
        self.welcome = WelcomePage(self.ctx)
        self.where = WherePage(self.ctx)
        self.provider = ProviderPage(self.ctx)
        self.test = TestPage(self.ctx)
        self.password = PasswordPage(self.ctx)
        self.kit = KitPage(self.ctx)
        self.sources = SourcesPage(self.ctx)
        self.schedule = SchedulePage(self.ctx)
        self.summary = SummaryPage(self.ctx)
        self.first_backup = FirstBackupPage(self.ctx)
        for pid, page in (
            (PageId.WELCOME, self.welcome),
            (PageId.WHERE, self.where),
            (PageId.PROVIDER, self.provider),
            (PageId.TEST, self.test),
            (PageId.PASSWORD, self.password),
            (PageId.KIT, self.kit),
            (PageId.SOURCES, self.sources),
            (PageId.SCHEDULE, self.schedule),
            (PageId.SUMMARY, self.summary),
            (PageId.FIRST_BACKUP, self.first_backup),
        ):
            self.setPage(int(pid), page)
        self.setStartId(int(PageId.WELCOME))
        self.accepted.connect(self._accepted)

    @property
    def draft(self) -> SetupDraft:
        return self.ctx.draft

    def _accepted(self) -> None:
        if self.first_backup.plan is not None:
            self.plan_created.emit(self.first_backup.plan)

    def created_plan(self) -> Plan | None:
        return self.first_backup.plan
