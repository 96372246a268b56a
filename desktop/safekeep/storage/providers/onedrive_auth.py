"""Signing in to OneDrive with the Microsoft identity platform, on MSAL.

Concepts:

* **The app registration.** Safekeep is a *public client* (no secret) registered with Microsoft
  Entra ID; its client ID is :data:`SAFEKEEP_CLIENT_ID`, replaced by option
  ``onedrive.client-id`` or the environment variable ``SAFEKEEP_ONEDRIVE_CLIENT_ID`` for an
  organisation that registers its own app (Entra admin centre → App registrations → New
  registration → "Mobile and desktop applications" with the redirect URI ``http://localhost``;
  API permissions: Microsoft Graph ``Files.ReadWrite.AppFolder`` — and ``Files.ReadWrite.All``
  for ``onedrive.drive`` — plus ``offline_access``).
* **The authority** (option ``onedrive.authority``) is the sign-in service:
  ``https://login.microsoftonline.com/common`` accepts personal and work or school accounts; an
  organisation may name its tenant (``.../contoso.onmicrosoft.com``) or ``.../organizations``.
* **Scopes.** By default only ``Files.ReadWrite.AppFolder``: Safekeep sees its own folder
  (``Apps/Safekeep`` in the person's OneDrive) and nothing else. A chosen drive or SharePoint
  document library (option ``onedrive.drive``) needs ``Files.ReadWrite.All``. MSAL adds
  ``offline_access`` (for the refresh token), ``openid`` and ``profile`` itself.
* **The token cache.** MSAL keeps the account, the refresh token and access tokens in its
  :class:`msal.SerializableTokenCache`. Safekeep keeps that cache, serialised, in the
  destination's :class:`~safekeep.storage.secrets.SecretStore` (the OS keyring) under the name
  :data:`TOKEN_SECRET`, and writes it back whenever MSAL changes it (Microsoft rotates refresh
  tokens on every refresh).
* **Sign-in** (:class:`OneDriveSignIn`) is the authorization-code flow with PKCE (S256) and a
  random ``state`` (``initiate_auth_code_flow``/``acquire_token_by_auth_code_flow``), the
  redirect arriving on a loopback address (RFC 8252) through
  :mod:`~safekeep.storage.oauth_loopback`. The answer comes back in the query string by default,
  so a person on a machine without a desktop can paste the address their browser ended on;
  ``onedrive.response-mode=form_post`` makes the browser post it instead.
* **Silent refresh** (:class:`GraphTokens`): access tokens come from the cache while valid and
  are refreshed with the refresh token when they expire or Graph answers 401. A refresh token
  Microsoft no longer accepts (the person removed the app's access, changed their password, or
  an administrator revoked sessions) becomes ``PermissionDenied`` asking to sign in again.
* **Sign-out** deletes the tokens from the store. Microsoft offers public clients no endpoint to
  revoke one app's refresh token (only ``revokeSignInSessions``, which signs the person out of
  every app and device), so the hint says where a person withdraws the app's access.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import msal  # type: ignore[import-untyped]
import requests

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.storage.errors import (
    InvalidLocation,
    PermanentStorageError,
    PermissionDenied,
    StorageError,
    TransientStorageError,
)
from safekeep.storage.oauth_loopback import LoopbackReceiver, SignInError, authorize
from safekeep.storage.registry import Location, ProviderSettings
from safekeep.storage.secrets import SecretStore
from safekeep.storage.signin import Account, Browser

log = logging.getLogger(__name__)

SAFEKEEP_CLIENT_ID = ""
"""The client ID of Safekeep's own app registration with Microsoft (a public client). Empty
until the project's registration exists: then ``onedrive.client-id`` or
``SAFEKEEP_ONEDRIVE_CLIENT_ID`` must name an organisation's own registration."""
CLIENT_ID_ENV = "SAFEKEEP_ONEDRIVE_CLIENT_ID"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com/common"
APP_FOLDER_SCOPES = ("Files.ReadWrite.AppFolder",)
ALL_FILES_SCOPES = ("Files.ReadWrite.All",)
TOKEN_SECRET = "oauth-token"  # noqa: S105 - the name of a secret, not a secret
"""The secret holding the signed-in account and MSAL's serialised token cache (JSON)."""
RESPONSE_MODES = ("query", "form_post")
_FORMAT = 1
_SIGNED_OUT_ERRORS = {
    "invalid_grant",
    "interaction_required",
    "consent_required",
    "login_required",
    "invalid_client",
    "unauthorized_client",
}
PROVIDER_NAME = "Microsoft OneDrive"
CONSENT_PAGES = "https://account.live.com/consent/Manage (personal) or https://myapps.microsoft.com (work)"


