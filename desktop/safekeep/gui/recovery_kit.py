"""The recovery kit: a one-page PDF that lets someone restore without this computer.

It names the repository's location, where the password is kept (and, only when the person
asks for it, the password itself), and how to restore both with Safekeep and with the
independent ``restic`` program (Safekeep writes restic's repository format). Provider settings
that are not secret are listed with restic's variable names; secret values never appear — the
kit says which ones are needed and where they are kept.

Written with :class:`QPdfWriter` from a small HTML document (``QTextDocument``), so it needs a
running ``QGuiApplication`` but no printer.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from PySide6.QtCore import QCoreApplication, QMarginsF, QSizeF
from PySide6.QtGui import QPageLayout, QPageSize, QPdfWriter, QTextDocument


def _tr(text: str) -> str:
    return QCoreApplication.translate("RecoveryKit", text)


@dataclass(frozen=True, slots=True)
class RecoveryKit:
    destination_name: str
    location: str
    created: datetime
    env: Mapping[str, str] = field(default_factory=dict)
    """Non-secret provider settings (restic's variable names)."""
    secret_names: tuple[str, ...] = ()
    """Names of secret settings (their values are kept in the keyring, not in the kit)."""
    password: str | None = None
    """Printed only when the person chose to include it."""
    password_store: str = ""
    """Where the password is kept, in words (the OS keyring's name)."""
    computer: str = ""


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


def kit_html(kit: RecoveryKit) -> str:
    e = _escape
    restic_env = "".join(f"export {e(k)}='{e(v)}'<br/>" for k, v in sorted(kit.env.items()))
    restic_env += "".join(f"export {e(k)}='…'  # {e(_tr('see above'))}<br/>" for k in kit.secret_names)
    password_row = (
        f"<p style='font-size:14pt'><b>{e(_tr('Password'))}:</b> <tt>{e(kit.password)}</tt></p>"
        if kit.password
        else f"<p><b>{e(_tr('Password'))}:</b> ______________________________________________</p>"
        f"<p><i>{e(_tr('Write the password on the line above, or keep it in a password manager.'))}</i></p>"
    )
    secret_row = (
        "<p>"
        + e(_tr("These storage secrets are also needed and are kept in the same keyring:"))
        + " "
        + ", ".join(f"<tt>{e(s)}</tt>" for s in kit.secret_names)
        + "</p>"
        if kit.secret_names
        else ""
    )
    settings_rows = "".join(
        f"<tr><td><tt>{e(k)}</tt></td><td><tt>{e(v)}</tt></td></tr>" for k, v in sorted(kit.env.items())
    )
    settings = (
        f"<p>{e(_tr('Storage settings'))}:</p><table border='1' cellpadding='4'>{settings_rows}</table>"
        if settings_rows
        else ""
    )
    created = kit.created.strftime("%Y-%m-%d %H:%M")
    if kit.computer:
        created += " " + _tr("on") + " " + kit.computer
    steps = (
        _tr("Install Safekeep on any computer and start it."),
        _tr(
            "Choose “Connect an existing backup”, pick the same kind of storage and enter the location above."
        ),
        _tr("Enter the password, then choose Restore files."),
    )
    parts = [
        f"<h1>{e(_tr('Safekeep recovery kit'))}</h1>",
        _para(
            "Keep this page somewhere safe, away from the computer it protects. "
            "Anyone with this page and the password can read the backups."
        ),
        f"<h2>{e(_tr('Where the backups are'))}</h2>",
        f"<p><b>{e(kit.destination_name)}</b></p>",
        f"<p style='font-size:13pt'><tt>{e(kit.location)}</tt></p>",
        settings,
        f"<h2>{e(_tr('The password'))}</h2>",
        _para(
            "The backups are encrypted. Without this password nobody — not even Safekeep's "
            "makers — can restore them."
        ),
        f"<p>{e(_tr('On this computer the password is kept in'))} {e(kit.password_store)}.</p>",
        password_row,
        secret_row,
        f"<h2>{e(_tr('To restore with Safekeep'))}</h2>",
        "<ol>" + "".join(f"<li>{e(step)}</li>" for step in steps) + "</ol>",
        f"<h2>{e(_tr('To restore with restic (without Safekeep)'))}</h2>",
        _para("Safekeep stores backups in restic's open format. With the restic program:"),
        f"<p><tt>{restic_env}export RESTIC_REPOSITORY='{e(kit.location)}'<br/>"
        "restic snapshots<br/>restic restore latest --target ./restored</tt></p>",
        f"<p style='color:#555'>{e(_tr('Created'))} {e(created)}.</p>",
    ]
    return "\n".join(parts)


def _para(text: str) -> str:
    return f"<p>{_escape(_tr(text))}</p>"


def write_recovery_kit(path: str | os.PathLike[str], kit: RecoveryKit) -> None:
    """Write the kit as an A4 PDF to ``path`` (replacing an existing file)."""
    target = os.fspath(path)
    tmp = target + ".part"
    writer = QPdfWriter(tmp)
    writer.setTitle(_tr("Safekeep recovery kit"))
    writer.setCreator("Safekeep")
    writer.setResolution(300)
    writer.setPageLayout(
        QPageLayout(
            QPageSize(QPageSize.PageSizeId.A4),
            QPageLayout.Orientation.Portrait,
            QMarginsF(18, 18, 18, 18),
            QPageLayout.Unit.Millimeter,
        )
    )
    doc = QTextDocument()
    doc.setHtml(kit_html(kit))
    rect = writer.pageLayout().paintRectPixels(writer.resolution())
    doc.setPageSize(QSizeF(rect.width(), rect.height()))
    doc.print_(writer)
    del writer
    os.replace(tmp, target)
