"""The wizard's first pages: welcome, where to keep the backups, the provider's form, and the
connection test (the storage probe's steps shown as they finish)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QButtonGroup,
    QGridLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QRadioButton,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
)

from safekeep.common.cancel import CancelToken
from safekeep.common.errors import Cancelled, SafekeepError
from safekeep.gui import icons
from safekeep.gui.background import Background
from safekeep.gui.engine import Engine, trust_sftp_host
from safekeep.gui.wizard.draft import Mode, SetupDraft
from safekeep.gui.wizard.forms import FORMS, ProviderForm, RcloneForm, choices
from safekeep.gui.wizard.page import Page
from safekeep.gui.wizard.signin import SignInForm
from safekeep.storage.validate import ProbeResult, ProbeStep, Status

SIGN_IN_SCHEMES = ("gdrive", "onedrive", "dropbox")


@dataclass
class WizardContext:
    """What every page shares: the draft being filled, the engine and the background runner."""

    draft: SetupDraft
    engine: Engine
    background: Background
    home: Path


def wrapped(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    return label


class WelcomePage(Page):
    def __init__(self, ctx: WizardContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setTitle(self.tr("Welcome to Safekeep"))
        self.setSubTitle(self.tr("Safekeep keeps encrypted copies of your files somewhere safe."))
        layout = QVBoxLayout(self)
        layout.addWidget(
            wrapped(
                self.tr(
                    "In a few steps you choose where the backups go, set a password that protects "
                    "them, choose the folders to protect and when to back them up. Then the first "
                    "backup starts, and from then on the Safekeep icon next to the clock keeps your "
                    "files backed up."
                )
            )
        )
        layout.addSpacing(12)
        self.new = QRadioButton(self.tr("&Set up a new backup"))
        self.existing = QRadioButton(
            self.tr("&Connect an existing backup (a new computer, or after reinstalling)")
        )
        big = QFont(self.font())
        big.setPointSizeF(big.pointSizeF() * 1.15)
        for b in (self.new, self.existing):
            b.setFont(big)
            layout.addWidget(b)
        self.new.setChecked(True)
        layout.addStretch(1)

    def validatePage(self) -> bool:
        self.ctx.draft.mode = Mode.EXISTING if self.existing.isChecked() else Mode.NEW
        return True


class WherePage(Page):
    def __init__(self, ctx: WizardContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setTitle(self.tr("Where should the backups be kept?"))
        self.setSubTitle(
            self.tr("Best is one copy nearby (a USB disk or NAS) and one off-site (a cloud service).")
        )
        grid = QGridLayout(self)
        grid.setSpacing(8)
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        self.buttons: dict[str, QToolButton] = {}
        for i, choice in enumerate(choices()):
            b = QToolButton()
            b.setCheckable(True)
            b.setIcon(icons.provider_icon(choice.key))
            b.setIconSize(QSize(40, 40))
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            b.setText(f"{choice.title}\n{choice.subtitle}")
            b.setAccessibleName(choice.title)
            b.setMinimumSize(QSize(330, 60))
            b.setSizePolicy(b.sizePolicy().horizontalPolicy().Expanding, b.sizePolicy().verticalPolicy())
            b.setObjectName(f"choice-{choice.key}")
            self.group.addButton(b)
            self.buttons[choice.key] = b
            grid.addWidget(b, i // 2, i % 2)
            b.toggled.connect(self._toggled)
        self.buttons["local"].setChecked(True)

    def _toggled(self, _checked: bool) -> None:
        self.refresh()

    def choose(self, key: str) -> None:
        self.buttons[key].setChecked(True)

    def chosen(self) -> str:
        for key, b in self.buttons.items():
            if b.isChecked():
                return key
        return ""

    def complete(self) -> bool:
        return bool(self.chosen())

    def validatePage(self) -> bool:
        self.ctx.draft.provider = self.chosen()
        return True


class ProviderPage(Page):
    def __init__(self, ctx: WizardContext) -> None:
        super().__init__()
        self.ctx = ctx
        layout = QVBoxLayout(self)
        self.stack = QStackedWidget()
        layout.addWidget(self.stack, 1)
        self.problem = wrapped("")
        self.problem.setObjectName("problem")
        layout.addWidget(self.problem)
        self.forms: dict[str, ProviderForm] = {}

    def form(self, key: str | None = None) -> ProviderForm:
        key = key or self.ctx.draft.provider
        if key not in self.forms:
            form: ProviderForm = (
                SignInForm(key, self.ctx.background) if key in SIGN_IN_SCHEMES else FORMS[key]()
            )
            form.changed.connect(self._changed)
            self.forms[key] = form
            self.stack.addWidget(form)
            if isinstance(form, RcloneForm):
                rclone = form
                self.ctx.background.run(rclone.load_remotes, rclone.set_remotes, lambda _exc: None)
        return self.forms[key]

    def initializePage(self) -> None:
        super().initializePage()
        key = self.ctx.draft.provider
        title = next(c.title for c in choices() if c.key == key)
        self.setTitle(title)
        self.setSubTitle(
            self.tr("Where is the existing backup?")
            if self.ctx.draft.mode is Mode.EXISTING
            else self.tr("Fill in where the backups should go.")
        )
        self.stack.setCurrentWidget(self.form(key))
        self._changed()

    def _changed(self) -> None:
        problem = self.form().problem()
        self.problem.setText(problem)
        self.refresh()

    def complete(self) -> bool:
        return not self.form().problem()

    def validatePage(self) -> bool:
        form = self.form()
        form.prepare()
        d = self.ctx.draft
        d.location = form.location()
        d.env = form.env()
        d.secrets = form.secrets()
        d.options = form.options()
        d.store = form.store if isinstance(form, SignInForm) else None
        d.destination_name = form.suggested_name()
        return True


_STATUS_WORDS = {
    Status.OK: "Passed",
    Status.WARNING: "Warning",
    Status.FAILED: "Failed",
    Status.SKIPPED: "Skipped",
}
_STATUS_ICONS = {
    Status.OK: icons.State.IDLE,
    Status.WARNING: icons.State.WARNING,
    Status.FAILED: icons.State.ERROR,
    Status.SKIPPED: icons.State.PAUSED,
}
_FINGERPRINT_RE = re.compile(r"SHA256:[A-Za-z0-9+/=]+")


class TestPage(Page):
    def __init__(self, ctx: WizardContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setTitle(self.tr("Testing the connection"))
        self.setSubTitle(self.tr("Safekeep writes, reads and deletes a small test file."))
        layout = QVBoxLayout(self)
        self.steps = QListWidget()
        self.steps.setWordWrap(True)
        self.steps.setIconSize(QSize(20, 20))
        self.steps.setObjectName("probe-steps")
        layout.addWidget(self.steps, 1)
        self.summary = wrapped("")
        self.summary.setObjectName("probe-summary")
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.summary)
        self.trust = QPushButton()
        self.trust.setVisible(False)
        self.trust.clicked.connect(self._trust_host)
        layout.addWidget(self.trust)
        self.again = QPushButton(self.tr("&Test again"))
        self.again.clicked.connect(self.start)
        layout.addWidget(self.again, 0, Qt.AlignmentFlag.AlignLeft)
        self.result: ProbeResult | None = None
        self._cancel = CancelToken()
        self._fingerprint = ""

    def initializePage(self) -> None:
        super().initializePage()
        self.start()

    def cleanupPage(self) -> None:
        self._cancel.cancel("the wizard went back")

    def start(self) -> None:
        self._cancel.cancel("a new test started")
        self._cancel = cancel = CancelToken()
        self.result = None
        self._fingerprint = ""
        self.trust.setVisible(False)
        self.steps.clear()
        self.again.setEnabled(False)
        self.summary.setText(self.tr("Testing {location} …").format(location=self.ctx.draft.location))
        d = self.ctx.draft
        on_step = self.ctx.background.relay(self._step)
        engine = self.ctx.engine
        self.ctx.background.run(
            lambda: engine.test_location(
                d.location,
                env=dict(d.env),
                secrets=dict(d.secrets),
                options=dict(d.options),
                store=d.store,
                on_step=on_step,
                cancel=cancel,
            ),
            lambda result: self._done(result, cancel),
            lambda exc: self._failed(exc, cancel),
        )
        self.refresh()

    def _step(self, step: object) -> None:
        assert isinstance(step, ProbeStep)
        text = step.message
        if step.status is not Status.SKIPPED:  # a skipped step's message says so itself
            text = f"{self.tr(_STATUS_WORDS[step.status])}: {text}"
        if step.hint:
            text += "\n" + step.hint
        item = QListWidgetItem(icons.state_icon(_STATUS_ICONS[step.status]), text)
        item.setData(Qt.ItemDataRole.UserRole, step.name)
        self.steps.addItem(item)
        self.steps.scrollToBottom()
        if step.status is Status.FAILED and self.ctx.draft.provider == "sftp":
            m = _FINGERPRINT_RE.search(step.message)
            if m and "recorded" not in step.message:
                self._fingerprint = m.group(0)

    def _done(self, result: ProbeResult, cancel: CancelToken) -> None:
        if cancel is not self._cancel:
            return
        self.result = result
        self.again.setEnabled(True)
        if result.ok:
            warnings = [s for s in result.steps if s.status is Status.WARNING]
            self.summary.setText(
                self.tr("✔ The connection works.")
                + (" " + self.tr("Read the warnings above.") if warnings else "")
            )
        else:
            failed = next(s for s in result.steps if s.status is Status.FAILED)
            text = self.tr("✘ The connection does not work yet: {message}").format(message=failed.message)
            if failed.hint:
                text += "\n" + failed.hint
            self.summary.setText(text + "\n" + self.tr("Go back to correct the details, then test again."))
            if self._fingerprint:
                self.trust.setText(
                    self.tr("I have checked the fingerprint {fp}: &trust this server").format(
                        fp=self._fingerprint
                    )
                )
                self.trust.setVisible(True)
        self.refresh()

    def _failed(self, exc: BaseException, cancel: CancelToken) -> None:
        if cancel is not self._cancel or isinstance(exc, Cancelled):
            return
        self.again.setEnabled(True)
        text = exc.user_text() if isinstance(exc, SafekeepError) else f"{type(exc).__name__}: {exc}"
        self.summary.setText(self.tr("✘ The test could not run: {message}").format(message=text))
        self.refresh()

    def _trust_host(self) -> None:
        d = self.ctx.draft
        fingerprint = self._fingerprint
        self.trust.setEnabled(False)

        def done(_: object) -> None:
            self.trust.setEnabled(True)
            self.start()

        def failed(exc: BaseException) -> None:
            self.trust.setEnabled(True)
            text = exc.user_text() if isinstance(exc, SafekeepError) else str(exc)
            self.summary.setText(text)

        self.ctx.background.run(
            lambda: trust_sftp_host(d.location, fingerprint, env=d.env, secrets=d.secrets, options=d.options),
            done,
            failed,
        )

    def complete(self) -> bool:
        return self.result is not None and self.result.ok
