"""A repository in OneDrive or a SharePoint document library, through Microsoft Graph.

Location: ``onedrive:<folder path>``, e.g. ``onedrive:office-backup``. By default the folder is
inside Safekeep's *app folder* (``Apps/Safekeep`` in the signed-in person's OneDrive, Graph's
``/me/drive/special/approot``), and Safekeep is allowed to see nothing else
(``Files.ReadWrite.AppFolder``). Files are stored in restic's layout (``config``,
``data/<2 hex>/<id>``, ``index/<id>``, ...).

Sign-in (see :mod:`~safekeep.storage.providers.onedrive_auth`): the destination's tokens are in
its secret store; without them every call is refused with "not signed in".

Options (``-o name=value``):

- ``onedrive.drive=<drive id>`` — use a chosen drive instead of the app folder: another
  OneDrive or a SharePoint document library (its drive ID, from Graph's
  ``/sites/{site}/drives``). This needs ``Files.ReadWrite.All`` at sign-in.
  ``onedrive.root=<folder>`` puts the repository under that folder of the drive.
- ``onedrive.client-id``, ``onedrive.authority``, ``onedrive.response-mode`` — the sign-in (see
  ``onedrive_auth``); ``onedrive.graph-endpoint`` (default ``https://graph.microsoft.com/v1.0``).
- ``onedrive.upload-threshold`` (default 4MiB): larger files go up through a Graph *upload
  session* in fragments of ``onedrive.fragment-size`` (default 10MiB, a multiple of 320KiB as
  Graph requires, at most 60MiB). When a fragment's connection drops or the service answers
  5xx, the session's ``nextExpectedRanges`` tells where to continue, so the upload resumes
  instead of starting over. A file becomes visible only when its last byte arrives; a failed or
  cancelled session is deleted.
- ``onedrive.connections`` (default 4) and ``onedrive.page-size`` (children per listing page,
  default 200; Graph pages with ``@odata.nextLink``).

Graph's documented behaviour used here: path-based addressing (``/root:/a/b:/children``), simple
upload (``PUT .../content``, replacing), ``createUploadSession`` and byte-range ``PUT`` s without
the ``Authorization`` header, ``GET .../content`` answering 302 to a pre-authenticated download
address that honours ``Range``, ``DELETE`` (the file goes to the recycle bin, which counts
against the quota until emptied), and folders made with ``POST .../children`` and
``"@microsoft.graph.conflictBehavior": "fail"`` (a folder another client has just made is
simply used). Folders are made when first needed.

Errors: 401 refreshes the access token once, then asks to sign in again; 403 → ``PermissionDenied``;
404 → ``NotFound``; 429, 503, 509 and other 5xx → transient with the server's ``Retry-After``;
507 and ``quotaLimitReached`` → ``QuotaExceeded`` ("the OneDrive is full").
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.storage.base import FileInfo, FileType, Handle, Properties, check_range, http_range
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
from safekeep.storage.providers.onedrive_auth import AuthConfig, GraphTokens, OneDriveSignIn, signed_out
from safekeep.storage.registry import Location, ProviderSettings, register_provider
from safekeep.storage.signin import register_sign_in

log = logging.getLogger(__name__)

KiB = 1024
MiB = 1024 * KiB
DEFAULT_GRAPH_ENDPOINT = "https://graph.microsoft.com/v1.0"
FRAGMENT_MULTIPLE = 320 * KiB
"""Graph requires upload-session fragments in multiples of 320 KiB (except the last)."""
MAX_FRAGMENT = 60 * MiB
DEFAULT_FRAGMENT = 32 * FRAGMENT_MULTIPLE  # 10 MiB
DEFAULT_UPLOAD_THRESHOLD = 4 * MiB
DEFAULT_CONNECTIONS = 4
DEFAULT_PAGE_SIZE = 200
MAX_OBJECT_SIZE = 250 * 1024 * MiB
"""OneDrive's and SharePoint's largest file (250 GB)."""
MAX_RESUMES = 5
"""Dropped connections or 5xx answers in a row an upload session survives before giving up."""
_TIMEOUT = (30.0, 120.0)
_READ_CHUNK = 1 * MiB
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504, 509}
_QUOTA_CODES = {"quotaLimitReached", "insufficientStorage"}
_SEGMENT_BAD = re.compile(r'["*:<>?\\|]')


class OneDriveError(PermanentStorageError):
    """A OneDrive failure that fits none of the specific storage errors."""


class _Conflict(OneDriveError):
    """Graph answered 409/412/423 to a save: another client wrote the same name meanwhile."""


def _parse(raw: str, rest: str) -> Location:
    segments = _segments(rest, raw)
    return Location(scheme="onedrive", path="/".join(segments), raw=raw)


def _segments(text: str, raw: str) -> list[str]:
    segments = [s for s in text.replace("\\", "/").split("/") if s]
    usage = "Write it as onedrive:<folder>, e.g. onedrive:office-backup."
    for s in segments:
        if s in (".", "..") or _SEGMENT_BAD.search(s) or s != s.strip() or s.endswith("."):
            raise InvalidLocation(f"The folder name {s!r} in {raw!r} is not allowed in OneDrive.", hint=usage)
    return segments


def _size_option(settings: ProviderSettings, name: str, default: int) -> int:
    text = settings.option(name).strip()
    if not text:
        return default
    m = re.fullmatch(r"(\d+)\s*([kKmMgG]i?[bB]?|[bB])?", text)
    if m is None:
        raise InvalidLocation(
            f"The option {name}={text!r} is not a size.", hint="Write a number of bytes or e.g. 10MiB."
        )
    unit = (m.group(2) or "b").lower()[:1]
    return int(m.group(1)) * {"b": 1, "k": KiB, "m": MiB, "g": 1024 * MiB}[unit]


def _int_option(settings: ProviderSettings, name: str, default: int) -> int:
    text = settings.option(name).strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise InvalidLocation(f"The option {name}={text!r} must be a whole number above zero.")
    return int(text)


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


def _error_of(resp: requests.Response) -> tuple[str, str]:
    """Graph's ``{"error": {"code", "message"}}`` (codes are documented per status)."""
    try:
        body = resp.json()
    except ValueError:
        return "", resp.text[:200]
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        inner = err.get("innerError") or err.get("innererror") or {}
        code = str(err.get("code") or "")
        if isinstance(inner, dict) and inner.get("code") in _QUOTA_CODES:
            code = str(inner["code"])
        return code, str(err.get("message") or "")
    return "", ""


