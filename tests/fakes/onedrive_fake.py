"""A local fake of the Microsoft identity platform and the Microsoft Graph drive API subset the
``onedrive`` provider uses, served over TLS on 127.0.0.1.

Neither service can run on this machine, so the provider — the real MSAL library and the real
HTTP requests to Graph — is tested against THIS FAKE. It follows Microsoft's documented wire
formats:

- OpenID Connect discovery (``{authority}/v2.0/.well-known/openid-configuration``), which MSAL
  reads first: https://learn.microsoft.com/entra/identity-platform/v2-protocols-oidc
- Authorization code flow with PKCE — the authorize endpoint (``response_mode=query`` redirects,
  ``form_post`` answers a self-posting form), the token endpoint (``authorization_code`` grant
  checking ``code_verifier`` against the S256 ``code_challenge``; ``refresh_token`` grant
  rotating the refresh token) and its errors (``invalid_grant`` with ``AADSTS`` codes):
  https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow
- ``client_info`` and the ID token claims (``oid``, ``tid``, ``preferred_username``, ``nonce``):
  https://learn.microsoft.com/entra/identity-platform/id-token-claims-reference
- Graph driveItems by path (``/me/drive/special/approot:/a/b:``, ``/drives/{id}/root:/...``):
  https://learn.microsoft.com/graph/onedrive-addressing-driveitems and the app folder
  https://learn.microsoft.com/onedrive/developer/rest-api/concepts/special-folders-appfolder
- Get item, list children with ``$top`` and ``@odata.nextLink`` paging, create folder with
  ``@microsoft.graph.conflictBehavior`` (409 ``nameAlreadyExists``), delete:
  https://learn.microsoft.com/graph/api/driveitem-get, .../driveitem-list-children,
  .../driveitem-post-children, .../driveitem-delete
- Simple upload ``PUT .../content``: https://learn.microsoft.com/graph/api/driveitem-put-content
- Upload sessions (``createUploadSession``, fragment ``PUT`` with ``Content-Range`` in multiples
  of 320 KiB, without ``Authorization``, 202 with ``nextExpectedRanges``, ``GET`` the session to
  resume, ``DELETE`` to cancel, 416 for a wrong range):
  https://learn.microsoft.com/graph/api/driveitem-createuploadsession
- Download: ``GET .../content`` answers 302 to a pre-authenticated URL honouring ``Range``:
  https://learn.microsoft.com/graph/api/driveitem-get-content
- Errors ``{"error": {"code", "message"}}``, 401 ``InvalidAuthenticationToken``, 429/503 with
  ``Retry-After``, 507 ``quotaLimitReached``: https://learn.microsoft.com/graph/errors and
  https://learn.microsoft.com/graph/throttling

Faults a test can inject: :meth:`OneDriveFake.fail_next` (429/5xx, with ``Retry-After``),
:meth:`expire_access_tokens`, :meth:`revoke_refresh_tokens` (the person withdrew consent),
:attr:`drop_upload_after` (a connection dropped in the middle of an upload fragment),
:attr:`quota_total` (a full drive) and :attr:`page_cap` (small listing pages).
:attr:`bytes_received` counts every upload byte the fake read, for resume tests.

Everything the fake does not know answers 501. Requests are recorded in :attr:`log`, answers
in :attr:`answers`.
"""

from __future__ import annotations

import base64
import hashlib
import html
import html.parser
import json
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from safekeep.common.cancel import CancelToken
from safekeep.storage.registry import ProviderSettings
from safekeep.storage.secrets import MemorySecretStore

TENANT = "common"
TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"
CLIENT_ID = "5a0f1c2e-7b3d-4e8f-9a6b-0c1d2e3f4a5b"
FRAGMENT_MULTIPLE = 320 * 1024
MAX_FRAGMENT = 60 * 1024 * 1024
APP_FOLDER = "Apps/Safekeep"
RESERVED_SCOPES = {"openid", "profile", "offline_access", "email"}


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class User:
    oid: str
    name: str
    username: str


@dataclass
class _Item:
    id: str
    name: str
    folder: bool
    data: bytes = b""


@dataclass
class Drive:
    id: str
    items: dict[str, _Item] = field(default_factory=dict)
    """Path (``a/b/c``, ``""`` for the root) → item."""

    def __post_init__(self) -> None:
        self.items.setdefault("", _Item("root-" + self.id, "root", True))

    def used(self) -> int:
        return sum(len(i.data) for i in self.items.values() if not i.folder)


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    scopes: list[str]
    nonce: str
    user: User


@dataclass
class _Grant:
    client_id: str
    scopes: list[str]
    user: User
    revoked: bool = False


