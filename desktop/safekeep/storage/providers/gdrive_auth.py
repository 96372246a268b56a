"""Signing in to Google Drive, and the credentials the ``gdrive`` provider uses afterwards.

Concepts:

* :class:`GoogleConfig` — the OAuth client and the endpoints, from provider options: the client
  is Safekeep's own registration (:data:`SAFEKEEP_CLIENT_ID`) unless an organisation sets its
  own with ``gdrive.client-id``/``gdrive.client-secret`` (or ``SAFEKEEP_GDRIVE_CLIENT_ID`` /
  ``SAFEKEEP_GDRIVE_CLIENT_SECRET``); every host is an option (``gdrive.auth-uri``,
  ``gdrive.token-uri``, ``gdrive.revoke-uri``, ``gdrive.api-endpoint``) whose default is Google's.
  For an installed app Google's "client secret" is not secret (Google's documentation says so);
  it is configuration like the ID.
* :class:`TokenRecord` — what signing in leaves in the destination's
  :class:`~safekeep.storage.secrets.SecretStore` under :data:`TOKEN_SECRET`: the refresh token,
  the client it belongs to, and who signed in. Access tokens are never stored; they are refreshed
  silently when they expire (or when Drive answers 401).
* :class:`GoogleDriveSignIn` — the :class:`~safekeep.storage.signin.SignInFlow`: google-auth-
  oauthlib's ``Flow`` builds the consent address with PKCE (S256) and a random ``state``;
  :func:`~safekeep.storage.oauth_loopback.authorize` shows it and receives the loopback redirect
  (RFC 8252); the SDK checks ``state`` and redeems the code with the PKCE verifier. The scope is
  ``drive.file``: Safekeep sees only the files and folders it created itself.
* :class:`StoredCredentials` — google-auth user credentials that refresh under a lock, keep a
  rotated refresh token, and turn a refused refresh token into "signed out" (``PermissionDenied``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import google.auth.credentials
import google.auth.exceptions
import google.auth.transport
import google.oauth2.credentials
import google_auth_httplib2  # type: ignore[import-untyped]
import httplib2  # type: ignore[import-untyped]
import requests
from google_auth_oauthlib.flow import Flow  # type: ignore[import-untyped]
from googleapiclient.discovery import build  # type: ignore[import-untyped]
from oauthlib.oauth2.rfc6749.errors import MismatchingStateError, OAuth2Error  # type: ignore[import-untyped]

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.errors import Cancelled
from safekeep.storage.errors import InvalidLocation, PermissionDenied, StorageError, TransientStorageError
from safekeep.storage.oauth_loopback import LoopbackReceiver, SignInError, authorize
from safekeep.storage.registry import Location, ProviderSettings
from safekeep.storage.secrets import SecretStore
from safekeep.storage.signin import Account, Browser

log = logging.getLogger(__name__)

SCOPE = "https://www.googleapis.com/auth/drive.file"
"""See, create and delete only the Drive files and folders this app created (narrow by default)."""

DEFAULT_AUTH_URI = "https://accounts.google.com/o/oauth2/auth"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 (an address)
DEFAULT_REVOKE_URI = "https://oauth2.googleapis.com/revoke"
DEFAULT_API_ENDPOINT = "https://www.googleapis.com"
"""The Drive API is at ``<endpoint>/drive/v3/``, uploads at ``<endpoint>/upload/drive/v3/files``."""

SAFEKEEP_CLIENT_ID = ""
"""Safekeep's own OAuth client ("Desktop app" type in the Google Cloud console). Empty in a build
that has no registration of its own: signing in then needs ``gdrive.client-id`` (and
``gdrive.client-secret``) from the organisation's own registration."""
SAFEKEEP_CLIENT_SECRET = ""
"""The installed-app "secret" that belongs to :data:`SAFEKEEP_CLIENT_ID` (not confidential)."""

TOKEN_SECRET = "gdrive-token"  # noqa: S105 (the name of a secret)
"""The name of the :class:`TokenRecord` (JSON) in the destination's secret store."""

HTTP_TIMEOUT = 120.0
PRODUCT = "Google Drive"


