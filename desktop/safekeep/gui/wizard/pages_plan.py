"""The wizard's last pages: what to back up, when, the summary, and the first backup."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTime
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QTimeEdit,
    QVBoxLayout,
    QWidget,
    QWizard,
)

from safekeep.common.errors import SafekeepError
from safekeep.engine.events import JobEvent
from safekeep.gui import texts
from safekeep.gui.wizard.draft import DEFAULT_RETENTION, Mode, SchedulePreset, suggested_folders, triggers_for
from safekeep.gui.wizard.page import Page
from safekeep.gui.wizard.pages_storage import WizardContext, wrapped
from safekeep.state.model import Destination, Outcome, Plan, Reason, Retention, Run


class SourcesPage(Page):
    def __init__(self, ctx: WizardContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setTitle(self.tr("What should be backed up?"))
        self.setSubTitle(self.tr("Tick the folders to protect; add others with “Add folder”."))
        layout = QVBoxLayout(self)
        self.folders = QListWidget()
        self.folders.setObjectName("folders")
        self.folders.itemChanged.connect(self.refresh)
        layout.addWidget(self.folders, 2)
        row = QHBoxLayout()
        add = QPushButton(self.tr("&Add folder…"))
        add.clicked.connect(self._pick)
        remove = QPushButton(self.tr("&Remove"))
        remove.clicked.connect(self.remove_selected)
        row.addWidget(add)
        row.addWidget(remove)
        row.addStretch(1)
        layout.addLayout(row)
        label = QLabel(self.tr("&Leave out files and folders matching (one pattern a line):"))
        layout.addWidget(label)
        self.excludes = QPlainTextEdit()
        self.excludes.setObjectName("excludes")
        self.excludes.setTabChangesFocus(True)
        label.setBuddy(self.excludes)
        layout.addWidget(self.excludes, 1)
        layout.addWidget(
            wrapped(
                self.tr(
                    "<small>*.tmp leaves out every file ending in .tmp; a name alone (.cache) leaves "
                    "out every file or folder of that name.</small>"
                )
            )
        )
        for path in suggested_folders(ctx.home):
            self.add_folder(str(path), checked=True)
        self.excludes.setPlainText("\n".join(ctx.draft.excludes))

    def add_folder(self, path: str, *, checked: bool = True) -> None:
        for i in range(self.folders.count()):
            item = self.folders.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == path:
                item.setCheckState(Qt.CheckState.Checked)
                return
        item = QListWidgetItem(path)
        item.setData(Qt.ItemDataRole.UserRole, path)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        self.folders.addItem(item)
        self.refresh()

    def _pick(self) -> None:
        path = QFileDialog.getExistingDirectory(self, self.tr("Add a folder to back up"), str(self.ctx.home))
        if path:
            self.add_folder(path)

    def remove_selected(self) -> None:
        for item in self.folders.selectedItems():
            self.folders.takeItem(self.folders.row(item))
        self.refresh()

    def chosen(self) -> list[str]:
        out = []
        for i in range(self.folders.count()):
            item = self.folders.item(i)
            if item.checkState() == Qt.CheckState.Checked:
                out.append(str(item.data(Qt.ItemDataRole.UserRole)))
        return out

    def complete(self) -> bool:
        return bool(self.chosen())

    def validatePage(self) -> bool:
        self.ctx.draft.sources = self.chosen()
        self.ctx.draft.excludes = [x.strip() for x in self.excludes.toPlainText().splitlines() if x.strip()]
        return True


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class RetentionBox(QGroupBox):
    """How long old backups are kept: the recommended policy, everything, or custom counts."""

    RECOMMENDED, EVERYTHING, CUSTOM = "recommended", "everything", "custom"
    FIELDS = (
        ("keep_last", "Most recent"),
        ("keep_hourly", "Hourly"),
        ("keep_daily", "Daily"),
        ("keep_weekly", "Weekly"),
        ("keep_monthly", "Monthly"),
        ("keep_yearly", "Yearly"),
    )

    def __init__(self, retention: Retention, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTitle(self.tr("How long to keep old backups"))
        layout = QVBoxLayout(self)
        self.choice = QComboBox()
        self.choice.setObjectName("retention-choice")
        self.choice.addItem(self.tr("Recommended"), self.RECOMMENDED)
        self.choice.addItem(self.tr("Keep every backup"), self.EVERYTHING)
        self.choice.addItem(self.tr("Custom"), self.CUSTOM)
        layout.addWidget(self.choice)
        self.custom = QWidget()
        row = QHBoxLayout(self.custom)
        row.setContentsMargins(0, 0, 0, 0)
        self.counts: dict[str, QSpinBox] = {}
        for name, label in self.FIELDS:
            box = QSpinBox()
            box.setObjectName(f"retention-{name}")
            box.setRange(0, 999)
            box.valueChanged.connect(self._describe)
            self.counts[name] = box
            row.addWidget(QLabel(self.tr(label)))
            row.addWidget(box)
        row.addStretch(1)
        layout.addWidget(self.custom)
        self.summary = wrapped("")
        self.summary.setObjectName("retention-summary")
        layout.addWidget(self.summary)
        self.choice.currentIndexChanged.connect(self._chosen)
        self.set_retention(retention)

    def set_retention(self, retention: Retention) -> None:
        if retention == DEFAULT_RETENTION:
            key = self.RECOMMENDED
        elif retention.keeps_everything():
            key = self.EVERYTHING
        else:
            key = self.CUSTOM
        for name, _ in self.FIELDS:
            self.counts[name].setValue(max(0, getattr(retention, name)))
        self.choice.setCurrentIndex(self.choice.findData(key))
        self._chosen()

    def retention(self) -> Retention:
        key = self.choice.currentData()
        if key == self.RECOMMENDED:
            return DEFAULT_RETENTION
        if key == self.EVERYTHING:
            return Retention()
        return Retention(**{name: box.value() for name, box in self.counts.items()})

    def _chosen(self) -> None:
        custom = self.choice.currentData() == self.CUSTOM
        self.custom.setVisible(custom)
        if custom and self.retention().keeps_everything():
            for name, value in DEFAULT_RETENTION.to_dict().items():  # a starting point to adjust
                self.counts[name].setValue(value)
        self._describe()

    def _describe(self) -> None:
        r = self.retention()
        if r.keeps_everything():
            text = self.tr(
                "Every backup is kept: nothing is ever removed, so the backup storage keeps growing."
            )
        else:
            text = self.tr(
                "Kept: {what}. After each backup, older backups are removed automatically and the "
                "space they used is freed; the newest backup is always kept."
            ).format(what=r.describe())
        self.summary.setText(text)


class SchedulePage(Page):
    def __init__(self, ctx: WizardContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setTitle(self.tr("When should Safekeep back up?"))
        self.setSubTitle(self.tr("Backups only copy what changed, so frequent backups are quick."))
        layout = QVBoxLayout(self)
        self.group = QButtonGroup(self)
        self.options: dict[SchedulePreset, QRadioButton] = {}
        labels = {
            SchedulePreset.ON_CHANGE: self.tr(
                "&When files change (a minute after the last change, and every night at 22:00)"
            ),
            SchedulePreset.HOURLY: self.tr("Every &hour"),
            SchedulePreset.NIGHTLY: self.tr("Every &night at 22:00"),
            SchedulePreset.CUSTOM: self.tr("&Custom:"),
        }
        for preset, text in labels.items():
            b = QRadioButton(text)
            b.setObjectName(f"schedule-{preset.value}")
            self.group.addButton(b)
            self.options[preset] = b
            layout.addWidget(b)
            b.toggled.connect(self._toggled)
        self.custom = QGroupBox()
        form = QFormLayout(self.custom)
        self.time = QTimeEdit(QTime(22, 0))
        self.time.setDisplayFormat("HH:mm")
        form.addRow(self.tr("At:"), self.time)
        days = QWidget()
        days_row = QHBoxLayout(days)
        days_row.setContentsMargins(0, 0, 0, 0)
        self.days: list[QCheckBox] = []
        for name in _WEEKDAYS:
            cb = QCheckBox(self.tr(name))
            cb.setChecked(True)
            self.days.append(cb)
            days_row.addWidget(cb)
        form.addRow(self.tr("On:"), days)
        layout.addWidget(self.custom)
        layout.addWidget(
            wrapped(
                self.tr(
                    "If the computer is off or asleep at a planned time, Safekeep backs up soon after "
                    "it is started again."
                )
            )
        )
        self.retention = RetentionBox(ctx.draft.retention)
        layout.addWidget(self.retention)
        layout.addStretch(1)
        self.options[ctx.draft.schedule].setChecked(True)
        self._toggled()

    def preset(self) -> SchedulePreset:
        return next(p for p, b in self.options.items() if b.isChecked())

    def _toggled(self) -> None:
        self.custom.setEnabled(self.options[SchedulePreset.CUSTOM].isChecked())
        self.refresh()

    def complete(self) -> bool:
        return self.preset() is not SchedulePreset.CUSTOM or any(cb.isChecked() for cb in self.days)

    def validatePage(self) -> bool:
        preset = self.preset()
        d = self.ctx.draft
        d.schedule = preset
        d.triggers = triggers_for(
            preset,
            time=self.time.time().toString("HH:mm"),
            weekdays=tuple(i for i, cb in enumerate(self.days) if cb.isChecked()),
        )
        d.retention = self.retention.retention()
        return True


def describe_triggers(page: QWidget, preset: SchedulePreset, triggers: tuple[Any, ...]) -> str:
    if preset is SchedulePreset.ON_CHANGE:
        return page.tr("When files change, and every night at 22:00")
    if preset is SchedulePreset.HOURLY:
        return page.tr("Every hour")
    if preset is SchedulePreset.NIGHTLY:
        return page.tr("Every night at 22:00")
    t = triggers[0]
    times = ", ".join(t.params.get("times", []))
    if t.kind == "weekly":
        days = ", ".join(page.tr(_WEEKDAYS[i]) for i in t.params.get("weekdays", []))
        return page.tr("On {days} at {times}").format(days=days, times=times)
    return page.tr("Every day at {times}").format(times=times)


class SummaryPage(Page):
    def __init__(self, ctx: WizardContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setTitle(self.tr("Ready to start"))
        self.setSubTitle(self.tr("Check the details, give the backup a name, and start the first backup."))
        self.setCommitPage(True)
        self.setButtonText(QWizard.WizardButton.CommitButton, self.tr("&Start the first backup"))
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.name = QLineEdit()
        self.name.setObjectName("plan-name")
        self.name.textChanged.connect(self.refresh)
        form.addRow(self.tr("&Name of this backup:"), self.name)
        self.destination = QLineEdit()
        form.addRow(self.tr("Name of the &destination:"), self.destination)
        self.destination.textChanged.connect(self.refresh)
        layout.addLayout(form)
        self.details = wrapped("")
        self.details.setObjectName("summary")
        self.details.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.details)
        layout.addStretch(1)

    def initializePage(self) -> None:
        super().initializePage()
        d = self.ctx.draft
        if not self.name.text():
            self.name.setText(d.plan_name or self.tr("Office files"))
        self.destination.setText(d.destination_name)
        rows = [
            (self.tr("Backups go to"), _esc(d.location)),
            (
                self.tr("Repository"),
                self.tr("an existing backup is connected")
                if d.mode is Mode.EXISTING
                else self.tr("a new encrypted repository is created"),
            ),
            (self.tr("Folders"), "<br/>".join(_esc(s) for s in d.sources)),
            (self.tr("Left out"), _esc(", ".join(d.excludes)) or self.tr("nothing")),
            (self.tr("When"), _esc(describe_triggers(self, d.schedule, d.triggers))),
            (self.tr("Kept"), _esc(d.retention.describe())),
        ]
        html = "<table cellpadding='3'>" + "".join(
            f"<tr><td valign='top'><b>{_esc(k)}</b></td><td>{v}</td></tr>" for k, v in rows
        )
        self.details.setText(html + "</table>")
        self.refresh()

    def complete(self) -> bool:
        return bool(self.name.text().strip() and self.destination.text().strip())

    def validatePage(self) -> bool:
        self.ctx.draft.plan_name = self.name.text().strip()
        self.ctx.draft.destination_name = self.destination.text().strip()
        return True


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class FirstBackupPage(Page):
    """Creates (or connects) the destination, saves the plan and runs the first backup."""

    def __init__(self, ctx: WizardContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setTitle(self.tr("The first backup"))
        self.setSubTitle(self.tr("Your files are copied, encrypted, to the new destination."))
        layout = QVBoxLayout(self)
        self.stage = wrapped("")
        self.stage.setObjectName("stage")
        layout.addWidget(self.stage)
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)
        self.bar.setObjectName("progress")
        layout.addWidget(self.bar)
        self.numbers = wrapped("")
        self.numbers.setObjectName("numbers")
        layout.addWidget(self.numbers)
        self.current = QLabel()
        self.current.setObjectName("current")
        self.current.setTextFormat(Qt.TextFormat.PlainText)
        layout.addWidget(self.current)
        self.result = wrapped("")
        self.result.setObjectName("result")
        layout.addWidget(self.result)
        self.retry = QPushButton(self.tr("&Try again"))
        self.retry.setVisible(False)
        self.retry.clicked.connect(self.start)
        layout.addWidget(self.retry, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addStretch(1)
        self.destination: Destination | None = None
        self.plan: Plan | None = None
        self.run_id = ""
        self.run: Run | None = None
        self.skipped = 0

    def initializePage(self) -> None:
        super().initializePage()
        self.start()

    def start(self) -> None:
        self.retry.setVisible(False)
        self.result.setText("")
        d = self.ctx.draft
        engine = self.ctx.engine
        on_event = self.ctx.background.relay(self._event)
        if self.destination is None:
            self.stage.setText(
                self.tr("Connecting to the existing backup…")
                if d.mode is Mode.EXISTING
                else self.tr("Creating the encrypted repository…")
            )
        else:
            self.stage.setText(self.tr("Starting the backup…"))
        known = self.destination

        def work() -> tuple[Destination, Plan, str]:
            dest = known or engine.add_destination(
                d.destination_name,
                d.location,
                password=d.password,
                env=d.env,
                secrets=d.secrets,
                options=d.options,
                create=d.mode is Mode.NEW,
                store=d.store,
            )
            plan = engine.save_plan(d.plan(dest.id))
            run_id = engine.run_plan(plan.id, Reason.MANUAL, "first backup", on_event=on_event)
            return dest, plan, run_id

        self.ctx.background.run(work, self._started, self._failed)
        self.refresh()

    def _started(self, started: tuple[Destination, Plan, str]) -> None:
        self.destination, self.plan, self.run_id = started
        self.stage.setText(
            self.tr("Backing up… You can close this window: the backup goes on in the background.")
        )
        engine = self.ctx.engine
        run_id = self.run_id
        self.ctx.background.run(lambda: engine.wait(run_id), self._finished, self._failed)
        self.refresh()

    def _event(self, event: object) -> None:
        if not isinstance(event, JobEvent) or event.run_id != self.run_id:
            return
        data = event.data
        if event.kind == "progress":
            bytes_total = int(data.get("bytes_total", -1))
            bytes_done = int(data.get("bytes_done", 0))
            if bytes_total > 0:
                self.bar.setRange(0, 1000)
                self.bar.setValue(int(1000 * min(bytes_done, bytes_total) / bytes_total))
            files_total = int(data.get("files_total", -1))
            files = str(data.get("files_done", 0)) + (f" / {files_total}" if files_total >= 0 else "")
            size = texts.size(bytes_done) + (f" / {texts.size(bytes_total)}" if bytes_total >= 0 else "")
            self.numbers.setText(self.tr("Files: {files} — {size}").format(files=files, size=size))
            self.current.setText(_elide(str(data.get("current_path", ""))))
        elif event.kind == "file_error":
            self.skipped += 1

    def _finished(self, run: Run) -> None:
        self.run = run
        self.bar.setRange(0, 1000)
        self.current.setText("")
        if run.outcome is Outcome.SUCCESS:
            self.bar.setValue(1000)
            files = sum(r.files for r in run.results)
            size = sum(r.bytes for r in run.results)
            self.stage.setText(self.tr("✔ The first backup is complete."))
            self.result.setText(
                self.tr("{files} files ({size}) are protected. Safekeep now runs in the background.").format(
                    files=files, size=texts.size(size)
                )
            )
        elif run.outcome is Outcome.WARNING:
            self.bar.setValue(1000)
            skipped = sum(len(r.skipped) for r in run.results)
            self.stage.setText(self.tr("⚠ The first backup is complete, but some files were skipped."))
            self.result.setText(
                self.tr("{n} file(s) could not be read; the Activity view in Safekeep lists them.").format(
                    n=skipped
                )
            )
        else:
            errors = "; ".join(r.error for r in run.results if r.error)
            self.stage.setText(self.tr("✘ The first backup did not complete."))
            self.result.setText(
                errors or self.tr("The backup ended: {outcome}.").format(outcome=run.outcome.value)
            )
            self.retry.setVisible(True)
        self.refresh()

    def _failed(self, exc: BaseException) -> None:
        text = exc.user_text() if isinstance(exc, SafekeepError) else f"{type(exc).__name__}: {exc}"
        self.stage.setText(self.tr("✘ Something went wrong."))
        self.result.setText(text)
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.retry.setVisible(True)
        self.refresh()

    def complete(self) -> bool:
        return bool(self.run_id)


def _elide(path: str, limit: int = 90) -> str:
    return path if len(path) <= limit else "…" + path[-(limit - 1) :]
