"""A local fake of Dropbox (OAuth 2 with PKCE and the API v2 subset the ``dropbox`` provider uses).

Dropbox cannot run on this machine, so the ``dropbox`` provider and its sign-in are tested
against THIS FAKE, through the real ``dropbox`` SDK, over HTTPS on 127.0.0.1 with a certificate
from the tests' throw-away CA (``tests/fakes/tls.py``). Like Dropbox it has three hosts (three
listeners): the web host (consent page), the API host (token endpoint and RPC routes) and the
content host (uploads and downloads); a route sent to the wrong host answers 404, so a test
fails if the SDK is not pointed at every host. It follows Dropbox's documented wire format:

- OAuth guide (authorization code flow, PKCE with S256, ``token_access_type=offline``, refresh
  tokens, ``error=access_denied`` redirects): https://developers.dropbox.com/oauth-guide and
  https://www.dropbox.com/developers/documentation/http/documentation#oauth2-authorize,
  https://www.dropbox.com/developers/documentation/http/documentation#oauth2-token
  (``invalid_grant`` for a used, expired or revoked code or refresh token);
  https://dropbox.tech/developers/using-oauth-2-0-with-offline-access
- Request formats (RPC: JSON body; content-upload: ``Dropbox-API-Arg`` header and a binary body;
  content-download: ``Dropbox-API-Result`` header, HTTP ``Range`` requests answered with 206 /
  416): https://www.dropbox.com/developers/documentation/http/documentation#formats
- Errors (400 bad input as text, 401 ``invalid_access_token`` / ``expired_access_token``, 409
  endpoint errors as ``{"error_summary", "error": {".tag": ...}}``, 429 ``too_many_requests`` with
  ``Retry-After`` and ``{"reason", "retry_after"}``, 5xx):
  https://www.dropbox.com/developers/documentation/http/documentation#error-handling
- ``auth/token/revoke`` (revokes the token, its refresh token and that token's other access
  tokens): https://www.dropbox.com/developers/documentation/http/documentation#auth-token-revoke
- ``users/get_current_account``, ``users/get_space_usage``:
  https://www.dropbox.com/developers/documentation/http/documentation#users-get_current_account
- ``files/upload`` (WriteMode ``add``/``overwrite``, ``content_hash``),
  ``files/upload_session/start``, ``append_v2`` (``incorrect_offset`` with ``correct_offset``),
  ``finish`` (``lookup_failed``, ``path`` write errors such as ``insufficient_space``):
  https://www.dropbox.com/developers/documentation/http/documentation#files-upload and
  #files-upload_session-start, -append_v2, -finish
- Content hash (SHA-256 of the SHA-256s of 4 MiB blocks):
  https://www.dropbox.com/developers/reference/content-hash
- ``files/download``, ``files/get_metadata``, ``files/list_folder`` + ``/continue`` (``limit``,
  ``has_more``, ``cursor``; a page may hold fewer entries than asked for), ``files/delete_v2``,
  ``files/create_folder_v2``: https://www.dropbox.com/developers/documentation/http/documentation

Paths are case-insensitive (kept by ``path_lower``); every account is an app folder. Faults to
inject: :meth:`DropboxFake.rate_limit` (429 + ``Retry-After``), :meth:`DropboxFake.fail`
(5xx, optionally with ``Retry-After``), :meth:`DropboxFake.expire_access_tokens`,
:meth:`DropboxFake.revoke_all`, :meth:`DropboxFake.drop` (the connection drops in the middle of
an upload request, before or after the fake kept the bytes), a small :attr:`Account.quota`, and
:attr:`DropboxFake.page_cap` (small list pages). :attr:`DropboxFake.bytes_received` counts the
upload bytes the fake read. Unknown routes answer 404.
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from safekeep.common.cancel import CancelToken

APP_KEY = "safekeep-test-app"
BLOCK = 4 * 1024 * 1024
SCOPES = "account_info.read files.content.read files.content.write files.metadata.read"


def dropbox_content_hash(data: bytes) -> str:
    """Dropbox's content hash: SHA-256 over the SHA-256 digests of 4 MiB blocks (hex)."""
    outer = hashlib.sha256()
    for i in range(0, len(data), BLOCK):
        outer.update(hashlib.sha256(data[i : i + BLOCK]).digest())
    return outer.hexdigest()


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class StoredFile:
    display: str
    data: bytes
    rev: str
    id: str
    modified: str


@dataclass
class Account:
    """One Dropbox account; its files are the app folder's contents (keyed by lower-case path)."""

    account_id: str
    name: str
    email: str
    quota: int = 2 * 1024**3
    files: dict[str, StoredFile] = field(default_factory=dict)
    folders: dict[str, str] = field(default_factory=dict)
    """lower-case path -> display path (the root "" is implied)."""

    def used(self) -> int:
        return sum(len(f.data) for f in self.files.values())