class OneDriveAuthError(PermanentStorageError):
    """Signing in to Microsoft failed in a way that fits no other storage error."""


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Who Safekeep is to Microsoft and what it asks for; see the module docstring."""

    client_id: str
    authority: str = DEFAULT_AUTHORITY
    scopes: tuple[str, ...] = APP_FOLDER_SCOPES
    response_mode: str = "query"
    timeout: float = 60.0

    @staticmethod
    def from_settings(settings: ProviderSettings) -> AuthConfig:
        client_id = (
            settings.option("onedrive.client-id").strip()
            or settings.getenv(CLIENT_ID_ENV).strip()
            or SAFEKEEP_CLIENT_ID
        )
        if not client_id:
            raise InvalidLocation(
                "No Microsoft app registration is configured for OneDrive.",
                hint="Register Safekeep in the Microsoft Entra admin centre (App registrations → New "
                "registration, platform 'Mobile and desktop applications', redirect URI "
                "http://localhost) and give its Application (client) ID as the option "
                f"onedrive.client-id or the environment variable {CLIENT_ID_ENV}.",
            )
        authority = settings.option("onedrive.authority").strip().rstrip("/") or DEFAULT_AUTHORITY
        if not authority.lower().startswith("https://"):
            raise InvalidLocation(
                f"The option onedrive.authority={authority!r} is not an https address.",
                hint="Use https://login.microsoftonline.com/common or your organisation's tenant, e.g. "
                "https://login.microsoftonline.com/contoso.onmicrosoft.com.",
            )
        mode = settings.option("onedrive.response-mode").strip() or "query"
        if mode not in RESPONSE_MODES:
            raise InvalidLocation(
                f"The option onedrive.response-mode={mode!r} is not known.", hint="Use query or form_post."
            )
        scopes = ALL_FILES_SCOPES if settings.option("onedrive.drive").strip() else APP_FOLDER_SCOPES
        return AuthConfig(client_id=client_id, authority=authority, scopes=scopes, response_mode=mode)

    def application(self, cache: msal.SerializableTokenCache) -> msal.PublicClientApplication:
        """MSAL's client for this registration (it fetches the authority's OpenID configuration).

        Instance discovery is off: it would ask login.microsoftonline.com about the authority's
        aliases, which a custom authority (a tenant's, or a test's) does not need."""
        return msal.PublicClientApplication(
            self.client_id,
            authority=self.authority,
            token_cache=cache,
            instance_discovery=False,
            timeout=self.timeout,
        )


@dataclass(frozen=True, slots=True)
class _Record:
    """What :data:`TOKEN_SECRET` holds."""

    cache: str
    home_account_id: str
    username: str
    name: str
    client_id: str
    authority: str
    scopes: tuple[str, ...]

    def dump(self) -> str:
        return json.dumps(
            {
                "format": _FORMAT,
                "msal_cache": self.cache,
                "home_account_id": self.home_account_id,
                "username": self.username,
                "name": self.name,
                "client_id": self.client_id,
                "authority": self.authority,
                "scopes": list(self.scopes),
            }
        )

    @staticmethod
    def load(text: str | None) -> _Record | None:
        if not text:
            return None
        try:
            d = json.loads(text)
            return _Record(
                cache=str(d["msal_cache"]),
                home_account_id=str(d["home_account_id"]),
                username=str(d.get("username") or ""),
                name=str(d.get("name") or ""),
                client_id=str(d.get("client_id") or ""),
                authority=str(d.get("authority") or ""),
                scopes=tuple(str(s) for s in d.get("scopes") or ()),
            )
        except (ValueError, KeyError, TypeError):
            log.warning("the stored OneDrive sign-in is unreadable; treating it as signed out")
            return None


def not_signed_in(location: str = "") -> PermissionDenied:
    where = f" for {location}" if location else ""
    return PermissionDenied(
        f"Safekeep is not signed in to OneDrive{where}.",
        hint="Sign in: in the app use the destination's 'Sign in' button; on the command line run "
        "'safekeep login onedrive'.",
    )


def signed_out(detail: str = "") -> PermissionDenied:
    extra = f" ({detail})" if detail else ""
    return PermissionDenied(
        f"OneDrive signed Safekeep out: access was withdrawn or has expired{extra}.",
        hint="Sign in again: in the app use the destination's 'Sign in' button; on the command line "
        "run 'safekeep login onedrive'.",
    )


_NETWORK_ERRORS = (requests.RequestException, OSError, msal.exceptions.MsalServiceError)
"""What MSAL lets escape when the sign-in service is unreachable or answers 5xx."""


def _network_error(exc: BaseException, authority: str) -> StorageError:
    if isinstance(exc, requests.HTTPError | msal.exceptions.MsalServiceError):
        return TransientStorageError(
            f"The Microsoft sign-in service {authority} is not answering properly ({exc}).",
            hint="Safekeep will try again.",
        )
    return TransientStorageError(
        f"Cannot reach the Microsoft sign-in service {authority}: {type(exc).__name__}.",
        hint="Check that this computer is online; Safekeep retries a few times before giving up.",
    )


class GraphTokens:
    """Access tokens for Microsoft Graph for the account signed in to one destination.

    Thread-safe: one refresh at a time; a caller whose token was refused asks for a new one
    with :meth:`refresh` and gets a token another thread already refreshed, if there is one."""

    def __init__(self, config: AuthConfig, store: SecretStore | None, *, location: str = "") -> None:
        self._config = config
        self._store = store
        self._location = location
        record = _Record.load(store.get(TOKEN_SECRET)) if store is not None else None
        if record is None:
            raise not_signed_in(location)
        self._record = record
        self._cache = msal.SerializableTokenCache()
        try:
            self._cache.deserialize(record.cache)
        except ValueError as exc:
            raise not_signed_in(location) from exc
        self._app: msal.PublicClientApplication | None = None
        self._lock = threading.Lock()
        self._current: str | None = None

    @property
    def username(self) -> str:
        return self._record.username

    def token(self) -> str:
        """A valid access token: MSAL's cached one while it is valid, else a refreshed one."""
        return self._acquire(force_refresh=False, refused=None)

    def refresh(self, refused: str) -> str:
        """A new access token after Graph refused ``refused`` (401)."""
        return self._acquire(force_refresh=True, refused=refused)

    def _acquire(self, *, force_refresh: bool, refused: str | None) -> str:
        with self._lock:
            if refused is not None and self._current is not None and self._current != refused:
                return self._current  # another thread has refreshed it meanwhile
            app = self._application()
            accounts = [
                a for a in app.get_accounts() if a.get("home_account_id") == self._record.home_account_id
            ]
            if not accounts:
                raise not_signed_in(self._location)
            try:
                result = app.acquire_token_silent_with_error(
                    list(self._config.scopes), accounts[0], force_refresh=force_refresh
                )
            except _NETWORK_ERRORS as exc:
                raise _network_error(exc, self._config.authority) from exc
            finally:
                self._persist()
            if not result:
                raise signed_out("no refresh token is left")
            if "error" in result:
                error = str(result.get("error"))
                description = str(result.get("error_description") or "").split("\n", 1)[0]
                log.info("Microsoft refused to refresh the OneDrive token: %s %s", error, description)
                if error in _SIGNED_OUT_ERRORS:
                    raise signed_out(error)
                raise TransientStorageError(
                    f"The Microsoft sign-in service could not refresh the access token ({error}).",
                    hint="Safekeep will try again.",
                )
            token = str(result["access_token"])
            self._current = token
            return token

    def _application(self) -> msal.PublicClientApplication:
        if self._app is None:
            try:
                self._app = self._config.application(self._cache)
            except _NETWORK_ERRORS as exc:
                raise _network_error(exc, self._config.authority) from exc
            except ValueError as exc:
                raise OneDriveAuthError(
                    f"The Microsoft sign-in service {self._config.authority} is not usable: {exc}",
                    hint="Check the option onedrive.authority.",
                ) from exc
        return self._app

    def _persist(self) -> None:
        if not self._cache.has_state_changed or self._store is None:
            return
        record = _Record(
            cache=self._cache.serialize(),
            home_account_id=self._record.home_account_id,
            username=self._record.username,
            name=self._record.name,
            client_id=self._record.client_id,
            authority=self._record.authority,
            scopes=self._record.scopes,
        )
        self._store.set(TOKEN_SECRET, record.dump())
        self._cache.has_state_changed = False
        self._record = record


