"""A repository on a WebDAV server: Nextcloud/ownCloud, Seafile (SeafDAV), pCloud, or any other.

Location syntax (restic's style)::

    webdav:https://cloud.example.org/remote.php/dav/files/alice/Backups/office
    webdav:cloud.example.org/remote.php/dav/files/alice/Backups     (https is assumed)
    webdav:http://nas.local:8080/backup                             (plain http only when written)

The URL must not carry a password. Credentials, in this order:

1. environment ``SAFEKEEP_WEBDAV_USER`` and ``SAFEKEEP_WEBDAV_PASSWORD`` (an *app password*);
2. the URL's user part (``https://alice@cloud.example.org/...``) and the stored secret
   ``webdav-password`` (``ProviderSettings.secret``).

Presets — the address to use for each service:

- **Nextcloud / ownCloud**: ``https://HOST/remote.php/dav/files/USER/FOLDER``; create an app
  password under *Settings → Security → Devices & sessions* (the login password fails when
  two-factor authentication is on).
- **Seafile (SeafDAV)**: ``https://HOST/seafdav/LIBRARY/FOLDER`` (SeafDAV must be enabled by the
  administrator).
- **pCloud**: ``https://webdav.pcloud.com/FOLDER`` (US data region) or
  ``https://ewebdav.pcloud.com/FOLDER`` (EU data region).

Options (``-o`` style):

- ``webdav.flavour=auto|nextcloud|seafile|pcloud|generic`` — ``auto`` (default) treats the server
  as Nextcloud when the path contains ``/remote.php/dav/files/`` or the server answers with
  ``OC-`` headers.
- ``webdav.chunk-threshold`` (bytes, default 64 MiB) and ``webdav.chunk-size`` (default 16 MiB):
  on Nextcloud, files larger than the threshold use chunked upload v2.
- ``webdav.page-size`` (default 1000): page size for Nextcloud's paginated PROPFIND.
- ``webdav.connections`` (default 4; 2 for pCloud), ``webdav.timeout`` (seconds, default 60).

Layout is restic's (``config``, ``data/<2 hex>/<id>``, ``keys/``, ...) below the URL's folder.

Writes are atomic. Generic servers: the bytes are PUT to a hidden temporary name in the target
folder (``.tmp-<random>``; never listed) and then MOVEd to the final name with
``Overwrite: F``. Nextcloud, for files above the threshold, uses chunked upload v2 as documented
in Nextcloud's developer manual (*Client APIs → WebDAV → Chunked file upload*,
https://docs.nextcloud.com/server/latest/developer_manual/client_apis/WebDAV/chunking.html):
``MKCOL /remote.php/dav/uploads/<user>/<id>`` with a ``Destination`` header, ``PUT`` chunks named
``00001``, ``00002``, ... (each with ``Destination`` and ``OC-Total-Length``), then ``MOVE
.../<id>/.file`` to the destination with ``Destination`` and ``OC-Total-Length`` headers; the server
assembles the file and publishes it in one step. A failed or cancelled upload deletes its upload
folder (and Nextcloud expires forgotten ones).

Missing folders below the repository folder are made with MKCOL when a PUT answers 409; the
repository folder itself is only made by :meth:`WebDAVBackend.create`.

Listing uses ``PROPFIND Depth: 1``. The multistatus answer is parsed incrementally with
ElementTree's ``XMLPullParser`` as it streams in, so a folder with a hundred thousand packs is
never held in memory as one document. On Nextcloud the listing is paged with its ``X-NC-Paginate``
headers (``X-NC-Paginate-Count``, then ``X-NC-Paginate-Token`` and ``X-NC-Paginate-Offset``).

Errors: 401 → :class:`PermissionDenied` naming the user and suggesting an app password; 403 → no
permission; 404 → :class:`NotFound` (on the repository folder: the hint says to check the
address); 507 → :class:`QuotaExceeded`; 423 Locked, 429, 5xx, timeouts and resets →
:class:`TransientStorageError` honouring ``Retry-After``.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import requests
import requests.adapters

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.errors import Cancelled
from safekeep.common.secret import Secret
from safekeep.storage.base import Backend, FileInfo, FileType, Handle, Properties, check_range, http_range
from safekeep.storage.errors import (
    AlreadyExists,
    InvalidLocation,
    NotFound,
    PermanentStorageError,
    PermissionDenied,
    QuotaExceeded,
    StorageError,
    TransientStorageError,
)
from safekeep.storage.registry import Location, ProviderSettings, register_provider

log = logging.getLogger(__name__)

FLAVOURS = ("auto", "nextcloud", "seafile", "pcloud", "generic")
DEFAULT_CHUNK_THRESHOLD = 64 << 20
DEFAULT_CHUNK_SIZE = 16 << 20
DEFAULT_PAGE_SIZE = 1000
DEFAULT_TIMEOUT = 60.0
TEMP_PREFIX = ".tmp-"
_IO_CHUNK = 1 << 20
_DAV = "{DAV:}"
_NC_FILES = "/remote.php/dav/files/"

_PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:getcontentlength/></d:prop></d:propfind>'
)
_QUOTA_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<d:propfind xmlns:d="DAV:"><d:prop><d:quota-available-bytes/></d:prop></d:propfind>'
)


class WebDAVError(PermanentStorageError):
    """A WebDAV answer that fits none of the specific storage errors."""


@dataclass(frozen=True, slots=True)
class WebDAVConfig:
    """Everything :class:`WebDAVBackend` needs; made by the registry factory from a location."""

    url: str
    """The repository folder, ``scheme://host[:port]/path`` without user info or trailing slash."""
    user: str
    password: Secret
    flavour: str = "auto"
    chunk_threshold: int = DEFAULT_CHUNK_THRESHOLD
    chunk_size: int = DEFAULT_CHUNK_SIZE
    page_size: int = DEFAULT_PAGE_SIZE
    connections: int = 4
    timeout: float = DEFAULT_TIMEOUT
    verify: bool | str = True


