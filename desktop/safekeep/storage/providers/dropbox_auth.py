"""Signing in to Dropbox, and the Dropbox SDK client pointed at the configured hosts.

Concepts:

* **App key** — Dropbox's name for the OAuth client ID. Safekeep ships one
  (:data:`SHIPPED_APP_KEY`); an organisation that registers its own Dropbox app replaces it
  with the option ``dropbox.client-id`` or the environment variable
  ``SAFEKEEP_DROPBOX_CLIENT_ID``. The app is registered with *App folder* access (Safekeep
  sees only ``Apps/<app name>/`` in the person's Dropbox), the permissions
  ``files.content.write``, ``files.content.read``, ``files.metadata.read`` and
  ``account_info.read``, PKCE (no app secret in the program) and the redirect address
  ``http://127.0.0.1:<port>/`` with the port of :data:`DEFAULT_REDIRECT_PORT` (Dropbox compares
  redirect addresses exactly, port included; option ``dropbox.redirect-port`` changes it).
* **Sign-in** (:class:`DropboxSignIn`) — the SDK's ``DropboxOAuth2Flow`` with
  ``use_pkce=True`` and ``token_access_type="offline"`` builds the consent address (S256 code
  challenge, a random ``state`` kept in the flow's CSRF session), the browser shows it, the
  loopback receiver (``safekeep.storage.oauth_loopback``) gets the redirect, and the SDK checks
  ``state`` and redeems the code with the PKCE verifier. The refresh token goes to the
  destination's :class:`~safekeep.storage.secrets.SecretStore` under :data:`TOKEN_SECRET`
  (JSON: refresh token, the app key it was issued to, account id, name and e-mail). Access tokens
  live only in memory: the SDK refreshes them silently when they expire or when Dropbox answers
  ``expired_access_token``. Dropbox does not rotate refresh tokens. "Sign out" revokes the
  tokens with ``auth/token/revoke`` and deletes them from the store.
* **Hosts** (:class:`DropboxEndpoints`) — the SDK reads ``DROPBOX_API_HOST``,
  ``DROPBOX_API_CONTENT_HOST`` and ``DROPBOX_WEB_HOST`` once, at import, into module constants,
  and some of its methods bind them as default arguments. Safekeep does not touch those
  process-wide constants: :class:`DropboxClient` and :class:`_OAuthFlow` are SDK subclasses that
  take the hosts per instance from the options ``dropbox.api-host`` (RPC calls and the token
  endpoint), ``dropbox.content-host`` (uploads and downloads) and ``dropbox.web-host`` (the
  consent page), each ``host[:port]``, always over HTTPS. The defaults are Dropbox's own hosts;
  the tests point them at a local fake.
* **Retries** — the SDK's own retries (5xx, 429 with sleeps) are off: the provider turns those
  answers into ``TransientStorageError`` (with Dropbox's ``Retry-After``) and only Safekeep's
  retry wrapper retries.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dropbox  # type: ignore[import-untyped]
import dropbox.exceptions  # type: ignore[import-untyped]
import dropbox.oauth  # type: ignore[import-untyped]
import requests

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.storage.errors import InvalidLocation, PermissionDenied
from safekeep.storage.oauth_loopback import LoopbackReceiver, SignInError, authorize
from safekeep.storage.registry import Location, ProviderSettings
from safekeep.storage.secrets import SecretStore
from safekeep.storage.signin import Account, Browser

log = logging.getLogger(__name__)

SHIPPED_APP_KEY = ""
"""The app key of Safekeep's registered Dropbox app, built into release packages. Empty in a
build that carries no registration: then ``dropbox.client-id`` or ``SAFEKEEP_DROPBOX_CLIENT_ID``
must name the organisation's own app."""
CLIENT_ID_ENV = "SAFEKEEP_DROPBOX_CLIENT_ID"
TOKEN_SECRET = "oauth-token"  # noqa: S105 - the name of the secret, not a secret
DEFAULT_API_HOST = "api.dropboxapi.com"
DEFAULT_CONTENT_HOST = "content.dropboxapi.com"
DEFAULT_WEB_HOST = "www.dropbox.com"
DEFAULT_REDIRECT_PORT = 53691
"""The loopback port of the redirect address registered with Safekeep's Dropbox app."""
USER_AGENT = "Safekeep"
_CSRF_KEY = "dropbox-auth-csrf-token"

