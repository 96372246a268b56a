"""A repository in the person's Dropbox, inside Safekeep's app folder, on the official SDK.

Location: ``dropbox:<folder>`` — a folder inside the app folder (``Apps/<app name>/`` in the
person's Dropbox; Safekeep's Dropbox app has *App folder* access and sees nothing else), e.g.
``dropbox:office-backup``; ``dropbox:`` alone uses the app folder itself. The repository is kept
in restic's layout (``config``, ``keys/``, ``data/00``..``data/ff``, ...).

Sign-in: see ``safekeep.storage.providers.dropbox_auth``. The destination's secret store holds
the refresh token; without one every call is refused with ``PermissionDenied`` ("not signed
in"). Access tokens are refreshed silently; a refresh token that Dropbox no longer accepts
(signed out, access removed in the Dropbox settings) is ``PermissionDenied`` ("signed out").

Options (``-o name=value``):

* ``dropbox.client-id`` — the Dropbox app key (default: the one Safekeep ships; also
  ``SAFEKEEP_DROPBOX_CLIENT_ID``).
* ``dropbox.api-host``, ``dropbox.content-host``, ``dropbox.web-host`` — the hosts of the API,
  of uploads/downloads and of the consent page (defaults: Dropbox's own).
* ``dropbox.redirect-port`` — the loopback port of the sign-in redirect (default 53691).
* ``dropbox.upload-threshold`` (default 8MiB) — larger files go up in an upload session
  (``upload_session/start``, ``append_v2``, ``finish``) in pieces of ``dropbox.chunk-size``
  (default 8MiB, at most 150MiB); smaller ones in one ``files/upload`` request. Nothing is
  visible until ``finish`` commits the session, so a failed or cancelled save leaves nothing.
  When the connection drops in the middle of a session, Safekeep asks Dropbox how much it has
  (an empty ``append_v2`` at the offset it believes in; Dropbox answers ``incorrect_offset`` with
  the offset it really has) and resumes from there instead of starting over.
* ``dropbox.connections`` (default 4) — Dropbox serialises writes in one account ("too many
  write operations"), so more parallel uploads do not help much.
* ``dropbox.page-size`` (default 2000) — entries asked for per ``list_folder`` page; listings
  follow ``has_more``/``cursor`` through every page.

Reads: ``files/download`` with an HTTP ``Range`` header for ranged loads, through the SDK's own
request machinery (``files_download(..., extra_headers={"Range": ...})``).

Errors: 429 (``too_many_requests``, ``too_many_write_operations``) and 5xx are transient, with
the delay from Dropbox's ``Retry-After``; a dropped connection is transient; ``insufficient_space``
is ``QuotaExceeded`` ("your Dropbox is full"); ``not_found`` is ``NotFound``; the SDK's own
retries are off (only the retry wrapper retries).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar

import dropbox  # type: ignore[import-untyped]
import dropbox.exceptions  # type: ignore[import-untyped]
import requests
from dropbox import files as dbx_files
from dropbox.content_hash import content_hash  # type: ignore[import-untyped]

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.errors import Cancelled
from safekeep.storage.base import FileInfo, FileType, Handle, Properties, check_range, http_range
from safekeep.storage.errors import (
    InvalidLocation,
    NotFound,
    PermanentStorageError,
    PermissionDenied,
    QuotaExceeded,
    StorageError,
    TransientStorageError,
)
from safekeep.storage.providers.dropbox_auth import (
    DropboxAuthConfig,
    DropboxClient,
    DropboxSignIn,
    ServerError,
    load_token,
    make_client,
    not_signed_in,
    signed_out,
)
from safekeep.storage.registry import Location, ProviderSettings, register_provider
from safekeep.storage.signin import register_sign_in

log = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_UPLOAD_THRESHOLD = 8 * MiB
DEFAULT_CHUNK_SIZE = 8 * MiB
MAX_REQUEST_BODY = 150 * MiB
"""Dropbox's limit for one upload request (``files/upload`` or one session piece)."""
MAX_OBJECT_SIZE = 2**41 - 2**22
"""The largest file an upload session may hold (the SDK's ``upload_session/append_v2`` docs)."""
DEFAULT_CONNECTIONS = 4
DEFAULT_PAGE_SIZE = 2000
MAX_RESUMES = 5
"""Dropped connections in a row, without progress, after which a session upload gives up."""
_READ_CHUNK = 1 << 20