class _Body:
    """A request body read in chunks, checking the cancel token between them."""

    def __init__(self, view: memoryview, cancel: CancelToken) -> None:
        self._view = view
        self._pos = 0
        self._cancel = cancel

    def __len__(self) -> int:
        return len(self._view) - self._pos

    def read(self, n: int = -1) -> bytes:
        self._cancel.raise_if_cancelled()
        if n is None or n < 0:
            n = len(self._view) - self._pos
        n = min(n, _IO_CHUNK)
        chunk = bytes(self._view[self._pos : self._pos + n])
        self._pos += len(chunk)
        return chunk


class WebDAVBackend:
    """A restic-layout repository below one WebDAV folder. See the module docstring."""

    def __init__(self, config: WebDAVConfig) -> None:
        self._cfg = config
        parts = urlsplit(config.url)
        self._origin = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        self._root_path = parts.path.rstrip("/")
        self._session = requests.Session()
        self._session.auth = (config.user, config.password.reveal())
        self._session.verify = config.verify
        self._session.headers["User-Agent"] = "Safekeep"
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=2, pool_maxsize=max(2, config.connections * 2), max_retries=0
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._flavour = config.flavour
        if self._flavour == "auto" and _NC_FILES in self._root_path + "/":
            self._flavour = "nextcloud"
        self._lock = threading.Lock()
        self._made_dirs: set[str] = set()
        self._properties = Properties(
            location=f"webdav:{config.url}",
            connections=config.connections,
            supports_ranges=True,
        )

    def __repr__(self) -> str:
        return f"WebDAVBackend({self._cfg.url!r}, user={self._cfg.user!r})"

    @property
    def properties(self) -> Properties:
        return self._properties

    @property
    def flavour(self) -> str:
        """The detected or configured server kind (``generic`` while ``auto`` found nothing)."""
        return "generic" if self._flavour == "auto" else self._flavour

    # -- Backend -------------------------------------------------------------------------------

    def create(self, *, cancel: CancelToken = NEVER) -> None:
        cancel.raise_if_cancelled()
        self._mkcol_root(cancel)
        for t in FileType:
            if t is not FileType.CONFIG:
                cancel.raise_if_cancelled()
                self._mkcol(f"{self._root_path}/{t.value}", cancel, allow_missing_parent=False)

    def save(self, h: Handle, data: bytes | bytearray | memoryview, *, cancel: CancelToken = NEVER) -> None:
        path = self._path(h)
        cancel.raise_if_cancelled()
        view = memoryview(data).cast("B")
        if self.flavour == "nextcloud" and len(view) > self._cfg.chunk_threshold:
            self._save_chunked(h, path, view, cancel)
        else:
            self._save_temp_move(h, path, view, cancel)

    def load(
        self, h: Handle, offset: int = 0, length: int | None = None, *, cancel: CancelToken = NEVER
    ) -> bytes:
        check_range(offset, length)
        path = self._path(h)
        cancel.raise_if_cancelled()
        if length == 0:
            self.stat(h, cancel=cancel)
            return b""
        headers = {}
        if (byte_range := http_range(offset, length)) is not None:
            headers["Range"] = byte_range
        resp = self._request("GET", path, cancel, headers=headers, stream=True, what=h.path())
        try:
            if resp.status_code == 416:
                return b""
            self._check(resp, h.path())
            parts: list[bytes] = []
            for chunk in resp.iter_content(_IO_CHUNK):
                cancel.raise_if_cancelled()
                parts.append(chunk)
            body = b"".join(parts)
        except requests.RequestException as exc:
            raise self._transport_error(exc, h.path()) from exc
        finally:
            resp.close()
        if resp.status_code == 200 and (offset or length is not None):
            # The server ignored the Range header: cut the answer ourselves.
            return body[offset : None if length is None else offset + length]
        return body

    def stat(self, h: Handle, *, cancel: CancelToken = NEVER) -> FileInfo:
        path = self._path(h)
        cancel.raise_if_cancelled()
        resp = self._request("HEAD", path, cancel, what=h.path())
        self._check(resp, h.path())
        size = resp.headers.get("Content-Length")
        if size is None:  # some servers omit it on HEAD: ask with PROPFIND
            for _name, is_dir, length in self._propfind(path, "0", cancel):
                if not is_dir:
                    return FileInfo(h.name, length)
            raise NotFound(f"{h.path()} was not found on the WebDAV server.")
        return FileInfo(h.name, int(size))

    def list(self, type: FileType, *, cancel: CancelToken = NEVER) -> Iterator[FileInfo]:
        cancel.raise_if_cancelled()
        if type is FileType.CONFIG:
            try:
                yield self.stat(Handle.config(), cancel=cancel)
            except NotFound:
                return
            return
        base = f"{self._root_path}/{type.value}"
        if type is FileType.PACK:
            shards = [n for n, is_dir, _ in self._list_dir(base, cancel) if is_dir and len(n) == 2]
            for shard in sorted(shards):
                for name, is_dir, size in self._list_dir(f"{base}/{shard}", cancel):
                    if not is_dir:
                        yield FileInfo(name, size)
            return
        for name, is_dir, size in self._list_dir(base, cancel):
            if not is_dir:
                yield FileInfo(name, size)

    def remove(self, h: Handle, *, cancel: CancelToken = NEVER) -> None:
        path = self._path(h)
        cancel.raise_if_cancelled()
        resp = self._request("DELETE", path, cancel, what=h.path())
        self._check(resp, h.path())

    def close(self) -> None:
        self._session.close()

    # -- optional extras used by the probe -------------------------------------------------------

    def server_time(self) -> datetime | None:
        """The server's clock, from the ``Date`` header of a PROPFIND on the folder."""
        resp = self._request(
            "PROPFIND", self._root_path + "/", NEVER, headers={"Depth": "0"}, data=_PROPFIND_BODY
        )
        resp.close()
        date = resp.headers.get("Date")
        if not date:
            return None
        try:
            return parsedate_to_datetime(date)
        except (TypeError, ValueError):
            return None

    def free_space(self) -> int | None:
        """``quota-available-bytes`` of the folder (RFC 4331), or None when not reported."""
        resp = self._request(
            "PROPFIND", self._root_path + "/", NEVER, headers={"Depth": "0"}, data=_QUOTA_BODY
        )
        self._check(resp, "the backup folder", root=True)
        try:
            root = ET.fromstring(resp.content)  # noqa: S314 - a small answer from the server
        except ET.ParseError:
            return None
        for el in root.iter(_DAV + "quota-available-bytes"):
            text = (el.text or "").strip()
            if text.lstrip("-").isdigit() and int(text) >= 0:
                return int(text)
        return None

    # -- saving ----------------------------------------------------------------------------------

    def _save_temp_move(self, h: Handle, path: str, view: memoryview, cancel: CancelToken) -> None:
        folder = path.rsplit("/", 1)[0]
        tmp = f"{folder}/{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            self._put(tmp, view, cancel, what=h.path())
            cancel.raise_if_cancelled()  # nothing becomes visible after cancel
            resp = self._request(
                "MOVE",
                tmp,
                cancel,
                headers={"Destination": self._url(path), "Overwrite": "F"},
                what=h.path(),
            )
            if resp.status_code == 412:  # the name exists already
                self._same_or_raise(h, view, cancel)
            elif resp.status_code >= 500 and self._exists_identical(h, view, cancel):
                pass  # a concurrent save of the same file published it first (WsgiDAV: 500)
            else:
                self._check(resp, h.path())
                return
        except BaseException:
            self._discard(tmp)
            raise
        self._discard(tmp)

    def _put(self, path: str, view: memoryview, cancel: CancelToken, *, what: str) -> None:
        for attempt in range(4):
            resp = self._request(
                "PUT",
                path,
                cancel,
                data=_Body(view, cancel),
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(view))},
                what=what,
            )
            if resp.status_code in (404, 409) and attempt < 3:  # a folder on the way is missing
                resp.close()
                self._make_parents(path, cancel)
                continue
            self._check(resp, what)
            return

    def _make_parents(self, path: str, cancel: CancelToken) -> None:
        folder = path.rsplit("/", 1)[0]
        missing: list[str] = []
        while folder != self._root_path and folder.startswith(self._root_path + "/"):
            missing.append(folder)
            folder = folder.rsplit("/", 1)[0]
        for d in reversed(missing):
            self._mkcol(d, cancel, allow_missing_parent=False)

    def _same_or_raise(self, h: Handle, view: memoryview, cancel: CancelToken) -> None:
        existing = self.load(h, cancel=cancel)
        if existing != view:
            raise AlreadyExists(
                f"{h.path()} already exists on the WebDAV server with different content.",
                hint="Repository files are never overwritten; the repository may be in use by "
                "another program or damaged.",
            )
        log.debug("%s already exists with identical content", h.path())

    def _exists_identical(self, h: Handle, view: memoryview, cancel: CancelToken) -> bool:
        try:
            self._same_or_raise(h, view, cancel)
        except NotFound:
            return False
        return True

    def _save_chunked(self, h: Handle, path: str, view: memoryview, cancel: CancelToken) -> None:
        base, user = self._nextcloud_uploads()
        upload = f"{base}/uploads/{quote(user, safe='')}/safekeep-{secrets.token_hex(12)}"
        dest = self._url(path)
        total = str(len(view))
        try:
            resp = self._request("MKCOL", upload, cancel, headers={"Destination": dest}, what=h.path())
            self._check(resp, h.path())
            size = max(1, self._cfg.chunk_size)
            for number, start in enumerate(range(0, len(view), size), start=1):
                cancel.raise_if_cancelled()
                piece = view[start : start + size]
                resp = self._request(
                    "PUT",
                    f"{upload}/{number:05d}",
                    cancel,
                    data=_Body(piece, cancel),
                    headers={
                        "Destination": dest,
                        "OC-Total-Length": total,
                        "Content-Length": str(len(piece)),
                        "Content-Type": "application/octet-stream",
                    },
                    what=h.path(),
                )
                if resp.status_code in (404, 409):  # the destination folder is missing
                    resp.close()
                    self._make_parents(path, cancel)
                    resp = self._request(
                        "PUT",
                        f"{upload}/{number:05d}",
                        cancel,
                        data=_Body(piece, cancel),
                        headers={"Destination": dest, "OC-Total-Length": total},
                        what=h.path(),
                    )
                self._check(resp, h.path())
            cancel.raise_if_cancelled()
            self._make_parents(path, cancel)
            resp = self._request(
                "MOVE",
                f"{upload}/.file",
                cancel,
                headers={"Destination": dest, "OC-Total-Length": total, "Overwrite": "F"},
                what=h.path(),
            )
            if resp.status_code == 412:
                self._same_or_raise(h, view, cancel)
            else:
                self._check(resp, h.path())
        finally:
            self._discard(upload)

    def _nextcloud_uploads(self) -> tuple[str, str]:
        """The ``.../remote.php/dav`` base path and the user name for the uploads folder."""
        root = self._root_path + "/"
        i = root.find(_NC_FILES)
        if i >= 0:
            user = unquote(root[i + len(_NC_FILES) :].split("/", 1)[0])
            return root[:i] + "/remote.php/dav", user
        j = root.find("/remote.php/")
        prefix = root[:j] if j >= 0 else ""
        return prefix + "/remote.php/dav", self._cfg.user

    def _discard(self, path: str) -> None:
        try:
            resp = self._request("DELETE", path, NEVER)
            resp.close()
        except StorageError as exc:
            log.debug("could not remove temporary %s: %s", path, exc)

    # -- folders and listing -----------------------------------------------------------------------

    def _mkcol_root(self, cancel: CancelToken) -> None:
        """Make the repository folder and any missing folders above it."""
        missing: list[str] = []
        folder = self._root_path
        while folder:
            resp = self._request("MKCOL", folder, cancel, what="the backup folder")
            resp.close()
            if resp.status_code == 409:  # parent missing: go one up
                missing.append(folder)
                folder = folder.rsplit("/", 1)[0]
                continue
            if resp.status_code not in (201, 405):  # 405: already exists
                self._check(resp, "the backup folder", root=True)
            break
        for d in reversed(missing):
            self._mkcol(d, cancel, allow_missing_parent=False)
        self._check_is_folder(cancel)

    def _check_is_folder(self, cancel: CancelToken) -> None:
        for _name, is_dir, _ in self._propfind(self._root_path + "/", "0", cancel, root=True):
            if not is_dir:
                raise InvalidLocation(
                    f"{self._cfg.url} is a file on the WebDAV server, not a folder.",
                    hint="Choose a folder for the backup.",
                )

    def _mkcol(self, path: str, cancel: CancelToken, *, allow_missing_parent: bool) -> None:
        with self._lock:
            if path in self._made_dirs:
                return
        resp = self._request("MKCOL", path, cancel, what=path)
        resp.close()
        if resp.status_code in (201, 405) or (allow_missing_parent and resp.status_code == 409):
            with self._lock:
                self._made_dirs.add(path)
            return
        if resp.status_code == 409:
            raise NotFound(
                f"The backup folder {self._cfg.url} does not exist on the WebDAV server.",
                hint="Check the address, or create the repository first.",
            )
        if resp.status_code == 423 or resp.status_code >= 500:
            # A concurrent MKCOL of the same folder may hold it (rclone: 423, WsgiDAV: 500):
            # wait briefly for it to appear before reporting the error.
            for _ in range(20):
                if self._is_folder(path, cancel):
                    with self._lock:
                        self._made_dirs.add(path)
                    return
                cancel.wait(0.05)
                cancel.raise_if_cancelled()
        self._check(resp, path)

    def _is_folder(self, path: str, cancel: CancelToken) -> bool:
        try:
            return any(is_dir for _, is_dir, _ in self._propfind(path + "/", "0", cancel))
        except NotFound:
            return False

    def _list_dir(self, path: str, cancel: CancelToken) -> Iterator[tuple[str, bool, int]]:
        """(name, is_folder, size) of the entries of a folder; nothing if it does not exist."""
        if self.flavour == "nextcloud":
            yield from self._propfind_paged(path + "/", cancel)
            return
        for name, is_dir, size in self._propfind(path + "/", "1", cancel, missing_ok=True):
            if name and not name.startswith("."):
                yield name, is_dir, size

    def _propfind_paged(self, path: str, cancel: CancelToken) -> Iterator[tuple[str, bool, int]]:
        count = max(1, self._cfg.page_size)
        headers = {"Depth": "1", "X-NC-Paginate": "true", "X-NC-Paginate-Count": str(count)}
        offset = 0
        while True:
            got = 0
            resp = self._request("PROPFIND", path, cancel, headers=headers, data=_PROPFIND_BODY, stream=True)
            if resp.status_code == 404:
                resp.close()
                return
            for name, is_dir, size in self._parse_multistatus(resp, path, cancel):
                if name:
                    got += 1
                    if not name.startswith("."):
                        yield name, is_dir, size
            token = resp.headers.get("X-NC-Paginate-Token")
            if not token:  # the server does not paginate: that was everything
                return
            offset += got
            total = resp.headers.get("X-NC-Paginate-Total")
            if got == 0 or (total is not None and total.isdigit() and offset >= int(total)):
                return
            headers = {
                "Depth": "1",
                "X-NC-Paginate": "true",
                "X-NC-Paginate-Token": token,
                "X-NC-Paginate-Offset": str(offset),
                "X-NC-Paginate-Count": str(count),
            }

    def _propfind(
        self, path: str, depth: str, cancel: CancelToken, *, missing_ok: bool = False, root: bool = False
    ) -> Iterator[tuple[str, bool, int]]:
        resp = self._request(
            "PROPFIND", path, cancel, headers={"Depth": depth}, data=_PROPFIND_BODY, stream=True
        )
        if resp.status_code == 404 and missing_ok:
            resp.close()
            return
        yield from self._parse_multistatus(resp, path, cancel, root=root)

    def _parse_multistatus(
        self, resp: requests.Response, path: str, cancel: CancelToken, *, root: bool = False
    ) -> Iterator[tuple[str, bool, int]]:
        """Yield (name relative to ``path`` or "" for ``path`` itself, is_folder, size)."""
        try:
            self._check(resp, path, root=root)
            parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("end",))
            base = unquote(path).rstrip("/")
            for chunk in resp.iter_content(64 * 1024):
                cancel.raise_if_cancelled()
                parser.feed(chunk)
                yield from self._responses(parser, base)
            parser.close()
            yield from self._responses(parser, base)
        except ET.ParseError as exc:
            raise WebDAVError(
                f"The WebDAV server sent a listing Safekeep cannot read ({exc}).",
                hint="Check that the address points to a WebDAV folder.",
            ) from exc
        except requests.RequestException as exc:
            raise self._transport_error(exc, path) from exc
        finally:
            resp.close()

    @staticmethod
    def _responses(parser: ET.XMLPullParser[ET.Element], base: str) -> Iterator[tuple[str, bool, int]]:
        for event in parser.read_events():
            el = event[1] if len(event) == 2 else None
            if not isinstance(el, ET.Element) or el.tag != _DAV + "response":
                continue
            href = el.findtext(_DAV + "href") or ""
            is_dir = el.find(f".//{_DAV}resourcetype/{_DAV}collection") is not None
            size_text = el.findtext(f".//{_DAV}getcontentlength") or "0"
            el.clear()
            href_path = unquote(urlsplit(href).path).rstrip("/")
            if href_path == base:
                name = ""
            else:
                name = href_path.rsplit("/", 1)[-1]
            try:
                size = int(size_text.strip() or 0)
            except ValueError:
                size = 0
            yield name, is_dir, size

    # -- HTTP --------------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self._origin + quote(path, safe="/")

    def _path(self, h: Handle) -> str:
        return f"{self._root_path}/{h.checked_path()}"

    def _request(
        self,
        method: str,
        path: str,
        cancel: CancelToken,
        *,
        headers: Mapping[str, str] | None = None,
        data: object = None,
        stream: bool = False,
        what: str = "",
    ) -> requests.Response:
        cancel.raise_if_cancelled()
        try:
            resp = self._session.request(
                method,
                self._url(path),
                headers=dict(headers or {}),
                data=data,  # type: ignore[arg-type]
                stream=stream,
                timeout=(min(30.0, self._cfg.timeout), self._cfg.timeout),
                allow_redirects=False,
            )
        except Cancelled:
            raise
        except requests.RequestException as exc:
            raise self._transport_error(exc, what or path) from exc
        if self._flavour == "auto" and any(k.lower().startswith("oc-") for k in resp.headers):
            self._flavour = "nextcloud"
        return resp

    def _transport_error(self, exc: requests.RequestException, what: str) -> StorageError:
        host = urlsplit(self._origin).netloc
        if isinstance(exc, requests.exceptions.SSLError):
            return InvalidLocation(
                f"The secure connection to {host} failed: its certificate could not be verified.",
                hint="Check the address; if the server uses its own certificate, install it on "
                "this computer.",
            )
        if isinstance(exc, requests.exceptions.Timeout):
            return TransientStorageError(
                f"The WebDAV server {host} did not answer in time ({what}).",
                hint="Safekeep will try again; check the network if this keeps happening.",
            )
        if isinstance(exc, requests.exceptions.ConnectionError):
            return TransientStorageError(
                f"Cannot connect to the WebDAV server {host} ({what}): the connection failed or was reset.",
                hint="Check the address and port and that the server is running; Safekeep will try again.",
            )
        return TransientStorageError(f"Talking to the WebDAV server {host} failed ({what}): {exc}.")

    def _check(self, resp: requests.Response, what: str, *, root: bool = False) -> None:
        """Raise the storage error that matches ``resp``'s status (closing it), if any."""
        code = resp.status_code
        if code < 300:
            return
        host = urlsplit(self._origin).netloc
        retry_after = _retry_after(resp.headers.get("Retry-After"))
        resp.close()
        if code == 401:
            raise PermissionDenied(
                f"The WebDAV server {host} refused the user name or password for user {self._cfg.user!r}.",
                hint="Check the user name and password. For Nextcloud or ownCloud create an app "
                "password (Settings → Security → Devices & sessions) and use that.",
            )
        if code == 403:
            raise PermissionDenied(
                f"The WebDAV server {host} does not allow user {self._cfg.user!r} to access {what}.",
                hint="Ask the server's administrator for write access to the backup folder.",
            )
        if code in {404, 410}:
            if root:
                raise NotFound(
                    f"The folder {self._cfg.url} does not exist on the WebDAV server.",
                    hint="Check the address (for Nextcloud: https://HOST/remote.php/dav/files/USER/"
                    "FOLDER) or create the repository first.",
                )
            raise NotFound(f"{what} was not found on the WebDAV server {host}.")
        if code == 507:
            raise QuotaExceeded(
                f"The WebDAV server {host} is full: user {self._cfg.user!r} has no storage space left.",
                hint="Free space on the server, raise the account's quota, or remove old backups.",
            )
        if code == 423:
            raise TransientStorageError(
                f"{what} is locked on the WebDAV server {host}.",
                hint="Another program is using it; Safekeep will try again.",
                retry_after=retry_after,
            )
        if code == 429 or code >= 500:
            raise TransientStorageError(
                f"The WebDAV server {host} is busy or failing (HTTP {code}) while handling {what}.",
                hint="Safekeep will try again.",
                retry_after=retry_after,
            )
        if code == 412:
            raise AlreadyExists(f"{what} already exists on the WebDAV server.")
        if code in (301, 302, 303, 307, 308):
            raise InvalidLocation(
                f"The WebDAV server {host} redirects {what} elsewhere "
                f"({resp.headers.get('Location', 'unknown')}).",
                hint="Use the address it redirects to (often https instead of http, or a path "
                "ending in a slash).",
            )
        if code == 405 and root:
            raise InvalidLocation(
                f"{self._cfg.url} does not accept WebDAV requests.",
                hint="Check the address: it must point to a WebDAV folder.",
            )
        raise WebDAVError(f"The WebDAV server {host} answered HTTP {code} {resp.reason} for {what}.")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(when.tzinfo)).total_seconds())


