"""A repository in Google Drive, on Google's API client (google-api-python-client + google-auth).

Location: ``gdrive:<folder path>``, e.g. ``gdrive:Safekeep/Office``. The folders are created in
the signed-in person's "My Drive" — or, with the option ``gdrive.shared-drive=<ID or name>``, in
a shared drive (the ID is the last part of the shared drive's address and starts with ``0A``; a
name can be looked up only when the sign-in has wider access than Safekeep asks for). Inside, the
repository has restic's layout (``config``, ``keys/``, ``data/<2 hex>/``, ...), so rclone's Drive
remote (``restic -r rclone:drive:...``) reads the same repository.

Access is narrow: the scope is ``drive.file``, so Safekeep sees only what it created itself. A
folder of the same name made by hand in the Drive web page is invisible to it, and Safekeep makes
its own. Signing in is :mod:`~safekeep.storage.providers.gdrive_auth`; without a stored sign-in the
provider refuses with ``PermissionDenied`` "not signed in".

Drive finds files by ID and lets two files (or folders) share one name in one folder:

* A **path-to-ID cache** maps folder paths to their IDs and file paths to (ID, size), filled by
  lookups, listings and saves; a stale file ID (removed elsewhere) is looked up again once.
* **Folders are never duplicated by a race here**: finding-or-creating a folder runs under one
  lock per backend, and after creating one the provider looks again. If another client created
  the same folder at the same moment, both see both and both use the *oldest* (by creation time,
  then ID); nothing is ever deleted. Reads look in *every* folder of a duplicated path.
* **Duplicate files found in the wild** (two clients saving the same content-addressed file) are
  harmless: the name says what the content is. Listings show each name once, loads and stats
  use the oldest copy, ``remove`` deletes every copy. A ``save`` first looks for the name and, if
  it exists with the same content, keeps it instead of adding a copy.

Uploads: files up to ``gdrive.upload-threshold`` (default 8MiB) are one multipart request; larger
ones use a resumable upload session in chunks of ``gdrive.chunk-size`` (default 8MiB, a multiple
of 256KiB), checking for cancellation between chunks. A dropped connection or a 5xx/429 in the
middle of a session asks Drive how much arrived and continues from there (a few times, with
backoff, honouring ``Retry-After``); an unfinished session never becomes a visible file. Loads
are ranged (``Range`` on ``alt=media``), in pieces of at most 16MiB.

Errors: 429 and 403 rate-limit answers → transient with the ``Retry-After`` delay; 5xx, timeouts
and dropped connections → transient; a full Drive (``storageQuotaExceeded``) → ``QuotaExceeded``;
a revoked or expired sign-in → ``PermissionDenied`` "signed out"; missing files → ``NotFound``.
The client's own retries are off: only the retry wrapper retries whole operations.

Options: ``gdrive.shared-drive``, ``gdrive.connections`` (default 4: Drive limits writes per
person), ``gdrive.upload-threshold``, ``gdrive.chunk-size``, and the sign-in and endpoint options
of :class:`~safekeep.storage.providers.gdrive_auth.GoogleConfig`.
"""

from __future__ import annotations

import builtins
import contextlib
import email.utils
import http.client
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import google.auth.exceptions
import httplib2  # type: ignore[import-untyped]
from googleapiclient.errors import HttpError  # type: ignore[import-untyped]
from googleapiclient.http import MediaUpload  # type: ignore[import-untyped]

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.clock import SYSTEM_CLOCK, Clock
from safekeep.common.errors import Cancelled
from safekeep.storage.base import FileInfo, FileType, Handle, Properties, check_range
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
from safekeep.storage.providers.gdrive_auth import (
    GoogleConfig,
    GoogleDriveSignIn,
    StoredCredentials,
    build_drive,
    load_record,
    make_http,
    not_signed_in,
    signed_out,
)
from safekeep.storage.registry import Location, ProviderSettings, register_provider
from safekeep.storage.signin import register_sign_in

log = logging.getLogger(__name__)