SIGN_IN_HINT = (
    "Sign in to Dropbox: in Safekeep open the destination and click 'Sign in', or run "
    "'safekeep login dropbox' on this computer."
)


@dataclass(frozen=True, slots=True)
class DropboxEndpoints:
    """The hosts the SDK talks to, each ``host[:port]`` (always HTTPS)."""

    api_host: str = DEFAULT_API_HOST
    content_host: str = DEFAULT_CONTENT_HOST
    web_host: str = DEFAULT_WEB_HOST


@dataclass(frozen=True, slots=True)
class DropboxAuthConfig:
    """Where and as whom to sign in; built from the provider options by :meth:`from_settings`."""

    app_key: str
    endpoints: DropboxEndpoints
    redirect_port: int = DEFAULT_REDIRECT_PORT
    timeout: float = 100.0

    @staticmethod
    def from_settings(settings: ProviderSettings) -> DropboxAuthConfig:
        app_key = (
            settings.option("dropbox.client-id").strip()
            or settings.getenv(CLIENT_ID_ENV).strip()
            or SHIPPED_APP_KEY
        )
        endpoints = DropboxEndpoints(
            api_host=_host_option(settings, "dropbox.api-host", DEFAULT_API_HOST),
            content_host=_host_option(settings, "dropbox.content-host", DEFAULT_CONTENT_HOST),
            web_host=_host_option(settings, "dropbox.web-host", DEFAULT_WEB_HOST),
        )
        port_text = settings.option("dropbox.redirect-port").strip()
        if port_text and (not port_text.isdigit() or int(port_text) > 65535):
            raise InvalidLocation(
                f"The option dropbox.redirect-port={port_text!r} is not a port number.",
                hint="Use the port of the redirect address registered with the Dropbox app "
                "(0 = any free port).",
            )
        port = int(port_text) if port_text else DEFAULT_REDIRECT_PORT
        return DropboxAuthConfig(app_key=app_key, endpoints=endpoints, redirect_port=port)

    def require_app_key(self) -> str:
        if not self.app_key:
            raise SignInError(
                "This copy of Safekeep has no Dropbox app key.",
                hint="Register an app in the Dropbox App Console (App folder access) and give its key "
                f"with the option dropbox.client-id or the environment variable {CLIENT_ID_ENV}.",
            )
        return self.app_key


def _host_option(settings: ProviderSettings, name: str, default: str) -> str:
    value = settings.option(name).strip()
    if not value:
        return default
    if value.lower().startswith("http://"):
        raise InvalidLocation(
            f"The option {name}={value!r} uses plain HTTP.", hint="Dropbox is reached only over HTTPS."
        )
    if value.lower().startswith("https://"):
        value = value[len("https://") :]
    value = value.rstrip("/")
    if not value or "/" in value or any(c.isspace() for c in value):
        raise InvalidLocation(
            f"The option {name}={settings.option(name)!r} is not a host name.",
            hint="Write it as host or host:port, e.g. api.dropboxapi.com.",
        )
    return value


@dataclass(frozen=True, slots=True)
class StoredToken:
    """What the store keeps for a signed-in destination (JSON under :data:`TOKEN_SECRET`)."""

    refresh_token: str
    app_key: str
    account_id: str = ""
    name: str = ""
    email: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": 1,
                "refresh_token": self.refresh_token,
                "app_key": self.app_key,
                "account_id": self.account_id,
                "name": self.name,
                "email": self.email,
            }
        )

    @staticmethod
    def from_json(text: str) -> StoredToken | None:
        try:
            raw = json.loads(text)
        except ValueError:
            return None
        if not isinstance(raw, dict) or not raw.get("refresh_token") or not raw.get("app_key"):
            return None
        return StoredToken(
            refresh_token=str(raw["refresh_token"]),
            app_key=str(raw["app_key"]),
            account_id=str(raw.get("account_id", "")),
            name=str(raw.get("name", "")),
            email=str(raw.get("email", "")),
        )

    def account(self) -> Account:
        return Account(self.name or self.email or self.account_id or "Dropbox account", self.email)

    def __repr__(self) -> str:  # never show the token itself
        return f"StoredToken(account_id={self.account_id!r}, app_key={self.app_key!r})"


def load_token(store: SecretStore | None) -> StoredToken | None:
    if store is None:
        return None
    text = store.get(TOKEN_SECRET)
    return StoredToken.from_json(text) if text else None