@dataclass(frozen=True, slots=True)
class OneDriveOptions:
    """The backend's options with defaults applied; see the module docstring."""

    graph_endpoint: str = DEFAULT_GRAPH_ENDPOINT
    drive_id: str = ""
    root: tuple[str, ...] = ()
    upload_threshold: int = DEFAULT_UPLOAD_THRESHOLD
    fragment_size: int = DEFAULT_FRAGMENT
    connections: int = DEFAULT_CONNECTIONS
    page_size: int = DEFAULT_PAGE_SIZE

    @staticmethod
    def from_settings(settings: ProviderSettings) -> OneDriveOptions:
        endpoint = settings.option("onedrive.graph-endpoint").strip().rstrip("/") or DEFAULT_GRAPH_ENDPOINT
        if not endpoint.lower().startswith("https://"):
            raise InvalidLocation(f"The option onedrive.graph-endpoint={endpoint!r} is not an https address.")
        drive = settings.option("onedrive.drive").strip()
        if drive and not re.fullmatch(r"[A-Za-z0-9!_.~-]+", drive):
            raise InvalidLocation(
                f"The option onedrive.drive={drive!r} is not a drive ID.",
                hint="Give the drive's ID as Microsoft Graph shows it (e.g. b!Xa3...), not its name.",
            )
        root_text = settings.option("onedrive.root").strip()
        if root_text and not drive:
            raise InvalidLocation(
                "The option onedrive.root needs onedrive.drive.",
                hint="Without onedrive.drive the repository is inside Safekeep's app folder; put the "
                "folder in the location instead (onedrive:<folder>).",
            )
        fragment = _size_option(settings, "onedrive.fragment-size", DEFAULT_FRAGMENT)
        if fragment < FRAGMENT_MULTIPLE or fragment % FRAGMENT_MULTIPLE or fragment > MAX_FRAGMENT:
            raise InvalidLocation(
                "The option onedrive.fragment-size must be a multiple of 320KiB of at most 60MiB.",
                hint="For example 10MiB (32 × 320KiB) or 5MiB (16 × 320KiB).",
            )
        return OneDriveOptions(
            graph_endpoint=endpoint,
            drive_id=drive,
            root=tuple(_segments(root_text, root_text)),
            upload_threshold=max(
                0, _size_option(settings, "onedrive.upload-threshold", DEFAULT_UPLOAD_THRESHOLD)
            ),
            fragment_size=fragment,
            connections=_int_option(settings, "onedrive.connections", DEFAULT_CONNECTIONS),
            page_size=min(_int_option(settings, "onedrive.page-size", DEFAULT_PAGE_SIZE), 999),
        )


