"""A local fake of Google's OAuth 2.0 endpoints and the Google Drive v3 API subset Safekeep uses.

Google Drive cannot run on a test machine, so the ``gdrive`` provider is tested against THIS FAKE,
not against Google. It serves HTTPS on 127.0.0.1 (a certificate from the test CA,
``tests/fakes/tls.py``) and follows Google's documented wire format:

- OAuth 2.0 for desktop apps — consent page, loopback redirect with ``code`` and ``state``, PKCE
  (``code_challenge_method=S256``; the token endpoint checks ``code_verifier``), code exchange,
  refresh, revoke: https://developers.google.com/identity/protocols/oauth2/native-app,
  RFC 7636 §4 (PKCE), RFC 6749 §5.2 (``invalid_grant``, ``invalid_client`` errors),
  https://developers.google.com/identity/protocols/oauth2/native-app#tokenrevoke. The token reply
  echoes ``scope`` (oauthlib insists). This fake is stricter than Google in one way: it refuses an
  authorization request without PKCE, so a flow that forgot it fails.
- Scope ``drive.file`` (a token sees only files its client created):
  https://developers.google.com/drive/api/guides/api-specific-auth
- ``files.list`` with ``q`` (``name =``, ``mimeType =``/``!=``, ``'id' in parents``, ``trashed =``,
  ``and``/``or``/``not``/parentheses, ``\\'`` escapes), ``pageSize``/``pageToken``/``nextPageToken``
  (pages may be smaller than asked; :attr:`GDriveFake.page_cap`), ``corpora``/``driveId``/
  ``includeItemsFromAllDrives``/``supportsAllDrives``:
  https://developers.google.com/drive/api/reference/rest/v3/files/list,
  https://developers.google.com/drive/api/guides/search-files,
  https://developers.google.com/drive/api/guides/ref-search-terms,
  https://developers.google.com/drive/api/guides/enable-shareddrives
- ``files.create`` (metadata only, ``uploadType=multipart``, ``uploadType=resumable``: initiation
  with ``X-Upload-Content-Length`` answered by a session URI in ``Location``; ``PUT`` chunks with
  ``Content-Range: bytes a-b/total`` in multiples of 256 KiB; ``308`` with ``Range: bytes=0-n``;
  the status query ``Content-Range: bytes */total``; resuming an interrupted upload):
  https://developers.google.com/drive/api/reference/rest/v3/files/create,
  https://developers.google.com/drive/api/guides/manage-uploads
- ``files.get`` (metadata, and ``alt=media`` with ``Range`` → ``206``/``416``):
  https://developers.google.com/drive/api/guides/manage-downloads
- ``files.delete``, ``files.update`` (``trashed``), ``about.get`` (``fields`` required),
  ``drives.list`` (needs the wider ``drive`` scope):
  https://developers.google.com/drive/api/reference/rest/v3/files/delete,
  https://developers.google.com/drive/api/reference/rest/v3/about/get,
  https://developers.google.com/drive/api/reference/rest/v3/drives/list
- Partial responses (``fields=nextPageToken,files(id,name)``):
  https://developers.google.com/drive/api/guides/fields-parameter
- Errors ``{"error": {"code", "message", "errors": [{"domain", "reason", "message"}]}}``: 401
  ``authError``, 403 ``userRateLimitExceeded``/``rateLimitExceeded`` and 429 (with
  ``Retry-After``), 403 ``storageQuotaExceeded``, 404 ``notFound``, 5xx ``backendError``:
  https://developers.google.com/drive/api/guides/handle-errors

Faults a test can cause: :meth:`GDriveFake.inject` (any status on a kind of request, e.g. 429 with
``Retry-After`` on listings, 503 on chunks), :meth:`expire_access_tokens`, :meth:`revoke_all`,
:attr:`drop_upload_chunks` (drop the connection in the middle of an upload chunk, after keeping
part of it), :attr:`quota_limit` (a full Drive), :attr:`page_cap` (small pages). It counts the
upload bytes it received (:attr:`upload_bytes_received`) and records requests in :attr:`log`.

:class:`ConsentBrowser` plays the person at the browser: it fetches the consent page and clicks
"Allow" (or "Cancel"), and the fake's redirect reaches the app's loopback receiver — or, like a
person on a headless machine, it hands back the redirected address to paste.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import socket
import ssl
import struct
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import requests

from safekeep.common.cancel import CancelToken
from safekeep.storage.providers.gdrive_auth import SCOPE, TokenRecord
from safekeep.storage.registry import ProviderSettings
from safekeep.storage.secrets import SecretStore

FOLDER = "application/vnd.google-apps.folder"
FULL_SCOPE = "https://www.googleapis.com/auth/drive"
CHUNK_MULTIPLE = 256 * 1024
CLIENT_ID = "1234567890-safekeeptest.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-test-client-secret"


@dataclass
class DriveItem:
    id: str
    name: str
    mime: str
    parents: list[str]
    drive_id: str | None
    data: bytes
    created: str
    app: str | None
    """The OAuth client that created it (``None``: made by the person in the Drive web page)."""
    trashed: bool = False

    @property
    def is_folder(self) -> bool:
        return self.mime == FOLDER


@dataclass
class _Consent:
    client_id: str
    redirect_uri: str
    challenge: str
    scope: str
    state: str


@dataclass
class _Grant:
    client_id: str
    scope: str
    refresh_token: str
    revoked: bool = False


@dataclass
class _Access:
    grant: _Grant
    valid: bool = True


@dataclass
class _Session:
    meta: dict[str, Any]
    total: int | None
    app: str
    fields: str
    drive_id: str | None
    data: bytearray = field(default_factory=bytearray)


@dataclass
class Fault:
    where: str
    status: int
    reason: str
    message: str
    retry_after: str | None = None
    times: int = 1
    skip: int = 0


@dataclass(frozen=True)
class Logged:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class _Drop(Exception):
    """Close the connection without an answer (a dropped connection)."""


class _ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = headers or {}


# -- Drive's query language ------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"\s*(?:(\()|(\))|('(?:[^'\\]|\\.)*')|(!=|=)|([A-Za-z_][A-Za-z0-9_]*))")

Predicate = Callable[[DriveItem], bool]


def parse_query(text: str, *, root_id: str = "") -> Predicate:
    """Compile the subset of Drive's ``q`` language the fake knows; ``ValueError`` if invalid.

    ``'root' in parents`` means the top of My Drive (``root_id``), as in Drive."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"cannot parse the query at {text[pos:]!r}")
        pos = m.end()
        if m.group(1):
            tokens.append(("(", "("))
        elif m.group(2):
            tokens.append((")", ")"))
        elif m.group(3):
            tokens.append(("str", re.sub(r"\\(.)", r"\1", m.group(3)[1:-1])))
        elif m.group(4):
            tokens.append(("op", m.group(4)))
        elif m.group(5):
            tokens.append(("word", m.group(5)))
    at = [0]

    def peek() -> tuple[str, str] | None:
        return tokens[at[0]] if at[0] < len(tokens) else None

    def take(kind: str, value: str | None = None) -> str:
        tok = peek()
        if tok is None or tok[0] != kind or (value is not None and tok[1] != value):
            raise ValueError(f"expected {value or kind} in the query")
        at[0] += 1
        return tok[1]

    def is_word(value: str) -> bool:
        tok = peek()
        return tok is not None and tok[0] == "word" and tok[1] == value

    def or_expr() -> Predicate:
        parts = [and_expr()]
        while is_word("or"):
            take("word")
            parts.append(and_expr())
        return parts[0] if len(parts) == 1 else (lambda item: any(p(item) for p in parts))

    def and_expr() -> Predicate:
        parts = [not_expr()]
        while is_word("and"):
            take("word")
            parts.append(not_expr())
        return parts[0] if len(parts) == 1 else (lambda item: all(p(item) for p in parts))

    def not_expr() -> Predicate:
        if is_word("not"):
            take("word")
            inner = not_expr()
            return lambda item: not inner(item)
        return atom()

    def atom() -> Predicate:
        tok = peek()
        if tok is None:
            raise ValueError("the query ends too early")
        if tok[0] == "(":
            take("(")
            inner = or_expr()
            take(")")
            return inner
        if tok[0] == "str":
            parent = take("str")
            take("word", "in")
            take("word", "parents")
            if parent == "root" and root_id:
                parent = root_id
            return lambda item: parent in item.parents
        name = take("word")
        if name not in ("name", "mimeType", "trashed"):
            raise ValueError(f"the fake does not know the query term {name!r}")
        if is_word("contains"):
            take("word")
            needle = take("str")
            return lambda item: needle in _field(item, name)
        op = take("op")
        nxt = peek()
        if nxt is not None and nxt[0] == "word" and nxt[1] in ("true", "false"):
            value: str | bool = take("word") == "true"
        else:
            value = take("str")
        if (name == "trashed") != isinstance(value, bool):
            raise ValueError(f"wrong value type for {name}")
        if op == "=":
            return lambda item: _field(item, name) == value
        return lambda item: _field(item, name) != value

    predicate = or_expr()
    if peek() is not None:
        raise ValueError(f"unexpected {peek()} in the query")
    return predicate


