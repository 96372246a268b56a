"""The encryption password page and the recovery kit page."""

from __future__ import annotations

import socket
import sys
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from safekeep.gui import passphrase
from safekeep.gui.recovery_kit import RecoveryKit, write_recovery_kit
from safekeep.gui.wizard.draft import Mode
from safekeep.gui.wizard.page import Page
from safekeep.gui.wizard.pages_storage import WizardContext, wrapped

_LEVEL_WORDS = {
    passphrase.Level.WEAK: "Weak — too easy to guess",
    passphrase.Level.FAIR: "Fair",
    passphrase.Level.STRONG: "Strong",
    passphrase.Level.VERY_STRONG: "Very strong",
}
_LEVEL_COLOURS = {
    passphrase.Level.WEAK: "#c62828",
    passphrase.Level.FAIR: "#b26a00",
    passphrase.Level.STRONG: "#2e7d32",
    passphrase.Level.VERY_STRONG: "#1b5e20",
}


def keyring_name() -> str:
    """Where this system keeps secrets, in words."""
    if sys.platform == "win32":
        return QCoreApplication.translate(
            "PasswordPage", "the Windows Credential Manager of this computer's user account"
        )
    if sys.platform == "darwin":
        return QCoreApplication.translate(
            "PasswordPage", "the macOS Keychain of this computer's user account"
        )
    return QCoreApplication.translate(
        "PasswordPage", "this user's keyring (Secret Service, e.g. GNOME Keyring or KWallet)"
    )


class PasswordPage(Page):
    def __init__(self, ctx: WizardContext) -> None:
        super().__init__()
        self.ctx = ctx
        layout = QVBoxLayout(self)
        self.intro = wrapped("")
        layout.addWidget(self.intro)
        form = QFormLayout()
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setObjectName("password")
        self.confirm = QLineEdit()
        self.confirm.setEchoMode(QLineEdit.EchoMode.Password)
        self.confirm.setObjectName("confirm")
        form.addRow(self.tr("&Password:"), self.password)
        self.confirm_label = QLabel(self.tr("&Repeat it:"))
        self.confirm_label.setBuddy(self.confirm)
        form.addRow(self.confirm_label, self.confirm)
        layout.addLayout(form)
        row = QHBoxLayout()
        self.suggest = QPushButton(self.tr("&Suggest a passphrase"))
        self.suggest.clicked.connect(self.use_suggestion)
        self.show_it = QCheckBox(self.tr("S&how the password"))
        self.show_it.toggled.connect(self._show)
        row.addWidget(self.suggest)
        row.addWidget(self.show_it)
        row.addStretch(1)
        layout.addLayout(row)
        self.meter = QProgressBar()
        self.meter.setRange(0, 100)
        self.meter.setTextVisible(False)
        self.meter.setMaximumHeight(10)
        self.meter.setAccessibleName(self.tr("Password strength"))
        layout.addWidget(self.meter)
        self.strength = wrapped("")
        self.strength.setObjectName("strength")
        layout.addWidget(self.strength)
        layout.addStretch(1)
        self.password.textChanged.connect(self._changed)
        self.confirm.textChanged.connect(self._changed)

    def initializePage(self) -> None:
        super().initializePage()
        existing = self.ctx.draft.mode is Mode.EXISTING
        self.setTitle(
            self.tr("The backup's password") if existing else self.tr("Choose an encryption password")
        )
        self.setSubTitle(
            self.tr("Enter the password that was chosen when this backup was set up.")
            if existing
            else self.tr("Everything is encrypted on this computer before it leaves it.")
        )
        self.intro.setText(
            self.tr("It is in the recovery kit, if one was printed.")
            if existing
            else self.tr(
                "Without this password nobody can restore the backups — not even Safekeep's makers. "
                "Safekeep keeps it in {keyring}, and the next page makes a recovery kit to print "
                "or save somewhere safe."
            ).format(keyring=keyring_name())
        )
        for w in (self.confirm, self.confirm_label, self.suggest, self.meter, self.strength):
            w.setVisible(not existing)
        self._changed()

    def use_suggestion(self) -> None:
        phrase = passphrase.generate()
        self.password.setText(phrase)
        self.confirm.setText(phrase)
        self.show_it.setChecked(True)

    def _show(self, on: bool) -> None:
        mode = QLineEdit.EchoMode.Normal if on else QLineEdit.EchoMode.Password
        self.password.setEchoMode(mode)
        self.confirm.setEchoMode(mode)

    def _changed(self) -> None:
        if self.ctx.draft.mode is Mode.EXISTING:
            self.refresh()
            return
        text = self.password.text()
        s = passphrase.estimate(text)
        self.meter.setValue(min(100, int(s.bits)))
        colour = _LEVEL_COLOURS[s.level]
        self.meter.setStyleSheet(f"QProgressBar::chunk {{ background: {colour}; }}")
        words = self.tr("Strength: {level}.").format(level=self.tr(_LEVEL_WORDS[s.level])) if text else ""
        if text and not s.acceptable:
            words += " " + self.tr("Use a longer password, or the suggested passphrase.")
        elif text and self.confirm.text() and self.confirm.text() != text:
            words += " " + self.tr("The two entries differ.")
        self.strength.setText(words)
        self.refresh()

    def complete(self) -> bool:
        text = self.password.text()
        if self.ctx.draft.mode is Mode.EXISTING:
            return bool(text)
        return passphrase.estimate(text).acceptable and self.confirm.text() == text

    def validatePage(self) -> bool:
        self.ctx.draft.password = self.password.text()
        return True

    def nextId(self) -> int:
        wizard = self.wizard()
        next_id = super().nextId()
        if self.ctx.draft.mode is Mode.EXISTING and wizard is not None:
            return next_id + 1  # no recovery kit for a backup that already has one
        return next_id


