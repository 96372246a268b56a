"""Signing in to storage that belongs to a person's account (Google Drive, OneDrive, Dropbox).

Such providers are reached with OAuth 2.0: the system browser shows the provider's consent page,
the app receives an authorization code on a loopback redirect (RFC 8252, with PKCE and a checked
``state``), and trades it for tokens. The refresh token is a secret: it goes to a
:class:`SecretStore` (the OS keyring in the app, see ``safekeep.state.secrets``), never to a file
the app writes in the clear.

Concepts:

* :class:`~safekeep.storage.secrets.SecretStore` — where the tokens are kept; the store a
  provider is given is scoped to one destination.
* :class:`SignInFlow` — what an OAuth provider module registers with :func:`register_sign_in`:
  ``sign_in`` runs the interactive flow and stores the tokens; ``sign_out`` revokes them at the
  provider (where it offers that) and deletes them from the store.
* :class:`Browser` — how the consent page is shown: the GUI opens the system browser; the CLI on
  a headless machine prints the address and lets the person paste the redirected address back.

Provider modules register their flow when imported, like their backend factory; callers use
:func:`sign_in_flow`, which imports the provider module lazily.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import Protocol

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.storage.errors import InvalidLocation
from safekeep.storage.registry import KNOWN_SCHEMES, Location, ProviderSettings
from safekeep.storage.secrets import SecretStore


class Browser(Protocol):
    """Shows the consent page at ``url``.

    ``open`` returns at once. A browser that cannot deliver the loopback redirect itself (the
    CLI on a machine without a desktop) returns the address the provider redirected to, as the
    person pasted it, from ``redirected``; a desktop browser returns ``None`` there and the
    loopback receiver gets the redirect.
    """

    def open(self, url: str) -> None: ...

    def redirected(self, cancel: CancelToken) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Account:
    """Who signed in, for display ("Signed in as office@example.org")."""

    name: str
    email: str = ""

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.email and self.email != self.name else self.name


class SignInFlow(Protocol):
    def sign_in(
        self,
        location: Location,
        settings: ProviderSettings,
        store: SecretStore,
        browser: Browser,
        *,
        cancel: CancelToken = NEVER,
    ) -> Account:
        """Run the interactive sign-in and keep the tokens in ``store``. Raises a typed error
        (``SignInError``, ``Cancelled``) with a message that says what to do."""
        ...

    def sign_out(self, location: Location, settings: ProviderSettings, store: SecretStore) -> None:
        """Revoke the tokens at the provider where it offers that, and delete them from ``store``.
        A provider that cannot be reached still has its tokens deleted locally."""
        ...

    def account(self, location: Location, settings: ProviderSettings, store: SecretStore) -> Account | None:
        """Who is signed in, from the stored tokens, or ``None`` when nobody is."""
        ...


_lock = threading.Lock()
_flows: dict[str, SignInFlow] = {}


def register_sign_in(scheme: str, flow: SignInFlow) -> None:
    with _lock:
        _flows[scheme] = flow


def sign_in_flow(scheme: str) -> SignInFlow:
    """The sign-in flow for ``scheme``; raises ``InvalidLocation`` for storage without sign-in."""
    with _lock:
        found = _flows.get(scheme)
    if found is None and scheme in KNOWN_SCHEMES:
        try:
            importlib.import_module(f"safekeep.storage.providers.{scheme}")
        except ModuleNotFoundError:
            pass
        with _lock:
            found = _flows.get(scheme)
    if found is None:
        raise InvalidLocation(
            f"{KNOWN_SCHEMES.get(scheme, scheme)} storage does not use a sign-in.",
            hint="Sign-in is for Google Drive (gdrive:), OneDrive (onedrive:) and Dropbox (dropbox:).",
        )
    return found


def sign_in_schemes() -> list[str]:
    """Schemes with a registered sign-in flow (after importing what is installed)."""
    for scheme in ("gdrive", "onedrive", "dropbox"):
        try:
            sign_in_flow(scheme)
        except InvalidLocation:
            continue
    with _lock:
        return sorted(_flows)