def not_signed_in() -> PermissionDenied:
    return PermissionDenied("Safekeep is not signed in to Dropbox for this destination.", hint=SIGN_IN_HINT)


def signed_out() -> PermissionDenied:
    return PermissionDenied(
        "Dropbox says Safekeep is signed out: access was withdrawn or the sign-in expired.",
        hint="Sign in again: in Safekeep open the destination and click 'Sign in', or run "
        "'safekeep login dropbox'.",
    )


class ServerError(dropbox.exceptions.InternalServerError):  # type: ignore[misc]
    """A 5xx answer, with the delay Dropbox asked for in ``Retry-After`` (seconds), if any."""

    def __init__(self, request_id: str | None, status_code: int, body: str, retry_after: float | None):
        super().__init__(request_id, status_code, body)
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(seconds, 0.0)


class DropboxClient(dropbox.Dropbox):  # type: ignore[misc]
    """The SDK's client, with its hosts taken from :class:`DropboxEndpoints` per instance.

    The SDK builds its host map from module constants read at import and refreshes tokens at a
    host bound as a default argument; this subclass replaces both, and keeps ``Retry-After`` of
    5xx answers (the SDK drops it).
    """

    _safekeep_endpoints: DropboxEndpoints = DropboxEndpoints()

    def use_endpoints(self, endpoints: DropboxEndpoints) -> DropboxClient:
        self._safekeep_endpoints = endpoints
        self._host_map = {
            "api": endpoints.api_host,
            "content": endpoints.content_host,
            # no long-poll routes are used; never let one fall through to Dropbox's own host
            "notify": endpoints.api_host,
        }
        return self

    def refresh_access_token(self, host: str | None = None, scope: list[str] | None = None) -> None:
        super().refresh_access_token(host=self._safekeep_endpoints.api_host, scope=scope)

    def clone(self, *args: Any, **kwargs: Any) -> DropboxClient:
        copy: DropboxClient = super().clone(*args, **kwargs)
        return copy.use_endpoints(self._safekeep_endpoints)

    def raise_dropbox_error_for_resp(self, res: requests.Response) -> None:
        if res.status_code >= 500:
            raise ServerError(
                res.headers.get("x-dropbox-request-id"),
                res.status_code,
                res.text,
                parse_retry_after(res.headers.get("Retry-After")),
            )
        super().raise_dropbox_error_for_resp(res)


def make_client(
    config: DropboxAuthConfig,
    token: StoredToken,
    *,
    connections: int = 8,
    access_token: str | None = None,
    expires_at: Any = None,
) -> DropboxClient:
    """An SDK client for ``token`` that refreshes its access token silently; SDK retries off."""
    session = dropbox.create_session(max_connections=max(connections, 1) * 2)
    client = DropboxClient(
        oauth2_access_token=access_token,
        oauth2_access_token_expiration=expires_at,
        oauth2_refresh_token=token.refresh_token,
        app_key=token.app_key,
        max_retries_on_error=0,
        max_retries_on_rate_limit=0,
        user_agent=USER_AGENT,
        session=session,
        timeout=config.timeout,
    )
    return client.use_endpoints(config.endpoints)