@dataclass(frozen=True, slots=True)
class GoogleConfig:
    """The OAuth client and the Google endpoints, with defaults applied (see the module docs)."""

    client_id: str = SAFEKEEP_CLIENT_ID
    client_secret: str = field(default=SAFEKEEP_CLIENT_SECRET, repr=False)
    auth_uri: str = DEFAULT_AUTH_URI
    token_uri: str = DEFAULT_TOKEN_URI
    revoke_uri: str = DEFAULT_REVOKE_URI
    api_endpoint: str = DEFAULT_API_ENDPOINT

    @staticmethod
    def from_settings(settings: ProviderSettings) -> GoogleConfig:
        client_id = (
            settings.option("gdrive.client-id").strip()
            or settings.getenv("SAFEKEEP_GDRIVE_CLIENT_ID").strip()
            or SAFEKEEP_CLIENT_ID
        )
        secret = (
            settings.option("gdrive.client-secret").strip()
            or settings.getenv("SAFEKEEP_GDRIVE_CLIENT_SECRET").strip()
        )
        if not secret and client_id == SAFEKEEP_CLIENT_ID:
            secret = SAFEKEEP_CLIENT_SECRET
        return GoogleConfig(
            client_id=client_id,
            client_secret=secret,
            auth_uri=_uri(settings, "gdrive.auth-uri", DEFAULT_AUTH_URI),
            token_uri=_uri(settings, "gdrive.token-uri", DEFAULT_TOKEN_URI),
            revoke_uri=_uri(settings, "gdrive.revoke-uri", DEFAULT_REVOKE_URI),
            api_endpoint=_uri(settings, "gdrive.api-endpoint", DEFAULT_API_ENDPOINT).rstrip("/"),
        )

    @property
    def drive_endpoint(self) -> str:
        return self.api_endpoint + "/drive/v3/"


def _uri(settings: ProviderSettings, name: str, default: str) -> str:
    value = settings.option(name).strip() or default
    if not value.startswith("https://"):
        raise InvalidLocation(
            f"The option {name}={value!r} is not an https:// address.",
            hint="Google's endpoints are reached over HTTPS only; remove the option to use Google's.",
        )
    return value


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """What a sign-in keeps in the secret store (as JSON under :data:`TOKEN_SECRET`)."""

    refresh_token: str = field(repr=False)
    client_id: str
    client_secret: str = field(default="", repr=False)
    scopes: tuple[str, ...] = (SCOPE,)
    account_name: str = ""
    account_email: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "refresh_token": self.refresh_token,
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "scopes": list(self.scopes),
                "account": {"name": self.account_name, "email": self.account_email},
            }
        )

    @staticmethod
    def from_json(text: str) -> TokenRecord:
        doc = json.loads(text)
        account = doc.get("account") or {}
        return TokenRecord(
            refresh_token=str(doc["refresh_token"]),
            client_id=str(doc["client_id"]),
            client_secret=str(doc.get("client_secret") or ""),
            scopes=tuple(doc.get("scopes") or (SCOPE,)),
            account_name=str(account.get("name") or ""),
            account_email=str(account.get("email") or ""),
        )

    @property
    def account(self) -> Account:
        return Account(self.account_name or self.account_email or "Google account", self.account_email)


def sign_in_hint() -> str:
    return (
        "Sign in to Google Drive: in Safekeep, open the destination and click 'Sign in'; on a machine "
        "without a desktop run 'safekeep login gdrive'."
    )


def not_signed_in(location: str) -> PermissionDenied:
    return PermissionDenied(f"Safekeep is not signed in to Google Drive for {location}.", hint=sign_in_hint())


def signed_out() -> PermissionDenied:
    return PermissionDenied(
        "Safekeep was signed out of Google Drive: the access was withdrawn or has expired.",
        hint="Sign in again. " + sign_in_hint(),
    )


def load_record(store: SecretStore | None) -> TokenRecord | None:
    """The stored sign-in, or None. A damaged record counts as not signed in."""
    if store is None:
        return None
    text = store.get(TOKEN_SECRET)
    if not text:
        return None
    try:
        return TokenRecord.from_json(text)
    except (ValueError, KeyError, TypeError):
        log.warning("the stored Google Drive sign-in is damaged; it is ignored")
        return None


