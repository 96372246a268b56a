"""The plan editor: the setup wizard's "what" and "when" pages, for a plan that exists.

:class:`PlanEditor` is a small :class:`QWizard` holding the same
:class:`~safekeep.gui.wizard.pages_plan.SourcesPage` and
:class:`~safekeep.gui.wizard.pages_plan.SchedulePage` as the first-run wizard, filled from the
plan (its folders ticked, the usual folders it leaves out offered unticked, its exclusions, its
schedule as one of the presets or as a custom time). Finish saves the changed plan through the
engine in the background (the engine records the change in the audit log).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, QTime, Signal
from PySide6.QtWidgets import QMessageBox, QWidget, QWizard

from safekeep.common.errors import SafekeepError
from safekeep.gui import icons
from safekeep.gui.background import Background
from safekeep.gui.engine import Engine
from safekeep.gui.wizard.draft import SchedulePreset, SetupDraft, suggested_folders, triggers_for
from safekeep.gui.wizard.pages_plan import SchedulePage, SourcesPage
from safekeep.gui.wizard.pages_storage import WizardContext
from safekeep.state.model import Plan, Trigger


def preset_of(triggers: tuple[Trigger, ...]) -> tuple[SchedulePreset, str, tuple[int, ...]]:
    """The schedule choice that stands for ``triggers``: a preset, or custom with a time and days."""
    for preset in (SchedulePreset.ON_CHANGE, SchedulePreset.HOURLY, SchedulePreset.NIGHTLY):
        if triggers == triggers_for(preset):
            return preset, "22:00", ()
    if len(triggers) == 1 and triggers[0].kind in ("daily", "weekly"):
        t = triggers[0]
        times = list(t.params.get("times", ["22:00"]))
        days = tuple(int(d) for d in t.params.get("weekdays", range(7)))
        return SchedulePreset.CUSTOM, str(times[0]) if times else "22:00", days
    if any(t.kind == "file-change" for t in triggers):
        return SchedulePreset.ON_CHANGE, "22:00", ()
    return SchedulePreset.NIGHTLY, "22:00", ()


class PlanEditor(QWizard):
    saved = Signal(object)
    """The saved :class:`Plan`."""

    def __init__(
        self,
        engine: Engine,
        background: Background,
        plan: Plan,
        *,
        home: Path | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.plan = plan
        self.setWindowTitle(self.tr("Change “{plan}”").format(plan=plan.name))
        self.setWindowIcon(icons.app_icon())
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setMinimumSize(QSize(700, 540))
        self.setButtonText(QWizard.WizardButton.FinishButton, self.tr("&Save"))
        preset, time, days = preset_of(plan.triggers)
        draft = SetupDraft(
            sources=list(plan.sources),
            excludes=list(plan.excludes),
            schedule=preset,
            triggers=plan.triggers,
            plan_name=plan.name,
            retention=plan.retention,
        )
        self.ctx = WizardContext(draft, engine, background, home or Path.home())
        self.sources = SourcesPage(self.ctx)
        self.sources.folders.clear()
        for source in plan.sources:
            self.sources.add_folder(source, checked=True)
        for folder in suggested_folders(self.ctx.home):
            if str(folder) not in plan.sources:
                self.sources.add_folder(str(folder), checked=False)
        self.schedule = SchedulePage(self.ctx)
        if preset is SchedulePreset.CUSTOM:
            self.schedule.time.setTime(QTime.fromString(time, "HH:mm"))
            for i, cb in enumerate(self.schedule.days):
                cb.setChecked(i in days)
        self.addPage(self.sources)
        self.addPage(self.schedule)
        self.error = ""

    def changed_plan(self) -> Plan:
        d = self.ctx.draft
        return self.plan.with_changes(
            sources=tuple(d.sources),
            excludes=tuple(x for x in (e.strip() for e in d.excludes) if x),
            triggers=d.triggers,
            retention=d.retention,
        )

    def accept(self) -> None:
        if not self.validateCurrentPage():  # Finish does not validate the last page by itself
            return
        plan = self.changed_plan()
        engine = self.ctx.engine
        self.button(QWizard.WizardButton.FinishButton).setEnabled(False)
        self.ctx.background.run(lambda: engine.save_plan(plan), self._saved, self._failed)

    def _saved(self, plan: Plan) -> None:
        self.plan = plan
        self.saved.emit(plan)
        super().accept()

    def _failed(self, exc: BaseException) -> None:
        self.button(QWizard.WizardButton.FinishButton).setEnabled(True)
        self.error = exc.user_text() if isinstance(exc, SafekeepError) else f"{type(exc).__name__}: {exc}"
        QMessageBox.warning(self, self.tr("The plan was not saved"), self.error)