# -- registry --------------------------------------------------------------------------------------


_URL_RE = re.compile(r"^(?P<scheme>https?)://", re.IGNORECASE)


def parse_webdav(raw: str, rest: str) -> Location:
    """``webdav:[http[s]://][user@]host[:port]/path`` → a Location whose ``path`` is the clean URL."""
    text = rest.strip()
    if not text or text.startswith("/"):
        raise InvalidLocation(
            f"The location {raw!r} names no WebDAV server.",
            hint="Write it as webdav:https://HOST/path, e.g. "
            "webdav:https://cloud.example.org/remote.php/dav/files/USER/Backups.",
        )
    m = _URL_RE.match(text)
    if m is None:
        text = "https://" + text
    parts = urlsplit(text)
    if parts.query or parts.fragment:
        raise InvalidLocation(
            f"The WebDAV address in {raw!r} must not contain '?' or '#'.",
            hint="Write it as webdav:https://HOST/path.",
        )
    if parts.password is not None:
        raise InvalidLocation(
            "The WebDAV address must not contain a password.",
            hint="Put the password in SAFEKEEP_WEBDAV_PASSWORD or in the app's saved destination.",
        )
    if not parts.hostname:
        raise InvalidLocation(
            f"The location {raw!r} names no WebDAV server.", hint="Write webdav:https://HOST/path."
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidLocation(f"The port in {raw!r} is not a number.") from exc
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    path = "/" + parts.path.strip("/") if parts.path.strip("/") else ""
    url = urlunsplit((parts.scheme.lower(), netloc, path, "", ""))
    return Location(
        scheme="webdav", path=url, raw=raw, host=host, port=port, user=unquote(parts.username or "")
    )


def _int_option(settings: ProviderSettings, name: str, default: int, minimum: int = 1) -> int:
    text = settings.option(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise InvalidLocation(f"The option {name}={text!r} is not a whole number.") from exc
    if value < minimum:
        raise InvalidLocation(f"The option {name} must be at least {minimum}.")
    return value


def config_from(location: Location, settings: ProviderSettings) -> WebDAVConfig:
    """Read credentials and options for ``location`` (see the module docstring)."""
    flavour = (settings.option("webdav.flavour") or "auto").lower()
    if flavour not in FLAVOURS:
        raise InvalidLocation(
            f"Unknown WebDAV flavour {flavour!r}.", hint="Use one of: " + ", ".join(FLAVOURS) + "."
        )
    user = settings.getenv("SAFEKEEP_WEBDAV_USER")
    password = settings.getenv("SAFEKEEP_WEBDAV_PASSWORD")
    if not user:
        user = location.user
    if not password and user:
        password = settings.lookup_secret("webdav-password") or ""
    if not user or not password:
        raise PermissionDenied(
            f"No user name or password for the WebDAV server {location.host}.",
            hint="Set SAFEKEEP_WEBDAV_USER and SAFEKEEP_WEBDAV_PASSWORD (for Nextcloud an app "
            "password), or save the destination in the app.",
        )
    default_conns = 2 if flavour == "pcloud" else 4
    timeout_text = settings.option("webdav.timeout")
    try:
        timeout = float(timeout_text) if timeout_text else DEFAULT_TIMEOUT
    except ValueError as exc:
        raise InvalidLocation(f"The option webdav.timeout={timeout_text!r} is not a number.") from exc
    return WebDAVConfig(
        url=location.path,
        user=user,
        password=Secret(password),
        flavour=flavour,
        chunk_threshold=_int_option(settings, "webdav.chunk-threshold", DEFAULT_CHUNK_THRESHOLD, 0),
        chunk_size=_int_option(settings, "webdav.chunk-size", DEFAULT_CHUNK_SIZE),
        page_size=_int_option(settings, "webdav.page-size", DEFAULT_PAGE_SIZE),
        connections=_int_option(settings, "webdav.connections", default_conns),
        timeout=timeout,
    )


def _open(location: Location, settings: ProviderSettings) -> Backend:
    return WebDAVBackend(config_from(location, settings))


register_provider("webdav", _open, parser=parse_webdav)