KiB = 1024
MiB = 1024 * KiB
DEFAULT_UPLOAD_THRESHOLD = 8 * MiB
DEFAULT_CHUNK_SIZE = 8 * MiB
CHUNK_MULTIPLE = 256 * KiB
"""Drive's resumable uploads take chunks in multiples of 256KiB (except the last)."""
DEFAULT_CONNECTIONS = 4
DOWNLOAD_PIECE = 16 * MiB
MAX_FILE_SIZE = 5 * 1024 * 1024 * MiB
"""Drive's largest file (5 TB)."""
MAX_RESUMES = 5
"""Consecutive interruptions of one upload session without progress before giving up."""
MAX_WAIT = 60.0
PAGE_SIZE = 1000
PARENTS_PER_QUERY = 20
FILE_CACHE_LIMIT = 500_000
FOLDER_MIME = "application/vnd.google-apps.folder"
FILE_FIELDS = "id,name,size,createdTime"
LIST_FIELDS = "nextPageToken,files(id,name,size,createdTime)"
_SHARED_DRIVE_ID_RE = re.compile(r"^0A[A-Za-z0-9_-]{8,}$")
_RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "sharingRateLimitExceeded"}
_QUOTA_REASONS = {
    "storageQuotaExceeded",
    "quotaExceeded",
    "teamDriveFileLimitExceeded",
    "numChildrenInNonRootLimitExceeded",
    "activeItemCreationLimitExceeded",
}
_DAILY_REASONS = {"dailyLimitExceeded", "uploadLimitExceeded"}


class GDriveStorageError(PermanentStorageError):
    """A Drive failure that fits none of the specific storage errors."""


@dataclass(frozen=True, slots=True)
class GDriveOptions:
    """The provider's options, with defaults applied (see the module docstring)."""

    shared_drive: str = ""
    connections: int = DEFAULT_CONNECTIONS
    upload_threshold: int = DEFAULT_UPLOAD_THRESHOLD
    chunk_size: int = DEFAULT_CHUNK_SIZE

    @staticmethod
    def from_settings(settings: ProviderSettings) -> GDriveOptions:
        connections = settings.option("gdrive.connections").strip()
        if connections and (not connections.isdigit() or int(connections) < 1):
            raise InvalidLocation(f"The option gdrive.connections={connections!r} must be a whole number.")
        chunk = _size_option(settings, "gdrive.chunk-size", DEFAULT_CHUNK_SIZE)
        if chunk < CHUNK_MULTIPLE or chunk % CHUNK_MULTIPLE:
            raise InvalidLocation(
                "The option gdrive.chunk-size must be a multiple of 256KiB.", hint="For example 8MiB."
            )
        return GDriveOptions(
            shared_drive=settings.option("gdrive.shared-drive").strip(),
            connections=int(connections) if connections else DEFAULT_CONNECTIONS,
            upload_threshold=_size_option(settings, "gdrive.upload-threshold", DEFAULT_UPLOAD_THRESHOLD),
            chunk_size=chunk,
        )


def _size_option(settings: ProviderSettings, name: str, default: int) -> int:
    text = settings.option(name).strip()
    if not text:
        return default
    m = re.fullmatch(r"(\d+)\s*([kKmMgG]i?[bB]?|[bB])?", text)
    if m is None:
        raise InvalidLocation(f"The option {name}={text!r} is not a size.", hint="Write e.g. 8MiB.")
    unit = (m.group(2) or "b").lower()[:1]
    return int(m.group(1)) * {"b": 1, "k": KiB, "m": MiB, "g": 1024 * MiB}[unit]


@dataclass(frozen=True, slots=True)
class _Remote:
    """One Drive file or folder: its ID, size and creation time (RFC 3339, sorts as text)."""

    id: str
    size: int
    created: str

    @staticmethod
    def of(doc: dict[str, Any]) -> _Remote:
        return _Remote(str(doc["id"]), int(doc.get("size") or 0), str(doc.get("createdTime") or ""))

    @property
    def order(self) -> tuple[str, str]:
        """The deterministic choice among duplicates: the oldest, then the smallest ID."""
        return (self.created, self.id)


def _oldest_first(items: Iterable[_Remote]) -> list[_Remote]:
    return sorted(items, key=lambda r: r.order)