class OneDriveBackend:
    """A repository in a OneDrive folder. See the module docstring."""

    def __init__(self, location: Location, settings: ProviderSettings) -> None:
        self._raw = location.raw
        self._opts = OneDriveOptions.from_settings(settings)
        self._tokens = GraphTokens(AuthConfig.from_settings(settings), settings.store, location=location.raw)
        self._segments = [*self._opts.root, *_segments(location.path, location.raw)]
        opts = self._opts
        if opts.drive_id:
            self._base = f"{opts.graph_endpoint}/drives/{urllib.parse.quote(opts.drive_id, safe='')}/root"
            self._where = f"the OneDrive drive {opts.drive_id}"
        else:
            self._base = f"{opts.graph_endpoint}/me/drive/special/approot"
            self._where = "Safekeep's OneDrive app folder"
        self._http = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max(8, opts.connections * 2))
        self._http.mount("https://", adapter)
        self._folders: set[str] = set()
        self._folders_lock = threading.Lock()
        self._properties = Properties(
            location=self._raw,
            connections=opts.connections,
            supports_ranges=True,
            max_object_size=MAX_OBJECT_SIZE,
        )

    # -- Backend -------------------------------------------------------------------------------

    @property
    def properties(self) -> Properties:
        return self._properties

    def create(self, *, cancel: CancelToken = NEVER) -> None:
        """Make the repository folder and its top-level folders (idempotent)."""
        cancel.raise_if_cancelled()
        for kind in ("keys", "locks", "snapshots", "index", "data"):
            self._ensure_folder(self._path(kind), cancel)

    def save(self, h: Handle, data: bytes | bytearray | memoryview, *, cancel: CancelToken = NEVER) -> None:
        path = self._path(h.checked_path())
        cancel.raise_if_cancelled()
        view = memoryview(data).cast("B")
        try:
            if len(view) <= self._opts.upload_threshold:
                self._simple_upload(path, view, cancel)
            else:
                self._session_upload(path, view, cancel)
        except _Conflict as exc:
            self._after_conflict(h, path, len(view), exc)

    def load(
        self, h: Handle, offset: int = 0, length: int | None = None, *, cancel: CancelToken = NEVER
    ) -> bytes:
        check_range(offset, length)
        path = self._path(h.checked_path())
        cancel.raise_if_cancelled()
        if length == 0:
            self.stat(h, cancel=cancel)
            return b""
        ranged = self._range(offset, length)
        resp = self._call(
            "GET", self._item_url(path, "content"), cancel, headers=ranged, allow_redirects=False, stream=True
        )
        if resp.status_code in (301, 302, 303, 307, 308):
            location = resp.headers.get("Location", "")
            resp.close()
            if not location:
                raise OneDriveError(f"OneDrive gave no download address for {path}.")
            # The download address is pre-authenticated: no Authorization header goes there.
            resp = self._send("GET", location, cancel, auth=False, headers=ranged, stream=True)
            if resp.status_code in (401, 403, 404, 410):
                resp.close()  # the short-lived download address expired before it was used
                raise TransientStorageError(
                    f"OneDrive's download address for {path} expired (HTTP {resp.status_code}).",
                    hint="Safekeep will try again.",
                )
        try:
            if resp.status_code == 416:
                return b""  # the file exists; the range starts past its end
            self._check(resp, "read", path)
            chunks: list[bytes] = []
            for chunk in resp.iter_content(_READ_CHUNK):
                cancel.raise_if_cancelled()
                chunks.append(chunk)
            body = b"".join(chunks)
        except (requests.RequestException, OSError) as exc:
            raise self._connection_error(exc, "read", path) from exc
        finally:
            resp.close()
        if resp.status_code == 200 and ranged:  # the server ignored the range
            body = body[offset : None if length is None else offset + length]
        return body

    def stat(self, h: Handle, *, cancel: CancelToken = NEVER) -> FileInfo:
        path = self._path(h.checked_path())
        cancel.raise_if_cancelled()
        item = self._item(path, cancel)
        if item is None or "folder" in item:
            raise NotFound(f"{path} was not found in {self._where}.")
        return FileInfo(h.name, int(item.get("size") or 0))

    def list(self, type: FileType, *, cancel: CancelToken = NEVER) -> Iterator[FileInfo]:
        cancel.raise_if_cancelled()
        if type is FileType.CONFIG:
            try:
                info = self.stat(Handle.config(), cancel=cancel)
            except NotFound:
                return
            yield info
            return
        folder = self._path(type.value)
        if type is not FileType.PACK:
            for item in self._children(folder, cancel):
                if "folder" not in item:
                    yield FileInfo(str(item["name"]), int(item.get("size") or 0))
            return
        shards = [
            str(item["name"])
            for item in self._children(folder, cancel)
            if "folder" in item and re.fullmatch(r"[0-9a-f]{2}", str(item["name"]))
        ]
        for shard in sorted(shards):
            for item in self._children(f"{folder}/{shard}", cancel):
                if "folder" not in item:
                    yield FileInfo(str(item["name"]), int(item.get("size") or 0))

    def remove(self, h: Handle, *, cancel: CancelToken = NEVER) -> None:
        path = self._path(h.checked_path())
        cancel.raise_if_cancelled()
        resp = self._call("DELETE", self._item_url(path), cancel)
        resp.close()
        self._check(resp, "delete", path)

    def close(self) -> None:
        self._http.close()

    def free_space(self) -> int | None:
        """The drive's remaining quota in bytes, or None when Graph does not report it."""
        url = (
            f"{self._opts.graph_endpoint}/drives/{urllib.parse.quote(self._opts.drive_id, safe='')}"
            if self._opts.drive_id
            else f"{self._opts.graph_endpoint}/me/drive"
        )
        try:
            resp = self._call("GET", url, NEVER, params={"$select": "quota"})
            self._check(resp, "inspect", "the drive")
            remaining = (resp.json().get("quota") or {}).get("remaining")
        except (StorageError, ValueError, AttributeError) as exc:
            log.debug("OneDrive quota not available: %s", exc)
            return None
        return int(remaining) if isinstance(remaining, int | float) and remaining >= 0 else None

    def __repr__(self) -> str:
        return f"OneDriveBackend({self._raw!r})"

    # -- uploads -------------------------------------------------------------------------------

    def _simple_upload(self, path: str, view: memoryview, cancel: CancelToken) -> None:
        body = bytes(view)
        for attempt in (1, 2):
            cancel.raise_if_cancelled()  # nothing is written after cancel
            resp = self._call(
                "PUT",
                self._item_url(path, "content"),
                cancel,
                params={"@microsoft.graph.conflictBehavior": "replace"},
                data=body,
                headers={"Content-Type": "application/octet-stream"},
            )
            resp.close()
            if resp.status_code == 404 and attempt == 1:
                self._ensure_folder(_parent(path), cancel, known_missing=True)
                continue
            self._check(resp, "save", path)
            return

    def _session_upload(self, path: str, view: memoryview, cancel: CancelToken) -> None:
        total = len(view)
        upload_url = self._create_session(path, total, cancel)
        done = False
        try:
            offset = 0
            failures = 0
            while not done:
                cancel.raise_if_cancelled()  # between fragments; the session is deleted below
                end = min(offset + self._opts.fragment_size, total)
                try:
                    resp = self._http.put(
                        upload_url,
                        data=bytes(view[offset:end]),
                        headers={
                            "Content-Range": f"bytes {offset}-{end - 1}/{total}",
                            "Content-Type": "application/octet-stream",
                        },
                        timeout=_TIMEOUT,
                    )
                    resp.close()
                except (requests.ConnectionError, requests.Timeout) as exc:
                    failures += 1
                    log.info("upload of %s dropped at byte %d (%s); resuming", path, offset, exc)
                    if failures > MAX_RESUMES:
                        raise self._connection_error(exc, "save", path) from exc
                    offset = self._session_offset(upload_url, path, cancel)
                    continue
                status = resp.status_code
                if status in (200, 201):
                    done = True
                elif status == 202:
                    failures = 0
                    confirmed = _next_offset(resp)
                    offset = end if confirmed is None else confirmed
                    if offset >= total:
                        offset = self._session_offset(upload_url, path, cancel)
                        if offset >= total:
                            raise OneDriveError(f"OneDrive did not finish the upload of {path}.")
                elif status == 416 or (status in _TRANSIENT_STATUS and status != 429):
                    failures += 1
                    if failures > MAX_RESUMES:
                        self._check(resp, "save", path)
                        raise OneDriveError(f"OneDrive refused the upload of {path} (HTTP {status}).")
                    offset = self._session_offset(upload_url, path, cancel)
                elif status == 404:
                    raise TransientStorageError(
                        f"OneDrive's upload session for {path} expired.", hint="Safekeep will start it again."
                    )
                else:
                    self._check(resp, "save", path)
                    raise OneDriveError(f"OneDrive answered HTTP {status} while uploading {path}.")
        finally:
            if not done:
                self._cancel_session(upload_url)

    def _create_session(self, path: str, size: int, cancel: CancelToken) -> str:
        for attempt in (1, 2):
            cancel.raise_if_cancelled()
            resp = self._call(
                "POST",
                self._item_url(path, "createUploadSession"),
                cancel,
                # fileSize lets Graph refuse a file that cannot fit before any byte is sent
                json={"item": {"@microsoft.graph.conflictBehavior": "replace", "fileSize": size}},
            )
            if resp.status_code == 404 and attempt == 1:
                resp.close()
                self._ensure_folder(_parent(path), cancel, known_missing=True)
                continue
            self._check(resp, "save", path)
            try:
                url = str(resp.json()["uploadUrl"])
            except (ValueError, KeyError, TypeError) as exc:
                raise OneDriveError(f"OneDrive did not open an upload session for {path}.") from exc
            return url
        raise AssertionError("unreachable")

    def _session_offset(self, upload_url: str, path: str, cancel: CancelToken) -> int:
        """Where the session continues (Graph's ``nextExpectedRanges``), after a dropped fragment."""
        cancel.raise_if_cancelled()
        try:
            resp = self._http.get(upload_url, timeout=_TIMEOUT)
        except (requests.RequestException, OSError) as exc:
            raise self._connection_error(exc, "save", path) from exc
        if resp.status_code == 404:
            raise TransientStorageError(
                f"OneDrive's upload session for {path} expired.", hint="Safekeep will start it again."
            )
        self._check(resp, "save", path)
        offset = _next_offset(resp)
        if offset is None:
            raise OneDriveError(f"OneDrive did not say where to continue the upload of {path}.")
        log.info("upload session of %s continues at byte %d", path, offset)
        return offset

    def _cancel_session(self, upload_url: str) -> None:
        try:
            self._http.delete(upload_url, timeout=_TIMEOUT).close()
        except (requests.RequestException, OSError):
            log.debug("deleting an unfinished OneDrive upload session failed", exc_info=True)

    def _after_conflict(self, h: Handle, path: str, size: int, exc: StorageError) -> None:
        """Another client saved the same name at the same moment (names are content hashes)."""
        try:
            info = self.stat(h)
        except NotFound:
            raise TransientStorageError(
                f"OneDrive reported a conflict while saving {path}.", hint="Safekeep will try again."
            ) from exc
        if info.size != size:
            raise AlreadyExists(f"{path} already exists in {self._where} with different content.") from exc

    # -- folders and listings ------------------------------------------------------------------

    def _ensure_folder(self, path: str, cancel: CancelToken, *, known_missing: bool = False) -> None:
        """Make ``path`` and its parents (``mkdir -p``); a folder made meanwhile is fine."""
        if not path:
            return
        with self._folders_lock:
            if path in self._folders and not known_missing:
                return
        parent, _, name = path.rpartition("/")
        for attempt in (1, 2):
            cancel.raise_if_cancelled()
            resp = self._call(
                "POST",
                self._item_url(parent, "children"),
                cancel,
                json={"name": name, "folder": {}, "@microsoft.graph.conflictBehavior": "fail"},
            )
            resp.close()
            if resp.status_code == 404 and attempt == 1 and parent:
                self._ensure_folder(parent, cancel, known_missing=True)
                continue
            if resp.status_code != 409:
                self._check(resp, "make the folder", path)
            break
        with self._folders_lock:
            self._folders.add(path)

    def _item(self, path: str, cancel: CancelToken) -> dict[str, Any] | None:
        resp = self._call("GET", self._item_url(path), cancel, params={"$select": "id,name,size,file,folder"})
        if resp.status_code == 404:
            resp.close()
            return None
        self._check(resp, "inspect", path)
        return self._json(resp, path)

    def _children(self, path: str, cancel: CancelToken) -> Iterator[dict[str, Any]]:
        url: str | None = self._item_url(path, "children")
        params: dict[str, str] | None = {
            "$top": str(self._opts.page_size),
            "$select": "id,name,size,file,folder",
        }
        while url is not None:
            cancel.raise_if_cancelled()
            resp = self._call("GET", url, cancel, params=params)
            if resp.status_code == 404 and params is not None:
                resp.close()
                return  # the folder was never made: nothing of this kind yet
            self._check(resp, "list", path)
            page = self._json(resp, path)
            yield from (item for item in page.get("value") or [] if isinstance(item, dict))
            next_link = page.get("@odata.nextLink")
            url, params = (str(next_link), None) if next_link else (None, None)

    # -- HTTP ----------------------------------------------------------------------------------

    def _path(self, relative: str) -> str:
        return "/".join([*self._segments, relative]) if relative else "/".join(self._segments)

    def _item_url(self, path: str, action: str = "") -> str:
        if not path:
            return f"{self._base}/{action}" if action else self._base
        quoted = urllib.parse.quote(path, safe="/")
        return f"{self._base}:/{quoted}:/{action}" if action else f"{self._base}:/{quoted}"

    @staticmethod
    def _range(offset: int, length: int | None) -> dict[str, str]:
        value = http_range(offset, length)
        return {"Range": value} if value else {}

    def _call(self, method: str, url: str, cancel: CancelToken, **kwargs: Any) -> requests.Response:
        """A Graph request with the access token; a refused token is refreshed once."""
        token = self._tokens.token()
        resp = self._send(method, url, cancel, token=token, **kwargs)
        if resp.status_code == 401:
            resp.close()
            log.info("Graph refused the access token; refreshing it")
            token = self._tokens.refresh(token)
            resp = self._send(method, url, cancel, token=token, **kwargs)
            if resp.status_code == 401:
                resp.close()
                code, message = _error_of(resp)
                raise signed_out(code or message)
        return resp

    def _send(
        self,
        method: str,
        url: str,
        cancel: CancelToken,
        *,
        token: str | None = None,
        auth: bool = True,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        cancel.raise_if_cancelled()
        all_headers = dict(headers or {})
        if auth and token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        try:
            return self._http.request(method, url, headers=all_headers, timeout=_TIMEOUT, **kwargs)
        except (requests.RequestException, OSError) as exc:
            raise self._connection_error(exc, method.lower(), url.split("?", 1)[0]) from exc

    @staticmethod
    def _json(resp: requests.Response, what: str) -> dict[str, Any]:
        try:
            body = resp.json()
        except ValueError as exc:
            raise TransientStorageError(f"OneDrive sent an unreadable answer for {what}.") from exc
        if not isinstance(body, dict):
            raise TransientStorageError(f"OneDrive sent an unexpected answer for {what}.")
        return body

    def _connection_error(self, exc: BaseException, action: str, what: str) -> StorageError:
        host = urllib.parse.urlsplit(self._opts.graph_endpoint).netloc
        if isinstance(exc, requests.Timeout):
            return TransientStorageError(
                f"OneDrive ({host}) did not answer in time while trying to {action} {what}."
            )
        return TransientStorageError(
            f"Cannot reach OneDrive ({host}) to {action} {what}: {type(exc).__name__}.",
            hint="Check that this computer is online; Safekeep retries a few times before giving up.",
        )

    def _check(self, resp: requests.Response, action: str, what: str) -> None:
        status = resp.status_code
        if status < 300:
            return
        code, message = _error_of(resp)
        detail = f" ({code or status}: {message})" if message else f" (HTTP {status})"
        if status == 507 or code in _QUOTA_CODES:
            raise QuotaExceeded(
                f"The OneDrive is full: there is no room to {action} {what}.",
                hint="Free space in OneDrive (empty its recycle bin too: deleted files count against "
                "the quota until it is emptied), buy more storage, or choose another destination.",
            )
        if status in _TRANSIENT_STATUS:
            raise TransientStorageError(
                f"OneDrive could not {action} {what} right now{detail}.",
                hint="Safekeep will try again.",
                retry_after=_retry_after(resp.headers.get("Retry-After")),
            )
        if status == 404:
            raise NotFound(f"{what} was not found in {self._where}.")
        if status == 401:
            raise signed_out(code or message)
        if status == 403:
            raise PermissionDenied(
                f"OneDrive does not allow Safekeep to {action} {what}{detail}.",
                hint="Sign in again with an account that may write there; for a SharePoint library ask "
                "its owner for edit rights.",
            )
        if status in (409, 412, 423) and action == "save":
            raise _Conflict(f"OneDrive reported a conflict while saving {what}{detail}.")
        if status >= 500:
            raise TransientStorageError(
                f"OneDrive could not {action} {what} right now{detail}.",
                hint="Safekeep will try again.",
                retry_after=_retry_after(resp.headers.get("Retry-After")),
            )
        raise OneDriveError(f"OneDrive could not {action} {what}{detail}.")


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


def _next_offset(resp: requests.Response) -> int | None:
    """The start of the first of Graph's ``nextExpectedRanges`` (``"12345-"`` or ``"0-999"``)."""
    try:
        ranges = resp.json().get("nextExpectedRanges") or []
        first = str(ranges[0])
        return int(first.split("-", 1)[0])
    except (ValueError, KeyError, IndexError, AttributeError, TypeError):
        return None


def _open(location: Location, settings: ProviderSettings) -> OneDriveBackend:
    return OneDriveBackend(location, settings)


register_provider("onedrive", _open, parser=_parse)
register_sign_in("onedrive", OneDriveSignIn())