@dataclass
class _Access:
    scopes: set[str]
    user: User
    expires: float


@dataclass
class _Session:
    drive: Drive
    path: str
    data: bytearray = field(default_factory=bytearray)
    total: int | None = None


@dataclass
class _Fault:
    where: str
    status: int
    retry_after: str | None
    code: str


class _Dropped(Exception):
    """Close the connection without answering (an injected network failure)."""


class OneDriveFake:
    """The fake server. ``start()``, then use :attr:`authority` and :attr:`graph_endpoint`."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.clients = {CLIENT_ID}
        self.user = User(
            oid="00000000-0000-0000-66f3-3332eca7ea81", name="Office Admin", username="office@example.org"
        )
        self.drives: dict[str, Drive] = {"me": Drive("me")}
        self.token_lifetime = 3600
        self.page_cap = 200
        self.quota_total = 5 * 1024**3
        self.drop_upload_after: int | None = None
        self.bytes_received = 0
        self.log: list[tuple[str, str, bool]] = []
        """(method, path without query, whether an Authorization header came)."""
        self.answers: list[tuple[str, str, int]] = []
        """(method, path without query, status answered)."""
        self._faults: list[_Fault] = []
        self._codes: dict[str, _Code] = {}
        self._grants: dict[str, _Grant] = {}
        self._access: dict[str, _Access] = {}
        self._sessions: dict[str, _Session] = {}
        self._downloads: dict[str, bytes] = {}
        self.consent_pages = 0
        self.revocations = 0
        self.token_requests: list[dict[str, str]] = []

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        fake = self
        context = self._context

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def finish_request(self, request: Any, client_address: Any) -> None:
                try:
                    request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms stalls
                    tls = context.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    return
                try:
                    self.RequestHandlerClass(tls, client_address, self)
                finally:
                    tls.close()

        class Handler(_Handler):
            owner = fake

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="onedrive-fake", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def authority(self) -> str:
        return f"{self.url}/{TENANT}"

    @property
    def graph_endpoint(self) -> str:
        return f"{self.url}/v1.0"

    def settings(self, store: MemorySecretStore | None, **options: str) -> ProviderSettings:
        """Provider settings that point the ``onedrive`` provider at this fake."""
        base = {
            "onedrive.client-id": CLIENT_ID,
            "onedrive.authority": self.authority,
            "onedrive.graph-endpoint": self.graph_endpoint,
        }
        return ProviderSettings(env={}, options={**base, **options}, store=store)

    # -- fault injection -------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        count: int = 1,
        where: str = "graph",
        retry_after: str | None = None,
        code: str = "",
    ) -> None:
        """Answer the next ``count`` requests to ``where`` (``graph``: any Graph call; ``upload``:
        a simple upload or the opening of an upload session; ``fragment``; ``download``: the
        pre-authenticated download address; ``token``: the token endpoint) with
        ``status``."""
        default = {429: "TooManyRequests", 503: "serviceNotAvailable", 507: "quotaLimitReached"}
        with self._lock:
            for _ in range(count):
                self._faults.append(
                    _Fault(where, status, retry_after, code or default.get(status, "generalException"))
                )

    def expire_access_tokens(self) -> None:
        with self._lock:
            for a in self._access.values():
                a.expires = 0.0

    def revoke_refresh_tokens(self) -> None:
        """The person withdrew the app's consent: refresh tokens and access tokens stop working."""
        with self._lock:
            self.revocations += 1
            for g in self._grants.values():
                g.revoked = True
            self._access.clear()

    def reset_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self.drop_upload_after = None
            self.page_cap = 200
            self.quota_total = 5 * 1024**3
            self.token_lifetime = 3600

    def add_drive(self, drive_id: str) -> Drive:
        with self._lock:
            return self.drives.setdefault(drive_id, Drive(drive_id))

    def files(self, drive_id: str = "me", prefix: str = "") -> dict[str, bytes]:
        """The files of a drive (paths relative to its root), for assertions."""
        with self._lock:
            return {
                p: i.data
                for p, i in self.drives[drive_id].items.items()
                if not i.folder and p.startswith(prefix)
            }

    def folders(self, drive_id: str = "me", prefix: str = "") -> list[str]:
        with self._lock:
            return sorted(
                p for p, i in self.drives[drive_id].items.items() if i.folder and p.startswith(prefix)
            )

    def open_sessions(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _take_fault(self, *wheres: str) -> _Fault | None:
        with self._lock:
            for i, f in enumerate(self._faults):
                if f.where in wheres:
                    return self._faults.pop(i)
        return None

    # -- OAuth -----------------------------------------------------------------------------------

    def openid_configuration(self) -> dict[str, Any]:
        base = self.authority
        return {
            "issuer": f"{self.url}/{TENANT_ID}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "code_challenge_methods_supported": ["plain", "S256"],
        }

    def check_authorize(self, params: dict[str, str]) -> str | None:
        """Why an authorization request is refused (shown on an error page), or None."""
        if params.get("client_id") not in self.clients:
            return "AADSTS700016: Application not found in the directory."
        if params.get("response_type") != "code":
            return "AADSTS900144: response_type must be code."
        redirect = urllib.parse.urlsplit(params.get("redirect_uri", ""))
        if redirect.scheme != "http" or redirect.hostname not in ("127.0.0.1", "localhost"):
            return "AADSTS50011: The redirect URI does not match the app's loopback redirect URI."
        if not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
            return "AADSTS9002325: Proof Key for Code Exchange is required."
        return None

    def issue_code(self, params: dict[str, str]) -> str:
        code = "M." + secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Code(
                client_id=params["client_id"],
                redirect_uri=params["redirect_uri"],
                challenge=params["code_challenge"],
                scopes=params.get("scope", "").split(),
                nonce=params.get("nonce", ""),
                user=self.user,
            )
        return code

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.token_requests.append(dict(form))
            grant_type = form.get("grant_type")
            if form.get("client_id") not in self.clients:
                return 400, _oauth_error(
                    "unauthorized_client", "AADSTS700016: Application not found.", 700016
                )
            if grant_type == "authorization_code":
                code = self._codes.pop(form.get("code", ""), None)
                if code is None or code.client_id != form["client_id"]:
                    return 400, _oauth_error(
                        "invalid_grant", "AADSTS70000: The code is invalid or was used.", 70000
                    )
                if form.get("redirect_uri") != code.redirect_uri:
                    return 400, _oauth_error("invalid_grant", "AADSTS50011: redirect_uri mismatch.", 50011)
                verifier = form.get("code_verifier", "")
                if _b64url(hashlib.sha256(verifier.encode()).digest()) != code.challenge:
                    return 400, _oauth_error(
                        "invalid_grant",
                        "AADSTS501481: The Code_Verifier does not match the code_challenge supplied in the "
                        "authorization request.",
                        501481,
                    )
                return 200, self._tokens(code.client_id, code.scopes, code.user, nonce=code.nonce)
            if grant_type == "refresh_token":
                grant = self._grants.get(form.get("refresh_token", ""))
                if grant is None or grant.revoked or grant.client_id != form["client_id"]:
                    return 400, _oauth_error(
                        "invalid_grant",
                        "AADSTS50173: The provided grant has expired due to it being revoked.",
                        50173,
                    )
                asked = form.get("scope", "").split() or grant.scopes
                missing = {s for s in asked if s not in RESERVED_SCOPES} - set(grant.scopes)
                if missing:
                    return 400, _oauth_error(
                        "invalid_grant",
                        f"AADSTS65001: The user has not consented to {' '.join(sorted(missing))}.",
                        65001,
                    )
                return 200, self._tokens(grant.client_id, grant.scopes, grant.user)
            return 400, _oauth_error(
                "unsupported_grant_type", f"AADSTS70003: {grant_type} is not supported.", 70003
            )

    def _tokens(self, client_id: str, scopes: list[str], user: User, *, nonce: str = "") -> dict[str, Any]:
        access = "EwA" + secrets.token_urlsafe(32)
        granted = [s for s in scopes if s not in ("offline_access",)]
        self._access[access] = _Access(set(scopes), user, time.time() + self.token_lifetime)
        now = int(time.time())
        claims = {
            "aud": client_id,
            "iss": f"{self.url}/{TENANT_ID}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "name": user.name,
            "oid": user.oid,
            "preferred_username": user.username,
            "sub": "sub-" + user.oid,
            "tid": TENANT_ID,
            "ver": "2.0",
        }
        if nonce:
            claims["nonce"] = nonce
        header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "fake"}).encode())
        id_token = f"{header}.{_b64url(json.dumps(claims).encode())}.{_b64url(b'not-a-signature')}"
        reply: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(granted),
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": access,
            "id_token": id_token,
            "client_info": _b64url(json.dumps({"uid": user.oid, "utid": TENANT_ID}).encode()),
        }
        if "offline_access" in scopes:
            refresh = "M.R3_" + secrets.token_urlsafe(32)
            self._grants[refresh] = _Grant(client_id, scopes, user)
            reply["refresh_token"] = refresh
        return reply

    def access(self, header: str | None) -> _Access | None:
        if not header or not header.startswith("Bearer "):
            return None
        with self._lock:
            found = self._access.get(header[len("Bearer ") :])
        if found is None or found.expires < time.time():
            return None
        return found