def _field(item: DriveItem, name: str) -> Any:
    return {"name": item.name, "mimeType": item.mime, "trashed": item.trashed}[name]


def _parse_fields(spec: str) -> dict[str, Any]:
    """``nextPageToken,files(id,name)`` → ``{"nextPageToken": None, "files": {"id": None, ...}}``."""
    out: dict[str, Any] = {}
    depth = 0
    start = 0
    spec = spec.replace(" ", "")
    parts: list[str] = []
    for i, ch in enumerate(spec):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(spec[start:i])
            start = i + 1
    parts.append(spec[start:])
    for part in filter(None, parts):
        if "(" in part:
            name, inner = part.split("(", 1)
            out[name] = _parse_fields(inner[:-1])
        elif "/" in part:
            name, inner = part.split("/", 1)
            out[name] = _parse_fields(inner)
        else:
            out[part] = None
    return out


def _select(doc: Any, spec: dict[str, Any] | None) -> Any:
    if spec is None or "*" in spec:
        return doc
    if isinstance(doc, list):
        return [_select(x, spec) for x in doc]
    if not isinstance(doc, dict):
        return doc
    return {k: _select(doc[k], sub) for k, sub in spec.items() if k in doc}


# -- the fake ----------------------------------------------------------------------------------


class GDriveFake:
    """The fake server. Use as a context manager (or ``start()``/``stop()``); see the module docs."""

    client_id = CLIENT_ID
    client_secret = CLIENT_SECRET

    def __init__(
        self,
        server_context: ssl.SSLContext,
        *,
        user_email: str = "office@example.org",
        user_name: str = "Office Admin",
    ) -> None:
        self.context = server_context
        self.user_email = user_email
        self.user_name = user_name
        self.lock = threading.RLock()
        self.items: dict[str, DriveItem] = {}
        self.drives: dict[str, str] = {}
        self.clients: dict[str, str] = {CLIENT_ID: CLIENT_SECRET}
        self.consents: dict[str, _Consent] = {}
        self.codes: dict[str, _Consent] = {}
        self.grants: dict[str, _Grant] = {}
        self.access: dict[str, _Access] = {}
        self.sessions: dict[str, _Session] = {}
        self.faults: list[Fault] = []
        self.log: list[Logged] = []
        self.token_requests: list[dict[str, str]] = []
        self.page_cap = 1000
        """The most items one page of ``files.list`` holds (whatever ``pageSize`` asks)."""
        self.quota_limit: int | None = None
        """Bytes the Drive may hold in all; None = unlimited (no ``limit`` in ``about``)."""
        self.drop_upload_chunks = 0
        """Drop the connection in the middle of the next this-many upload chunks (keeping part)."""
        self.upload_bytes_received = 0
        """Media bytes received by uploads (multipart bodies and resumable chunks, dropped ones too)."""
        self.token_lifetime = 3599
        self.rotate_refresh_tokens = False
        self.granted_scope: str | None = None
        """The scope the person grants on the consent page (None: what was asked)."""
        self.shared_drive_role = "organizer"
        """``organizer`` may delete in shared drives; ``contributor`` may only move to the trash."""
        self._tick = 0
        self.root_id = self._new_id()
        self._server: _TLSServer | None = None

    # -- control -------------------------------------------------------------------------------

    def start(self) -> GDriveFake:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = _TLSServer(("127.0.0.1", 0), Handler, self.context)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="gdrive-fake", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> GDriveFake:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def options(self, **extra: str) -> dict[str, str]:
        """Provider options that point the ``gdrive`` provider and its sign-in at this fake."""
        return {
            "gdrive.client-id": self.client_id,
            "gdrive.client-secret": self.client_secret,
            "gdrive.auth-uri": self.url + "/o/oauth2/auth",
            "gdrive.token-uri": self.url + "/token",
            "gdrive.revoke-uri": self.url + "/revoke",
            "gdrive.api-endpoint": self.url,
            **extra,
        }

    def settings(self, store: SecretStore | None = None, **extra: str) -> ProviderSettings:
        return ProviderSettings(env={}, options=self.options(**extra), store=store)

    def offline_token(self, *, scope: str = SCOPE) -> str:
        """A stored sign-in (``TokenRecord`` JSON) as a finished sign-in leaves it, without the browser."""
        refresh = "1//" + secrets.token_urlsafe(32)
        with self.lock:
            self.grants[refresh] = _Grant(self.client_id, scope, refresh)
        return TokenRecord(
            refresh_token=refresh,
            client_id=self.client_id,
            client_secret=self.client_secret,
            scopes=tuple(scope.split()),
            account_name=self.user_name,
            account_email=self.user_email,
        ).to_json()

    def browser(self, *, decision: str = "allow", paste: bool = False) -> ConsentBrowser:
        return ConsentBrowser(decision=decision, paste=paste)

    def inject(
        self,
        where: str,
        status: int,
        reason: str = "backendError",
        message: str = "",
        *,
        retry_after: int | None = None,
        times: int = 1,
        skip: int = 0,
    ) -> None:
        """Answer the next ``times`` requests of kind ``where`` with an error (after ``skip`` pass).

        Kinds: ``list``, ``create`` (folders), ``upload`` (multipart and session starts), ``chunk``
        (resumable PUTs, status queries too), ``media``, ``delete``, ``about``, ``token``, ``any``."""
        with self.lock:
            self.faults.append(
                Fault(
                    where,
                    status,
                    reason,
                    message or f"Injected {reason}.",
                    None if retry_after is None else str(retry_after),
                    times,
                    skip,
                )
            )

    def expire_access_tokens(self) -> None:
        """Every access token handed out so far stops working (as after an hour)."""
        with self.lock:
            for access in self.access.values():
                access.valid = False

    def revoke_all(self) -> None:
        """The person removed the app's access in their Google Account."""
        with self.lock:
            for grant in self.grants.values():
                grant.revoked = True

    def add_shared_drive(self, name: str) -> str:
        drive_id = "0A" + secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")
        with self.lock:
            self.drives[drive_id] = name
        return drive_id

    def put_folder(self, name: str, parent: str | None = None, *, app: str | None = CLIENT_ID) -> str:
        """A folder made directly (``app=None``: by the person in the Drive web page)."""
        return self._add(name, FOLDER, parent, b"", app).id

    def put_file(self, name: str, parent: str, data: bytes, *, app: str | None = CLIENT_ID) -> str:
        return self._add(name, "application/octet-stream", parent, data, app).id

    def find(self, *path: str, folder: bool | None = None, base: str | None = None) -> list[DriveItem]:
        """Every item at ``path`` from My Drive (or shared drive ``base``), duplicates included."""
        with self.lock:
            level = [base or self.root_id]
            found: list[DriveItem] = []
            for i, name in enumerate(path):
                found = [
                    it
                    for it in self.items.values()
                    if it.name == name and not it.trashed and set(it.parents) & set(level)
                ]
                if i < len(path) - 1:
                    found = [it for it in found if it.is_folder]
                level = [it.id for it in found]
            if folder is not None:
                found = [it for it in found if it.is_folder == folder]
            return sorted(found, key=lambda it: (it.created, it.id))

    def children(self, parent: str) -> list[DriveItem]:
        with self.lock:
            return [it for it in self.items.values() if parent in it.parents and not it.trashed]

    def used(self) -> int:
        with self.lock:
            return sum(len(it.data) for it in self.items.values())

    # -- model ---------------------------------------------------------------------------------

    def _new_id(self) -> str:
        return "1" + secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")

    def _now(self) -> str:
        with self.lock:
            self._tick += 1
            when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(milliseconds=self._tick)
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"

    def _add(self, name: str, mime: str, parent: str | None, data: bytes, app: str | None) -> DriveItem:
        with self.lock:
            parent_id = self.root_id if parent in (None, "root") else str(parent)
            drive_id = parent_id if parent_id in self.drives else None
            if drive_id is None and parent_id in self.items:
                drive_id = self.items[parent_id].drive_id
            item = DriveItem(self._new_id(), name, mime, [parent_id], drive_id, bytes(data), self._now(), app)
            self.items[item.id] = item
            return item

    def resource(self, item: DriveItem) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "kind": "drive#file",
            "id": item.id,
            "name": item.name,
            "mimeType": item.mime,
            "parents": list(item.parents),
            "createdTime": item.created,
            "modifiedTime": item.created,
            "trashed": item.trashed,
        }
        if not item.is_folder:
            doc["size"] = str(len(item.data))
            doc["md5Checksum"] = hashlib.md5(item.data, usedforsecurity=False).hexdigest()
        if item.drive_id:
            doc["driveId"] = item.drive_id
        return doc

    def take_fault(self, where: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.where in (where, "any"):
                    if fault.skip:
                        fault.skip -= 1
                        return None
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None


class ConsentBrowser:
    """The person at the browser: opens the consent page and clicks "Allow" (or "Cancel").

    As a desktop browser (``paste=False``) it follows the fake's redirect to the app's loopback
    address; as the browser of a person on a headless machine (``paste=True``) it stops at the
    redirect and returns the address from :meth:`redirected`, as the person would paste it."""

    def __init__(self, *, decision: str = "allow", paste: bool = False) -> None:
        self.decision = decision
        self.paste = paste
        self.opened: list[str] = []
        self.error: BaseException | None = None
        self.landed: str | None = None
        self._pasted: str | None = None
        self._done = threading.Event()

    def open(self, url: str) -> None:
        self.opened.append(url)
        threading.Thread(target=self._click, args=(url,), name="consent-browser", daemon=True).start()

    def _click(self, url: str) -> None:
        try:
            page = requests.get(url, timeout=30)
            page.raise_for_status()
            consent = re.search(r'name="consent" value="([^"]+)"', page.text)
            action = re.search(r'<form method="post" action="([^"]+)"', page.text)
            assert consent and action, "the consent page has no form"
            reply = requests.post(
                urllib.parse.urljoin(url, action.group(1)),
                data={"consent": consent.group(1), "decision": self.decision},
                allow_redirects=not self.paste,
                timeout=30,
            )
            if self.paste:
                self._pasted = reply.headers["Location"]
            else:
                self.landed = reply.url
        except BaseException as exc:  # reported by the test through .error
            self.error = exc
        finally:
            self._done.set()

    def redirected(self, cancel: CancelToken) -> str | None:
        if not self.paste:
            return None
        while not self._done.wait(0.05):
            cancel.raise_if_cancelled()
        return self._pasted


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], ctx: ssl.SSLContext
    ) -> None:
        self.ctx = ctx
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:  # the TLS handshake runs in the connection's own thread
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            tls.close()