class OneDriveSignIn:
    """The :class:`~safekeep.storage.signin.SignInFlow` for ``onedrive:`` destinations."""

    timeout: float = 300.0

    def sign_in(
        self,
        location: Location,
        settings: ProviderSettings,
        store: SecretStore,
        browser: Browser,
        *,
        cancel: CancelToken = NEVER,
    ) -> Account:
        config = AuthConfig.from_settings(settings)
        cache = msal.SerializableTokenCache()
        try:
            app = config.application(cache)
        except _NETWORK_ERRORS as exc:
            raise SignInError(
                f"Cannot reach the Microsoft sign-in service {config.authority}.",
                hint="Check that this computer is online and try again.",
            ) from exc
        except ValueError as exc:
            raise SignInError(
                f"The Microsoft sign-in service {config.authority} is not usable: {exc}",
                hint="Check the option onedrive.authority.",
            ) from exc
        with LoopbackReceiver() as receiver:
            with warnings.catch_warnings():
                # MSAL recommends form_post; the query form lets a person paste the address
                # on a machine without a desktop, and PKCE protects the code either way.
                warnings.simplefilter("ignore", UserWarning)
                flow: dict[str, Any] = app.initiate_auth_code_flow(
                    list(config.scopes),
                    redirect_uri=receiver.redirect_uri,
                    state=secrets.token_urlsafe(24),
                    prompt="select_account",
                    response_mode=config.response_mode,
                )
            params = authorize(
                flow["auth_uri"],
                receiver,
                browser,
                provider=PROVIDER_NAME,
                timeout=self.timeout,
                cancel=cancel,
            )
        cancel.raise_if_cancelled()
        try:
            result: dict[str, Any] = app.acquire_token_by_auth_code_flow(flow, params)
        except ValueError as exc:  # state mismatch: not the answer to this sign-in
            raise SignInError(
                "The answer from Microsoft does not belong to this sign-in.",
                hint="Start the sign-in again and use only the newest browser tab.",
            ) from exc
        except _NETWORK_ERRORS as exc:
            raise SignInError(
                "Cannot reach the Microsoft sign-in service to finish signing in.",
                hint="Check that this computer is online and try again.",
            ) from exc
        if "error" in result:
            description = str(result.get("error_description") or result["error"]).split("\n", 1)[0]
            raise SignInError(
                f"Microsoft did not complete the sign-in: {description}",
                hint="Sign in again; if your organisation manages the account, ask its administrator "
                "to allow Safekeep.",
            )
        claims: dict[str, Any] = result.get("id_token_claims") or {}
        accounts = app.get_accounts()
        home = next(
            (a for a in accounts if a.get("local_account_id") == claims.get("oid")),
            accounts[0] if accounts else None,
        )
        if home is None:
            raise SignInError("Microsoft signed in no account.", hint="Sign in again and choose an account.")
        username = str(home.get("username") or claims.get("preferred_username") or "")
        name = str(claims.get("name") or username or "Microsoft account")
        record = _Record(
            cache=cache.serialize(),
            home_account_id=str(home["home_account_id"]),
            username=username,
            name=name,
            client_id=config.client_id,
            authority=config.authority,
            scopes=config.scopes,
        )
        store.set(TOKEN_SECRET, record.dump())
        log.info("signed in to OneDrive as %s", username or name)
        return Account(name=name, email=username)

    def sign_out(self, location: Location, settings: ProviderSettings, store: SecretStore) -> None:
        """Delete the tokens. Microsoft has no per-app revocation for public clients; the person
        withdraws the app's access on the account's consent page (see the module docstring)."""
        record = _Record.load(store.get(TOKEN_SECRET))
        store.delete(TOKEN_SECRET)
        if record is not None:
            log.info(
                "signed out of OneDrive (%s); access can be withdrawn at %s", record.username, CONSENT_PAGES
            )

    def account(self, location: Location, settings: ProviderSettings, store: SecretStore) -> Account | None:
        record = _Record.load(store.get(TOKEN_SECRET))
        if record is None:
            return None
        return Account(name=record.name or record.username, email=record.username)