_CONNECTION_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
_QUOTA_TAGS = {
    "insufficient_space",
    "team_folder_insufficient_space",
    "member_folder_insufficient_space",
    "insufficient_quota",
}
_NOT_FOUND_TAGS = {"not_found", "not_file", "not_folder"}
T = TypeVar("T")


class DropboxStorageError(PermanentStorageError):
    """A Dropbox failure that fits none of the specific storage errors."""


def _parse(raw: str, rest: str) -> Location:
    usage = "Write it as dropbox:<folder>, e.g. dropbox:office-backup (a folder in Safekeep's app folder)."
    segments = [s for s in rest.replace("\\", "/").split("/") if s]
    for s in segments:
        if s in (".", "..") or s != s.strip() or any(ord(c) < 32 for c in s):
            raise InvalidLocation(f"The Dropbox folder in {raw!r} has an invalid name {s!r}.", hint=usage)
    return Location(scheme="dropbox", path="/".join(segments), raw=raw)


def _size_option(settings: ProviderSettings, name: str, default: int) -> int:
    text = settings.option(name).strip()
    if not text:
        return default
    m = re.fullmatch(r"(\d+)\s*([kKmMgG]i?[bB]?|[bB])?", text)
    if m is None:
        raise InvalidLocation(f"The option {name}={text!r} is not a size.", hint="Write e.g. 8MiB.")
    unit = (m.group(2) or "b").lower()[:1]
    return int(m.group(1)) * {"b": 1, "k": 1024, "m": MiB, "g": 1024 * MiB}[unit]


def _int_option(settings: ProviderSettings, name: str, default: int, low: int, high: int) -> int:
    text = settings.option(name).strip()
    if not text:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise InvalidLocation(
            f"The option {name}={text!r} is not a whole number from {low} to {high}.",
            hint=f"Leave it out to use {default}.",
        )
    return int(text)


def tag_path(error: Any) -> list[str]:
    """The tags of a Dropbox error union, outermost first: ``["path", "not_found"]``.

    Dropbox errors are nested unions (``UploadError.path`` → ``UploadWriteFailed.reason`` →
    ``WriteError.insufficient_space``); the SDK models them as stone unions with ``_tag`` and
    ``_value``, and ``UploadWriteFailed`` as a struct whose ``reason`` carries on.
    """
    tags: list[str] = []
    node = error
    for _ in range(8):
        if node is None:
            break
        tag = getattr(node, "_tag", None)
        if tag is None:
            node = getattr(node, "reason", None)
            continue
        tags.append(str(tag))
        node = getattr(node, "_value", None)
    return tags


def incorrect_offset(exc: BaseException) -> int | None:
    """The offset Dropbox really has, from an ``incorrect_offset`` error of a session call."""
    if not isinstance(exc, dropbox.exceptions.ApiError):
        return None
    node = exc.error
    for _ in range(4):
        tag = getattr(node, "_tag", None)
        value = getattr(node, "_value", None)
        if tag == "incorrect_offset" and value is not None:
            return int(value.correct_offset)
        if tag is None or value is None:
            return None
        node = value
    return None


