"""The form for storage in a person's own account (Google Drive, OneDrive, Dropbox): "Sign in".

Signing in runs the provider's :class:`~safekeep.storage.signin.SignInFlow` in the background:
the system browser shows the provider's consent page and the flow receives the answer on a
loopback address. The tokens go to a :class:`~safekeep.storage.secrets.MemorySecretStore` that
the wizard hands to the engine, for the connection test and then with the new destination (the
engine copies them to the keyring). When this installation has no sign-in for the service, the
form says so and the button stays disabled.
"""

from __future__ import annotations

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QLabel, QPushButton, QWidget

from safekeep.common.cancel import CancelToken
from safekeep.common.errors import SafekeepError
from safekeep.gui.background import Background
from safekeep.gui.wizard.forms import ProviderForm, tr
from safekeep.storage.registry import KNOWN_SCHEMES, ProviderSettings, parse_location
from safekeep.storage.secrets import MemorySecretStore
from safekeep.storage.signin import Account, SignInFlow, sign_in_flow

_HELP = {
    "gdrive": "Your backups go to a folder in your Google Drive. Safekeep may only see the files it "
    "creates itself.",
    "onedrive": "Your backups go to a folder in your OneDrive (personal or work/school account).",
    "dropbox": "Your backups go to a folder in your Dropbox, under Apps/Safekeep.",
}


class _DesktopBrowser:
    """Opens the consent page in the system browser, on the GUI thread."""

    def __init__(self, background: Background) -> None:
        self._open = background.relay(lambda url: QDesktopServices.openUrl(QUrl(str(url))))

    def open(self, url: str) -> None:
        self._open(url)

    def redirected(self, cancel: CancelToken) -> str | None:
        return None


class SignInForm(ProviderForm):
    def __init__(self, scheme: str, background: Background, parent: QWidget | None = None) -> None:
        super().__init__(tr(_HELP.get(scheme, "")), parent)
        self.key = scheme
        self._background = background
        self.store = MemorySecretStore()
        self.account: Account | None = None
        self._cancel = CancelToken()
        self.folder = self.line(tr("&Folder:"), placeholder="Safekeep")
        self.folder.setText("Safekeep")
        self.button = QPushButton(tr("&Sign in to {service}…").format(service=KNOWN_SCHEMES[scheme]))
        self.button.clicked.connect(self.sign_in)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.form.addRow("", self.button)
        self.form.addRow("", self.status)
        self.flow: SignInFlow | None
        try:
            self.flow = sign_in_flow(scheme)
        except SafekeepError as exc:
            self.flow = None
            self.button.setEnabled(False)
            self.status.setText(
                tr("This installation of Safekeep cannot sign in to {service}: {why}").format(
                    service=KNOWN_SCHEMES[scheme], why=exc.user_text()
                )
            )
        else:
            self.status.setText(tr("Not signed in yet."))

    def sign_in(self) -> None:
        flow = self.flow
        if flow is None:
            return
        location = parse_location(self.location_text())
        settings = ProviderSettings(store=self.store)
        browser = _DesktopBrowser(self._background)
        self._cancel = CancelToken()
        cancel = self._cancel
        self.button.setEnabled(False)
        self.status.setText(tr("Waiting for you to sign in in the web browser…"))
        self._background.run(
            lambda: flow.sign_in(location, settings, self.store, browser, cancel=cancel),
            self._signed_in,
            self._failed,
        )

    def cancel(self) -> None:
        self._cancel.cancel("the wizard page was left")

    def _signed_in(self, account: Account) -> None:
        self.account = account
        self.button.setEnabled(True)
        self.status.setText(tr("✔ Signed in as {account}.").format(account=str(account)))
        self.changed.emit()

    def _failed(self, exc: BaseException) -> None:
        self.button.setEnabled(True)
        text = exc.user_text() if isinstance(exc, SafekeepError) else str(exc)
        self.status.setText(tr("✘ Signing in failed: {why}").format(why=text))
        self.changed.emit()

    def location_text(self) -> str:
        folder = self.folder.text().strip().strip("/") or "Safekeep"
        return f"{self.key}:{folder}"

    def location(self) -> str:
        if self.flow is None:
            raise SafekeepError(self.status.text())
        if self.account is None:
            raise SafekeepError(tr("Sign in first."))
        return self.location_text()

    def suggested_name(self) -> str:
        return f"{KNOWN_SCHEMES[self.key]}: {self.folder.text().strip()}"