class _OAuthFlow(dropbox.oauth.DropboxOAuth2Flow):  # type: ignore[misc]
    """The SDK's redirect flow, sending the consent page and the token endpoint to our hosts."""

    def __init__(self, endpoints: DropboxEndpoints, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._safekeep_endpoints = endpoints

    def build_url(self, target: str, params: Mapping[str, str] | None = None, host: str | None = None) -> str:
        chosen = (
            self._safekeep_endpoints.web_host
            if target == "/oauth2/authorize"
            else self._safekeep_endpoints.api_host
        )
        return f"https://{chosen}{self.build_path(target, params)}"


class DropboxSignIn:
    """The :class:`~safekeep.storage.signin.SignInFlow` for ``dropbox:`` destinations."""

    def sign_in(
        self,
        location: Location,
        settings: ProviderSettings,
        store: SecretStore,
        browser: Browser,
        *,
        cancel: CancelToken = NEVER,
    ) -> Account:
        config = DropboxAuthConfig.from_settings(settings)
        app_key = config.require_app_key()
        try:
            receiver = LoopbackReceiver(port=config.redirect_port)
        except OSError as exc:
            raise SignInError(
                f"Safekeep cannot listen for Dropbox's answer on port {config.redirect_port}: "
                f"{exc.strerror}.",
                hint="Another program uses that port; close it and sign in again.",
            ) from exc
        with receiver:
            csrf_session: dict[str, str] = {}
            flow = _OAuthFlow(
                config.endpoints,
                consumer_key=app_key,
                redirect_uri=receiver.redirect_uri,
                session=csrf_session,
                csrf_token_session_key=_CSRF_KEY,
                token_access_type="offline",  # noqa: S106 - asks for a refresh token
                use_pkce=True,
                timeout=config.timeout,
            )
            url = flow.start()
            params = authorize(url, receiver, browser, provider="Dropbox", cancel=cancel)
        cancel.raise_if_cancelled()
        try:
            result = flow.finish(params)
        except dropbox.oauth.CsrfException as exc:
            raise SignInError(
                "The answer from Dropbox does not belong to this sign-in (the state did not match).",
                hint="Start the sign-in again from Safekeep and finish it in the browser window it opens.",
            ) from exc
        except dropbox.oauth.NotApprovedException as exc:
            raise SignInError(
                "Dropbox did not allow the sign-in.",
                hint="Sign in again and choose 'Allow'.",
            ) from exc
        except (dropbox.oauth.ProviderException, dropbox.oauth.BadRequestException) as exc:
            raise SignInError(
                f"Dropbox refused the sign-in: {exc}.",
                hint="Sign in again; if it keeps failing, check the Dropbox app key (dropbox.client-id).",
            ) from exc
        except requests.HTTPError as exc:
            raise SignInError(
                f"Dropbox did not accept the sign-in code ({_oauth_error(exc.response)}).",
                hint="Sign in again, and finish within a few minutes of opening the page.",
            ) from exc
        except requests.RequestException as exc:
            raise SignInError(
                f"Safekeep could not reach Dropbox to finish the sign-in: {type(exc).__name__}.",
                hint="Check that this computer is online and sign in again.",
            ) from exc
        token = StoredToken(refresh_token=result.refresh_token, app_key=app_key, account_id=result.account_id)
        if not token.refresh_token:
            raise SignInError(
                "Dropbox gave no refresh token, so Safekeep could not keep working after an hour.",
                hint="Sign in again; the Dropbox app must allow offline access.",
            )
        token = self._with_profile(config, token, result.access_token, result.expires_at)
        store.set(TOKEN_SECRET, token.to_json())
        log.info("signed in to Dropbox as %s", token.account_id)
        return token.account()

    @staticmethod
    def _with_profile(
        config: DropboxAuthConfig, token: StoredToken, access: str, expires: Any
    ) -> StoredToken:
        client = make_client(config, token, connections=1, access_token=access, expires_at=expires)
        try:
            me = client.users_get_current_account()
        except Exception as exc:  # the name is for display only; the sign-in itself succeeded
            log.warning("Dropbox account details unavailable: %s", type(exc).__name__)
            return token
        finally:
            client.close()
        return StoredToken(
            refresh_token=token.refresh_token,
            app_key=token.app_key,
            account_id=str(me.account_id),
            name=str(me.name.display_name),
            email=str(me.email),
        )

    def sign_out(self, location: Location, settings: ProviderSettings, store: SecretStore) -> None:
        token = load_token(store)
        if token is not None:
            config = DropboxAuthConfig.from_settings(settings)
            client = make_client(config, token, connections=1)
            try:
                client.auth_token_revoke()
                log.info("revoked the Dropbox tokens of %s", token.account_id)
            except dropbox.exceptions.AuthError:
                log.info("the Dropbox tokens were already revoked")
            except (dropbox.exceptions.DropboxException, requests.RequestException) as exc:
                log.warning("could not revoke the Dropbox tokens (deleting them here anyway): %s", exc)
            finally:
                client.close()
        store.delete(TOKEN_SECRET)

    def account(self, location: Location, settings: ProviderSettings, store: SecretStore) -> Account | None:
        token = load_token(store)
        return token.account() if token is not None else None


def _oauth_error(response: requests.Response | None) -> str:
    if response is None:
        return "no answer"
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict) and body.get("error"):
        return str(body.get("error_description") or body["error"])
    return f"HTTP {response.status_code}"
