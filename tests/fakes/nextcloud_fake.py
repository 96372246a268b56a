"""A small Nextcloud stand-in: WsgiDAV for the files, plus Nextcloud's own WebDAV extensions.

WsgiDAV serves ``/remote.php/dav/files/<user>/`` from a folder. In front of it,
:class:`NextcloudFake` (a WSGI middleware) implements what WsgiDAV lacks, following Nextcloud's
developer manual:

- **Chunked upload v2** under ``/remote.php/dav/uploads/<user>/<id>``: ``MKCOL`` (needs a
  ``Destination`` header), ``PUT .../<n>`` chunks, ``MOVE .../.file`` with ``Destination`` and
  ``OC-Total-Length`` (a wrong total is refused with 400, as Nextcloud does), assembling the
  chunks in order into the destination atomically; ``DELETE`` of the upload folder.
- **Paginated PROPFIND** (``X-NC-Paginate``, ``X-NC-Paginate-Count``, ``-Token``, ``-Offset``;
  answers carry ``X-NC-Paginate-Token`` and ``X-NC-Paginate-Total``).
- A quota: with ``quota`` set, a PUT that would take the files beyond it answers 507.
- ``OC-`` headers on every answer, as Nextcloud sends.

``stats`` counts what the client did, so tests can assert which code path ran.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit
from xml.sax.saxutils import escape

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

FILES_PREFIX = "/remote.php/dav/files/"
UPLOADS_PREFIX = "/remote.php/dav/uploads/"


class NextcloudFake:
    """WSGI middleware around a WsgiDAV app serving ``root`` at ``/remote.php/dav/files/<user>``."""

    def __init__(self, app: WsgiApp, *, root: Path, user: str) -> None:
        self.app = app
        self.root = root
        self.user = user
        self.quota: int | None = None
        self.stats: Counter[str] = Counter()
        self._uploads: dict[str, dict[str, bytes]] = {}
        self._lock = threading.Lock()
        self._pages: dict[str, list[str]] = {}

    # -- helpers -------------------------------------------------------------------------------

    def _fs_path(self, dav_path: str) -> Path | None:
        prefix = FILES_PREFIX + self.user
        if not (dav_path == prefix or dav_path.startswith(prefix + "/")):
            return None
        rel = dav_path[len(prefix) :].strip("/")
        return self.root / rel if rel else self.root

    def _used(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    @staticmethod
    def _reply(
        start: StartResponse, status: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None
    ) -> list[bytes]:
        hdrs = [("Content-Length", str(len(body))), ("OC-Fake", "1"), *(headers or [])]
        start(status, hdrs)
        return [body]

    @staticmethod
    def _read_body(environ: dict[str, Any]) -> bytes:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        stream = environ["wsgi.input"]
        if length:
            return bytes(stream.read(length))
        if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            return bytes(stream.read())
        return b""

    # -- WSGI ------------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = unquote(environ.get("PATH_INFO", ""))
        if path.startswith(UPLOADS_PREFIX):
            return self._uploads_endpoint(environ, start, method, path)
        if method == "PUT" and self.quota is not None:
            incoming = int(environ.get("CONTENT_LENGTH") or 0)
            if self._used() + incoming > self.quota:
                self.stats["quota_refused"] += 1
                self._read_body(environ)
                return self._reply(start, "507 Insufficient Storage")
        if method == "PROPFIND" and environ.get("HTTP_X_NC_PAGINATE", "").lower() == "true":
            return self._paginated_propfind(environ, start, path)

        def start_with_oc(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start(status, [*headers, ("OC-Fake", "1")], exc_info)

        return self.app(environ, start_with_oc)

    def _uploads_endpoint(
        self, environ: dict[str, Any], start: StartResponse, method: str, path: str
    ) -> list[bytes]:
        parts = path[len(UPLOADS_PREFIX) :].strip("/").split("/")
        if not parts or parts[0] != self.user:
            self._read_body(environ)
            return self._reply(start, "403 Forbidden")
        if len(parts) < 2:
            return self._reply(start, "405 Method Not Allowed")
        upload_id = parts[1]
        with self._lock:
            if method == "MKCOL" and len(parts) == 2:
                if "HTTP_DESTINATION" not in environ:
                    return self._reply(start, "400 Bad Request")
                self._uploads[upload_id] = {}
                self.stats["mkcol"] += 1
                return self._reply(start, "201 Created")
            chunks = self._uploads.get(upload_id)
        if chunks is None:
            self._read_body(environ)
            return self._reply(start, "404 Not Found")
        if method == "DELETE" and len(parts) == 2:
            with self._lock:
                self._uploads.pop(upload_id, None)
            self.stats["delete_upload"] += 1
            return self._reply(start, "204 No Content")
        if method == "PUT" and len(parts) == 3:
            data = self._read_body(environ)
            with self._lock:
                chunks[parts[2]] = data
            self.stats["chunk_put"] += 1
            return self._reply(start, "201 Created")
        if method == "MOVE" and len(parts) == 3 and parts[2] == ".file":
            return self._assemble(environ, start, upload_id, chunks)
        self._read_body(environ)
        return self._reply(start, "405 Method Not Allowed")

    def _assemble(
        self, environ: dict[str, Any], start: StartResponse, upload_id: str, chunks: dict[str, bytes]
    ) -> list[bytes]:
        dest = self._fs_path(unquote(urlsplit(environ.get("HTTP_DESTINATION", "")).path))
        if dest is None:
            return self._reply(start, "400 Bad Request")
        data = b"".join(chunks[k] for k in sorted(chunks))
        total = environ.get("HTTP_OC_TOTAL_LENGTH")
        if total is not None and int(total) != len(data):
            return self._reply(start, "400 Bad Request", b"expected filesize does not match")
        if not dest.parent.is_dir():
            return self._reply(start, "409 Conflict")
        if dest.exists() and environ.get("HTTP_OVERWRITE", "T").upper() == "F":
            return self._reply(start, "412 Precondition Failed")
        if self.quota is not None and self._used() + len(data) > self.quota:
            return self._reply(start, "507 Insufficient Storage")
        tmp = dest.parent / f".ncpart-{secrets.token_hex(6)}"
        tmp.write_bytes(data)
        os.replace(tmp, dest)
        with self._lock:
            self._uploads.pop(upload_id, None)
        self.stats["assembled"] += 1
        return self._reply(start, "201 Created")

    def _paginated_propfind(self, environ: dict[str, Any], start: StartResponse, path: str) -> list[bytes]:
        self._read_body(environ)
        folder = self._fs_path(path.rstrip("/"))
        if folder is None or not folder.exists():
            return self._reply(start, "404 Not Found")
        count = int(environ.get("HTTP_X_NC_PAGINATE_COUNT") or 100)
        token = environ.get("HTTP_X_NC_PAGINATE_TOKEN")
        offset = int(environ.get("HTTP_X_NC_PAGINATE_OFFSET") or 0)
        with self._lock:
            if token:
                names = self._pages.get(token)
                if names is None:
                    return self._reply(start, "400 Bad Request")
            else:
                names = sorted(os.listdir(folder)) if folder.is_dir() else []
                token = secrets.token_hex(8)
                self._pages[token] = names
        self.stats["propfind_page"] += 1
        base = path.rstrip("/")
        responses = []
        if offset == 0:  # the folder itself comes first, as in Nextcloud
            responses.append(_response(base + "/", True, 0))
        for name in names[offset : offset + count]:
            p = folder / name
            if not p.exists():
                continue
            responses.append(_response(f"{base}/{name}", p.is_dir(), 0 if p.is_dir() else p.stat().st_size))
        body = (
            '<?xml version="1.0" encoding="utf-8"?><d:multistatus xmlns:d="DAV:">'
            + "".join(responses)
            + "</d:multistatus>"
        ).encode()
        return self._reply(
            start,
            "207 Multi-Status",
            body,
            [
                ("Content-Type", "application/xml; charset=utf-8"),
                ("X-NC-Paginate", "true"),
                ("X-NC-Paginate-Token", token),
                ("X-NC-Paginate-Total", str(len(names))),
            ],
        )


def _response(href: str, is_dir: bool, size: int) -> str:
    rt = "<d:resourcetype><d:collection/></d:resourcetype>" if is_dir else "<d:resourcetype/>"
    length = "" if is_dir else f"<d:getcontentlength>{size}</d:getcontentlength>"
    return (
        f"<d:response><d:href>{escape(quote(href))}</d:href><d:propstat><d:prop>{rt}{length}"
        "</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"
    )