def ca_bundle() -> str | None:
    """The CA bundle requests would use (``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``), for httplib2 too,
    so the token endpoint and the Drive API trust the same certificates."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        value = os.environ.get(name, "").strip()
        if value and os.path.isfile(value):
            return value
    return None


def make_http(credentials: google.auth.credentials.Credentials, *, timeout: float = HTTP_TIMEOUT) -> Any:
    """An authorized httplib2 connection (one per thread: httplib2 is not thread-safe).

    It adds the access token to every request and, on a 401, refreshes the token and repeats the
    request once. 308 is not a redirect here: it is the resumable-upload "resume incomplete"."""
    http = httplib2.Http(timeout=timeout, ca_certs=ca_bundle())
    http.redirect_codes = http.redirect_codes - {308}
    return google_auth_httplib2.AuthorizedHttp(credentials, http=http, max_refresh_attempts=1)


def build_drive(http: Any, config: GoogleConfig) -> Any:
    """The Drive v3 client on the bundled (static) discovery document — no discovery fetch."""
    return build(
        "drive",
        "v3",
        http=http,
        client_options={"api_endpoint": config.drive_endpoint},
        static_discovery=True,
        cache_discovery=False,
    )


class StoredCredentials(google.oauth2.credentials.Credentials):
    """User credentials from a :class:`TokenRecord` that refresh silently and safely.

    A refresh runs under a lock (threads share the credentials); a refresh token the token endpoint
    rotates is written back to the store; a refused refresh token (revoked, expired, the password
    changed) raises :func:`signed_out`; a token endpoint that cannot be reached is transient.
    """

    def __init__(self, record: TokenRecord, store: SecretStore | None, config: GoogleConfig) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            token=None,
            refresh_token=record.refresh_token,
            token_uri=config.token_uri,
            client_id=record.client_id,
            client_secret=record.client_secret or None,
            scopes=list(record.scopes),
        )
        self._record = record
        self._store = store
        self._refresh_lock = threading.Lock()

    def refresh(self, request: google.auth.transport.Request) -> None:
        with self._refresh_lock:
            try:
                super().refresh(request)  # type: ignore[no-untyped-call]
            except google.auth.exceptions.RefreshError as exc:
                if getattr(exc, "retryable", False):
                    raise TransientStorageError(
                        "Google's sign-in service could not renew the access right now.",
                        hint="Safekeep will try again.",
                    ) from exc
                raise signed_out() from exc
            except google.auth.exceptions.TransportError as exc:
                raise TransientStorageError(
                    "Cannot reach Google's sign-in service to renew the access.",
                    hint="Check that this computer is online; Safekeep will try again.",
                ) from exc
            rotated = self.refresh_token
            if rotated and rotated != self._record.refresh_token and self._store is not None:
                self._record = TokenRecord(
                    rotated,
                    self._record.client_id,
                    self._record.client_secret,
                    self._record.scopes,
                    self._record.account_name,
                    self._record.account_email,
                )
                self._store.set(TOKEN_SECRET, self._record.to_json())
                log.info("Google issued a new refresh token; it was stored")


class GoogleDriveSignIn:
    """The interactive sign-in for ``gdrive:`` destinations (see the module docstring)."""

    def sign_in(
        self,
        location: Location,
        settings: ProviderSettings,
        store: SecretStore,
        browser: Browser,
        *,
        cancel: CancelToken = NEVER,
    ) -> Account:
        config = GoogleConfig.from_settings(settings)
        if not config.client_id:
            raise SignInError(
                "This copy of Safekeep has no Google sign-in registration.",
                hint="Create an OAuth client of type 'Desktop app' in the Google Cloud console (APIs & "
                "Services → Credentials) with the Google Drive API enabled, and give its ID and secret "
                "as the options gdrive.client-id and gdrive.client-secret.",
            )
        client_config = {
            "installed": {
                "client_id": config.client_id,
                "client_secret": config.client_secret,
                "auth_uri": config.auth_uri,
                "token_uri": config.token_uri,
                "redirect_uris": ["http://127.0.0.1"],
            }
        }
        with LoopbackReceiver() as receiver:
            flow = Flow.from_client_config(
                client_config,
                scopes=[SCOPE],
                redirect_uri=receiver.redirect_uri,
                autogenerate_code_verifier=True,
            )
            url, _state = flow.authorization_url(access_type="offline", prompt="consent")
            params = authorize(url, receiver, browser, provider=PRODUCT, cancel=cancel)
        cancel.raise_if_cancelled()
        # requests-oauthlib checks ``state`` against the one it generated; it insists on an https
        # address for that check, so the loopback address is given as https (as Google's own
        # InstalledAppFlow does) — it is only parsed, never fetched.
        answer = "https" + receiver.redirect_uri[4:] + "?" + urllib.parse.urlencode(params)
        try:
            flow.fetch_token(authorization_response=answer)
        except MismatchingStateError as exc:
            raise SignInError(
                "The answer from Google does not belong to this sign-in.",
                hint="Start the sign-in again and finish it in the browser window Safekeep opened.",
            ) from exc
        except OAuth2Error as exc:
            raise SignInError(
                f"Google did not accept the sign-in: {exc.description or exc.error}.",
                hint="Start the sign-in again.",
            ) from exc
        except Warning as exc:  # oauthlib: the granted scope differs from the requested one
            token = getattr(exc, "token", None)
            if SCOPE not in (getattr(exc, "new_scope", None) or ()) or not token:
                raise SignInError(
                    "Google Drive access was not granted.",
                    hint="Sign in again and allow Safekeep to see, edit, create and delete the Google "
                    "Drive files it uses (leave that box ticked on Google's page).",
                ) from exc
            flow.oauth2session.token = dict(token)  # more than asked for, including Drive: fine
        except (requests.RequestException, OSError) as exc:
            raise SignInError(
                "Cannot reach Google to finish the sign-in.",
                hint="Check that this computer is online and start the sign-in again.",
            ) from exc
        creds = flow.credentials
        if not creds.refresh_token:
            raise SignInError(
                "Google did not give Safekeep lasting access.",
                hint="Remove Safekeep under 'Third-party apps & services' in your Google Account, then "
                "sign in again.",
            )
        granted = set(getattr(creds, "granted_scopes", None) or creds.scopes or [SCOPE])
        if SCOPE not in granted:
            raise SignInError(
                "Google Drive access was not granted.",
                hint="Sign in again and leave the Google Drive box ticked on Google's page.",
            )
        record = TokenRecord(
            refresh_token=creds.refresh_token,
            client_id=config.client_id,
            client_secret=config.client_secret,
            scopes=(SCOPE,),
        )
        credentials = StoredCredentials(record, None, config)
        credentials.token = creds.token
        credentials.expiry = creds.expiry
        name, email = self._who(credentials, config)
        record = TokenRecord(
            record.refresh_token, record.client_id, record.client_secret, record.scopes, name, email
        )
        store.set(TOKEN_SECRET, record.to_json())
        log.info("signed in to Google Drive as %s", email or name)
        return record.account

    def _who(self, credentials: StoredCredentials, config: GoogleConfig) -> tuple[str, str]:
        try:
            drive = build_drive(make_http(credentials), config)
            about = drive.about().get(fields="user(displayName,emailAddress)").execute(num_retries=0)
        except (Cancelled, StorageError):
            raise
        except Exception as exc:  # who signed in is for display only
            log.warning("could not ask Google Drive who signed in: %s", exc)
            return "", ""
        user = about.get("user") or {}
        return str(user.get("displayName") or ""), str(user.get("emailAddress") or "")

    def sign_out(self, location: Location, settings: ProviderSettings, store: SecretStore) -> None:
        record = load_record(store)
        try:
            if record is not None:
                config = GoogleConfig.from_settings(settings)
                reply = requests.post(
                    config.revoke_uri,
                    data={"token": record.refresh_token},
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                    timeout=30,
                )
                if reply.status_code >= 400:
                    log.warning(
                        "Google did not revoke the token (%s): %s", reply.status_code, reply.text[:200]
                    )
        except (requests.RequestException, OSError, InvalidLocation) as exc:
            log.warning("could not revoke the Google Drive token; it is deleted here anyway: %s", exc)
        finally:
            store.delete(TOKEN_SECRET)

    def account(self, location: Location, settings: ProviderSettings, store: SecretStore) -> Account | None:
        record = load_record(store)
        return record.account if record is not None else None