def quote(value: str) -> str:
    """A string literal of Drive's query language (``\\`` and ``'`` escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _in_any(parents: Iterable[str]) -> str:
    return "(" + " or ".join(f"{quote(p)} in parents" for p in parents) + ")"


class _BufferUpload(MediaUpload):  # type: ignore[misc]
    """The bytes of one save, for the client's multipart and resumable uploads.

    Chunks are handed out as ``bytes`` (so a request can be sent again, e.g. after a token
    refresh), and cancellation is checked before each chunk."""

    def __init__(self, view: memoryview, cancel: CancelToken, chunk: int, *, resumable: bool) -> None:
        self._view = view
        self._cancel = cancel
        self._chunk = chunk
        self._resumable = resumable

    def chunksize(self) -> int:
        return self._chunk

    def mimetype(self) -> str:
        return "application/octet-stream"

    def size(self) -> int:
        return len(self._view)

    def resumable(self) -> bool:
        return self._resumable

    def getbytes(self, begin: int, length: int) -> bytes:
        self._cancel.raise_if_cancelled()
        return bytes(self._view[begin : begin + length])

    def has_stream(self) -> bool:
        return False

    def stream(self) -> None:
        raise NotImplementedError("this upload is handed out in chunks")

    def to_json(self) -> str:
        raise NotImplementedError("an upload of bytes in memory cannot be serialised")


class _Slot:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0


def _parse(raw: str, rest: str) -> Location:
    usage = "Write it as gdrive:<folder>, e.g. gdrive:Safekeep/Office."
    segments = [s.strip() for s in rest.replace("\\", "/").split("/") if s.strip()]
    if not segments:
        raise InvalidLocation(f"The Google Drive location {raw!r} names no folder.", hint=usage)
    if any(s in (".", "..") for s in segments):
        raise InvalidLocation(f"The folder in {raw!r} must not contain '.' or '..'.", hint=usage)
    return Location(scheme="gdrive", path="/".join(segments), raw=raw)


class GDriveBackend:
    """A repository in a Google Drive folder. See the module docstring."""

    def __init__(
        self, location: Location, settings: ProviderSettings, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._raw = location.raw
        self._root = tuple(s for s in location.path.split("/") if s)
        if not self._root:
            raise InvalidLocation(f"The Google Drive location {self._raw!r} names no folder.")
        self._options = GDriveOptions.from_settings(settings)
        self._config = GoogleConfig.from_settings(settings)
        self._clock = clock
        record = load_record(settings.store) if settings.store is not None else None
        if record is None:
            raise not_signed_in(self._raw)
        self._credentials = StoredCredentials(record, settings.store, self._config)
        self._local = threading.local()
        self._https: builtins.list[Any] = []
        self._lock = threading.Lock()  # the caches, the name slots and the list of connections
        self._folder_lock = threading.Lock()  # one find-or-create of a folder at a time
        self._folders: dict[tuple[str, ...], builtins.list[str]] = {}
        self._files: dict[str, _Remote] = {}
        self._slots: dict[str, _Slot] = {}
        self._base: str | None = None
        self._drive = build_drive(self._http(), self._config)
        self._properties = Properties(
            location=self._raw,
            connections=self._options.connections,
            supports_ranges=True,
            max_object_size=MAX_FILE_SIZE,
        )

    # -- Backend -------------------------------------------------------------------------------

    @property
    def properties(self) -> Properties:
        return self._properties

    def create(self, *, cancel: CancelToken = NEVER) -> None:
        """Make the location's folders and the repository's top-level folders (idempotent).

        ``data/<2 hex>/`` folders are made when the first pack goes into them."""
        cancel.raise_if_cancelled()
        for t in (FileType.KEY, FileType.LOCK, FileType.SNAPSHOT, FileType.INDEX, FileType.PACK):
            self._folder_ids(self._root + (t.value,), create=True, cancel=cancel)

    def save(self, h: Handle, data: bytes | bytearray | memoryview, *, cancel: CancelToken = NEVER) -> None:
        rel = h.checked_path()
        view = memoryview(data).cast("B")
        cancel.raise_if_cancelled()
        with self._name_slot(rel):
            existing = self._copies(h, cancel)
            if existing:
                self._keep_existing(h, existing[0], view, cancel)
                return
            parent = self._folder_ids(self._dir(h), create=True, cancel=cancel)[0]
            cancel.raise_if_cancelled()  # nothing is written after cancel
            try:
                remote = self._upload(h.name, parent, view, cancel)
            except InvalidLocation:  # a cached folder was deleted elsewhere: find or make it anew
                with self._lock:
                    self._folders.clear()
                parent = self._folder_ids(self._dir(h), create=True, cancel=cancel)[0]
                remote = self._upload(h.name, parent, view, cancel)
            self._remember(rel, remote)

    def load(
        self, h: Handle, offset: int = 0, length: int | None = None, *, cancel: CancelToken = NEVER
    ) -> bytes:
        check_range(offset, length)
        rel = h.checked_path()
        cancel.raise_if_cancelled()
        remote = self._find(h, cancel)
        try:
            return self._read(remote, offset, length, cancel)
        except NotFound:
            self._forget(rel)  # the cached ID was removed elsewhere: look once more
            again = self._find(h, cancel)
            if again.id == remote.id:
                raise
            return self._read(again, offset, length, cancel)

    def stat(self, h: Handle, *, cancel: CancelToken = NEVER) -> FileInfo:
        """Asks Drive every time (not the cache): lock files come and go by other clients' hands."""
        rel = h.checked_path()
        cancel.raise_if_cancelled()
        copies = self._copies(h, cancel)
        if not copies:
            self._forget(rel)
            raise NotFound(f"{rel} was not found in Google Drive ({self._raw}).")
        self._remember(rel, copies[0])
        return FileInfo(h.name, copies[0].size)

    def list(self, type: FileType, *, cancel: CancelToken = NEVER) -> Iterator[FileInfo]:
        cancel.raise_if_cancelled()
        if type is FileType.CONFIG:
            try:
                info = self.stat(Handle.config(), cancel=cancel)
            except NotFound:
                return
            yield info
            return
        folders = self._folder_ids(self._root + (type.value,), create=False, cancel=cancel)
        if not folders:
            return
        if type is FileType.PACK:
            shards: dict[str, builtins.list[_Remote]] = {}
            for name, remote in self._children(folders, folders_only=True, cancel=cancel):
                if re.fullmatch(r"[0-9a-f]{2}", name):
                    shards.setdefault(name, []).append(remote)
            with self._lock:
                for name, found in shards.items():
                    self._folders[self._root + (type.value, name)] = [r.id for r in _oldest_first(found)]
            parents = [r.id for found in shards.values() for r in found]
        else:
            parents = folders
        copies: dict[str, builtins.list[_Remote]] = {}
        for name, remote in self._children(parents, folders_only=False, cancel=cancel):
            copies.setdefault(name, []).append(remote)
        for name in sorted(copies):
            if type is FileType.PACK and len(name) < 2:
                continue
            chosen = _oldest_first(copies[name])[0]
            handle = Handle(type, name)
            self._remember(handle.path(), chosen)
            yield FileInfo(name, chosen.size)

    def remove(self, h: Handle, *, cancel: CancelToken = NEVER) -> None:
        rel = h.checked_path()
        cancel.raise_if_cancelled()
        with self._name_slot(rel):
            copies = self._copies(h, cancel)
            self._forget(rel)
            if not copies:
                raise NotFound(f"{rel} was not found in Google Drive ({self._raw}).")
            cancel.raise_if_cancelled()
            removed = 0
            for remote in copies:  # every copy: they all carry this name's content
                try:
                    self._delete(remote.id, rel)
                    removed += 1
                except NotFound:
                    continue
            if not removed:
                raise NotFound(f"{rel} was not found in Google Drive ({self._raw}).")

    def close(self) -> None:
        with self._lock:
            https, self._https = self._https, []
        for connection in https:
            with contextlib.suppress(Exception):
                connection.close()

    def free_space(self) -> int | None:
        """The space left in the person's Drive (None for shared drives and unlimited accounts)."""
        if self._options.shared_drive:
            return None
        about = self._execute(self._drive.about().get(fields="storageQuota(limit,usage)"), "inspect", "Drive")
        quota = about.get("storageQuota") or {}
        if "limit" not in quota:
            return None
        return max(0, int(quota["limit"]) - int(quota.get("usage") or 0))

    def __repr__(self) -> str:
        return f"GDriveBackend({self._raw!r})"

    # -- folders -------------------------------------------------------------------------------

    def _dir(self, h: Handle) -> tuple[str, ...]:
        parts = h.path().split("/")[:-1]
        return self._root + tuple(parts)

    def _base_id(self, cancel: CancelToken) -> str:
        """The parent of the location's first folder: "My Drive" (``root``) or the shared drive."""
        if self._base is not None:
            return self._base
        wanted = self._options.shared_drive
        if not wanted:
            base = "root"
        elif _SHARED_DRIVE_ID_RE.match(wanted):
            base = wanted
        else:
            base = self._shared_drive_by_name(wanted, cancel)
        self._base = base
        return base

    def _shared_drive_by_name(self, name: str, cancel: CancelToken) -> str:
        cancel.raise_if_cancelled()
        hint = (
            "Give the shared drive's ID instead: open the shared drive in the browser; its ID is the "
            "last part of the address and starts with 0A (gdrive.shared-drive=0A...)."
        )
        try:
            found = self._execute(
                self._drive.drives().list(q=f"name = {quote(name)}", pageSize=100), "find", "shared drives"
            )
        except PermissionDenied as exc:
            raise InvalidLocation(
                f"Safekeep may not look up the shared drive {name!r} by name (it sees only its own files).",
                hint=hint,
            ) from exc
        matches = [d for d in found.get("drives", []) if d.get("name") == name]
        if len(matches) != 1:
            what = "no shared drive" if not matches else "more than one shared drive"
            raise InvalidLocation(f"There is {what} named {name!r} in this Google account.", hint=hint)
        return str(matches[0]["id"])

    def _folder_ids(self, path: tuple[str, ...], *, create: bool, cancel: CancelToken) -> builtins.list[str]:
        """The IDs of every folder at ``path`` (oldest first); ``[]`` if there is none and not ``create``."""
        if not path:
            return [self._base_id(cancel)]
        with self._lock:
            hit = self._folders.get(path)
        if hit:
            return hit
        parents = self._folder_ids(path[:-1], create=create, cancel=cancel)
        if not parents:
            return []
        if not create:
            ids = [r.id for r in self._find_folders(path[-1], parents, cancel)]
        else:
            with self._folder_lock:  # one find-or-create at a time: no duplicate by our own race
                with self._lock:
                    hit = self._folders.get(path)
                if hit:
                    return hit
                found = self._find_folders(path[-1], parents, cancel)
                if not found:
                    cancel.raise_if_cancelled()
                    made = self._make_folder(path[-1], parents[0])
                    # Another client may have made the same folder meanwhile: look again and use
                    # the oldest, as that client will. Nothing is deleted.
                    found = self._find_folders(path[-1], parents, cancel)
                    if made.id not in {r.id for r in found}:
                        found = _oldest_first([*found, made])
                if len(found) > 1:
                    log.warning(
                        "Google Drive has %d folders named %s; using the oldest (%s) and reading all",
                        len(found),
                        "/".join(path),
                        found[0].id,
                    )
                ids = [r.id for r in found]
        if ids:
            with self._lock:
                self._folders[path] = ids
        return ids

    def _find_folders(
        self, name: str, parents: builtins.list[str], cancel: CancelToken
    ) -> builtins.list[_Remote]:
        q = (
            f"name = {quote(name)} and mimeType = {quote(FOLDER_MIME)} and trashed = false "
            f"and {_in_any(parents)}"
        )
        return _oldest_first(_Remote.of(doc) for doc in self._query(q, cancel, what=name))

    def _make_folder(self, name: str, parent: str) -> _Remote:
        body = {"name": name, "mimeType": FOLDER_MIME, "parents": [parent]}
        request = self._drive.files().create(body=body, fields=FILE_FIELDS, supportsAllDrives=True)
        doc = self._execute(request, "create the folder", name, parent_level=True)
        log.debug("created the Drive folder %s (%s)", name, doc.get("id"))
        return _Remote.of(doc)

    def _children(
        self, parents: builtins.list[str], *, folders_only: bool, cancel: CancelToken
    ) -> Iterator[tuple[str, _Remote]]:
        kind = "=" if folders_only else "!="
        for i in range(0, len(parents), PARENTS_PER_QUERY):
            batch = parents[i : i + PARENTS_PER_QUERY]
            q = f"{_in_any(batch)} and trashed = false and mimeType {kind} {quote(FOLDER_MIME)}"
            for doc in self._query(q, cancel, what="the repository"):
                yield str(doc.get("name") or ""), _Remote.of(doc)

    # -- files ---------------------------------------------------------------------------------

    def _copies(self, h: Handle, cancel: CancelToken) -> builtins.list[_Remote]:
        """Every file named like ``h`` in its folder(s), oldest first (asks Drive, not the cache)."""
        folders = self._folder_ids(self._dir(h), create=False, cancel=cancel)
        if not folders:
            return []
        q = (
            f"name = {quote(h.name)} and {_in_any(folders)} and trashed = false "
            f"and mimeType != {quote(FOLDER_MIME)}"
        )
        return _oldest_first(_Remote.of(doc) for doc in self._query(q, cancel, what=h.name))

    def _find(self, h: Handle, cancel: CancelToken) -> _Remote:
        rel = h.path()
        with self._lock:
            hit = self._files.get(rel)
        if hit is not None:
            return hit
        copies = self._copies(h, cancel)
        if not copies:
            raise NotFound(f"{rel} was not found in Google Drive ({self._raw}).")
        self._remember(rel, copies[0])
        return copies[0]

    def _remember(self, rel: str, remote: _Remote) -> None:
        with self._lock:
            if len(self._files) >= FILE_CACHE_LIMIT:
                self._files.clear()
            self._files[rel] = remote

    def _forget(self, rel: str) -> None:
        with self._lock:
            self._files.pop(rel, None)

    @contextlib.contextmanager
    def _name_slot(self, rel: str) -> Iterator[None]:
        """Serialise saves and removes of one name within this backend (no duplicate copies)."""
        with self._lock:
            slot = self._slots.setdefault(rel, _Slot())
            slot.users += 1
        try:
            with slot.lock:
                yield
        finally:
            with self._lock:
                slot.users -= 1
                if not slot.users:
                    self._slots.pop(rel, None)

    def _keep_existing(self, h: Handle, remote: _Remote, view: memoryview, cancel: CancelToken) -> None:
        """A save of a name that exists: fine if it is the same content (names are hashes)."""
        rel = h.path()
        same = remote.size == len(view)
        if same and h.type in (FileType.CONFIG, FileType.APP):  # not content-addressed: compare
            same = self._read(remote, 0, None, cancel) == view
        if not same:
            raise AlreadyExists(
                f"{rel} already exists in Google Drive ({self._raw}) with different content.",
                hint="Files of a repository are never replaced; check that no other program writes here.",
            )
        log.debug("%s is already in Google Drive; kept", rel)
        self._remember(rel, remote)

    def _upload(self, name: str, parent: str, view: memoryview, cancel: CancelToken) -> _Remote:
        resumable = len(view) > self._options.upload_threshold
        media = _BufferUpload(view, cancel, self._options.chunk_size, resumable=resumable)
        request = self._drive.files().create(
            body={"name": name, "parents": [parent]},
            media_body=media,
            fields=FILE_FIELDS,
            supportsAllDrives=True,
        )
        if not resumable:
            cancel.raise_if_cancelled()
            return _Remote.of(self._execute(request, "save", name, parent_level=True))
        return _Remote.of(self._resume_until_done(request, name, len(view), cancel))

    def _resume_until_done(self, request: Any, name: str, size: int, cancel: CancelToken) -> dict[str, Any]:
        """Send a resumable upload chunk by chunk; after an interruption continue where Drive says."""
        failures = 0
        while True:
            cancel.raise_if_cancelled()
            before = request.resumable_progress
            try:
                _status, done = request.next_chunk(http=self._http(), num_retries=0)
            except Cancelled:
                raise
            except Exception as exc:
                started = request.resumable_uri is not None
                err = self._translate(exc, "save", name, session=started, parent_level=not started)
                progressed = request.resumable_progress > before
                failures = 1 if progressed else failures + 1
                if not started or not isinstance(err, TransientStorageError) or failures > MAX_RESUMES:
                    raise err from exc
                log.info(
                    "the upload of %s (%d bytes) was interrupted (%s); asking Drive how much arrived "
                    "and resuming from there",
                    name,
                    size,
                    err,
                )
                delay = (
                    err.retry_after
                    if err.retry_after is not None
                    else (0.0 if failures == 1 else 2.0 ** (failures - 2))
                )
                self._clock.sleep(min(delay, MAX_WAIT))
                continue
            if done is not None:
                return dict(done)
            if request.resumable_progress > before:
                failures = 0

    def _read(self, remote: _Remote, offset: int, length: int | None, cancel: CancelToken) -> bytes:
        end = remote.size if length is None else min(remote.size, offset + length)
        if offset >= end:
            return b""
        out = bytearray()
        pos = offset
        while pos < end:
            cancel.raise_if_cancelled()
            stop = min(end, pos + DOWNLOAD_PIECE)
            piece = self._download(remote, pos, stop)
            if not piece:
                break
            out += piece
            pos += len(piece)
        cancel.raise_if_cancelled()
        return bytes(out)

    def _download(self, remote: _Remote, start: int, stop: int) -> bytes:
        request = self._drive.files().get_media(fileId=remote.id, supportsAllDrives=True)
        whole = start == 0 and stop == remote.size
        if not whole:
            request.headers["range"] = f"bytes={start}-{stop - 1}"
        statuses: builtins.list[int] = []
        request.add_response_callback(lambda resp: statuses.append(int(resp.status)))
        try:
            content = bytes(request.execute(http=self._http(), num_retries=0))
        except HttpError as exc:
            if exc.resp.status == 416:  # the file is shorter than it was said to be
                return b""
            raise self._translate(exc, "read", remote.id) from exc
        except Exception as exc:
            raise self._translate(exc, "read", remote.id) from exc
        if statuses and statuses[-1] == 200 and not whole:  # the range was ignored: cut it out here
            content = content[start:stop]
        return content

    def _delete(self, file_id: str, what: str) -> None:
        try:
            self._execute(self._drive.files().delete(fileId=file_id, supportsAllDrives=True), "delete", what)
        except PermissionDenied:
            if not self._options.shared_drive:
                raise
            # In a shared drive a "Contributor" may not delete, but may move to the trash, which
            # every listing here ignores (the drive's managers empty it).
            request = self._drive.files().update(
                fileId=file_id, body={"trashed": True}, supportsAllDrives=True
            )
            self._execute(request, "delete", what)

    # -- requests ------------------------------------------------------------------------------

    def _http(self) -> Any:
        http = getattr(self._local, "http", None)
        if http is None:
            http = make_http(self._credentials)
            self._local.http = http
            with self._lock:
                self._https.append(http)
        return http

    def _corpus(self) -> dict[str, Any]:
        if self._options.shared_drive:
            return {
                "corpora": "drive",
                "driveId": self._base_id(NEVER),
                "includeItemsFromAllDrives": True,
                "supportsAllDrives": True,
            }
        return {"corpora": "user", "spaces": "drive"}

    def _query(self, q: str, cancel: CancelToken, *, what: str) -> Iterator[dict[str, Any]]:
        """Every file matching ``q``, page by page."""
        token: str | None = None
        while True:
            cancel.raise_if_cancelled()
            kwargs: dict[str, Any] = {"q": q, "fields": LIST_FIELDS, "pageSize": PAGE_SIZE, **self._corpus()}
            if token:
                kwargs["pageToken"] = token
            doc = self._execute(self._drive.files().list(**kwargs), "list", what)
            yield from doc.get("files") or []
            token = doc.get("nextPageToken")
            if not token:
                return

    def _execute(self, request: Any, action: str, what: str, *, parent_level: bool = False) -> dict[str, Any]:
        try:
            result = request.execute(http=self._http(), num_retries=0)
        except Cancelled:
            raise
        except Exception as exc:
            raise self._translate(exc, action, what, parent_level=parent_level) from exc
        return dict(result or {})

    def _translate(
        self, exc: BaseException, action: str, what: str, *, session: bool = False, parent_level: bool = False
    ) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, google.auth.exceptions.RefreshError):
            return signed_out()
        if isinstance(exc, HttpError):
            return self._translate_http(exc, action, what, session=session, parent_level=parent_level)
        if isinstance(
            exc,
            google.auth.exceptions.TransportError
            | httplib2.HttpLib2Error
            | http.client.HTTPException
            | OSError,
        ):
            return TransientStorageError(
                f"The connection to Google Drive failed while trying to {action} {what}: "
                f"{type(exc).__name__}.",
                hint="Check that this computer is online; Safekeep will try again.",
            )
        return GDriveStorageError(f"Cannot {action} {what} in Google Drive ({self._raw}): {exc}")

    def _translate_http(
        self, exc: HttpError, action: str, what: str, *, session: bool, parent_level: bool
    ) -> StorageError:
        status = int(exc.resp.status)
        details = exc.error_details if isinstance(exc.error_details, list) else []
        reasons = {str(d.get("reason")) for d in details if isinstance(d, dict)}
        message = str(exc.reason or "")
        retry_after = _retry_after(exc.resp.get("retry-after"), self._clock)
        if status == 401:
            return signed_out()
        if status == 429 or reasons & _RATE_REASONS:
            return TransientStorageError(
                f"Google Drive asks Safekeep to slow down ({message or status}).",
                hint="Safekeep waits and tries again.",
                retry_after=retry_after,
            )
        if reasons & _QUOTA_REASONS:
            return QuotaExceeded(
                "Google Drive is full: there is no room for more backup data.",
                hint="Free up space in Google Drive (and empty its trash) or buy more storage, then run "
                "the backup again. Keeping fewer old backups (the plan's retention, or 'safekeep forget "
                "--prune') also frees space.",
            )
        if reasons & _DAILY_REASONS:
            return TransientStorageError(
                f"Google Drive's daily limit was reached ({message}).",
                hint="Google lifts the limit within a day; the next backup continues.",
                retry_after=retry_after,
            )
        if status >= 500 or status == 408:
            return TransientStorageError(
                f"Google Drive could not {action} {what} right now ({status}).",
                hint="Safekeep will try again.",
                retry_after=retry_after,
            )
        if session and status in (404, 410):
            return TransientStorageError(
                f"The upload session for {what} expired; the upload starts again.",
                hint="Safekeep will try again.",
            )
        if status == 404:
            if parent_level:
                where = (
                    f"the shared drive {self._options.shared_drive!r}" if self._options.shared_drive else "it"
                )
                return InvalidLocation(
                    f"A folder of {self._raw} disappeared from Google Drive while Safekeep used {where}.",
                    hint="If the folder was deleted or moved, run the backup again and Safekeep makes it "
                    "anew; for a shared drive check its ID and that you are still a member.",
                )
            return NotFound(f"{what} was not found in Google Drive ({self._raw}).")
        if status == 403:
            return PermissionDenied(
                f"Google Drive did not allow Safekeep to {action} {what}: {message}.",
                hint="Sign in again with the Google account that owns the backup folder; in a shared "
                "drive you need at least 'Contributor' access.",
            )
        return GDriveStorageError(f"Google Drive refused to {action} {what} ({status}): {message}")


def _retry_after(value: object, clock: Clock) -> float | None:
    if value is None:
        return None
    text = str(value).strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - clock.now()).total_seconds())


def _open(location: Location, settings: ProviderSettings) -> GDriveBackend:
    return GDriveBackend(location, settings)


register_provider("gdrive", _open, parser=_parse)
register_sign_in("gdrive", GoogleDriveSignIn())