class KitPage(Page):
    def __init__(self, ctx: WizardContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setTitle(self.tr("Save the recovery kit"))
        self.setSubTitle(self.tr("One page with everything needed to restore on another computer."))
        layout = QVBoxLayout(self)
        layout.addWidget(
            wrapped(
                self.tr(
                    "If this computer is lost or broken, the recovery kit tells you (or whoever helps "
                    "you) where the backups are and how to restore them. Print it or save it on a USB "
                    "stick, and keep it away from this computer."
                )
            )
        )
        self.include = QCheckBox(self.tr("&Print the password in the kit (keep the kit locked away)"))
        layout.addWidget(self.include)
        self.save = QPushButton(self.tr("&Save recovery kit as PDF…"))
        self.save.clicked.connect(self.choose_and_save)
        layout.addWidget(self.save, 0, Qt.AlignmentFlag.AlignLeft)
        self.saved = wrapped("")
        self.saved.setObjectName("kit-saved")
        layout.addWidget(self.saved)
        layout.addSpacing(12)
        self.confirm = QCheckBox(self.tr("I have &kept the recovery kit or written down the password"))
        self.confirm.toggled.connect(self._toggled)
        layout.addWidget(self.confirm)
        layout.addStretch(1)

    def _toggled(self, _checked: bool) -> None:
        self.refresh()

    def kit(self) -> RecoveryKit:
        d = self.ctx.draft
        return RecoveryKit(
            destination_name=d.destination_name,
            location=d.location,
            created=datetime.now().astimezone(),
            env=dict(d.env),
            secret_names=tuple(sorted(d.secrets)),
            password=d.password if self.include.isChecked() else None,
            password_store=keyring_name(),
            computer=socket.gethostname(),
        )

    def choose_and_save(self) -> None:
        default = str(Path.home() / "Safekeep recovery kit.pdf")
        path, _ = QFileDialog.getSaveFileName(self, self.tr("Save the recovery kit"), default, "PDF (*.pdf)")
        if path:
            self.save_to(path)

    def save_to(self, path: str) -> None:
        try:
            write_recovery_kit(path, self.kit())
        except OSError as exc:
            self.saved.setText(self.tr("✘ The kit could not be saved: {why}").format(why=exc.strerror or exc))
            return
        self.ctx.draft.kit_saved_to = path
        self.saved.setText(self.tr("✔ Saved to {path}").format(path=path))
        self.confirm.setChecked(True)

    def complete(self) -> bool:
        return self.confirm.isChecked()