def _oauth_error(error: str, description: str, code: int) -> dict[str, Any]:
    return {
        "error": error,
        "error_description": description,
        "error_codes": [code],
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "trace_id": secrets.token_hex(8),
        "correlation_id": secrets.token_hex(8),
    }


def _graph_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "innerError": {"request-id": secrets.token_hex(8)}}}


_CONSENT_PAGE = """<!doctype html><html><head><title>Let this app access your info?</title></head>
<body><h1>Let this app access your info?</h1><p>Signed in as {user}</p>
<p>Safekeep needs your permission to: {scopes}</p>
<form method="post" action="{action}">{fields}
<button type="submit" name="decision" value="allow">Accept</button>
<button type="submit" name="decision" value="deny">Cancel</button></form></body></html>"""

_FORM_POST_PAGE = """<!doctype html><html><head><title>Working...</title></head>
<body onload="document.forms[0].submit()"><form method="post" action="{action}">{fields}
<noscript><button type="submit">Continue</button></noscript></form></body></html>"""


def _hidden(params: dict[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in params.items()
    )


class _Handler(BaseHTTPRequestHandler):
    owner: OneDriveFake
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing --------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        fake = self.owner
        parts = urllib.parse.urlsplit(self.path)
        self.body_read = False
        self.query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        with fake._lock:
            fake.log.append((self.command, parts.path, "Authorization" in self.headers))
        try:
            route = self._route(parts.path)
            if route is None:
                self._drain()
                self._send(
                    501, {"error": {"code": "notSupported", "message": f"{self.command} {parts.path}"}}
                )
                return
            route()
        except _Dropped:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    do_GET = do_POST = do_PUT = do_DELETE = _dispatch

    def _route(self, path: str) -> Callable[[], None] | None:
        base = f"/{TENANT}"
        if path == f"{base}/v2.0/.well-known/openid-configuration" and self.command == "GET":
            return lambda: self._send(200, self.owner.openid_configuration())
        if path == f"{base}/oauth2/v2.0/authorize":
            return self._authorize
        if path == f"{base}/oauth2/v2.0/token" and self.command == "POST":
            return self._token
        if path.startswith("/upload/"):
            return lambda: self._upload_session(path[len("/upload/") :])
        if path.startswith("/download/") and self.command == "GET":
            return lambda: self._download(path[len("/download/") :])
        if path.startswith("/v1.0/"):
            return lambda: self._graph(path[len("/v1.0") :])
        return None

    def _body(self) -> bytes:
        self.body_read = True
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _drain(self) -> None:
        if self.command in ("POST", "PUT") and not self.body_read:
            self._body()

    def _send(
        self,
        status: int,
        body: dict[str, Any] | bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if isinstance(body, dict):
            raw, ctype = json.dumps(body).encode(), "application/json"
        elif isinstance(body, str):
            raw, ctype = body.encode(), "text/html; charset=utf-8"
        else:
            raw, ctype = body or b"", "application/octet-stream"
        with self.owner._lock:
            self.owner.answers.append((self.command, urllib.parse.urlsplit(self.path).path, status))
        self.send_response(status)
        if raw or status not in (204, 304):
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if raw and self.command != "HEAD":
            self.wfile.write(raw)

    def _fault(self, *wheres: str) -> bool:
        fault = self.owner._take_fault(*wheres)
        if fault is None:
            return False
        self._drain()
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        if wheres[0] == "token":
            self._send(
                fault.status,
                _oauth_error("temporarily_unavailable", "AADSTS50196: try later.", 50196),
                headers,
            )
        else:
            self._send(fault.status, _graph_error(fault.code, f"Injected HTTP {fault.status}."), headers)
        return True

    # -- OAuth -----------------------------------------------------------------------------------

    def _authorize(self) -> None:
        fake = self.owner
        if self.command == "GET":
            params = self.query
            problem = fake.check_authorize(params)
            if problem:
                title = "Sorry, but we're having trouble signing you in."
                self._send(400, f"<html><body><h1>{title}</h1><p>{html.escape(problem)}</p></body></html>")
                return
            with fake._lock:
                fake.consent_pages += 1
            scopes = ", ".join(s for s in params.get("scope", "").split() if s not in RESERVED_SCOPES)
            page = _CONSENT_PAGE.format(
                user=html.escape(fake.user.username),
                scopes=html.escape(scopes),
                action=html.escape(f"/{TENANT}/oauth2/v2.0/authorize"),
                fields=_hidden(params),
            )
            self._send(200, page)
            return
        form = dict(urllib.parse.parse_qsl(self._body().decode()))
        decision = form.pop("decision", "deny")
        problem = fake.check_authorize(form)
        if problem:
            self._send(400, f"<html><body>{html.escape(problem)}</body></html>")
            return
        answer: dict[str, str]
        if decision == "allow":
            answer = {"code": fake.issue_code(form)}
        else:
            answer = {"error": "access_denied", "error_description": "AADSTS65004: User declined to consent."}
        if form.get("state"):
            answer["state"] = form["state"]
        redirect = form["redirect_uri"]
        if form.get("response_mode") == "form_post":
            self._send(200, _FORM_POST_PAGE.format(action=html.escape(redirect), fields=_hidden(answer)))
        else:
            sep = "&" if "?" in redirect else "?"
            self._send(302, b"", {"Location": redirect + sep + urllib.parse.urlencode(answer)})

    def _token(self) -> None:
        form = dict(urllib.parse.parse_qsl(self._body().decode()))
        if self._fault("token"):
            return
        status, body = self.owner.token(form)
        self._send(status, body, {"Cache-Control": "no-store"})

    # -- Graph -----------------------------------------------------------------------------------

    def _graph(self, path: str) -> None:
        fake = self.owner
        access = fake.access(self.headers.get("Authorization"))
        if access is None:
            self._drain()
            self._send(
                401,
                _graph_error("InvalidAuthenticationToken", "Access token has expired or is not yet valid."),
                {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
            )
            return
        if self._fault("graph") or (
            (self.command == "PUT" or path.endswith(":/createUploadSession")) and self._fault("upload")
        ):
            return
        if path in ("/me/drive", "/me/drive/") or (path.startswith("/drives/") and path.count("/") == 2):
            drive = fake.drives.get(
                "me" if path.startswith("/me") else urllib.parse.unquote(path.split("/")[2])
            )
            if drive is None or (drive.id != "me" and "Files.ReadWrite.All" not in access.scopes):
                self._send(
                    404 if drive is None else 403,
                    _graph_error("itemNotFound" if drive is None else "accessDenied", "Drive"),
                )
                return
            used = drive.used()
            self._send(
                200,
                {
                    "id": drive.id,
                    "driveType": "personal" if drive.id == "me" else "documentLibrary",
                    "quota": {
                        "total": fake.quota_total,
                        "used": used,
                        "remaining": max(0, fake.quota_total - used),
                        "state": "normal",
                    },
                },
            )
            return
        target = _parse_item_path(path)
        if target is None:
            self._drain()
            self._send(400, _graph_error("invalidRequest", f"Invalid request {path}"))
            return
        drive_id, base, rel, action = target
        drive = fake.drives.get(drive_id)
        if drive is None:
            self._drain()
            self._send(404, _graph_error("itemNotFound", "The drive could not be found."))
            return
        if base == "approot":
            if (
                "Files.ReadWrite.AppFolder" not in access.scopes
                and "Files.ReadWrite.All" not in access.scopes
            ):
                self._drain()
                self._send(403, _graph_error("accessDenied", "Access denied"))
                return
            with fake._lock:  # the app folder is made on first use
                _mkdirs(drive, APP_FOLDER)
            full = "/".join(p for p in (APP_FOLDER, rel) if p)
        else:
            if "Files.ReadWrite.All" not in access.scopes:
                self._drain()
                self._send(403, _graph_error("accessDenied", "Access denied"))
                return
            full = rel
        handler = {
            ("GET", ""): self._get_item,
            ("DELETE", ""): self._delete_item,
            ("GET", "children"): self._list_children,
            ("POST", "children"): self._create_folder,
            ("PUT", "content"): self._put_content,
            ("GET", "content"): self._get_content,
            ("POST", "createUploadSession"): self._create_session,
        }.get((self.command, action))
        if handler is None:
            self._drain()
            self._send(501, _graph_error("notSupported", f"{self.command} {action}"))
            return
        handler(drive, full)

    def _item_json(self, drive: Drive, path: str, item: _Item) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": item.id,
            "name": item.name,
            "size": len(item.data)
            if not item.folder
            else sum(
                len(i.data) for p, i in drive.items.items() if p.startswith(path + "/") and not i.folder
            ),
            "parentReference": {"driveId": drive.id, "path": "/drive/root:/" + path.rpartition("/")[0]},
        }
        if item.folder:
            out["folder"] = {"childCount": sum(1 for p in drive.items if p.rpartition("/")[0] == path and p)}
        else:
            out["file"] = {
                "mimeType": "application/octet-stream",
                "hashes": {"sha256Hash": hashlib.sha256(item.data).hexdigest().upper()},
            }
        select = self.query.get("$select")
        if select:
            keep = set(select.split(","))
            out = {k: v for k, v in out.items() if k in keep}
        return out

    def _not_found(self) -> None:
        self._send(404, _graph_error("itemNotFound", "The resource could not be found."))

    def _get_item(self, drive: Drive, path: str) -> None:
        with self.owner._lock:
            item = drive.items.get(path)
            body = self._item_json(drive, path, item) if item else None
        self._send(200, body) if body else self._not_found()

    def _delete_item(self, drive: Drive, path: str) -> None:
        with self.owner._lock:
            if path not in drive.items or path in ("", APP_FOLDER):
                self._not_found() if path not in drive.items else self._send(
                    403, _graph_error("accessDenied", "no")
                )
                return
            for p in [p for p in drive.items if p == path or p.startswith(path + "/")]:
                del drive.items[p]
        self._send(204)

    def _list_children(self, drive: Drive, path: str) -> None:
        fake = self.owner
        with fake._lock:
            folder = drive.items.get(path)
            if folder is None or not folder.folder:
                self._not_found()
                return
            names = sorted(p for p in drive.items if p and p.rpartition("/")[0] == path)
            top = min(int(self.query.get("$top") or 200), fake.page_cap)
            start = (
                int(base64.urlsafe_b64decode(self.query["$skiptoken"]).decode())
                if "$skiptoken" in self.query
                else 0
            )
            page = [self._item_json(drive, p, drive.items[p]) for p in names[start : start + top]]
        body: dict[str, Any] = {"value": page}
        if start + top < len(names):
            query = {k: v for k, v in self.query.items() if k != "$skiptoken"}
            query["$skiptoken"] = base64.urlsafe_b64encode(str(start + top).encode()).decode()
            body["@odata.nextLink"] = (
                fake.url + urllib.parse.urlsplit(self.path).path + "?" + urllib.parse.urlencode(query)
            )
        self._send(200, body)

    def _create_folder(self, drive: Drive, path: str) -> None:
        req = json.loads(self._body() or b"{}")
        name = str(req.get("name") or "")
        behaviour = req.get("@microsoft.graph.conflictBehavior", "fail")
        with self.owner._lock:
            parent = drive.items.get(path)
            if parent is None or not parent.folder:
                self._not_found()
                return
            full = f"{path}/{name}" if path else name
            if full in drive.items and behaviour == "fail":
                self._send(
                    409, _graph_error("nameAlreadyExists", "An item with the same name already exists.")
                )
                return
            drive.items[full] = _Item("F" + secrets.token_hex(8), name, True)
            body = self._item_json(drive, full, drive.items[full])
        self._send(201, body)

    def _store(self, drive: Drive, path: str, data: bytes) -> tuple[int, dict[str, Any]]:
        fake = self.owner
        with fake._lock:
            parent = drive.items.get(path.rpartition("/")[0])
            if parent is None or not parent.folder:
                return 404, _graph_error("itemNotFound", "The parent folder could not be found.")
            old = drive.items.get(path)
            if old is not None and old.folder:
                return 409, _graph_error("nameAlreadyExists", "A folder has this name.")
            if drive.used() - (len(old.data) if old else 0) + len(data) > fake.quota_total:
                return 507, _graph_error("quotaLimitReached", "Insufficient Space Available")
            item = _Item(old.id if old else "I" + secrets.token_hex(8), path.rpartition("/")[2], False, data)
            drive.items[path] = item
            return (200 if old else 201), self._item_json(drive, path, item)

    def _put_content(self, drive: Drive, path: str) -> None:
        data = self._body()
        with self.owner._lock:
            self.owner.bytes_received += len(data)
        status, body = self._store(drive, path, data)
        self._send(status, body)

    def _get_content(self, drive: Drive, path: str) -> None:
        with self.owner._lock:
            item = drive.items.get(path)
            if item is None or item.folder:
                self._not_found()
                return
            token = secrets.token_urlsafe(16)
            self.owner._downloads[token] = item.data
        self._send(302, b"", {"Location": f"{self.owner.url}/download/{token}?tempauth=1"})

    def _download(self, token: str) -> None:
        if self._fault("download"):
            return
        with self.owner._lock:
            data = self.owner._downloads.get(token)
        if data is None:
            self._send(401, b"expired download address")
            return
        rng = self.headers.get("Range")
        if not rng:
            self._send(200, data)
            return
        start_s, _, end_s = rng.removeprefix("bytes=").partition("-")
        start = int(start_s)
        end = min(int(end_s), len(data) - 1) if end_s else len(data) - 1
        if start >= len(data):
            self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            return
        self._send(206, data[start : end + 1], {"Content-Range": f"bytes {start}-{end}/{len(data)}"})

    def _create_session(self, drive: Drive, path: str) -> None:
        item = (
            (json.loads(self._body() or b"{}").get("item") or {})
            if self.headers.get("Content-Length")
            else {}
        )
        size = int(item.get("fileSize") or 0)
        with self.owner._lock:
            parent = drive.items.get(path.rpartition("/")[0])
            if parent is None or not parent.folder:
                self._not_found()
                return
            old = drive.items.get(path)
            if drive.used() - (len(old.data) if old else 0) + size > self.owner.quota_total:
                self._send(507, _graph_error("quotaLimitReached", "Insufficient Space Available"))
                return
            sid = secrets.token_urlsafe(18)
            self.owner._sessions[sid] = _Session(drive, path)
        self._send(
            200,
            {
                "uploadUrl": f"{self.owner.url}/upload/{sid}",
                "expirationDateTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600)),
                "nextExpectedRanges": ["0-"],
            },
        )

    def _upload_session(self, sid: str) -> None:
        fake = self.owner
        with fake._lock:
            session = fake._sessions.get(sid)
        if session is None:
            self._drain()
            self._send(404, _graph_error("itemNotFound", "The upload session was not found."))
            return
        if self.command == "DELETE":
            with fake._lock:
                fake._sessions.pop(sid, None)
            self._send(204)
            return
        if self.command == "GET":
            self._send(200, self._session_status(session))
            return
        if self.command != "PUT":
            self._drain()
            self._send(405, _graph_error("invalidRequest", "method"))
            return
        if "Authorization" in self.headers:
            self._drain()
            self._send(401, _graph_error("unauthenticated", "Do not send Authorization to the upload URL."))
            return
        length = int(self.headers.get("Content-Length") or 0)
        with fake._lock:
            drop = fake.drop_upload_after
            if drop is not None:
                fake.drop_upload_after = None
        if drop is not None and drop < length:
            got = self.rfile.read(drop)
            with fake._lock:
                fake.bytes_received += len(got)
            raise _Dropped()
        data = self._body()
        with fake._lock:
            fake.bytes_received += len(data)
        if self._fault("fragment"):
            return
        rng = self.headers.get("Content-Range", "")
        try:
            span, _, total_s = rng.removeprefix("bytes ").partition("/")
            start, end = (int(x) for x in span.split("-"))
            total = int(total_s)
        except ValueError:
            self._send(400, _graph_error("invalidRequest", "Bad Content-Range."))
            return
        with fake._lock:
            if session.total is None:
                session.total = total
            last = end + 1 == total
            if (
                total != session.total
                or start != len(session.data)
                or end - start + 1 != len(data)
                or len(data) > MAX_FRAGMENT
                or (not last and len(data) % FRAGMENT_MULTIPLE)
            ):
                status: int = 416
                body: dict[str, Any] = _graph_error(
                    "invalidRange", "The fragment does not continue the upload."
                )
            else:
                session.data += data
                if len(session.data) < total:
                    status, body = 202, self._session_status(session)
                else:
                    fake._sessions.pop(sid, None)
                    status, body = self._store(session.drive, session.path, bytes(session.data))
        self._send(status, body)

    @staticmethod
    def _session_status(session: _Session) -> dict[str, Any]:
        return {
            "expirationDateTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600)),
            "nextExpectedRanges": [f"{len(session.data)}-"],
        }


def _parse_item_path(path: str) -> tuple[str, str, str, str] | None:
    """``/me/drive/special/approot:/a/b:/children`` → (drive, "approot"|"root", "a/b", "children")."""
    if path.startswith("/me/drive/"):
        drive, rest = "me", path[len("/me/drive/") :]
    elif path.startswith("/drives/"):
        drive, _, rest = path[len("/drives/") :].partition("/")
        drive = urllib.parse.unquote(drive)
    else:
        return None
    if rest.startswith("special/approot"):
        base, rest = "approot", rest[len("special/approot") :]
    elif rest.startswith("root"):
        base, rest = "root", rest[len("root") :]
    else:
        return None
    if rest.startswith(":/"):
        body = rest[2:]
        rel, sep, action = body.partition(":/")
        if not sep:
            rel, action = body.rstrip(":"), ""
    elif rest.startswith("/") or not rest:
        rel, action = "", rest[1:]
    else:
        return None
    rel = "/".join(urllib.parse.unquote(s) for s in rel.split("/") if s)
    return drive, base, rel, action


def _mkdirs(drive: Drive, path: str) -> None:
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        p = "/".join(parts[:i])
        drive.items.setdefault(p, _Item("F" + secrets.token_hex(8), parts[i - 1], True))


# -- the person in the browser ---------------------------------------------------------------------


class _FormParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and not self.action:
            self.action = a.get("action", "")
        elif tag == "input" and a.get("type") == "hidden":
            self.fields[a.get("name", "")] = a.get("value", "")


class ConsentBrowser:
    """A :class:`~safekeep.storage.signin.Browser` that does what a person does in theirs: it
    loads the consent page from the fake and clicks "Accept" (or "Cancel"), then follows the
    provider's answer — a redirect, or a self-posting form — to the app's loopback address.

    ``paste=True`` plays the headless case: the browser cannot reach the loopback address, and
    the person pastes the address it ended on. ``tamper_state`` changes the returned ``state``
    (a forged answer). ``opened`` records the consent-page addresses."""

    def __init__(
        self,
        ca_bundle: Path | str,
        *,
        decision: str = "allow",
        paste: bool = False,
        tamper_state: bool = False,
    ) -> None:
        self._verify = str(ca_bundle)
        self.decision = decision
        self.paste = paste
        self.tamper_state = tamper_state
        self.opened: list[str] = []
        self._pasted: str | None = None

    def open(self, url: str) -> None:
        self.opened.append(url)
        with requests.Session() as web:
            page = web.get(url, verify=self._verify, timeout=30)
            page.raise_for_status()
            form = _FormParser()
            form.feed(page.text)
            action = urllib.parse.urljoin(url, form.action)
            answer = web.post(
                action,
                data={**form.fields, "decision": self.decision},
                verify=self._verify,
                allow_redirects=False,
                timeout=30,
            )
            if answer.status_code in (302, 303):
                target = answer.headers["Location"]
                if self.tamper_state:
                    target = target.replace("state=", "state=forged")
                if self.paste:
                    self._pasted = target
                    return
                web.get(target, timeout=30).raise_for_status()
                return
            answer.raise_for_status()
            posted = _FormParser()
            posted.feed(answer.text)
            fields = dict(posted.fields)
            if self.tamper_state and "state" in fields:
                fields["state"] = "forged" + fields["state"]
            web.post(posted.action, data=fields, timeout=30).raise_for_status()

    def redirected(self, cancel: CancelToken) -> str | None:
        return self._pasted


def sign_in(fake: OneDriveFake, ca_bundle: Path | str, **options: str) -> MemorySecretStore:
    """Sign in through the real flow (consent page → loopback → MSAL) and return the store."""
    from safekeep.storage.providers.onedrive_auth import OneDriveSignIn
    from safekeep.storage.registry import parse_location

    store = MemorySecretStore()
    settings = fake.settings(store, **options)
    OneDriveSignIn().sign_in(parse_location("onedrive:x"), settings, store, ConsentBrowser(ca_bundle))
    return store


_KEY = pytest.StashKey["OneDriveFake"]()
_SIGNED_IN = pytest.StashKey[tuple[int, str]]()


def signed_in_store(
    request: pytest.FixtureRequest, fake: OneDriveFake, ca_bundle: Path | str
) -> MemorySecretStore:
    """A store holding a sign-in made through the real flow once per session (again after a
    test revoked the fake's refresh tokens); each caller gets its own copy."""
    from safekeep.storage.providers.onedrive_auth import TOKEN_SECRET

    cached = request.config.stash.get(_SIGNED_IN, None)
    if cached is None or cached[0] != fake.revocations:
        record = sign_in(fake, ca_bundle).get(TOKEN_SECRET)
        assert record is not None
        cached = (fake.revocations, record)
        request.config.stash[_SIGNED_IN] = cached
    return MemorySecretStore({TOKEN_SECRET: cached[1]})


def shared_fake(request: pytest.FixtureRequest) -> OneDriveFake:
    """The session's one running fake (started on first use, stopped at the end of the session).

    Tests that talk to it also request ``trust_test_ca`` and ``loopback_only``."""
    config = request.config
    fake = config.stash.get(_KEY, None)
    if fake is None:
        from tests.servers import require

        test_ca = request.getfixturevalue("test_ca")
        fake = OneDriveFake(test_ca.server_context)
        try:
            fake.start()
        except OSError as exc:  # pragma: no cover - depends on the machine
            require(False, f"the OneDrive fake did not start: {exc}")
            raise
        config.stash[_KEY] = fake
        config.add_cleanup(fake.stop)
    fake.reset_faults()
    return fake