class DropboxBackend:
    """A repository in a folder of Safekeep's Dropbox app folder. See the module docstring."""

    def __init__(
        self, location: Location, settings: ProviderSettings, *, client: DropboxClient | None = None
    ) -> None:
        self._raw = location.raw
        self._root = "/" + location.path.strip("/") if location.path.strip("/") else ""
        self._threshold = _size_option(settings, "dropbox.upload-threshold", DEFAULT_UPLOAD_THRESHOLD)
        self._chunk = _size_option(settings, "dropbox.chunk-size", DEFAULT_CHUNK_SIZE)
        if not 1 <= self._chunk <= MAX_REQUEST_BODY:
            raise InvalidLocation(
                "The option dropbox.chunk-size must be between 1 byte and 150MiB.", hint="Use e.g. 8MiB."
            )
        self._threshold = min(self._threshold, MAX_REQUEST_BODY)
        self._connections = _int_option(settings, "dropbox.connections", DEFAULT_CONNECTIONS, 1, 64)
        self._page_size = _int_option(settings, "dropbox.page-size", DEFAULT_PAGE_SIZE, 1, 2000)
        self._config = DropboxAuthConfig.from_settings(settings)
        if client is None:
            token = load_token(settings.store)
            if token is None:
                raise not_signed_in()
            client = make_client(self._config, token, connections=self._connections)
        self._client = client
        self._properties = Properties(
            location=self._raw,
            connections=self._connections,
            supports_ranges=True,
            max_object_size=MAX_OBJECT_SIZE,
        )

    # -- Backend -------------------------------------------------------------------------------

    @property
    def properties(self) -> Properties:
        return self._properties

    @property
    def client(self) -> DropboxClient:
        return self._client

    def path(self, h: Handle) -> str:
        """The Dropbox path (inside the app folder) of ``h``."""
        return f"{self._root}/{h.checked_path()}"

    def create(self, *, cancel: CancelToken = NEVER) -> None:
        """Check the sign-in works and make the repository's folder (idempotent).

        Dropbox makes parent folders on upload, so the shard folders are not made here."""
        cancel.raise_if_cancelled()
        if not self._root:
            self._call(lambda: self._client.files_list_folder("", limit=1), "open", "the app folder")
            return
        try:
            self._client.files_create_folder_v2(self._root)
        except dropbox.exceptions.ApiError as exc:
            tags = tag_path(exc.error)
            if "conflict" in tags and "folder" in tags:
                return  # already there
            if "conflict" in tags:
                raise InvalidLocation(
                    f"{self._root} in your Dropbox app folder is a file, not a folder.",
                    hint="Choose another folder name for the backup location.",
                ) from exc
            raise self._translate(exc, "create the folder", self._root) from exc
        except Exception as exc:
            raise self._translate(exc, "create the folder", self._root) from exc

    def save(self, h: Handle, data: bytes | bytearray | memoryview, *, cancel: CancelToken = NEVER) -> None:
        path = self.path(h)
        cancel.raise_if_cancelled()
        view = memoryview(data).cast("B")
        if len(view) <= self._threshold:
            body = bytes(view)
            cancel.raise_if_cancelled()  # nothing is written after cancel
            self._call(
                lambda: self._client.files_upload(
                    body, path, mode=dbx_files.WriteMode.overwrite, autorename=False, mute=True
                ),
                "save",
                path,
            )
            return
        self._save_in_session(path, view, cancel)

    def load(
        self, h: Handle, offset: int = 0, length: int | None = None, *, cancel: CancelToken = NEVER
    ) -> bytes:
        check_range(offset, length)
        path = self.path(h)
        cancel.raise_if_cancelled()
        if length == 0:
            self.stat(h, cancel=cancel)
            return b""
        range_header = http_range(offset, length)
        try:
            if range_header is None:
                _, resp = self._client.files_download(path)
            else:
                _, resp = self._client.files_download(path, extra_headers={"Range": range_header})
        except dropbox.exceptions.HttpError as exc:
            if exc.status_code == 416:
                return b""  # the file exists; the range starts past its end
            raise self._translate(exc, "read", path) from exc
        except Exception as exc:
            raise self._translate(exc, "read", path) from exc
        out = bytearray()
        with contextlib.closing(resp):
            try:
                for piece in resp.iter_content(_READ_CHUNK):
                    cancel.raise_if_cancelled()
                    out += piece
            except Cancelled:
                raise
            except Exception as exc:
                raise self._translate(exc, "read", path) from exc
            partial = resp.status_code == 206
        if range_header is not None and not partial:  # the server sent the whole file
            end = None if length is None else offset + length
            return bytes(out[offset:end])
        return bytes(out)

    def stat(self, h: Handle, *, cancel: CancelToken = NEVER) -> FileInfo:
        path = self.path(h)
        cancel.raise_if_cancelled()
        meta = self._call(lambda: self._client.files_get_metadata(path), "inspect", path)
        if not isinstance(meta, dbx_files.FileMetadata):
            raise NotFound(f"{path} was not found in your Dropbox app folder.")
        return FileInfo(h.name, int(meta.size))

    def list(self, type: FileType, *, cancel: CancelToken = NEVER) -> Iterator[FileInfo]:
        cancel.raise_if_cancelled()
        if type is FileType.CONFIG:
            try:
                info = self.stat(Handle.config(), cancel=cancel)
            except NotFound:
                return
            yield info
            return
        folder = f"{self._root}/{type.value}"
        recursive = type is FileType.PACK
        prefix = folder.lower() + "/"
        try:
            page = self._client.files_list_folder(folder, recursive=recursive, limit=self._page_size)
        except dropbox.exceptions.ApiError as exc:
            if set(tag_path(exc.error)) & _NOT_FOUND_TAGS:
                return
            raise self._translate(exc, "list", folder) from exc
        except Exception as exc:
            raise self._translate(exc, "list", folder) from exc
        while True:
            for entry in page.entries:
                if not isinstance(entry, dbx_files.FileMetadata):
                    continue
                rest = str(entry.path_lower or "")[len(prefix) :].split("/")
                if recursive:
                    if len(rest) != 2 or len(rest[0]) != 2:
                        continue
                elif len(rest) != 1:
                    continue
                yield FileInfo(str(entry.name), int(entry.size))
            if not page.has_more:
                return
            cancel.raise_if_cancelled()
            page = self._call(partial(self._client.files_list_folder_continue, page.cursor), "list", folder)

    def remove(self, h: Handle, *, cancel: CancelToken = NEVER) -> None:
        path = self.path(h)
        cancel.raise_if_cancelled()
        self._call(lambda: self._client.files_delete_v2(path), "delete", path)

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:
            log.debug("closing the Dropbox client failed", exc_info=True)

    def free_space(self) -> int | None:
        """Bytes left in the account (the team's, for a team space), or None if Dropbox won't say."""
        usage = self._call(self._client.users_get_space_usage, "check the space of", "the account")
        allocation = usage.allocation
        if allocation.is_individual():
            allocated = int(allocation.get_individual().allocated)
        elif allocation.is_team():
            allocated = int(allocation.get_team().allocated)
        else:
            return None
        return max(allocated - int(usage.used), 0)

    def __repr__(self) -> str:
        return f"DropboxBackend({self._raw!r})"

    # -- upload sessions -----------------------------------------------------------------------

    def _save_in_session(self, path: str, view: memoryview, cancel: CancelToken) -> None:
        total = len(view)
        start = self._call(lambda: self._client.files_upload_session_start(b""), "save", path)
        session_id = str(start.session_id)
        offset = 0
        drops = 0
        probe = False
        while offset < total:
            cancel.raise_if_cancelled()
            if probe:
                offset = self._confirmed_offset(session_id, offset, path)
                probe = False
                continue
            piece = bytes(view[offset : offset + self._chunk])
            cursor = dbx_files.UploadSessionCursor(session_id=session_id, offset=offset)
            try:
                self._client.files_upload_session_append_v2(piece, cursor)
            except _CONNECTION_ERRORS as exc:
                drops += 1
                log.info("connection dropped at %d of %d bytes of %s; resuming", offset, total, path)
                if drops > MAX_RESUMES:
                    raise self._translate(exc, "save", path) from exc
                probe = True
                continue
            except dropbox.exceptions.ApiError as exc:
                correct = incorrect_offset(exc)
                if correct is None or not offset <= correct <= offset + len(piece):
                    raise self._translate(exc, "save", path) from exc
                offset = correct  # Dropbox already had (part of) this piece
                continue
            except Exception as exc:
                raise self._translate(exc, "save", path) from exc
            offset += len(piece)
            drops = 0
        cancel.raise_if_cancelled()  # an unfinished session is never visible; Dropbox expires it
        self._finish(session_id, total, path, content_hash(bytes(view)))

    def _confirmed_offset(self, session_id: str, believed: int, path: str) -> int:
        """Ask Dropbox how much of the session it has: an empty append at ``believed`` succeeds
        if that is right, and otherwise fails with ``incorrect_offset`` naming the real offset."""
        cursor = dbx_files.UploadSessionCursor(session_id=session_id, offset=believed)
        try:
            self._client.files_upload_session_append_v2(b"", cursor)
        except _CONNECTION_ERRORS:
            return believed  # still unreachable: the next append finds out again
        except dropbox.exceptions.ApiError as exc:
            correct = incorrect_offset(exc)
            if correct is None:
                raise self._translate(exc, "save", path) from exc
            if correct < believed:
                raise TransientStorageError(
                    f"Dropbox lost part of the upload of {path}.", hint="Safekeep will start it again."
                ) from exc
            log.info("Dropbox has %d bytes of %s; resuming from there", correct, path)
            return correct
        except Exception as exc:
            raise self._translate(exc, "save", path) from exc
        return believed

    def _finish(self, session_id: str, total: int, path: str, expected_hash: str) -> None:
        cursor = dbx_files.UploadSessionCursor(session_id=session_id, offset=total)
        commit = dbx_files.CommitInfo(
            path=path, mode=dbx_files.WriteMode.overwrite, autorename=False, mute=True
        )
        for attempt in range(MAX_RESUMES + 1):
            try:
                self._client.files_upload_session_finish(b"", cursor, commit)
                return
            except _CONNECTION_ERRORS as exc:
                # the answer may be lost after Dropbox committed the file: look before trying again
                if self._has_content(path, expected_hash):
                    return
                if attempt == MAX_RESUMES:
                    raise self._translate(exc, "save", path) from exc
            except dropbox.exceptions.ApiError as exc:
                if "lookup_failed" in tag_path(exc.error) and self._has_content(path, expected_hash):
                    return  # an earlier finish whose answer was lost did commit it
                raise self._translate(exc, "save", path) from exc
            except Exception as exc:
                raise self._translate(exc, "save", path) from exc

    def _has_content(self, path: str, expected_hash: str) -> bool:
        try:
            meta = self._client.files_get_metadata(path)
        except Exception:
            return False
        return isinstance(meta, dbx_files.FileMetadata) and meta.content_hash == expected_hash

    # -- errors --------------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T], action: str, what: str) -> T:
        try:
            return fn()
        except Cancelled:
            raise
        except Exception as exc:
            raise self._translate(exc, action, what) from exc

    def _translate(self, exc: BaseException, action: str, what: str) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, dropbox.exceptions.RateLimitError):
            reason = tag_path(getattr(exc.error, "reason", None))
            busy = (
                "too many changes at once" if "too_many_write_operations" in reason else "too many requests"
            )
            return TransientStorageError(
                f"Dropbox asked Safekeep to slow down ({busy}) while trying to {action} {what}.",
                hint="Safekeep waits as long as Dropbox asks and tries again.",
                retry_after=float(exc.backoff) if exc.backoff is not None else None,
            )
        if isinstance(exc, ServerError):
            return TransientStorageError(
                f"Dropbox could not {action} {what} right now (HTTP {exc.status_code}).",
                hint="Safekeep will try again.",
                retry_after=exc.retry_after,
            )
        if isinstance(exc, dropbox.exceptions.InternalServerError):
            return TransientStorageError(
                f"Dropbox could not {action} {what} right now (HTTP {exc.status_code})."
            )
        if isinstance(exc, dropbox.exceptions.AuthError):
            tags = tag_path(exc.error)
            if "missing_scope" in tags:
                return PermissionDenied(
                    f"The Dropbox app is not allowed to {action} {what}.",
                    hint="The Dropbox app registration lacks a permission (files.content.write, "
                    "files.content.read, files.metadata.read); fix it in the Dropbox App Console, "
                    "then sign in again.",
                )
            if "user_suspended" in tags:
                return PermissionDenied(
                    "Dropbox has suspended this account.", hint="Sign in to dropbox.com to find out why."
                )
            return signed_out()
        if isinstance(exc, dropbox.exceptions.BadInputError):
            if "invalid_grant" in exc.message or "invalid_client" in exc.message:
                return signed_out()
            return DropboxStorageError(f"Dropbox refused to {action} {what}: {exc.message}")
        if isinstance(exc, dropbox.exceptions.ApiError):
            return self._translate_api(exc, action, what)
        if isinstance(exc, dropbox.exceptions.HttpError):
            return DropboxStorageError(f"Dropbox refused to {action} {what} (HTTP {exc.status_code}).")
        if isinstance(exc, requests.exceptions.SSLError) and "certificate" in str(exc).lower():
            return DropboxStorageError(
                f"The secure connection to Dropbox failed its certificate check: {exc}.",
                hint="A proxy or security program may intercept the connection; ask your IT support.",
            )
        if isinstance(exc, _CONNECTION_ERRORS):
            return TransientStorageError(
                f"The connection to Dropbox failed while trying to {action} {what}.",
                hint="Check that this computer is online; Safekeep retries a few times before giving up.",
            )
        if isinstance(exc, OSError | requests.exceptions.RequestException):
            return TransientStorageError(
                f"The connection to Dropbox failed while trying to {action} {what}: {exc}."
            )
        return DropboxStorageError(f"Cannot {action} {what} in Dropbox: {exc}")

    def _translate_api(self, exc: Any, action: str, what: str) -> StorageError:
        tags = set(tag_path(exc.error))
        if tags & _QUOTA_TAGS:
            return QuotaExceeded(
                f"Your Dropbox is full: Safekeep could not {action} {what}.",
                hint="Free up space in Dropbox (or upgrade the plan), or keep fewer old backups (the "
                "plan's retention, or 'safekeep forget --prune'); the backup continues with the next run.",
            )
        if "upload_traffic_limit_reached" in tags:
            return QuotaExceeded(
                "Your Dropbox team has used up its monthly upload allowance for apps.",
                hint="Ask your Dropbox team administrator to raise the data transport limit, or wait "
                "for next month.",
            )
        if tags & _NOT_FOUND_TAGS:
            return NotFound(f"{what} was not found in your Dropbox app folder.")
        if "too_many_write_operations" in tags:
            return TransientStorageError(
                f"Dropbox is busy with other changes in this account while trying to {action} {what}.",
                hint="Safekeep will try again.",
            )
        if "no_write_permission" in tags or "access_restricted" in tags or "restricted_content" in tags:
            return PermissionDenied(f"Dropbox does not allow Safekeep to {action} {what}.")
        if "malformed_path" in tags or "disallowed_name" in tags:
            return InvalidLocation(
                f"Dropbox does not accept the path {what}.",
                hint="Choose a simpler folder name for the location.",
            )
        summary = "/".join(tag_path(exc.error)) or "unknown error"
        return DropboxStorageError(f"Dropbox refused to {action} {what}: {summary}.")


def _open(location: Location, settings: ProviderSettings) -> DropboxBackend:
    return DropboxBackend(location, settings)


register_provider("dropbox", _open, parser=_parse)
register_sign_in("dropbox", DropboxSignIn())
