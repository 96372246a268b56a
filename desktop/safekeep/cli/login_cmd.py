"""``safekeep login`` / ``safekeep logout``: sign in to Google Drive, OneDrive or Dropbox.

``safekeep login DESTINATION`` signs in again for a saved destination (after its access was
withdrawn); ``safekeep plan add ... --to gdrive:Backups`` signs in as part of adding it. The
consent page opens in the browser when this computer has one; the address is always printed, so
on a machine without a desktop it can be opened on another computer. There the browser ends on
an address starting with ``http://127.0.0.1`` that cannot load: paste that address here.
``safekeep logout DESTINATION`` withdraws the app's access and forgets the tokens.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import webbrowser
from typing import Any

from safekeep.cli.context import CliContext
from safekeep.cli.output import Output
from safekeep.common.cancel import CancelToken
from safekeep.engine.service import Service
from safekeep.state.model import Destination
from safekeep.storage.registry import ProviderSettings, parse_location
from safekeep.storage.secrets import SecretStore
from safekeep.storage.signin import Account, sign_in_flow


class TerminalBrowser:
    """Shows the consent address in the terminal (and in a browser when there is a desktop)."""

    def __init__(self, out: Output, *, open_browser: bool | None = None) -> None:
        self._out = out
        self._open_browser = (
            open_browser
            if open_browser is not None
            else bool(
                os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform != "linux"
            )
        )

    def open(self, url: str) -> None:
        self._out.warn("Open this address in a browser and sign in:")
        self._out.warn(f"  {url}")
        if self._open_browser:
            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()

    def redirected(self, cancel: CancelToken) -> str | None:
        if not sys.stdin or not sys.stdin.isatty():
            return None  # nobody to paste: wait for the loopback redirect
        self._out.warn(
            "After signing in, this continues by itself; if the browser is on another computer,"
            " paste the address it ended on (http://127.0.0.1...) here:"
        )
        line = sys.stdin.readline().strip()
        return line or None


def sign_in(ctx: CliContext, location: str, store: SecretStore, settings: ProviderSettings) -> Account:
    loc = parse_location(location)
    flow = sign_in_flow(loc.scheme)
    return flow.sign_in(loc, settings, store, TerminalBrowser(ctx.out), cancel=ctx.cancel)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "login", help="sign in to a Google Drive, OneDrive or Dropbox destination", description=__doc__
    )
    p.add_argument("destination", metavar="DESTINATION", help="the destination's name")
    p.set_defaults(run=run_login)
    q = sub.add_parser("logout", help="sign out of a Google Drive, OneDrive or Dropbox destination")
    q.add_argument("destination", metavar="DESTINATION", help="the destination's name")
    q.set_defaults(run=run_logout)


def _dest(service: Service, name: str) -> tuple[Destination, SecretStore, ProviderSettings]:
    dest = service.destination(name)
    scope = service.secrets.scope(dest.id)
    return dest, scope, service.storage_options(dest, scope).provider


def run_login(ctx: CliContext, args: argparse.Namespace) -> int:
    service = ctx.service()
    dest, scope, settings = _dest(service, args.destination)
    account = sign_in(ctx, dest.location, scope, settings)
    service.audit_event(
        "sign-in", f"destination {dest.name} ({dest.location})", "success", account=str(account)
    )
    ctx.out.json({"message_type": "signed_in", "destination": dest.name, "account": str(account)})
    ctx.out.result(f"signed in to {dest.name} as {account}")
    return 0


def run_logout(ctx: CliContext, args: argparse.Namespace) -> int:
    service = ctx.service()
    dest, scope, settings = _dest(service, args.destination)
    loc = parse_location(dest.location)
    sign_in_flow(loc.scheme).sign_out(loc, settings, scope)
    service.audit_event("sign-out", f"destination {dest.name} ({dest.location})", "success")
    ctx.out.json({"message_type": "signed_out", "destination": dest.name})
    ctx.out.result(f"signed out of {dest.name}; backups to it stop until you sign in again")
    return 0