@dataclass
class _Code:
    app_key: str
    redirect_uri: str
    challenge: str
    method: str
    account_id: str
    issued: float
    used: bool = False


@dataclass
class _Refresh:
    app_key: str
    account_id: str
    revoked: bool = False


@dataclass
class _Access:
    refresh_token: str
    account_id: str
    expired: bool = False


@dataclass
class _Session:
    account_id: str
    data: bytearray
    closed: bool = False


@dataclass
class _Cursor:
    entries: list[dict[str, Any]]
    page_size: int


@dataclass
class Drop:
    """Drop the connection of the next request to ``route``: after reading ``after_bytes`` of its
    body (None: half) and keeping nothing, or — ``after_commit`` — after the fake processed the
    whole request, in place of the answer (the answer is lost)."""

    route: str
    after_commit: bool = False
    after_bytes: int | None = None
    skip: int = 0
    """Let this many matching requests through first."""


class _DropConnection(Exception):
    pass


class DropboxFake:
    """The fake service. :meth:`start`, then use :meth:`options` as provider options."""

    code_lifetime = 600.0

    def __init__(self, server_context: ssl.SSLContext, ca_bundle: str) -> None:
        self.ctx = server_context
        self.ca_bundle = ca_bundle
        self.lock = threading.RLock()
        self.apps = {APP_KEY}
        self.accounts: dict[str, Account] = {}
        self.codes: dict[str, _Code] = {}
        self.refresh_tokens: dict[str, _Refresh] = {}
        self.access_tokens: dict[str, _Access] = {}
        self.sessions: dict[str, _Session] = {}
        self.cursors: dict[str, _Cursor] = {}
        self.log: list[tuple[str, str, str]] = []
        """(host role, method, path) of every request."""
        self.bytes_received = 0
        self.refreshes = 0
        self.revocations = 0
        self.page_cap = 2000
        self.consent_account = ""
        """The account the consent page signs in as ("" = the default account)."""
        self._rate_limits: list[float] = []
        self._failures: list[tuple[int, float | None, str]] = []
        self._drops: list[Drop] = []
        self._rev = 0x100000000
        self._servers: dict[str, ThreadingHTTPServer] = {}
        self.default_account = self.add_account("dbid:AAD" + "0" * 32, "Office Admin")

    # -- control -------------------------------------------------------------------------------

    def start(self) -> None:
        for role in ("web", "api", "content"):
            self._servers[role] = _Server(self, role)
            threading.Thread(target=self._servers[role].serve_forever, daemon=True).start()

    def stop(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()

    def host(self, role: str) -> str:
        return f"127.0.0.1:{self._servers[role].server_address[1]}"

    def options(self, **extra: str) -> dict[str, str]:
        """Provider options that point the ``dropbox`` provider at this fake."""
        return {
            "dropbox.client-id": APP_KEY,
            "dropbox.api-host": self.host("api"),
            "dropbox.content-host": self.host("content"),
            "dropbox.web-host": self.host("web"),
            "dropbox.redirect-port": "0",
            **extra,
        }

    def add_account(self, account_id: str = "", name: str = "Someone", quota: int = 2 * 1024**3) -> Account:
        account_id = account_id or "dbid:" + secrets.token_hex(18)[:35]  # 40 characters
        email = name.lower().replace(" ", ".") + "@example.org"
        account = Account(account_id=account_id, name=name, email=email, quota=quota)
        with self.lock:
            self.accounts[account_id] = account
        return account

    def issue_refresh_token(self, account: Account | None = None, app_key: str = APP_KEY) -> str:
        """A refresh token as a completed sign-in would have produced (for tests that need no
        interactive sign-in)."""
        token = "rt." + secrets.token_urlsafe(24)
        with self.lock:
            self.refresh_tokens[token] = _Refresh(app_key, (account or self.default_account).account_id)
        return token

    def reset_faults(self) -> None:
        with self.lock:
            self._rate_limits.clear()
            self._failures.clear()
            self._drops.clear()
            self.page_cap = 2000
            self.consent_account = ""

    def rate_limit(self, times: int = 1, retry_after: float = 3) -> None:
        """Answer the next ``times`` API requests with 429 ``too_many_requests``."""
        with self.lock:
            self._rate_limits.extend([retry_after] * times)

    def fail(
        self, times: int = 1, status: int = 503, retry_after: float | None = None, route: str = ""
    ) -> None:
        """Answer the next ``times`` API requests (to ``route`` if given, e.g.
        ``files/upload_session/append_v2``; a prefix like ``files/upload`` matches every upload
        route) with ``status``."""
        with self.lock:
            self._failures.extend([(status, retry_after, route)] * times)

    def drop(self, drop: Drop) -> None:
        with self.lock:
            self._drops.append(drop)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far has expired (401 ``expired_access_token``)."""
        with self.lock:
            for token in self.access_tokens.values():
                token.expired = True

    def revoke_all(self, account: Account | None = None) -> None:
        """The person removed the app's access in their Dropbox settings: all tokens are dead."""
        with self.lock:
            for rt in self.refresh_tokens.values():
                if account is None or rt.account_id == account.account_id:
                    rt.revoked = True
            for at in self.access_tokens.values():
                if account is None or at.account_id == account.account_id:
                    at.expired = True
                    at.refresh_token = ""

    def token_alive(self, refresh_token: str) -> bool:
        with self.lock:
            rt = self.refresh_tokens.get(refresh_token)
            return rt is not None and not rt.revoked

    def files(self, account: Account | None = None) -> dict[str, bytes]:
        """Display path -> content of every file of ``account``."""
        with self.lock:
            return {f.display: f.data for f in (account or self.default_account).files.values()}

    def browser(
        self, decision: str = "allow", *, paste: bool = False, tamper_state: bool = False
    ) -> ConsentBrowser:
        return ConsentBrowser(self, decision, paste=paste, tamper_state=tamper_state)

    # -- fault plumbing ------------------------------------------------------------------------

    def take_fault(self, route: str) -> tuple[str, int, float | None] | None:
        with self.lock:
            for i, (status, retry_after, only) in enumerate(self._failures):
                if not only or route.startswith(only):
                    del self._failures[i]
                    return ("fail", status, retry_after)
            if self._rate_limits:
                return ("429", 429, self._rate_limits.pop(0))
        return None

    def take_drop(self, route: str) -> Drop | None:
        with self.lock:
            for i, d in enumerate(self._drops):
                if d.route == route:
                    if d.skip:
                        d.skip -= 1
                        return None
                    del self._drops[i]
                    return d
        return None

    def next_rev(self) -> str:
        with self.lock:
            self._rev += 1
            return f"{self._rev:012x}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: DropboxFake, role: str) -> None:
        handler = type(f"_{role.title()}Handler", (_Handler,), {"fake": fake, "role": role})
        super().__init__(("127.0.0.1", 0), handler)
        self.fake = fake

    def finish_request(self, request: Any, client_address: Any) -> None:
        # the TLS handshake happens in the connection's own thread, not in the accept loop
        try:
            tls = self.fake.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        super().finish_request(tls, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return None


_CONTENT_ROUTES = frozenset(
    {
        "files/upload",
        "files/upload_session/start",
        "files/upload_session/append_v2",
        "files/upload_session/finish",
        "files/download",
    }
)


def _tag(value: Any, default: str = "") -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return str(value.get(".tag", default))
    return default


def _norm(path: str) -> tuple[str, str]:
    """(lower-case key, display path) of an API path; "" is the app folder."""
    display = path.rstrip("/")
    return display.lower(), display


def _parents(key: str) -> Iterator[str]:
    parts = key.split("/")
    for i in range(2, len(parts)):
        yield "/".join(parts[:i])


class _ApiError(Exception):
    def __init__(self, error: dict[str, Any], summary: str = "") -> None:
        super().__init__(summary)
        self.error = error
        self.summary = summary or _summary(error)


def _summary(error: Any) -> str:
    parts: list[str] = []
    node = error
    while isinstance(node, dict) and ".tag" in node:
        tag = node[".tag"]
        parts.append(tag)
        nxt = node.get(tag)
        if nxt is None and "reason" in node:
            nxt = node["reason"]
        node = nxt
    return "/".join(parts) + "/."


class _Handler(BaseHTTPRequestHandler):
    fake: DropboxFake
    role: str
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass

    # -- plumbing ------------------------------------------------------------------------------

    def _read(self, limit: int | None = None) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        if limit is not None:
            n = min(n, limit)
        return self.rfile.read(n) if n else b""

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Dropbox-Request-Id", secrets.token_hex(8))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(doc).encode(), "application/json", headers)

    def _text(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def _drop_connection(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- dispatch ------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        with self.fake.lock:
            self.fake.log.append((self.role, self.command, parts.path))
        try:
            if self.role == "web" and parts.path == "/oauth2/authorize":
                self._authorize(parts.query)
            elif self.role == "api" and parts.path == "/oauth2/token" and self.command == "POST":
                self._token()
            elif parts.path.startswith("/2/") and (
                self.command == "POST" or parts.path == "/2/files/download"
            ):
                self._route(parts.path[3:], parts.query)
            else:
                self._read()
                self._text(404, "Not Found")
        except _DropConnection:
            self._drop_connection()

    # -- OAuth ---------------------------------------------------------------------------------

    def _authorize(self, query: str) -> None:
        if self.command == "POST":
            form = dict(urllib.parse.parse_qsl(self._read().decode()))
        else:
            form = dict(urllib.parse.parse_qsl(query))
        problem = self._check_authorize(form)
        if problem:
            self._send(400, _page("Error (400)", problem).encode(), "text/html; charset=utf-8")
            return
        if self.command == "GET":
            hidden = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                for k, v in form.items()
            )
            body = _page(
                "Safekeep would like access to its own folder, Apps/Safekeep, in your Dropbox",
                f'<form method="post" action="/oauth2/authorize">{hidden}'
                '<button name="decision" value="deny">Cancel</button>'
                '<button name="decision" value="allow">Allow</button></form>',
            )
            self._send(200, body.encode(), "text/html; charset=utf-8")
            return
        reply: dict[str, str] = {}
        if form.get("decision") == "allow":
            code = secrets.token_urlsafe(24)
            with self.fake.lock:
                account = self.fake.consent_account or self.fake.default_account.account_id
                self.fake.codes[code] = _Code(
                    app_key=form["client_id"],
                    redirect_uri=form["redirect_uri"],
                    challenge=form.get("code_challenge", ""),
                    method=form.get("code_challenge_method", "plain"),
                    account_id=account,
                    issued=time.monotonic(),
                )
            reply["code"] = code
        else:
            reply["error"] = "access_denied"
            reply["error_description"] = (
                "The user chose not to give your app access to their Dropbox account."
            )
        if "state" in form:
            reply["state"] = form["state"]
        target = (
            form["redirect_uri"]
            + ("&" if "?" in form["redirect_uri"] else "?")
            + urllib.parse.urlencode(reply)
        )
        self._send(302, b"", "text/plain", {"Location": target})

    def _check_authorize(self, form: dict[str, str]) -> str:
        if form.get("response_type") != "code":
            return "response_type must be code"
        if form.get("client_id") not in self.fake.apps:
            return "Invalid client_id"
        redirect = urllib.parse.urlsplit(form.get("redirect_uri", ""))
        if redirect.scheme != "http" or redirect.hostname not in ("127.0.0.1", "localhost"):
            return "Invalid redirect_uri: it must be registered (this fake accepts loopback addresses)"
        if not form.get("code_challenge") or form.get("code_challenge_method") not in ("S256", "plain"):
            return "This app must use PKCE (code_challenge, code_challenge_method)"
        return ""

    def _oauth_error(self, error: str, description: str) -> None:
        self._json(400, {"error": error, "error_description": description})

    def _token(self) -> None:
        form = dict(urllib.parse.parse_qsl(self._read().decode()))
        grant = form.get("grant_type")
        fake = self.fake
        if form.get("client_id") not in fake.apps:
            self._oauth_error("invalid_client", "Invalid client_id")
            return
        with fake.lock:
            if grant == "authorization_code":
                code = fake.codes.get(form.get("code", ""))
                if code is None or code.used or time.monotonic() - code.issued > fake.code_lifetime:
                    self._oauth_error("invalid_grant", "code doesn't exist or has expired")
                    return
                code.used = True
                if code.app_key != form.get("client_id") or code.redirect_uri != form.get("redirect_uri"):
                    self._oauth_error("invalid_grant", "redirect_uri mismatch")
                    return
                verifier = form.get("code_verifier", "")
                if code.method == "S256":
                    digest = hashlib.sha256(verifier.encode()).digest()
                    expected = base64.urlsafe_b64encode(digest).decode().rstrip("=")
                else:
                    expected = verifier
                if not verifier or not secrets.compare_digest(expected, code.challenge):
                    self._oauth_error("invalid_grant", "invalid code verifier")
                    return
                refresh = "rt." + secrets.token_urlsafe(24)
                fake.refresh_tokens[refresh] = _Refresh(code.app_key, code.account_id)
                access = self._new_access(refresh, code.account_id)
                self._json(
                    200,
                    {
                        "access_token": access,
                        "token_type": "bearer",
                        "expires_in": 14400,
                        "refresh_token": refresh,
                        "scope": SCOPES,
                        "uid": "12345",
                        "account_id": code.account_id,
                    },
                )
                return
            if grant == "refresh_token":
                rt = fake.refresh_tokens.get(form.get("refresh_token", ""))
                if rt is None or rt.revoked or rt.app_key != form.get("client_id"):
                    self._oauth_error("invalid_grant", "refresh token is invalid or revoked")
                    return
                fake.refreshes += 1
                access = self._new_access(form["refresh_token"], rt.account_id)
                self._json(200, {"access_token": access, "token_type": "bearer", "expires_in": 14400})
                return
        self._oauth_error("unsupported_grant_type", f"grant_type {grant!r} is not supported")

    def _new_access(self, refresh: str, account_id: str) -> str:
        token = "sl." + secrets.token_urlsafe(32)
        self.fake.access_tokens[token] = _Access(refresh, account_id)
        return token

    # -- API routes ----------------------------------------------------------------------------

    def _route(self, route: str, query: str) -> None:
        fake = self.fake
        content = route in _CONTENT_ROUTES
        if content != (self.role == "content") or self.role == "web":
            self._read()
            self._text(404, f"Unknown route {route} on this host")
            return
        uploads = route.startswith("files/upload")
        drop = fake.take_drop(route) if uploads else None
        if drop is not None and not drop.after_commit:
            length = int(self.headers.get("Content-Length") or 0)
            got = self._read(length // 2 if drop.after_bytes is None else drop.after_bytes)
            with fake.lock:
                fake.bytes_received += len(got)
            raise _DropConnection
        body = self._read()
        if uploads:
            with fake.lock:
                fake.bytes_received += len(body)
        account = self._authenticate()
        if account is None:
            return
        fault = fake.take_fault(route)
        if fault is not None:
            kind, status, retry_after = fault
            if kind == "429":
                self._json(
                    429,
                    {
                        "error_summary": "too_many_requests/..",
                        "error": {
                            "reason": {".tag": "too_many_requests"},
                            "retry_after": int(retry_after or 1),
                        },
                    },
                    {"Retry-After": str(int(retry_after or 1))},
                )
            else:
                headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
                self._send(status, b"Service unavailable, try again later", "text/plain", headers)
            return
        try:
            if content:
                raw_arg = self.headers.get("Dropbox-API-Arg") or dict(urllib.parse.parse_qsl(query)).get(
                    "arg"
                )
                arg = json.loads(raw_arg or "null")
            else:
                arg = json.loads(body or b"null")
        except ValueError:
            self._text(400, "Error in call: could not decode the argument as JSON")
            return
        handler = getattr(self, "_r_" + route.replace("/", "_"), None)
        if handler is None:
            self._text(404, f"Unknown route {route}")
            return
        try:
            with fake.lock:
                result = handler(account, arg, body)
        except _ApiError as exc:
            self._json(409, {"error_summary": exc.summary, "error": exc.error})
            return
        except ValueError as exc:
            self._text(400, f'Error in call to API function "{route}": {exc}')
            return
        if drop is not None:  # after_commit: the fake did the work, the answer is lost
            raise _DropConnection
        if isinstance(result, _Download):
            result.send(self)
        else:
            self._json(200, result)

    def _authenticate(self) -> Account | None:
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        with self.fake.lock:
            access = self.fake.access_tokens.get(token)
            if access is not None and not access.expired:
                return self.fake.accounts[access.account_id]
        tag = (
            "expired_access_token" if access is not None and access.refresh_token else "invalid_access_token"
        )
        self._json(401, {"error_summary": f"{tag}/..", "error": {".tag": tag}})
        return None

    # RPC: auth, users

    def _r_auth_token_revoke(self, account: Account, arg: Any, body: bytes) -> Any:
        token = self.headers.get("Authorization", "")[7:]
        fake = self.fake
        refresh = fake.access_tokens[token].refresh_token
        fake.access_tokens[token].expired = True
        fake.access_tokens[token].refresh_token = ""
        if refresh in fake.refresh_tokens:
            fake.refresh_tokens[refresh].revoked = True
            for other in fake.access_tokens.values():
                if other.refresh_token == refresh:
                    other.expired = True
                    other.refresh_token = ""
        fake.revocations += 1
        return None

    def _r_users_get_current_account(self, account: Account, arg: Any, body: bytes) -> Any:
        given, _, surname = account.name.partition(" ")
        return {
            "account_id": account.account_id,
            "name": {
                "given_name": given,
                "surname": surname,
                "familiar_name": given,
                "display_name": account.name,
                "abbreviated_name": "".join(w[:1] for w in account.name.split()),
            },
            "email": account.email,
            "email_verified": True,
            "disabled": False,
            "locale": "en",
            "referral_link": "https://db.tt/fake",
            "is_paired": False,
            "account_type": {".tag": "basic"},
            "root_info": {".tag": "user", "root_namespace_id": "3235641", "home_namespace_id": "3235641"},
            "country": "GB",
        }

    def _r_users_get_space_usage(self, account: Account, arg: Any, body: bytes) -> Any:
        return {"used": account.used(), "allocation": {".tag": "individual", "allocated": account.quota}}

    # RPC: files

    def _meta(self, account: Account, key: str, *, tagged: bool = True) -> dict[str, Any]:
        f = account.files.get(key)
        if f is not None:
            doc: dict[str, Any] = {
                "name": f.display.rsplit("/", 1)[-1],
                "id": f.id,
                "client_modified": f.modified,
                "server_modified": f.modified,
                "rev": f.rev,
                "size": len(f.data),
                "path_lower": key,
                "path_display": f.display,
                "is_downloadable": True,
                "content_hash": dropbox_content_hash(f.data),
            }
            return {".tag": "file", **doc} if tagged else doc
        display = account.folders[key]
        doc = {
            "name": display.rsplit("/", 1)[-1],
            "id": "id:" + hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:16],
            "path_lower": key,
            "path_display": display,
        }
        return {".tag": "folder", **doc} if tagged else doc

    @staticmethod
    def _check_path(path: Any, *, root_ok: bool = False) -> tuple[str, str]:
        if not isinstance(path, str):
            raise ValueError("path: expected a string")
        if path == "" and root_ok:
            return "", ""
        if not path.startswith("/") or path.endswith("/") or "//" in path:
            raise ValueError(f"path: {path!r} did not match pattern")
        return _norm(path)

    def _r_files_get_metadata(self, account: Account, arg: Any, body: bytes) -> Any:
        key, _ = self._check_path(arg.get("path"))
        if key not in account.files and key not in account.folders:
            raise _ApiError({".tag": "path", "path": {".tag": "not_found"}})
        return self._meta(account, key)

    def _r_files_create_folder_v2(self, account: Account, arg: Any, body: bytes) -> Any:
        key, display = self._check_path(arg.get("path"))
        if key in account.folders:
            raise _ApiError({".tag": "path", "path": {".tag": "conflict", "conflict": {".tag": "folder"}}})
        if key in account.files or any(p in account.files for p in _parents(key)):
            raise _ApiError({".tag": "path", "path": {".tag": "conflict", "conflict": {".tag": "file"}}})
        self._make_folders(account, key, display)
        return {"metadata": self._meta(account, key, tagged=False)}

    @staticmethod
    def _make_folders(account: Account, key: str, display: str) -> None:
        parts = display.split("/")
        for i in range(2, len(parts) + 1):
            account.folders.setdefault("/".join(parts[:i]).lower(), "/".join(parts[:i]))

    def _r_files_delete_v2(self, account: Account, arg: Any, body: bytes) -> Any:
        key, _ = self._check_path(arg.get("path"))
        if key in account.files:
            meta = self._meta(account, key)
            del account.files[key]
            return {"metadata": meta}
        if key in account.folders:
            meta = self._meta(account, key)
            for k in [k for k in account.files if k.startswith(key + "/")]:
                del account.files[k]
            for k in [k for k in account.folders if k == key or k.startswith(key + "/")]:
                del account.folders[k]
            return {"metadata": meta}
        raise _ApiError({".tag": "path_lookup", "path_lookup": {".tag": "not_found"}})

    def _r_files_list_folder(self, account: Account, arg: Any, body: bytes) -> Any:
        key, _ = self._check_path(arg.get("path"), root_ok=True)
        if key in account.files:
            raise _ApiError({".tag": "path", "path": {".tag": "not_folder"}})
        if key and key not in account.folders:
            raise _ApiError({".tag": "path", "path": {".tag": "not_found"}})
        recursive = bool(arg.get("recursive"))
        limit = int(arg.get("limit") or 2000)
        if not 1 <= limit <= 2000:
            raise ValueError("limit: must be between 1 and 2000")

        def wanted(k: str) -> bool:
            if not k.startswith(key + "/"):
                return False
            return recursive or "/" not in k[len(key) + 1 :]

        keys = sorted([k for k in account.folders if wanted(k)]) + sorted(
            k for k in account.files if wanted(k)
        )
        if recursive and key:
            keys.insert(0, key)
        entries = [self._meta(account, k) for k in keys]
        cursor = "cursor." + secrets.token_urlsafe(12)
        self.fake.cursors[cursor] = _Cursor(entries, min(limit, self.fake.page_cap))
        return self._list_page(cursor)

    def _list_page(self, cursor: str) -> dict[str, Any]:
        state = self.fake.cursors[cursor]
        page, state.entries = state.entries[: state.page_size], state.entries[state.page_size :]
        return {"entries": page, "cursor": cursor, "has_more": bool(state.entries)}

    def _r_files_list_folder_continue(self, account: Account, arg: Any, body: bytes) -> Any:
        cursor = str(arg.get("cursor", ""))
        if cursor not in self.fake.cursors:
            raise _ApiError({".tag": "reset"})
        return self._list_page(cursor)

    # content: uploads and downloads

    @staticmethod
    def _check_hash(arg: Any, body: bytes) -> None:
        given = arg.get("content_hash") if isinstance(arg, dict) else None
        if given is not None and given != dropbox_content_hash(body):
            raise _ApiError({".tag": "content_hash_mismatch"})

    def _write(
        self, account: Account, commit: dict[str, Any], data: bytes
    ) -> tuple[str, dict[str, Any] | None]:
        """Store ``data`` per ``commit``; return the file key, or a WriteError."""
        key, display = self._check_path(commit.get("path"))
        mode = _tag(commit.get("mode"), "add")
        if key in account.folders:
            return key, {".tag": "conflict", "conflict": {".tag": "folder"}}
        if any(p in account.files for p in _parents(key)):
            return key, {".tag": "conflict", "conflict": {".tag": "file_ancestor"}}
        old = account.files.get(key)
        if old is not None and mode == "add":
            if old.data == data and not commit.get("strict_conflict"):
                return key, None  # identical content: no conflict
            return key, {".tag": "conflict", "conflict": {".tag": "file"}}
        if mode not in ("add", "overwrite"):
            raise ValueError(f"mode {mode!r} is not supported by this fake")
        growth = len(data) - (len(old.data) if old else 0)
        if account.used() + growth > account.quota:
            return key, {".tag": "insufficient_space"}
        parent = display.rsplit("/", 1)[0]
        if parent:
            self._make_folders(account, parent.lower(), parent)
        account.files[key] = StoredFile(
            display=display,
            data=bytes(data),
            rev=self.fake.next_rev(),
            id="id:" + secrets.token_hex(8),
            modified=_stamp(),
        )
        return key, None

    def _r_files_upload(self, account: Account, arg: Any, body: bytes) -> Any:
        self._check_hash(arg, body)
        key, problem = self._write(account, arg, body)
        if problem is not None:
            raise _ApiError(
                {".tag": "path", "reason": problem, "upload_session_id": "pid_upload_session:none"}
            )
        return self._meta(account, key, tagged=False)

    def _session(self, cursor: Any, account: Account) -> _Session:
        sid = str((cursor or {}).get("session_id", ""))
        session = self.fake.sessions.get(sid)
        if session is None or session.account_id != account.account_id:
            raise _ApiError({".tag": "not_found"})
        if session.closed:
            raise _ApiError({".tag": "closed"})
        offset = int(cursor.get("offset", -1))
        if offset != len(session.data):
            raise _ApiError({".tag": "incorrect_offset", "correct_offset": len(session.data)})
        return session

    def _r_files_upload_session_start(self, account: Account, arg: Any, body: bytes) -> Any:
        self._check_hash(arg, body)
        sid = "pid_upload_session:" + secrets.token_urlsafe(16)
        self.fake.sessions[sid] = _Session(
            account.account_id, bytearray(body), bool((arg or {}).get("close"))
        )
        return {"session_id": sid}

    def _r_files_upload_session_append_v2(self, account: Account, arg: Any, body: bytes) -> Any:
        session = self._session(arg.get("cursor"), account)
        self._check_hash(arg, body)
        session.data += body
        session.closed = bool(arg.get("close"))
        return None

    def _r_files_upload_session_finish(self, account: Account, arg: Any, body: bytes) -> Any:
        try:
            session = self._session(arg.get("cursor"), account)
        except _ApiError as exc:
            if exc.error.get(".tag") == "closed":  # finishing a closed session is allowed
                sid = str(arg["cursor"]["session_id"])
                session = self.fake.sessions[sid]
                if int(arg["cursor"].get("offset", -1)) != len(session.data):
                    raise _ApiError(
                        {
                            ".tag": "lookup_failed",
                            "lookup_failed": {
                                ".tag": "incorrect_offset",
                                "correct_offset": len(session.data),
                            },
                        }
                    ) from None
            else:
                raise _ApiError({".tag": "lookup_failed", "lookup_failed": exc.error}) from None
        self._check_hash(arg, body)
        data = bytes(session.data + body)
        key, problem = self._write(account, arg.get("commit") or {}, data)
        if problem is not None:
            raise _ApiError({".tag": "path", "path": problem})
        sid = str(arg["cursor"]["session_id"])
        del self.fake.sessions[sid]
        return self._meta(account, key, tagged=False)

    def _r_files_download(self, account: Account, arg: Any, body: bytes) -> Any:
        key, _ = self._check_path(arg.get("path"))
        if key in account.folders:
            raise _ApiError({".tag": "path", "path": {".tag": "not_file"}})
        if key not in account.files:
            raise _ApiError({".tag": "path", "path": {".tag": "not_found"}})
        return _Download(self._meta(account, key, tagged=False), account.files[key].data)


@dataclass
class _Download:
    meta: dict[str, Any]
    data: bytes

    def send(self, handler: _Handler) -> None:
        size = len(self.data)
        result = {"Dropbox-API-Result": json.dumps(self.meta)}
        spec = handler.headers.get("Range")
        if not spec:
            handler._send(200, self.data, "application/octet-stream", result)
            return
        first, last = _parse_range(spec, size)
        if first is None or last is None:
            handler._send(416, b"", "text/plain", {"Content-Range": f"bytes */{size}"})
            return
        headers = {**result, "Content-Range": f"bytes {first}-{last}/{size}"}
        handler._send(206, self.data[first : last + 1], "application/octet-stream", headers)


def _parse_range(spec: str, size: int) -> tuple[int | None, int | None]:
    """RFC 9110 §14.1.2 single byte range; (None, None) when unsatisfiable."""
    unit, _, rng = spec.partition("=")
    start, _, end = rng.strip().partition("-")
    if unit.strip() != "bytes":
        return None, None
    if not start:  # suffix range
        n = int(end)
        return (max(size - n, 0), size - 1) if n and size else (None, None)
    first = int(start)
    if first >= size:
        return None, None
    last = min(int(end), size - 1) if end else size - 1
    return first, last


def _page(title: str, inner: str) -> str:
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>Dropbox</title></head>'
        f"<body><h1>{html.escape(title)}</h1>{inner}</body></html>"
    )


class _FormParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a.get("action", "")
        elif tag == "input" and a.get("type") == "hidden":
            self.fields[a.get("name", "")] = a.get("value", "")


class ConsentBrowser:
    """A :class:`~safekeep.storage.signin.Browser` that "clicks" on the fake's consent page.

    ``open`` fetches the page, submits ``decision`` (``allow`` or ``deny``) and delivers the
    redirect to the loopback receiver — or, with ``paste``, keeps the address for
    :meth:`redirected`, as a person on a headless machine pastes it. ``tamper_state`` alters the
    ``state`` in the redirect (a forged answer). :attr:`opened` is the consent address shown.
    """

    def __init__(self, fake: DropboxFake, decision: str, *, paste: bool, tamper_state: bool) -> None:
        self.fake = fake
        self.decision = decision
        self.paste = paste
        self.tamper_state = tamper_state
        self.opened: list[str] = []
        self.consent_page = ""
        self._pasted: str | None = None

    def open(self, url: str) -> None:
        self.opened.append(url)
        verify = self.fake.ca_bundle
        page = requests.get(url, verify=verify, timeout=30)
        page.raise_for_status()
        self.consent_page = page.text
        form = _FormParser()
        form.feed(page.text)
        action = urllib.parse.urljoin(url, form.action)
        answer = requests.post(
            action,
            data={**form.fields, "decision": self.decision},
            verify=verify,
            allow_redirects=False,
            timeout=30,
        )
        location = answer.headers["Location"]
        if self.tamper_state:
            parts = urllib.parse.urlsplit(location)
            query = dict(urllib.parse.parse_qsl(parts.query))
            query["state"] = "forged" + secrets.token_urlsafe(24)
            location = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
        if self.paste:
            self._pasted = location
        else:
            requests.get(location, timeout=30)  # the loopback receiver (plain HTTP on 127.0.0.1)

    def redirected(self, cancel: CancelToken) -> str | None:
        return self._pasted


# -- fixtures ----------------------------------------------------------------------------------

_FAKE_KEY = pytest.StashKey[DropboxFake]()


def shared_fake(request: pytest.FixtureRequest) -> DropboxFake:
    """The session's running fake (started on first use, stopped when the session ends)."""
    config = request.config
    fake = config.stash.get(_FAKE_KEY, None)
    if fake is None:
        from tests.servers import require

        ca = request.getfixturevalue("test_ca")
        fake = DropboxFake(ca.server_context, str(ca.bundle))
        try:
            fake.start()
        except OSError as exc:  # pragma: no cover - depends on the machine
            require(False, f"the Dropbox fake did not start: {exc}")
            raise
        config.stash[_FAKE_KEY] = fake
        config.add_cleanup(fake.stop)
    return fake
