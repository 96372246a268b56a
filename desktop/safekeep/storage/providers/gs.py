"""A repository in a Google Cloud Storage bucket, on Google's client library.

Location (restic's syntax): ``gs:bucket:/prefix`` (also ``gs:bucket:prefix`` and ``gs:bucket``).
Objects are stored under ``prefix/`` in restic's layout, so ``restic -r gs:...`` reads it too.

Credentials (restic's names): ``GOOGLE_APPLICATION_CREDENTIALS`` — the path of a service-account
key file (JSON) — and ``GOOGLE_PROJECT_ID``. Without a key file, Google's application-default
credentials are used (``gcloud auth application-default login``, or the machine's account on
Google Cloud). ``STORAGE_EMULATOR_HOST`` (the client's documented emulator switch) points the
client at another endpoint; Safekeep's tests use it with a local fake of the JSON API
(``tests/fakes/gcs_fake.py``) because no real GCS server can run on a test machine.

Options (``-o name=value``): ``gs.storage-class`` (``STANDARD``, ``NEARLINE``, ``COLDLINE``,
``ARCHIVE``; set on every new object), ``gs.connections`` (default 5), ``gs.chunk-size`` (default
16MiB, a multiple of 256KiB): files larger than that go up as a resumable upload in chunks of that
size, checking for cancellation between chunks; an unfinished resumable upload is never visible
as an object. Smaller files are one multipart request.

Errors: a missing or unreadable key file, or a key Google refuses → ``PermissionDenied`` naming
the file; no permission → ``PermissionDenied``; a missing bucket → ``InvalidLocation``; 429, 5xx,
timeouts and connection failures → transient. The client's own retries are off: only the retry
wrapper retries. ``free_space`` is not available (None).
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import google.api_core.exceptions as gexc
import google.auth
import google.auth.exceptions
import requests
from google.api_core.client_options import ClientOptions
from google.cloud import storage
from google.oauth2 import service_account

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.errors import Cancelled
from safekeep.storage.base import FileInfo, FileType, Handle, Properties, check_range
from safekeep.storage.errors import (
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

MiB = 1024 * 1024
DEFAULT_CHUNK_SIZE = 16 * MiB
CHUNK_MULTIPLE = 256 * 1024
DEFAULT_CONNECTIONS = 5
SCOPES = ["https://www.googleapis.com/auth/devstorage.read_write"]
STORAGE_CLASSES = {
    "STANDARD",
    "NEARLINE",
    "COLDLINE",
    "ARCHIVE",
    "MULTI_REGIONAL",
    "REGIONAL",
    "DURABLE_REDUCED_AVAILABILITY",
}
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._\-]{1,220}[a-z0-9]$")


class GcsStorageError(PermanentStorageError):
    """A GCS failure that fits none of the specific storage errors."""


class _CancellableReader(io.RawIOBase):
    """Reads ``view`` and raises ``Cancelled`` when the token is cancelled before a chunk."""

    def __init__(self, view: memoryview, cancel: CancelToken) -> None:
        self._view = view
        self._pos = 0
        self._cancel = cancel

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        self._cancel.raise_if_cancelled()
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        out = bytes(self._view[self._pos : end])
        self._pos = end
        return out


def _parse(raw: str, rest: str) -> Location:
    bucket, _, prefix = rest.partition(":")
    bucket = bucket.strip()
    usage = "Write it as gs:bucket:/folder, e.g. gs:office-backups:/restic."
    if not bucket:
        raise InvalidLocation(f"The Google Cloud Storage location {raw!r} names no bucket.", hint=usage)
    if not _BUCKET_RE.match(bucket):
        raise InvalidLocation(f"{bucket!r} in {raw!r} is not a valid bucket name.", hint=usage)
    segments = [s for s in prefix.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise InvalidLocation(f"The folder in {raw!r} must not contain '.' or '..'.", hint=usage)
    return Location(scheme="gs", path="/".join(segments), raw=raw, bucket=bucket)


class GcsBackend:
    """A repository at a GCS bucket and prefix. See the module docstring."""

    def __init__(self, location: Location, settings: ProviderSettings) -> None:
        self._raw = location.raw
        self._bucket_name = location.bucket
        self._prefix = location.path.strip("/")
        self._storage_class = settings.option("gs.storage-class").strip().upper()
        if self._storage_class and self._storage_class not in STORAGE_CLASSES:
            raise InvalidLocation(
                f"The option gs.storage-class={self._storage_class!r} is not a storage class.",
                hint="Use STANDARD, NEARLINE, COLDLINE or ARCHIVE.",
            )
        connections = settings.option("gs.connections").strip()
        self._connections = (
            int(connections) if connections.isdigit() and int(connections) > 0 else DEFAULT_CONNECTIONS
        )
        chunk = settings.option("gs.chunk-size").strip()
        self._chunk = _parse_size(chunk) if chunk else DEFAULT_CHUNK_SIZE
        if self._chunk < CHUNK_MULTIPLE or self._chunk % CHUNK_MULTIPLE:
            raise InvalidLocation("The option gs.chunk-size must be a multiple of 256KiB.")
        self._key_file = settings.getenv("GOOGLE_APPLICATION_CREDENTIALS").strip()
        project = settings.getenv("GOOGLE_PROJECT_ID").strip() or None
        endpoint = settings.getenv("STORAGE_EMULATOR_HOST").strip()
        credentials = self._credentials()
        options = ClientOptions(api_endpoint=endpoint) if endpoint else None
        self._endpoint = endpoint or "https://storage.googleapis.com"
        try:
            self._client = storage.Client(
                project=project or getattr(credentials, "project_id", None) or "<none>",
                credentials=credentials,
                client_options=options,
            )
        except google.auth.exceptions.GoogleAuthError as exc:
            raise self._translate(exc, "connect to", self._raw) from exc
        self._bucket = self._client.bucket(self._bucket_name)
        self._properties = Properties(location=self._raw, connections=self._connections, supports_ranges=True)

    def _credentials(self) -> Any:
        if not self._key_file:
            try:
                creds, _ = google.auth.default(scopes=SCOPES)
            except google.auth.exceptions.DefaultCredentialsError as exc:
                raise PermissionDenied(
                    "No Google Cloud credentials were given.",
                    hint="Set GOOGLE_APPLICATION_CREDENTIALS to the path of a service-account key "
                    "file (JSON) created in the Google Cloud console under IAM → Service accounts → Keys.",
                ) from exc
            return creds
        try:
            return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                self._key_file, scopes=SCOPES
            )
        except FileNotFoundError as exc:
            raise PermissionDenied(
                f"The Google service-account key file {self._key_file} does not exist.",
                hint="Check GOOGLE_APPLICATION_CREDENTIALS: it must be the path of the JSON key file "
                "you downloaded from the Google Cloud console.",
            ) from exc
        except (ValueError, KeyError, json.JSONDecodeError, OSError) as exc:
            raise PermissionDenied(
                f"The file {self._key_file} is not a usable Google service-account key.",
                hint="Download a new JSON key in the Google Cloud console (IAM → Service accounts → "
                "your account → Keys → Add key → JSON) and point GOOGLE_APPLICATION_CREDENTIALS at it.",
            ) from exc

    # -- Backend -------------------------------------------------------------------------------

    @property
    def properties(self) -> Properties:
        return self._properties

    @property
    def client(self) -> storage.Client:
        return self._client

    def key(self, h: Handle) -> str:
        return self._key(h)

    def create(self, *, cancel: CancelToken = NEVER) -> None:
        """Check the bucket exists and the key may use it (GCS has no folders to make)."""
        cancel.raise_if_cancelled()
        try:
            self._bucket.reload(retry=None, timeout=60)
        except Exception as exc:
            raise self._translate(exc, "open the bucket", self._bucket_name, bucket_level=True) from exc

    def save(self, h: Handle, data: bytes | bytearray | memoryview, *, cancel: CancelToken = NEVER) -> None:
        key = self._key(h)
        cancel.raise_if_cancelled()
        view = memoryview(data).cast("B")
        blob = self._bucket.blob(key, chunk_size=self._chunk if len(view) > self._chunk else None)
        if self._storage_class:
            blob.storage_class = self._storage_class
        try:
            if len(view) > self._chunk:
                blob.upload_from_file(
                    _CancellableReader(view, cancel),
                    size=len(view),
                    content_type="application/octet-stream",
                    retry=None,
                    checksum="crc32c",
                    timeout=120,
                )
            else:
                body = bytes(view)
                cancel.raise_if_cancelled()  # nothing is written after cancel
                blob.upload_from_string(
                    body, content_type="application/octet-stream", retry=None, checksum="crc32c", timeout=120
                )
        except Cancelled:
            raise
        except Exception as exc:
            if isinstance(exc.__context__, Cancelled):
                raise exc.__context__ from None
            raise self._translate(exc, "save", key) from exc

    def load(
        self, h: Handle, offset: int = 0, length: int | None = None, *, cancel: CancelToken = NEVER
    ) -> bytes:
        check_range(offset, length)
        key = self._key(h)
        cancel.raise_if_cancelled()
        if length == 0:
            self.stat(h, cancel=cancel)
            return b""
        blob = self._bucket.blob(key)
        ranged = offset > 0 or length is not None
        try:
            data: bytes = blob.download_as_bytes(
                start=offset if ranged else None,
                end=(offset + length - 1) if length is not None else None,
                checksum=None if ranged else "crc32c",
                retry=None,
                timeout=120,
            )
        except gexc.RequestRangeNotSatisfiable:
            return b""  # the object exists; the range starts past its end
        except Exception as exc:
            raise self._translate(exc, "read", key) from exc
        cancel.raise_if_cancelled()
        return data

    def stat(self, h: Handle, *, cancel: CancelToken = NEVER) -> FileInfo:
        key = self._key(h)
        cancel.raise_if_cancelled()
        try:
            blob = self._bucket.get_blob(key, retry=None, timeout=60)
        except Exception as exc:
            raise self._translate(exc, "inspect", key) from exc
        if blob is None:
            raise NotFound(f"{key} was not found in the bucket {self._bucket_name}.")
        return FileInfo(h.name, int(blob.size or 0))

    def list(self, type: FileType, *, cancel: CancelToken = NEVER) -> Iterator[FileInfo]:
        cancel.raise_if_cancelled()
        if type is FileType.CONFIG:
            try:
                info = self.stat(Handle.config(), cancel=cancel)
            except NotFound:
                return
            yield info
            return
        prefix = self._dir_prefix() + type.value + "/"
        try:
            pages = iter(
                self._client.list_blobs(self._bucket_name, prefix=prefix, retry=None, timeout=60).pages
            )
        except Exception as exc:
            raise self._translate(exc, "list", prefix) from exc
        while True:
            cancel.raise_if_cancelled()
            try:
                page = next(pages, None)
                blobs = list(page) if page is not None else []
            except Exception as exc:
                raise self._translate(exc, "list", prefix) from exc
            if page is None:
                return
            for blob in blobs:
                parts = blob.name[len(prefix) :].split("/")
                if type is FileType.PACK:
                    if len(parts) != 2 or len(parts[0]) != 2 or not parts[1]:
                        continue
                elif len(parts) != 1 or not parts[0]:
                    continue
                yield FileInfo(parts[-1], int(blob.size or 0))

    def remove(self, h: Handle, *, cancel: CancelToken = NEVER) -> None:
        key = self._key(h)
        cancel.raise_if_cancelled()
        try:
            self._bucket.blob(key).delete(retry=None, timeout=60)
        except Exception as exc:
            raise self._translate(exc, "delete", key) from exc

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:
            log.debug("closing the GCS client failed", exc_info=True)

    def free_space(self) -> int | None:
        """GCS does not report free space."""
        return None

    def __repr__(self) -> str:
        return f"GcsBackend({self._raw!r})"

    # -- internals -----------------------------------------------------------------------------

    def _dir_prefix(self) -> str:
        return f"{self._prefix}/" if self._prefix else ""

    def _key(self, h: Handle) -> str:
        name = h.name
        if h.type is FileType.CONFIG:
            if name != "config":
                raise ValueError(f"the config handle must be named 'config', not {name!r}")
        elif (
            not name
            or "/" in name
            or "\\" in name
            or name in (".", "..")
            or (h.type is FileType.PACK and len(name) < 2)
        ):
            raise ValueError(f"invalid repository file name {name!r}")
        return self._dir_prefix() + h.path()

    def _translate(
        self, exc: BaseException, action: str, what: str, *, bucket_level: bool = False
    ) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, google.auth.exceptions.RefreshError):
            return PermissionDenied(
                f"Google refused the service-account key {self._key_file or '(default credentials)'}.",
                hint="The key may have been deleted or disabled in the Google Cloud console; create a "
                "new JSON key for the service account and point GOOGLE_APPLICATION_CREDENTIALS at it.",
            )
        if isinstance(exc, google.auth.exceptions.TransportError | requests.exceptions.ConnectionError):
            return TransientStorageError(
                f"Cannot reach {self._endpoint}: {type(exc).__name__}.",
                hint="Check that this computer is online; Safekeep retries a few times before giving up.",
            )
        if isinstance(exc, requests.exceptions.Timeout):
            return TransientStorageError(
                f"{self._endpoint} did not answer in time while trying to {action} {what}."
            )
        if isinstance(exc, gexc.NotFound):
            if bucket_level or "bucket does not exist" in str(exc.message).lower():
                return InvalidLocation(
                    f"The bucket {self._bucket_name} does not exist in Google Cloud Storage.",
                    hint="Create it in the Google Cloud console (Cloud Storage → Buckets → Create), "
                    "and check the bucket name in the location.",
                )
            return NotFound(f"{what} was not found in the bucket {self._bucket_name}.")
        if isinstance(exc, gexc.Unauthorized):
            return PermissionDenied(
                f"Google Cloud Storage refused the credentials while trying to {action} {what}.",
                hint="Check GOOGLE_APPLICATION_CREDENTIALS points at a valid service-account key.",
            )
        if isinstance(exc, gexc.Forbidden):
            if "quota" in str(exc.message).lower():
                return QuotaExceeded(f"The Google Cloud project is over its quota: {exc.message}")
            return PermissionDenied(
                f"The service account may not {action} {what} in the bucket {self._bucket_name}.",
                hint="In the Google Cloud console give the service account the 'Storage Object Admin' "
                "role on the bucket (or 'Storage Object Creator' + 'Viewer' if it must not delete).",
            )
        if isinstance(exc, gexc.TooManyRequests | gexc.ServerError | gexc.RequestRangeNotSatisfiable):
            return TransientStorageError(
                f"Google Cloud Storage could not {action} {what} right now ({exc.code}).",
                hint="Safekeep will try again.",
            )
        if isinstance(exc, gexc.GoogleAPICallError):
            return GcsStorageError(f"Cannot {action} {what} in the bucket {self._bucket_name}: {exc.message}")
        if isinstance(exc, OSError | requests.exceptions.RequestException):
            return TransientStorageError(f"The connection failed while trying to {action} {what}: {exc}.")
        return GcsStorageError(f"Cannot {action} {what} in the bucket {self._bucket_name}: {exc}")


def _parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+)\s*([kKmMgG]i?[bB]?|[bB])?", text)
    if m is None:
        raise InvalidLocation(f"{text!r} is not a size.", hint="Write a number of bytes or e.g. 16MiB.")
    unit = (m.group(2) or "b").lower()[:1]
    return int(m.group(1)) * {"b": 1, "k": 1024, "m": MiB, "g": 1024 * MiB}[unit]


def _open(location: Location, settings: ProviderSettings) -> GcsBackend:
    return GcsBackend(location, settings)


register_provider("gs", _open, parser=_parse)
