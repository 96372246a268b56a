"""One form per kind of storage: the fields a person fills in, with help on where to find them.

Every form is a :class:`ProviderForm`: it turns its fields into a location string, non-secret
settings (``env``, under restic's variable names), secrets (kept in the keyring by the engine)
and provider options. :meth:`ProviderForm.problem` names the first thing missing, in words, so
the wizard can say why it does not go on. :data:`CHOICES` lists the storage the wizard offers.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QCoreApplication, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from safekeep.common.errors import SafekeepError
from safekeep.storage.providers.s3_presets import PRESETS, location_for


def tr(text: str) -> str:
    return QCoreApplication.translate("ProviderForm", text)


@dataclass(frozen=True, slots=True)
class Choice:
    key: str
    title: str
    subtitle: str


def choices() -> list[Choice]:
    """The storage the wizard offers, most common first (texts translated when called)."""
    return [
        Choice("local", tr("This computer, a USB disk or a network folder"), tr("A folder you choose")),
        Choice("gdrive", tr("Google Drive"), tr("Sign in with your Google account")),
        Choice("onedrive", tr("OneDrive"), tr("Sign in with your Microsoft account")),
        Choice("dropbox", tr("Dropbox"), tr("Sign in with your Dropbox account")),
        Choice("s3", tr("S3-compatible cloud"), tr("Amazon S3, Backblaze B2, Wasabi, MinIO, …")),
        Choice("sftp", tr("SFTP server"), tr("A server or NAS you reach with SSH")),
        Choice("webdav", tr("Nextcloud or WebDAV"), tr("Nextcloud, ownCloud, Seafile, pCloud, …")),
        Choice("azure", tr("Azure Blob Storage"), tr("A Microsoft Azure storage account")),
        Choice("gs", tr("Google Cloud Storage"), tr("A bucket in Google Cloud")),
        Choice("rclone", tr("Other services (rclone)"), tr("Box, Mega, Zoho, … through rclone")),
    ]


def _help(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
    label.setOpenExternalLinks(True)
    label.setMinimumWidth(420)
    return label


class ProviderForm(QWidget):
    """Base class: fields in a form layout, help text above them."""

    changed = Signal()
    key = ""

    def __init__(self, intro: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(_help(intro))
        self.form = QFormLayout()
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        outer.addLayout(self.form)
        outer.addStretch(1)
        self.extra_options: dict[str, str] = {}
        """Provider options set by the caller (e.g. a known-hosts file), merged into options()."""

    def line(
        self, label: str, help_text: str = "", *, secret: bool = False, placeholder: str = ""
    ) -> QLineEdit:
        edit = QLineEdit()
        edit.setPlaceholderText(placeholder)
        if secret:
            edit.setEchoMode(QLineEdit.EchoMode.Password)
        edit.textChanged.connect(self.changed)
        self.form.addRow(label, edit)
        if help_text:
            self.form.addRow(_help(help_text))
        return edit

    def browse_row(self, label: str, pick: Callable[[], str], placeholder: str = "") -> QLineEdit:
        edit = QLineEdit()
        edit.setPlaceholderText(placeholder)
        edit.textChanged.connect(self.changed)
        button = QPushButton(tr("Choose…"))

        def choose() -> None:
            chosen = pick()
            if chosen:
                edit.setText(chosen)

        button.clicked.connect(choose)
        row = QHBoxLayout()
        row.addWidget(edit, 1)
        row.addWidget(button)
        self.form.addRow(label, row)
        label_widget = self.form.labelForField(row)
        if isinstance(label_widget, QLabel):
            label_widget.setBuddy(edit)
        return edit

    # -- what the wizard reads ----------------------------------------------------------------

    def problem(self) -> str:
        """What is missing or wrong, in words; empty when the form is complete."""
        try:
            self.location()
        except SafekeepError as exc:
            return exc.user_text()
        return ""

    def location(self) -> str:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def secrets(self) -> dict[str, str]:
        return {}

    def options(self) -> dict[str, str]:
        return dict(self.extra_options)

    def suggested_name(self) -> str:
        return self.location()

    def prepare(self) -> None:
        """Called when the person goes on from the form (e.g. to create a new local folder)."""


def _need(value: str, what: str) -> str:
    value = value.strip()
    if not value:
        raise SafekeepError(tr("Enter {what}.").format(what=what))
    return value


class LocalForm(ProviderForm):
    key = "local"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(
            tr(
                "Choose a folder on a USB disk, a second disk or a network share (NAS) mounted on "
                "this computer. A folder on the same disk as your files does not protect them if "
                "that disk fails."
            ),
            parent,
        )
        self.folder = self.browse_row(tr("&Folder:"), self._pick, placeholder="/media/usb/Backups")

    def _pick(self) -> str:
        return QFileDialog.getExistingDirectory(self, tr("Where to keep the backups"), str(Path.home()))

    def location(self) -> str:
        path = _need(self.folder.text(), tr("the folder for the backups"))
        if not Path(path).is_absolute():
            raise SafekeepError(tr("Choose a full folder path, starting at a drive or /."))
        return path

    def suggested_name(self) -> str:
        return Path(self.folder.text().strip()).name or self.folder.text().strip()

    def prepare(self) -> None:
        """Create the chosen folder when only its last part is new (e.g. "Backups" on a USB disk)."""
        path = Path(self.location())
        if not path.exists() and path.parent.is_dir():
            try:
                path.mkdir()
            except OSError:
                pass  # the connection test reports why the folder cannot be used


class S3Form(ProviderForm):
    key = "s3"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(
            tr(
                "A bucket at an S3-compatible service. Create the bucket in the service's console "
                "first, and an access key that may use only that bucket."
            ),
            parent,
        )
        self.service = QComboBox()
        for preset in PRESETS.values():
            self.service.addItem(preset.name, preset.key)
        self.form.addRow(tr("&Service:"), self.service)
        self.notes = _help("")
        self.form.addRow(self.notes)
        self.endpoint = self.line(tr("Server &address:"), placeholder="https://nas.example.org:9000")
        self.account = self.line(tr("Account &ID:"))
        self.region = QComboBox()
        self.region.setEditable(True)
        self.region.currentTextChanged.connect(self.changed)
        self.form.addRow(tr("&Region:"), self.region)
        self.bucket = self.line(tr("&Bucket:"), placeholder="office-backup")
        self.prefix = self.line(tr("&Folder in the bucket:"), tr("Optional."), placeholder="safekeep")
        self.access_key = self.line(tr("A&ccess key:"))
        self.secret_key = self.line(tr("S&ecret key:"), secret=True)
        self.service.currentIndexChanged.connect(self._service_changed)
        self._service_changed()

    def _preset_key(self) -> str:
        return str(self.service.currentData())

    def _service_changed(self) -> None:
        p = PRESETS[self._preset_key()]
        self.notes.setText(tr("Where to find the keys: ") + p.notes)
        self.form.setRowVisible(self.endpoint, p.needs_endpoint)
        self.form.setRowVisible(self.account, p.needs_account)
        self.region.clear()
        self.region.addItems(list(p.regions) or [p.default_region])
        self.region.setCurrentText(p.default_region)
        self.changed.emit()

    def location(self) -> str:
        bucket = _need(self.bucket.text(), tr("the bucket's name"))
        _need(self.access_key.text(), tr("the access key"))
        _need(self.secret_key.text(), tr("the secret key"))
        return location_for(
            self._preset_key(),
            self.region.currentText(),
            bucket,
            self.prefix.text(),
            account=self.account.text(),
            endpoint=self.endpoint.text(),
        )

    def env(self) -> dict[str, str]:
        region = self.region.currentText().strip() or PRESETS[self._preset_key()].default_region
        return {"AWS_ACCESS_KEY_ID": self.access_key.text().strip(), "AWS_DEFAULT_REGION": region}

    def secrets(self) -> dict[str, str]:
        return {"AWS_SECRET_ACCESS_KEY": self.secret_key.text().strip()}

    def suggested_name(self) -> str:
        return f"{PRESETS[self._preset_key()].name}: {self.bucket.text().strip()}"


class SftpForm(ProviderForm):
    key = "sftp"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(
            tr(
                "A server or NAS that you reach with SSH (Synology, QNAP, a Linux server, a hosting "
                "provider's storage box). Ask its administrator for an account. A key file is safer "
                "than a password; the first connection shows the server's fingerprint for you to check."
            ),
            parent,
        )
        self.host = self.line(tr("&Server:"), placeholder="nas.example.org")
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(22)
        self.port.valueChanged.connect(self.changed)
        self.form.addRow(tr("&Port:"), self.port)
        self.user = self.line(tr("&User name:"))
        self.path = self.line(
            tr("F&older:"),
            tr("A path starting with / is from the server's top; otherwise it is in the user's home folder."),
            placeholder="backups/office",
        )
        self.password = self.line(tr("Pass&word:"), tr("Leave empty to use a key file."), secret=True)
        self.key_file = self.browse_row(tr("&Key file:"), self._pick_key, placeholder="~/.ssh/id_ed25519")

    def _pick_key(self) -> str:
        path, _ = QFileDialog.getOpenFileName(self, tr("SSH private key"), str(Path.home() / ".ssh"))
        return path

    def location(self) -> str:
        host = _need(self.host.text(), tr("the server's name"))
        user = _need(self.user.text(), tr("the user name"))
        path = _need(self.path.text(), tr("the folder on the server"))
        if ":" in host or "@" in host or "/" in host:
            raise SafekeepError(tr("Enter only the server's name, without user, port or folder."))
        port = self.port.value()
        if port == 22:
            return f"sftp:{user}@{host}:{path}"
        return f"sftp://{user}@{host}:{port}/{path}"

    def secrets(self) -> dict[str, str]:
        pw = self.password.text()
        return {"SAFEKEEP_SFTP_PASSWORD": pw} if pw else {}

    def options(self) -> dict[str, str]:
        opts = super().options()
        if self.key_file.text().strip():
            opts["sftp.key-file"] = str(Path(self.key_file.text().strip()).expanduser())
        return opts

    def suggested_name(self) -> str:
        return f"{self.host.text().strip()}: {self.path.text().strip()}"


class WebDavForm(ProviderForm):
    key = "webdav"

    SERVICES = ("nextcloud", "seafile", "pcloud", "other")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(
            tr(
                "Nextcloud, ownCloud, Seafile, pCloud or any WebDAV server. Use an <b>app password</b>: "
                "in Nextcloud under Settings → Security → Devices &amp; sessions → Create new app "
                "password (your login password fails when two-step login is on)."
            ),
            parent,
        )
        self.service = QComboBox()
        for key, name in zip(
            self.SERVICES,
            (tr("Nextcloud or ownCloud"), tr("Seafile (SeafDAV)"), tr("pCloud"), tr("Other WebDAV server")),
            strict=True,
        ):
            self.service.addItem(name, key)
        self.service.currentIndexChanged.connect(self.changed)
        self.form.addRow(tr("&Service:"), self.service)
        self.server = self.line(
            tr("Server &address:"),
            tr(
                "Nextcloud: the address you open in the browser. "
                "pCloud: webdav.pcloud.com or ewebdav.pcloud.com."
            ),
            placeholder="https://cloud.example.org",
        )
        self.user = self.line(tr("&User name:"))
        self.password = self.line(tr("App pass&word:"), secret=True)
        self.folder = self.line(tr("F&older:"), placeholder="Backups/Office")

    def location(self) -> str:
        server = _need(self.server.text(), tr("the server's address")).rstrip("/")
        user = _need(self.user.text(), tr("the user name"))
        _need(self.password.text(), tr("the app password"))
        folder = _need(self.folder.text(), tr("a folder for the backups")).strip("/")
        if not server.lower().startswith(("http://", "https://")):
            server = "https://" + server
        service = str(self.service.currentData())
        if service == "nextcloud" and "/remote.php/" not in server:
            return f"webdav:{server}/remote.php/dav/files/{user}/{folder}"
        if service == "seafile" and "/seafdav" not in server:
            return f"webdav:{server}/seafdav/{folder}"
        return f"webdav:{server}/{folder}"

    def env(self) -> dict[str, str]:
        return {"SAFEKEEP_WEBDAV_USER": self.user.text().strip()}

    def secrets(self) -> dict[str, str]:
        return {"SAFEKEEP_WEBDAV_PASSWORD": self.password.text()}

    def options(self) -> dict[str, str]:
        opts = super().options()
        service = str(self.service.currentData())
        opts["webdav.flavour"] = "generic" if service == "other" else service
        return opts


class AzureForm(ProviderForm):
    key = "azure"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(
            tr(
                "A container in an Azure storage account. In the Azure portal: Storage accounts → your "
                "account → Security + networking → Access keys (the account name and key1), or a "
                "shared access signature (SAS) limited to the container."
            ),
            parent,
        )
        self.account = self.line(tr("Storage &account:"))
        self.key_edit = self.line(tr("Access &key:"), secret=True)
        self.sas = self.line(tr("&Or SAS token:"), tr("Only when you have no access key."), secret=True)
        self.container = self.line(tr("&Container:"), placeholder="backups")
        self.folder = self.line(tr("&Folder:"), tr("Optional."), placeholder="office")

    def location(self) -> str:
        _need(self.account.text(), tr("the storage account's name"))
        if not (self.key_edit.text().strip() or self.sas.text().strip()):
            raise SafekeepError(tr("Enter the access key or a SAS token."))
        container = _need(self.container.text(), tr("the container's name"))
        return f"azure:{container}:/{self.folder.text().strip().strip('/')}"

    def env(self) -> dict[str, str]:
        return {"AZURE_ACCOUNT_NAME": self.account.text().strip()}

    def secrets(self) -> dict[str, str]:
        if self.key_edit.text().strip():
            return {"AZURE_ACCOUNT_KEY": self.key_edit.text().strip()}
        return {"AZURE_ACCOUNT_SAS": self.sas.text().strip()}


class GcsForm(ProviderForm):
    key = "gs"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(
            tr(
                "A bucket in Google Cloud Storage. In the Google Cloud console: IAM &amp; Admin → Service "
                "accounts → Create service account (role Storage Object Admin on the bucket) → Keys → "
                "Add key → JSON. Keep the downloaded key file where this computer can read it."
            ),
            parent,
        )
        self.bucket = self.line(tr("&Bucket:"))
        self.folder = self.line(tr("&Folder:"), tr("Optional."))
        self.key_file = self.browse_row(tr("&Key file (JSON):"), self._pick)
        self.project = self.line(tr("&Project ID:"))

    def _pick(self) -> str:
        path, _ = QFileDialog.getOpenFileName(
            self, tr("Service account key"), str(Path.home()), "JSON (*.json)"
        )
        return path

    def location(self) -> str:
        bucket = _need(self.bucket.text(), tr("the bucket's name"))
        _need(self.key_file.text(), tr("the key file"))
        return f"gs:{bucket}:/{self.folder.text().strip().strip('/')}"

    def env(self) -> dict[str, str]:
        env = {"GOOGLE_APPLICATION_CREDENTIALS": self.key_file.text().strip()}
        if self.project.text().strip():
            env["GOOGLE_PROJECT_ID"] = self.project.text().strip()
        return env


class RcloneForm(ProviderForm):
    key = "rclone"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(
            tr(
                "rclone reaches dozens of other services (Box, Mega, Zoho WorkDrive, Jottacloud, …). "
                "Set up the service once with <tt>rclone config</tt>; its remotes are listed here."
            ),
            parent,
        )
        self.remote = QComboBox()
        self.remote.setEditable(True)
        self.remote.currentTextChanged.connect(self.changed)
        self.form.addRow(tr("&Remote:"), self.remote)
        self.path = self.line(tr("&Folder:"), placeholder="Backups/Office")
        self.found = False

    def load_remotes(self) -> list[str]:
        """The remotes in the user's rclone config (runs ``rclone listremotes``; call in the background)."""
        program = shutil.which("rclone")
        if program is None:
            return []
        out = subprocess.run(
            [program, "listremotes"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
        return [line.strip().rstrip(":") for line in out.splitlines() if line.strip()]

    def set_remotes(self, remotes: list[str]) -> None:
        current = self.remote.currentText()
        self.remote.clear()
        self.remote.addItems(remotes)
        if current:
            self.remote.setCurrentText(current)

    def location(self) -> str:
        remote = _need(self.remote.currentText(), tr("the rclone remote")).rstrip(":")
        path = _need(self.path.text(), tr("a folder for the backups"))
        return f"rclone:{remote}:{path}"


FORMS: dict[str, Callable[[], ProviderForm]] = {
    "local": LocalForm,
    "s3": S3Form,
    "sftp": SftpForm,
    "webdav": WebDavForm,
    "azure": AzureForm,
    "gs": GcsForm,
    "rclone": RcloneForm,
}
