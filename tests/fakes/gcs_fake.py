"""A local fake of the Google Cloud Storage JSON API subset the ``gs`` provider uses.

GCS cannot run on this machine, so the ``gs`` provider is tested against THIS FAKE, not against
Google's service. It follows Google's documented wire format, served over plain HTTP on
127.0.0.1 and reached through the client's documented emulator override
(``STORAGE_EMULATOR_HOST`` / ``client_options={"api_endpoint": ...}``):

- OAuth 2.0 service-account grant (JWT bearer, RS256 assertion checked against the key the fake
  issued): https://developers.google.com/identity/protocols/oauth2/service-account#httprest
- ``buckets.get``: https://cloud.google.com/storage/docs/json_api/v1/buckets/get
- ``objects.insert`` with ``uploadType=multipart`` and ``uploadType=resumable``:
  https://cloud.google.com/storage/docs/json_api/v1/objects/insert,
  https://cloud.google.com/storage/docs/uploading-objects#uploading-an-object (multipart),
  https://cloud.google.com/storage/docs/performing-resumable-uploads (308 + ``Range``,
  ``Content-Range: bytes a-b/total`` and ``bytes */total``, DELETE cancels with 499)
- ``objects.get`` (metadata, and ``alt=media`` with ``Range``; ``x-goog-hash``,
  ``x-goog-generation``, ``x-goog-stored-content-length`` headers):
  https://cloud.google.com/storage/docs/json_api/v1/objects/get,
  https://cloud.google.com/storage/docs/xml-api/reference-headers#xgooghash
- ``objects.list`` with ``prefix``, ``maxResults`` and ``pageToken``/``nextPageToken`` (a page may
  hold fewer items than asked for; this fake caps pages at :attr:`GcsFake.page_cap`):
  https://cloud.google.com/storage/docs/json_api/v1/objects/list
- ``objects.delete``: https://cloud.google.com/storage/docs/json_api/v1/objects/delete
- Errors as ``{"error": {"code", "message", "errors": [{"reason"}]}}``:
  https://cloud.google.com/storage/docs/json_api/v1/status-codes

Everything else answers 501. Requests are recorded in :attr:`GcsFake.log` (method, path, query).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import google_crc32c
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


@dataclass
class StoredObject:
    data: bytes
    generation: int
    storage_class: str
    content_type: str
    updated: str


@dataclass
class _Upload:
    bucket: str
    name: str
    meta: dict[str, Any]
    data: bytearray = field(default_factory=bytearray)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _crc32c(data: bytes) -> str:
    return _b64(google_crc32c.value(data).to_bytes(4, "big"))


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class GcsFake:
    """The fake server. ``start()``, then point the client at :attr:`url`."""

    page_cap = 100

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.buckets: dict[str, dict[str, StoredObject]] = {}
        self.uploads: dict[str, _Upload] = {}
        self.tokens: set[str] = set()
        self.keys: dict[str, rsa.RSAPublicKey] = {}  # service-account email -> public key
        self.log: list[tuple[str, str, dict[str, list[str]]]] = []
        self._generation = 1000
        self.fail_next_upload = 0
        """Answer the next this-many upload requests (multipart, or a resumable chunk) with 503."""
        self.key_file: Path | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------------

    def start(self) -> None:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add_bucket(self, name: str) -> None:
        with self.lock:
            self.buckets.setdefault(name, {})

    def objects(self, bucket: str) -> dict[str, StoredObject]:
        with self.lock:
            return dict(self.buckets[bucket])

    def service_account_file(
        self, path: Path, *, email: str = "backup@project.iam.gserviceaccount.com", registered: bool = True
    ) -> Path:
        """Write a service-account key file whose key this fake accepts (unless not ``registered``)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if registered:
            self.keys[email] = key.public_key()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": "test-project",
                    "private_key_id": secrets.token_hex(8),
                    "private_key": pem,
                    "client_email": email,
                    "client_id": "1234567890",
                    "auth_uri": f"{self.url}/auth",
                    "token_uri": f"{self.url}/token",
                }
            )
        )
        return path

    # -- model ---------------------------------------------------------------------------------

    def grant(self, assertion: str) -> str | None:
        """Check a JWT bearer assertion; return a new access token or None."""
        try:
            head, body, sig = assertion.split(".")
            claims = json.loads(_unb64url(body))
            public = self.keys[claims["iss"]]
            public.verify(_unb64url(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except Exception:
            return None
        if claims.get("exp", 0) < time.time():
            return None
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens.add(token)
        return token

    def store(self, bucket: str, name: str, data: bytes, meta: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self._generation += 1
            obj = StoredObject(
                data=bytes(data),
                generation=self._generation,
                storage_class=str(meta.get("storageClass") or "STANDARD"),
                content_type=str(meta.get("contentType") or "application/octet-stream"),
                updated=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            )
            self.buckets[bucket][name] = obj
        return self.resource(bucket, name, obj)

    def resource(self, bucket: str, name: str, obj: StoredObject) -> dict[str, Any]:
        return {
            "kind": "storage#object",
            "id": f"{bucket}/{name}/{obj.generation}",
            "selfLink": f"{self.url}/storage/v1/b/{bucket}/o/{quote(name, safe='')}",
            "mediaLink": f"{self.url}/download/storage/v1/b/{bucket}/o/{quote(name, safe='')}"
            f"?generation={obj.generation}&alt=media",
            "name": name,
            "bucket": bucket,
            "generation": str(obj.generation),
            "metageneration": "1",
            "contentType": obj.content_type,
            "storageClass": obj.storage_class,
            "size": str(len(obj.data)),
            "md5Hash": _b64(hashlib.md5(obj.data, usedforsecurity=False).digest()),
            "crc32c": _crc32c(obj.data),
            "etag": _b64(str(obj.generation).encode()),
            "timeCreated": obj.updated,
            "updated": obj.updated,
        }


class _Handler(BaseHTTPRequestHandler):
    server_fake: GcsFake
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    # -- plumbing ------------------------------------------------------------------------------

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body or status not in (204, 308):
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(doc).encode(), headers)

    def _error(self, code: int, reason: str, message: str) -> None:
        self._json(
            code,
            {
                "error": {
                    "code": code,
                    "message": message,
                    "errors": [{"domain": "global", "reason": reason, "message": message}],
                }
            },
        )

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        with self.server_fake.lock:
            ok = token in self.server_fake.tokens
        if not ok:
            self._error(401, "required", "Invalid Credentials")
        return ok

    def _route(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        path = parts.path
        fake = self.server_fake
        with fake.lock:
            fake.log.append((self.command, path, query))
        if path == "/token" and self.command == "POST":
            form = parse_qs(self._body().decode())
            token = fake.grant(form.get("assertion", [""])[0])
            if token is None:
                self._json(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
            else:
                self._json(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})
            return
        body = self._body()
        if not self._authorized():
            return
        segs = path.split("/")
        # /storage/v1/b/{bucket}[/o[/{object}]]  /upload/storage/v1/b/{bucket}/o
        # /download/storage/v1/b/{bucket}/o/{object}
        if path.startswith("/upload/storage/v1/b/") and len(segs) == 7 and segs[6] == "o":
            self._upload(unquote(segs[5]), query, body)
            return
        media = path.startswith("/download/storage/v1/b/")
        base = segs[1:] if not media else segs[2:]
        if len(base) < 4 or base[0] != "storage" or base[1] != "v1" or base[2] != "b":
            self._error(501, "notImplemented", f"{self.command} {path} is not part of this fake")
            return
        bucket = unquote(base[3])
        with fake.lock:
            exists = bucket in fake.buckets
        if not exists:
            self._error(404, "notFound", "The specified bucket does not exist.")
            return
        if len(base) == 4 and self.command == "GET":
            self._json(
                200,
                {
                    "kind": "storage#bucket",
                    "id": bucket,
                    "name": bucket,
                    "storageClass": "STANDARD",
                    "location": "US",
                    "metageneration": "1",
                },
            )
            return
        if len(base) == 5 and base[4] == "o" and self.command == "GET":
            self._list(bucket, query)
            return
        if len(base) == 6 and base[4] == "o":
            name = unquote(base[5])
            with fake.lock:
                obj = fake.buckets[bucket].get(name)
            if obj is None:
                self._error(404, "notFound", f"No such object: {bucket}/{name}")
                return
            if self.command == "DELETE":
                with fake.lock:
                    fake.buckets[bucket].pop(name, None)
                self._send(204)
                return
            if self.command == "GET" and (media or query.get("alt") == ["media"]):
                self._media(bucket, name, obj)
                return
            if self.command == "GET":
                self._json(200, fake.resource(bucket, name, obj))
                return
        self._error(501, "notImplemented", f"{self.command} {path} is not part of this fake")

    def _list(self, bucket: str, query: dict[str, list[str]]) -> None:
        fake = self.server_fake
        prefix = query.get("prefix", [""])[0]
        after = query.get("pageToken", [""])[0]
        limit = min(int(query.get("maxResults", ["1000"])[0]), fake.page_cap)
        with fake.lock:
            names = sorted(n for n in fake.buckets[bucket] if n.startswith(prefix) and n > after)
            page = names[:limit]
            items = [fake.resource(bucket, n, fake.buckets[bucket][n]) for n in page]
        doc: dict[str, Any] = {"kind": "storage#objects", "items": items}
        if len(names) > limit:
            doc["nextPageToken"] = page[-1]
        self._json(200, doc)

    def _media(self, bucket: str, name: str, obj: StoredObject) -> None:
        data = obj.data
        md5 = _b64(hashlib.md5(data, usedforsecurity=False).digest())
        headers = {
            "x-goog-generation": str(obj.generation),
            "x-goog-metageneration": "1",
            "x-goog-stored-content-length": str(len(data)),
            "x-goog-stored-content-encoding": "identity",
            "x-goog-hash": f"crc32c={_crc32c(data)},md5={md5}",
            "Accept-Ranges": "bytes",
        }
        rng = self.headers.get("Range", "")
        if not rng.startswith("bytes="):
            self._send(200, data, headers, "application/octet-stream")
            return
        first_text, _, last_text = rng[6:].partition("-")
        first = int(first_text)
        last = int(last_text) if last_text else len(data) - 1
        if first >= len(data):
            self._error(416, "requestedRangeNotSatisfiable", "The requested range cannot be satisfied.")
            return
        last = min(last, len(data) - 1)
        headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
        self._send(206, data[first : last + 1], headers, "application/octet-stream")

    def _upload(self, bucket: str, query: dict[str, list[str]], body: bytes) -> None:
        fake = self.server_fake
        with fake.lock:
            exists = bucket in fake.buckets
        if not exists:
            self._error(404, "notFound", "The specified bucket does not exist.")
            return
        kind = query.get("uploadType", [""])[0]
        with fake.lock:
            failing = fake.fail_next_upload > 0 and (kind == "multipart" or self.command == "PUT")
            if failing:
                fake.fail_next_upload -= 1
        if failing:
            self._error(503, "backendError", "Injected failure.")
            return
        if kind == "multipart" and self.command == "POST":
            meta, media = self._split_multipart(body)
            name = meta.get("name") or query.get("name", [""])[0]
            self._json(200, fake.store(bucket, name, media, meta))
            return
        if kind == "resumable" and self.command == "POST":
            meta = json.loads(body) if body else {}
            name = meta.get("name") or query.get("name", [""])[0]
            upload_id = secrets.token_urlsafe(16)
            with fake.lock:
                fake.uploads[upload_id] = _Upload(bucket, name, meta)
            location = f"{fake.url}/upload/storage/v1/b/{bucket}/o?uploadType=resumable&upload_id={upload_id}"
            self._send(200, b"", {"Location": location})
            return
        upload_id = query.get("upload_id", [""])[0]
        with fake.lock:
            upload = fake.uploads.get(upload_id)
        if upload is None:
            self._error(404, "notFound", "No such upload session.")
            return
        if self.command == "DELETE":
            with fake.lock:
                fake.uploads.pop(upload_id, None)
            self._send(499)
            return
        if self.command != "PUT":
            self._error(501, "notImplemented", "unsupported upload request")
            return
        spec = self.headers.get("Content-Range", "")  # "bytes a-b/total", "bytes */total", "bytes a-b/*"
        rng, _, total_text = spec[6:].partition("/")
        if rng != "*":
            start = int(rng.split("-")[0])
            if start != len(upload.data):
                self._error(400, "invalid", "Content-Range does not continue the upload.")
                return
            upload.data += body
        if total_text != "*" and int(total_text) == len(upload.data):
            with fake.lock:
                fake.uploads.pop(upload_id, None)
            self._json(200, fake.store(upload.bucket, upload.name, bytes(upload.data), upload.meta))
            return
        headers = {"Range": f"bytes=0-{len(upload.data) - 1}"} if upload.data else {}
        self._send(308, b"", headers)

    def _split_multipart(self, body: bytes) -> tuple[dict[str, Any], bytes]:
        ctype = self.headers.get("Content-Type", "")
        boundary = ctype.split("boundary=", 1)[1].strip().strip('"').encode()
        parts = body.split(b"--" + boundary)
        payloads = []
        for part in parts[1:]:
            if part.startswith(b"--"):
                break
            _, _, content = part.partition(b"\r\n\r\n")
            payloads.append(content[:-2] if content.endswith(b"\r\n") else content)
        return json.loads(payloads[0]), payloads[1]

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def do_PUT(self) -> None:
        self._route()

    def do_DELETE(self) -> None:
        self._route()