def _b64url_sha256(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).decode().rstrip("=")


class _Handler(BaseHTTPRequestHandler):
    server_fake: GDriveFake
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    # -- plumbing ------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, ctype: str = ""
    ) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body:
            self.send_header("Content-Type", ctype or "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(doc).encode(), headers)

    def _api_error(self, err: _ApiError) -> None:
        status_names = {
            400: "INVALID_ARGUMENT",
            401: "UNAUTHENTICATED",
            403: "PERMISSION_DENIED",
            404: "NOT_FOUND",
        }
        doc = {
            "error": {
                "code": err.status,
                "message": err.message,
                "errors": [{"domain": "global", "reason": err.reason, "message": err.message}],
                "status": status_names.get(
                    err.status, "UNAVAILABLE" if err.status >= 500 else "FAILED_PRECONDITION"
                ),
            }
        }
        self._json(err.status, doc, err.headers)

    def _dispatch(self) -> None:
        fake = self.server_fake
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        path = parts.path
        if self.command == "POST" and self.headers.get("X-HTTP-Method-Override", "").upper() == "GET":
            # A GET whose address is too long travels as a POST with the query as its body.
            query.update(urllib.parse.parse_qsl(self._read_body().decode(), keep_blank_values=True))
            self.command = "GET"
        with fake.lock:
            fake.log.append(
                Logged(
                    self.command,
                    path,
                    query,
                    {
                        k.lower(): v
                        for k, v in self.headers.items()
                        if k.lower() in ("range", "content-range")
                    },
                )
            )
        try:
            if path in ("/o/oauth2/auth", "/o/oauth2/v2/auth") and self.command == "GET":
                self._consent_page(query)
            elif path == "/o/oauth2/approve" and self.command == "POST":
                self._approve()
            elif path == "/token" and self.command == "POST":
                self._token()
            elif path == "/revoke" and self.command == "POST":
                self._revoke(query)
            elif path.startswith("/drive/v3/") or path.startswith("/upload/drive/v3/"):
                self._api(path, query)
            else:
                self._send(404, b"Not Found", ctype="text/plain")
        except _Drop:
            sock = self.connection
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
        except _ApiError as err:
            self._api_error(err)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    # -- OAuth ---------------------------------------------------------------------------------

    def _html_error(self, text: str) -> None:
        self._send(
            400,
            f"<html><body><h1>Error 400: invalid_request</h1><p>{text}</p></body></html>".encode(),
            ctype="text/html",
        )

    def _consent_page(self, q: dict[str, str]) -> None:
        fake = self.server_fake
        redirect = q.get("redirect_uri", "")
        target = urllib.parse.urlsplit(redirect)
        if q.get("client_id") not in fake.clients:
            self._html_error("The OAuth client was not found.")
        elif target.scheme != "http" or target.hostname not in ("127.0.0.1", "localhost", "::1"):
            self._html_error("redirect_uri must be a loopback address for a desktop app.")
        elif q.get("response_type") != "code" or not q.get("scope"):
            self._html_error("response_type=code and a scope are required.")
        elif q.get("code_challenge_method") != "S256" or len(q.get("code_challenge", "")) < 43:
            self._html_error("This fake requires PKCE with code_challenge_method=S256.")
        else:
            consent_id = secrets.token_urlsafe(16)
            with fake.lock:
                fake.consents[consent_id] = _Consent(
                    q["client_id"], redirect, q["code_challenge"], q["scope"], q.get("state", "")
                )
            page = (
                "<!doctype html><html><body><h1>Sign in with Google</h1>"
                f"<p>Safekeep wants to access your Google Account {fake.user_email}: "
                "see, edit, create and delete only the specific Google Drive files you use with this app.</p>"
                '<form method="post" action="/o/oauth2/approve">'
                f'<input type="hidden" name="consent" value="{consent_id}">'
                '<button type="submit" name="decision" value="allow">Allow</button>'
                '<button type="submit" name="decision" value="deny">Cancel</button>'
                "</form></body></html>"
            )
            self._send(200, page.encode(), ctype="text/html; charset=utf-8")

    def _approve(self) -> None:
        fake = self.server_fake
        form = dict(urllib.parse.parse_qsl(self._read_body().decode()))
        with fake.lock:
            consent = fake.consents.pop(form.get("consent", ""), None)
        if consent is None:
            self._html_error("This sign-in page has expired.")
            return
        if form.get("decision") != "allow":
            params = {"error": "access_denied", "state": consent.state}
        else:
            code = "4/" + secrets.token_urlsafe(32)
            granted = fake.granted_scope if fake.granted_scope is not None else consent.scope
            with fake.lock:
                fake.codes[code] = _Consent(
                    consent.client_id, consent.redirect_uri, consent.challenge, granted, consent.state
                )
            params = {"state": consent.state, "code": code, "scope": granted}
        sep = "&" if "?" in consent.redirect_uri else "?"
        self._send(302, b"", {"Location": consent.redirect_uri + sep + urllib.parse.urlencode(params)})

    def _oauth_error(self, status: int, error: str, description: str) -> None:
        self._json(status, {"error": error, "error_description": description})

    def _token(self) -> None:
        fake = self.server_fake
        form = dict(urllib.parse.parse_qsl(self._read_body().decode()))
        with fake.lock:
            fake.token_requests.append({k: v for k, v in form.items() if k in ("grant_type", "scope")})
        fault = fake.take_fault("token")
        if fault is not None:
            self._oauth_error(fault.status, fault.reason, fault.message)
            return
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            form.setdefault("client_id", urllib.parse.unquote(user))
            form.setdefault("client_secret", urllib.parse.unquote(password))
        client = form.get("client_id", "")
        if client not in fake.clients:
            self._oauth_error(401, "invalid_client", "The OAuth client was not found.")
            return
        if form.get("client_secret", "") != fake.clients[client]:
            self._oauth_error(401, "invalid_client", "Unauthorized")
            return
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            with fake.lock:
                consent = fake.codes.pop(form.get("code", ""), None)
            if consent is None or consent.client_id != client:
                self._oauth_error(400, "invalid_grant", "Malformed auth code.")
                return
            if form.get("redirect_uri") != consent.redirect_uri:
                self._oauth_error(400, "redirect_uri_mismatch", "Bad Request")
                return
            verifier = form.get("code_verifier", "")
            if not verifier:
                self._oauth_error(400, "invalid_grant", "Missing code verifier.")
                return
            if _b64url_sha256(verifier) != consent.challenge:
                self._oauth_error(400, "invalid_grant", "Invalid code verifier.")
                return
            refresh = "1//" + secrets.token_urlsafe(32)
            grant = _Grant(client, consent.scope, refresh)
            with fake.lock:
                fake.grants[refresh] = grant
            self._json(200, self._issue(grant, with_refresh=True))
            return
        if grant_type == "refresh_token":
            with fake.lock:
                grant = fake.grants.get(form.get("refresh_token", ""))
            if grant is None or grant.revoked or grant.client_id != client:
                self._oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
                return
            asked = set(form.get("scope", "").split())
            if asked - set(grant.scope.split()):
                self._oauth_error(400, "invalid_scope", "Bad Request")
                return
            rotate = fake.rotate_refresh_tokens
            if rotate:
                with fake.lock:
                    fake.grants.pop(grant.refresh_token, None)
                    grant.refresh_token = "1//" + secrets.token_urlsafe(32)
                    fake.grants[grant.refresh_token] = grant
            self._json(200, self._issue(grant, with_refresh=rotate))
            return
        self._oauth_error(400, "unsupported_grant_type", "Invalid grant_type: " + str(grant_type))

    def _issue(self, grant: _Grant, *, with_refresh: bool) -> dict[str, Any]:
        fake = self.server_fake
        token = "ya29." + secrets.token_urlsafe(32)
        with fake.lock:
            fake.access[token] = _Access(grant)
        doc: dict[str, Any] = {
            "access_token": token,
            "expires_in": fake.token_lifetime,
            "scope": grant.scope,
            "token_type": "Bearer",
        }
        if with_refresh:
            doc["refresh_token"] = grant.refresh_token
        return doc

    def _revoke(self, query: dict[str, str]) -> None:
        fake = self.server_fake
        form = dict(urllib.parse.parse_qsl(self._read_body().decode()))
        token = form.get("token") or query.get("token", "")
        with fake.lock:
            grant = fake.grants.get(token)
            if grant is None and token in fake.access:
                grant = fake.access[token].grant
            if grant is not None:
                grant.revoked = True
        if grant is None:
            self._oauth_error(400, "invalid_token", "Token expired or revoked")
        else:
            self._json(200, {})

    # -- Drive API -----------------------------------------------------------------------------

    def _caller(self) -> _Access:
        fake = self.server_fake
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        with fake.lock:
            access = fake.access.get(token)
            ok = access is not None and access.valid and not access.grant.revoked
        if not ok or access is None:
            raise _ApiError(
                401,
                "authError",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
                "cookie or other valid authentication credential.",
                {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'},
            )
        return access

    def _fault(self, where: str) -> None:
        fault = self.server_fake.take_fault(where)
        if fault is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            raise _ApiError(fault.status, fault.reason, fault.message, headers)

    def _visible(self, item: DriveItem, access: _Access, q: dict[str, str]) -> bool:
        if item.drive_id is not None and q.get("supportsAllDrives") != "true":
            return False
        return FULL_SCOPE in access.grant.scope.split() or item.app == access.grant.client_id

    def _item(self, item_id: str, access: _Access, q: dict[str, str]) -> DriveItem:
        fake = self.server_fake
        with fake.lock:
            item = fake.items.get(item_id)
        if item is None or not self._visible(item, access, q):
            raise _ApiError(404, "notFound", f"File not found: {item_id}.")
        return item

    def _parent(self, meta: dict[str, Any], access: _Access, q: dict[str, str]) -> tuple[str, str | None]:
        """The parent a new item goes into, and its shared drive, or 404 as Drive answers."""
        fake = self.server_fake
        parents = meta.get("parents") or ["root"]
        if len(parents) != 1:
            raise _ApiError(403, "cannotAddParent", "A shared drive item must have exactly one parent.")
        parent = str(parents[0])
        if parent in ("root", fake.root_id):
            return fake.root_id, None
        if parent in fake.drives:
            if q.get("supportsAllDrives") != "true":
                raise _ApiError(404, "notFound", f"File not found: {parent}.")
            return parent, parent
        item = self._item(parent, access, q)
        if not item.is_folder or item.trashed:
            raise _ApiError(404, "notFound", f"File not found: {parent}.")
        return item.id, item.drive_id

    def _check_quota(self, extra: int, drive_id: str | None) -> None:
        fake = self.server_fake
        if drive_id is None and fake.quota_limit is not None and fake.used() + extra > fake.quota_limit:
            raise _ApiError(403, "storageQuotaExceeded", "The user's Drive storage quota has been exceeded.")

    def _created(
        self, meta: dict[str, Any], data: bytes, access: _Access, q: dict[str, str], fields: str
    ) -> None:
        fake = self.server_fake
        parent, drive_id = self._parent(meta, access, q)
        self._check_quota(len(data), drive_id)
        mime = str(meta.get("mimeType") or "application/octet-stream")
        with fake.lock:
            item = DriveItem(
                fake._new_id(),
                str(meta.get("name") or "Untitled"),
                mime,
                [parent],
                drive_id,
                bytes(data),
                fake._now(),
                access.grant.client_id,
            )
            fake.items[item.id] = item
        self._json(200, _select(fake.resource(item), _fields_or_default(fields, "kind,id,name,mimeType")))

    def _api(self, path: str, q: dict[str, str]) -> None:
        fake = self.server_fake
        if path.startswith("/upload/drive/v3/files") and self.command == "PUT":
            self._chunk(q)  # a session URI is its own authorisation
            return
        body = self._read_body() if self.command in ("POST", "PATCH") else b""
        access = self._caller()
        self._fault("any")
        if path == "/drive/v3/about" and self.command == "GET":
            self._fault("about")
            if not q.get("fields"):
                raise _ApiError(400, "required", "The 'fields' parameter is required for this method.")
            quota: dict[str, str] = {"usage": str(fake.used()), "usageInDrive": str(fake.used())}
            if fake.quota_limit is not None:
                quota["limit"] = str(fake.quota_limit)
            doc = {
                "kind": "drive#about",
                "user": {
                    "kind": "drive#user",
                    "displayName": fake.user_name,
                    "emailAddress": fake.user_email,
                },
                "storageQuota": quota,
            }
            self._json(200, _select(doc, _parse_fields(q["fields"])))
            return
        if path == "/drive/v3/drives" and self.command == "GET":
            if not ({FULL_SCOPE, FULL_SCOPE + ".readonly"} & set(access.grant.scope.split())):
                raise _ApiError(
                    403, "insufficientPermissions", "Request had insufficient authentication scopes."
                )
            with fake.lock:
                drives = [{"kind": "drive#drive", "id": i, "name": n} for i, n in fake.drives.items()]
            if q.get("q"):
                m = re.fullmatch(r"name = '((?:[^'\\]|\\.)*)'", q["q"].strip())
                if m is None:
                    raise _ApiError(400, "invalid", "Invalid Value")
                wanted = re.sub(r"\\(.)", r"\1", m.group(1))
                drives = [d for d in drives if d["name"] == wanted]
            self._json(200, {"kind": "drive#driveList", "drives": drives})
            return
        if path == "/drive/v3/files" and self.command == "GET":
            self._list(access, q)
            return
        if path == "/drive/v3/files" and self.command == "POST":
            self._fault("create")
            self._created(json.loads(body or b"{}"), b"", access, q, q.get("fields", ""))
            return
        if path == "/upload/drive/v3/files" and self.command == "POST":
            self._upload(body, access, q)
            return
        m = re.fullmatch(r"/drive/v3/files/([^/]+)", path)
        if m is None:
            raise _ApiError(404, "notFound", "Not Found")
        item = self._item(urllib.parse.unquote(m.group(1)), access, q)
        if self.command == "GET" and q.get("alt") == "media":
            self._fault("media")
            self._media(item)
        elif self.command == "GET":
            self._json(
                200,
                _select(
                    fake.resource(item), _fields_or_default(q.get("fields", ""), "kind,id,name,mimeType")
                ),
            )
        elif self.command == "DELETE":
            self._fault("delete")
            if item.drive_id is not None and fake.shared_drive_role != "organizer":
                raise _ApiError(
                    403,
                    "insufficientFilePermissions",
                    "The user does not have sufficient permissions for this file.",
                )
            self._delete_tree(item.id)
            self._send(204)
        elif self.command == "PATCH":
            change = json.loads(body or b"{}")
            with fake.lock:
                if "trashed" in change:
                    item.trashed = bool(change["trashed"])
                if "name" in change:
                    item.name = str(change["name"])
            self._json(
                200,
                _select(
                    fake.resource(item), _fields_or_default(q.get("fields", ""), "kind,id,name,mimeType")
                ),
            )
        else:
            raise _ApiError(405, "methodNotAllowed", "Method not allowed")

    def _delete_tree(self, item_id: str) -> None:
        fake = self.server_fake
        with fake.lock:
            for child in [it.id for it in fake.items.values() if item_id in it.parents]:
                self._delete_tree(child)
            fake.items.pop(item_id, None)

    def _list(self, access: _Access, q: dict[str, str]) -> None:
        fake = self.server_fake
        self._fault("list")
        corpora = q.get("corpora", "user")
        drive_id = q.get("driveId")
        all_drives = q.get("includeItemsFromAllDrives") == "true" and q.get("supportsAllDrives") == "true"
        if (corpora == "drive") != bool(drive_id):
            raise _ApiError(
                400,
                "invalid",
                "The driveId parameter must be specified if and only if corpora is set to drive.",
            )
        if corpora == "drive" and not all_drives:
            raise _ApiError(
                403,
                "teamDrivesSupportRequired",
                "includeItemsFromAllDrives and supportsAllDrives must be set to true when corpora is drive.",
            )
        try:
            predicate = parse_query(q["q"], root_id=fake.root_id) if q.get("q") else (lambda item: True)
        except ValueError as exc:
            raise _ApiError(400, "invalid", f"Invalid Value ({exc})") from exc
        size = min(int(q.get("pageSize") or 100), 1000, fake.page_cap)
        with fake.lock:
            matched = [
                it
                for it in fake.items.values()
                if self._visible(it, access, q)
                and (it.drive_id == drive_id if corpora == "drive" else (it.drive_id is None or all_drives))
                and predicate(it)
            ]
        matched.sort(key=lambda it: it.id)  # Drive promises no order: not creation order here
        token = q.get("pageToken", "")
        key = hashlib.sha256(
            json.dumps({k: v for k, v in q.items() if k != "pageToken"}, sort_keys=True).encode()
        ).hexdigest()[:12]
        after = ""
        if token:
            try:
                mark, after = base64.urlsafe_b64decode(token.encode()).decode().split(":", 1)
            except ValueError as exc:
                raise _ApiError(400, "invalid", "Invalid Value (pageToken)") from exc
            if mark != key:
                raise _ApiError(400, "invalid", "Invalid Value (pageToken of another query)")
        rest = [it for it in matched if it.id > after]
        page = rest[:size]
        doc: dict[str, Any] = {
            "kind": "drive#fileList",
            "incompleteSearch": False,
            "files": [fake.resource(it) for it in page],
        }
        if len(rest) > size:
            doc["nextPageToken"] = base64.urlsafe_b64encode(f"{key}:{page[-1].id}".encode()).decode()
        default = "kind,nextPageToken,incompleteSearch,files(kind,id,name,mimeType)"
        self._json(200, _select(doc, _fields_or_default(q.get("fields", ""), default)))

    def _media(self, item: DriveItem) -> None:
        if item.is_folder:
            raise _ApiError(403, "fileNotDownloadable", "Only files with binary content can be downloaded.")
        data = item.data
        rng = self.headers.get("Range", "")
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
        if m is None:
            self._send(200, data, {"Accept-Ranges": "bytes"}, "application/octet-stream")
            return
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) else len(data) - 1
        if first >= len(data):
            self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            return
        last = min(last, len(data) - 1)
        headers = {"Content-Range": f"bytes {first}-{last}/{len(data)}", "Accept-Ranges": "bytes"}
        self._send(206, data[first : last + 1], headers, "application/octet-stream")

    def _upload(self, body: bytes, access: _Access, q: dict[str, str]) -> None:
        fake = self.server_fake
        kind = q.get("uploadType", "")
        self._fault("upload")
        if kind == "multipart":
            meta, media = self._split_multipart(body)
            with fake.lock:
                fake.upload_bytes_received += len(media)
            self._created(meta, media, access, q, q.get("fields", ""))
            return
        if kind == "media":
            with fake.lock:
                fake.upload_bytes_received += len(body)
            self._created({}, body, access, q, q.get("fields", ""))
            return
        if kind != "resumable":
            raise _ApiError(400, "invalid", f"Invalid Value (uploadType={kind})")
        meta = json.loads(body) if body else {}
        _parent, drive_id = self._parent(meta, access, q)
        total_text = self.headers.get("X-Upload-Content-Length")
        total = int(total_text) if total_text else None
        self._check_quota(total or 0, drive_id)
        upload_id = secrets.token_urlsafe(24)
        with fake.lock:
            fake.sessions[upload_id] = _Session(
                meta, total, access.grant.client_id, q.get("fields", ""), drive_id
            )
        extra = {k: v for k, v in q.items() if k in ("fields", "supportsAllDrives")}
        location = f"{fake.url}/upload/drive/v3/files?" + urllib.parse.urlencode(
            {"uploadType": "resumable", **extra, "upload_id": upload_id}
        )
        self._send(200, b"", {"Location": location, "X-GUploader-UploadID": upload_id})

    def _chunk(self, q: dict[str, str]) -> None:
        fake = self.server_fake
        with fake.lock:
            session = fake.sessions.get(q.get("upload_id", ""))
        spec = self.headers.get("Content-Range", "")
        length = int(self.headers.get("Content-Length") or 0)
        if session is None:
            self.rfile.read(length)
            raise _ApiError(404, "notFound", "The upload session was not found or has expired.")
        m = re.fullmatch(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)", spec.strip() or "bytes */*")
        if m is None:
            self.rfile.read(length)
            raise _ApiError(400, "invalid", f"Invalid Content-Range {spec!r}")
        fault = fake.take_fault("chunk")
        if fault is not None:
            self.rfile.read(length)
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            raise _ApiError(fault.status, fault.reason, fault.message, headers)
        total = session.total if m.group(3) == "*" else int(m.group(3))
        if m.group(1) is not None:
            start = int(m.group(1))
            if start > len(session.data):
                self.rfile.read(length)
                raise _ApiError(
                    400,
                    "invalid",
                    f"According to the Content-Range header, the upload offset is {start} byte(s), "
                    f"which exceeds already uploaded size of {len(session.data)} byte(s).",
                )
            with fake.lock:
                drop = fake.drop_upload_chunks > 0
                if drop:
                    fake.drop_upload_chunks -= 1
            if drop:  # take part of the chunk, keep what a 256 KiB boundary allows, hang up
                got = self.rfile.read(length // 2)
                with fake.lock:
                    fake.upload_bytes_received += len(got)
                    keep = ((start + len(got)) // CHUNK_MULTIPLE) * CHUNK_MULTIPLE
                    if keep > len(session.data):
                        session.data += got[len(session.data) - start : keep - start]
                raise _Drop()
            chunk = self.rfile.read(length)
            with fake.lock:
                fake.upload_bytes_received += len(chunk)
            final = total is not None and start + len(chunk) == total
            if not final and len(chunk) % CHUNK_MULTIPLE:
                raise _ApiError(400, "invalid", "Chunks must be a multiple of 256 KiB, except the last.")
            with fake.lock:
                session.data += chunk[len(session.data) - start :]
        if total is not None and len(session.data) >= total:
            with fake.lock:
                fake.sessions.pop(q.get("upload_id", ""), None)
            parent, drive_id = session.meta.get("parents", ["root"])[0], session.drive_id
            self._check_quota(len(session.data), drive_id)
            with fake.lock:
                item = DriveItem(
                    fake._new_id(),
                    str(session.meta.get("name") or "Untitled"),
                    str(session.meta.get("mimeType") or "application/octet-stream"),
                    [fake.root_id if parent == "root" else parent],
                    drive_id,
                    bytes(session.data[:total]),
                    fake._now(),
                    session.app,
                )
                fake.items[item.id] = item
            self._json(
                200, _select(fake.resource(item), _fields_or_default(session.fields, "kind,id,name,mimeType"))
            )
            return
        headers = {"Range": f"bytes=0-{len(session.data) - 1}"} if session.data else {}
        self._send(308, b"", headers)

    def _split_multipart(self, body: bytes) -> tuple[dict[str, Any], bytes]:
        ctype = self.headers.get("Content-Type", "")
        if "boundary=" not in ctype:
            raise _ApiError(400, "badContent", "Multipart upload without a boundary.")
        boundary = ctype.split("boundary=", 1)[1].strip().strip('"').encode()
        payloads = []
        for part in body.split(b"--" + boundary)[1:]:
            if part.startswith(b"--"):
                break
            # The headers end at the first empty line; the line break before the next delimiter
            # belongs to the delimiter (RFC 2046 §5.1.1). Either CRLF or LF line breaks.
            crlf, lf = part.find(b"\r\n\r\n"), part.find(b"\n\n")
            if crlf != -1 and (lf == -1 or crlf < lf):
                content = part[crlf + 4 :].removesuffix(b"\r\n")
            elif lf != -1:
                content = part[lf + 2 :].removesuffix(b"\n")
            else:
                raise _ApiError(400, "badContent", "A multipart part has no headers.")
            payloads.append(content)
        if len(payloads) != 2:
            raise _ApiError(400, "badContent", "A multipart upload has two parts: metadata and media.")
        return json.loads(payloads[0]), payloads[1]


def _fields_or_default(fields: str, default: str) -> dict[str, Any]:
    return _parse_fields(fields or default)


def items_named(fake: GDriveFake, name: str) -> Iterator[DriveItem]:
    with fake.lock:
        yield from [it for it in fake.items.values() if it.name == name]
