"""A repository in an S3 bucket (AWS or any S3-compatible service), on boto3.

Location (restic's syntax, see :mod:`~safekeep.storage.providers.s3_presets`)::

    s3:https://host[:port]/bucket[/prefix]   s3:host/bucket/prefix (https implied)
    s3:s3.amazonaws.com/bucket/prefix        s3:http://127.0.0.1:9000/bucket (http only if written)

Objects are stored under ``prefix/`` in restic's layout (``config``, ``data/<2 hex>/<id>``,
``index/<id>``, ...), so ``restic -r s3:...`` reads the same repository.

Credentials (restic's names): ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, optional
``AWS_SESSION_TOKEN``; ``AWS_PROFILE`` selects a profile of the AWS config files when no key is
given. Region: option ``s3.region``, else ``AWS_DEFAULT_REGION``, else what the endpoint host
implies (``s3.eu-central-1.wasabisys.com``), else ``us-east-1``.

Options (``-o name=value``):

- ``s3.region``; ``s3.bucket-lookup=auto|dns|path`` — ``auto`` is virtual-hosted (dns) addressing
  on AWS and path-style everywhere else;
- ``s3.connections`` (default 5);
- ``s3.storage-class`` (e.g. ``STANDARD_IA``, ``GLACIER_IR``);
- ``s3.sse=AES256|aws:kms`` and ``s3.sse-kms-key-id``;
- ``s3.object-lock-days=N`` and ``s3.object-lock-mode=GOVERNANCE|COMPLIANCE`` (default
  GOVERNANCE): every uploaded object is locked for N days. The bucket must have Object Lock
  enabled, otherwise saves are refused; see :func:`object_lock_notes` for what this means for
  pruning;
- ``s3.multipart-threshold`` (default 32MiB) and ``s3.part-size`` (default 16MiB, at least 5MiB):
  larger files are sent as an explicit multipart upload, one part after another, checking for
  cancellation between parts; a failed or cancelled multipart upload is aborted so no parts are
  left behind (and billed);
- ``s3.create-bucket=true`` lets :meth:`S3Backend.create` create a missing bucket (with Object
  Lock enabled when ``s3.object-lock-days`` is set). Without it a missing bucket is an error.

Every upload carries a Content-MD5 header (integrity, and S3 requires one for Object Lock).
Newer botocore adds CRC checksums with chunked encoding by default, which many S3-compatible
services reject; the provider asks for checksums only where the operation requires them.

Errors: wrong keys → ``PermissionDenied`` ("the access key or secret key is wrong"); a key
without the needed permission → ``PermissionDenied``; a missing bucket → ``InvalidLocation``;
a locked object → ``PermissionDenied`` naming the date the lock ends; a host that refuses the
connection, times out or cannot be resolved → ``TransientStorageError`` "cannot reach <endpoint>"
(the retry wrapper retries, then shows it); 5xx, ``SlowDown`` and 429 → transient, honouring
``Retry-After``. botocore's own retries are switched off: only the retry wrapper retries.
``free_space`` is not available on S3 (None).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.errors import Cancelled
from safekeep.common.secret import Secret
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
from safekeep.storage.providers.s3_presets import AWS_DEFAULT_REGION, S3Address, guess_region, parse_address
from safekeep.storage.registry import Location, ProviderSettings, register_provider

log = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_MULTIPART_THRESHOLD = 32 * MiB
DEFAULT_PART_SIZE = 16 * MiB
MIN_PART_SIZE = 5 * MiB
"""S3's smallest part (except the last)."""
MAX_PARTS = 10_000
DEFAULT_CONNECTIONS = 5
_READ_CHUNK = 1 * MiB

_WRONG_KEY_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidSecurity",
}
_TRANSIENT_CODES = {
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "OperationAborted",
}
_QUOTA_CODES = {"QuotaExceeded", "StorageQuotaExceeded", "AccountProblem", "TooManyBuckets"}


class S3StorageError(PermanentStorageError):
    """An S3 failure that fits none of the specific storage errors."""


def object_lock_notes(days: int | None = None) -> str:
    """What Object Lock means for this repository, in plain words (shown by the wizard and CLI)."""
    period = f"{days} days" if days else "the retention period you chose"
    return (
        f"Object Lock protects every file Safekeep uploads for {period}: until then nobody — not "
        "you, not Safekeep, not ransomware that steals your keys — can delete or overwrite it "
        "(in COMPLIANCE mode not even the account owner; in GOVERNANCE mode only a user with the "
        "special bypass permission).\n"
        "What this means for cleaning up old backups:\n"
        "- 'forget' still removes snapshots from the list once their lock has ended, but 'prune' "
        "cannot delete data files that are still locked. It leaves them in place and they keep "
        "costing storage until their lock ends; a later prune removes them.\n"
        "- Keep the lock period shorter than your retention policy (for example lock 30 days "
        "and keep daily snapshots for 60 days), otherwise prune can never free space and the "
        "bucket only grows.\n"
        "- Repository lock files are small and are locked too; they expire with the rest.\n"
        "- Storage is billed for every locked file, including old versions kept by bucket "
        "versioning, until the lock ends.\n"
        "- Object Lock must be switched on when the bucket is created (most services cannot add "
        "it later), and it turns on versioning for the bucket."
    )


def _size_option(settings: ProviderSettings, name: str, default: int) -> int:
    text = settings.option(name).strip()
    if not text:
        return default
    m = re.fullmatch(r"(\d+)\s*([kKmMgG]i?[bB]?|[bB])?", text)
    if m is None:
        raise InvalidLocation(
            f"The option {name}={text!r} is not a size.", hint="Write a number of bytes or e.g. 16MiB."
        )
    unit = (m.group(2) or "b").lower()[:1]
    return int(m.group(1)) * {"b": 1, "k": 1024, "m": MiB, "g": 1024 * MiB}[unit]


def _int_option(settings: ProviderSettings, name: str, default: int | None) -> int | None:
    text = settings.option(name).strip()
    if not text:
        return default
    if not text.isdigit():
        raise InvalidLocation(f"The option {name}={text!r} must be a whole number.")
    return int(text)


class S3Backend:
    """A repository at an S3 bucket and prefix. See the module docstring."""

    def __init__(self, address: S3Address, settings: ProviderSettings, *, raw: str = "") -> None:
        self._address = address
        self._raw = raw or f"s3:{address.endpoint}/{address.bucket}/{address.prefix}".rstrip("/")
        self._prefix = address.prefix.strip("/")
        self._bucket = address.bucket
        self._endpoint = address.endpoint
        self._region = (
            settings.option("s3.region").strip()
            or settings.getenv("AWS_DEFAULT_REGION").strip()
            or guess_region(address.host)
            or AWS_DEFAULT_REGION
        )
        lookup = settings.option("s3.bucket-lookup", "auto").strip().lower() or "auto"
        if lookup not in ("auto", "dns", "path"):
            raise InvalidLocation(
                f"The option s3.bucket-lookup={lookup!r} is not known.", hint="Use auto, dns or path."
            )
        if lookup == "auto":
            lookup = "dns" if address.is_aws else "path"
        self._connections = _int_option(settings, "s3.connections", DEFAULT_CONNECTIONS) or 1
        self._threshold = _size_option(settings, "s3.multipart-threshold", DEFAULT_MULTIPART_THRESHOLD)
        self._part_size = _size_option(settings, "s3.part-size", DEFAULT_PART_SIZE)
        if self._part_size < MIN_PART_SIZE:
            raise InvalidLocation(
                f"The option s3.part-size must be at least 5MiB (S3's smallest part), not {self._part_size}."
            )
        self._threshold = max(self._threshold, 1)
        self._storage_class = settings.option("s3.storage-class").strip()
        self._sse = settings.option("s3.sse").strip()
        if self._sse and self._sse not in ("AES256", "aws:kms"):
            raise InvalidLocation(
                f"The option s3.sse={self._sse!r} is not known.", hint="Use AES256 or aws:kms."
            )
        self._sse_kms_key = settings.option("s3.sse-kms-key-id").strip()
        if self._sse_kms_key and self._sse != "aws:kms":
            raise InvalidLocation("The option s3.sse-kms-key-id needs s3.sse=aws:kms.")
        self._lock_days = _int_option(settings, "s3.object-lock-days", None)
        if self._lock_days is not None and self._lock_days < 1:
            raise InvalidLocation("The option s3.object-lock-days must be at least 1.")
        self._lock_mode = settings.option("s3.object-lock-mode", "GOVERNANCE").strip().upper() or "GOVERNANCE"
        if self._lock_mode not in ("GOVERNANCE", "COMPLIANCE"):
            raise InvalidLocation(
                f"The option s3.object-lock-mode={self._lock_mode!r} is not known.",
                hint="Use GOVERNANCE or COMPLIANCE.",
            )
        self._create_bucket = settings.option("s3.create-bucket").strip().lower() in ("1", "true", "yes")
        self._lock_checked = False
        self._lock_guard = threading.Lock()
        self._inflight_guard = threading.Lock()
        self._inflight: dict[str, list[Any]] = {}

        access_key = settings.getenv("AWS_ACCESS_KEY_ID").strip()
        secret_key = Secret(settings.getenv("AWS_SECRET_ACCESS_KEY").strip())
        token = settings.getenv("AWS_SESSION_TOKEN").strip()
        if access_key and not secret_key.reveal():
            raise PermissionDenied(
                "AWS_ACCESS_KEY_ID is set but the secret key (AWS_SECRET_ACCESS_KEY) is missing.",
                hint="Give both the access key and its secret key.",
            )
        if access_key:
            session = boto3.session.Session(
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key.reveal(),
                aws_session_token=token or None,
                region_name=self._region,
            )
        else:  # the AWS config files / instance role, as restic does
            session = boto3.session.Session(
                profile_name=settings.getenv("AWS_PROFILE").strip() or None, region_name=self._region
            )
        config = Config(
            region_name=self._region,
            signature_version="s3v4",
            s3={"addressing_style": "virtual" if lookup == "dns" else "path"},
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=120,
            max_pool_connections=max(self._connections, 10),
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        endpoint_url = (
            None if address.host.lower() == "s3.amazonaws.com" and address.secure else self._endpoint
        )
        try:
            self._client: Any = session.client("s3", endpoint_url=endpoint_url, config=config)
        except botocore.exceptions.BotoCoreError as exc:
            raise InvalidLocation(f"Cannot use the S3 location {self._raw}: {exc}") from exc
        self._properties = Properties(
            location=self._raw,
            connections=self._connections,
            supports_ranges=True,
            max_object_size=5 * 1024 * 1024 * MiB,
        )

    # -- Backend -------------------------------------------------------------------------------

    @property
    def properties(self) -> Properties:
        return self._properties

    @property
    def client(self) -> Any:
        """The boto3 S3 client (tests hook its events)."""
        return self._client

    @property
    def bucket(self) -> str:
        return self._bucket

    def key(self, h: Handle) -> str:
        """The object key of a repository file."""
        return self._key(h)

    def create(self, *, cancel: CancelToken = NEVER) -> None:
        """Check the bucket exists (creating it only with ``s3.create-bucket=true``).

        S3 has no folders, so there is nothing else to prepare. With ``s3.object-lock-days`` the
        bucket's Object Lock configuration is checked too.
        """
        cancel.raise_if_cancelled()
        try:
            self._client.list_objects_v2(Bucket=self._bucket, Prefix=self._dir_prefix(), MaxKeys=1)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) != "NoSuchBucket" or not self._create_bucket:
                raise self._translate(exc, "open the bucket", self._bucket) from exc
            self._make_bucket(cancel)
        except Exception as exc:
            raise self._translate(exc, "open the bucket", self._bucket) from exc
        if self._lock_days is not None:
            self._ensure_lock_enabled()

    def save(self, h: Handle, data: bytes | bytearray | memoryview, *, cancel: CancelToken = NEVER) -> None:
        key = self._key(h)
        cancel.raise_if_cancelled()
        with self._key_lock(key):  # one upload of a name at a time from this process
            self._save(key, memoryview(data).cast("B"), cancel)

    def _save(self, key: str, view: memoryview, cancel: CancelToken) -> None:
        if self._lock_days is not None:
            self._ensure_lock_enabled()
        extra = self._put_args()
        if len(view) >= self._threshold and len(view) > MIN_PART_SIZE:
            self._multipart(key, view, extra, cancel)
            return
        body = bytes(view)
        cancel.raise_if_cancelled()  # nothing is written after cancel
        try:
            self._client.put_object(Bucket=self._bucket, Key=key, Body=body, ContentMD5=_md5(body), **extra)
        except Exception as exc:
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
        args: dict[str, Any] = {"Bucket": self._bucket, "Key": key}
        if (byte_range := http_range(offset, length)) is not None:
            args["Range"] = byte_range
        try:
            resp = self._client.get_object(**args)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) == "InvalidRange":  # the object exists; the range starts past its end
                return b""
            raise self._translate(exc, "read", key) from exc
        except Exception as exc:
            raise self._translate(exc, "read", key) from exc
        body = resp["Body"]
        expected = int(resp.get("ContentLength", -1))
        parts: list[bytes] = []
        got = 0
        try:
            while True:
                cancel.raise_if_cancelled()
                chunk = body.read(_READ_CHUNK)
                if not chunk:
                    break
                parts.append(chunk)
                got += len(chunk)
        except Cancelled:
            raise
        except Exception as exc:
            raise self._translate(exc, "read", key) from exc
        finally:
            body.close()
        if expected >= 0 and got != expected:
            raise TransientStorageError(
                f"Reading {key} from {self._endpoint} stopped early ({got} of {expected} bytes).",
                hint="The connection was interrupted; Safekeep will try again.",
            )
        return b"".join(parts)

    def stat(self, h: Handle, *, cancel: CancelToken = NEVER) -> FileInfo:
        key = self._key(h)
        cancel.raise_if_cancelled()
        head = self._head(key, "inspect")
        return FileInfo(h.name, int(head["ContentLength"]))

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
        paginator = self._client.get_paginator("list_objects_v2")
        pages = iter(paginator.paginate(Bucket=self._bucket, Prefix=prefix))
        while True:
            cancel.raise_if_cancelled()
            try:
                page = next(pages, None)
            except Exception as exc:
                raise self._translate(exc, "list", prefix) from exc
            if page is None:
                return
            for obj in page.get("Contents", ()):
                rel = obj["Key"][len(prefix) :]
                parts = rel.split("/")
                if type is FileType.PACK:
                    if len(parts) != 2 or not parts[1] or len(parts[0]) != 2:
                        continue
                elif len(parts) != 1 or not parts[0]:
                    continue
                yield FileInfo(parts[-1], int(obj["Size"]))

    def remove(self, h: Handle, *, cancel: CancelToken = NEVER) -> None:
        key = self._key(h)
        cancel.raise_if_cancelled()
        head = self._head(key, "delete")  # NotFound for a missing file (S3 itself would not say)
        self._refuse_if_locked(key, head)
        cancel.raise_if_cancelled()
        try:
            self._client.delete_object(Bucket=self._bucket, Key=key)
        except Exception as exc:
            raise self._translate(exc, "delete", key) from exc

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # closing must not fail
            log.debug("closing the S3 client failed", exc_info=True)

    def free_space(self) -> int | None:
        """S3 does not report free space."""
        return None

    def __repr__(self) -> str:
        return f"S3Backend({self._raw!r})"

    # -- internals -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _key_lock(self, key: str) -> Iterator[None]:
        with self._inflight_guard:
            entry = self._inflight.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        lock: threading.Lock = entry[0]
        try:
            with lock:
                yield
        finally:
            with self._inflight_guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._inflight[key]

    def _dir_prefix(self) -> str:
        return f"{self._prefix}/" if self._prefix else ""

    def _key(self, h: Handle) -> str:
        return self._dir_prefix() + h.checked_path()

    def _put_args(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self._storage_class:
            extra["StorageClass"] = self._storage_class
        if self._sse:
            extra["ServerSideEncryption"] = self._sse
            if self._sse_kms_key:
                extra["SSEKMSKeyId"] = self._sse_kms_key
        if self._lock_days is not None:
            extra["ObjectLockMode"] = self._lock_mode
            extra["ObjectLockRetainUntilDate"] = dt.datetime.now(dt.UTC) + dt.timedelta(days=self._lock_days)
        return extra

    def _multipart(self, key: str, view: memoryview, extra: dict[str, Any], cancel: CancelToken) -> None:
        part_size = max(self._part_size, -(-len(view) // MAX_PARTS))
        cancel.raise_if_cancelled()
        try:
            upload_id = self._client.create_multipart_upload(Bucket=self._bucket, Key=key, **extra)[
                "UploadId"
            ]
        except Exception as exc:
            raise self._translate(exc, "start uploading", key) from exc
        try:
            parts = []
            for number, start in enumerate(range(0, len(view), part_size), start=1):
                cancel.raise_if_cancelled()
                body = bytes(view[start : start + part_size])
                resp = self._client.upload_part(
                    Bucket=self._bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                    ContentMD5=_md5(body),
                )
                parts.append({"PartNumber": number, "ETag": resp["ETag"]})
            cancel.raise_if_cancelled()  # the commit point: nothing becomes visible after cancel
            self._client.complete_multipart_upload(
                Bucket=self._bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException as exc:
            self._abort(key, upload_id)
            if isinstance(exc, Cancelled | StorageError) or not isinstance(exc, Exception):
                raise
            raise self._translate(exc, "save", key) from exc
        if "ObjectLockRetainUntilDate" in extra:
            self._confirm_retention(key, extra)

    def _confirm_retention(self, key: str, extra: dict[str, Any]) -> None:
        """Make sure a multipart upload got its lock: some S3-compatible servers ignore the lock
        headers of CreateMultipartUpload, so a missing retention is set with PutObjectRetention."""
        head = self._head(key, "check the Object Lock of")
        if head.get("ObjectLockRetainUntilDate") is not None:
            return
        log.info("%s was stored without its Object Lock; setting the retention now", key)
        try:
            self._client.put_object_retention(
                Bucket=self._bucket,
                Key=key,
                Retention={
                    "Mode": extra["ObjectLockMode"],
                    "RetainUntilDate": extra["ObjectLockRetainUntilDate"],
                },
            )
        except Exception as exc:
            raise self._translate(exc, "set the Object Lock of", key) from exc

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
        except Exception as exc:
            log.warning(
                "could not abort the unfinished upload of %s (%s); a lifecycle rule that removes "
                "incomplete multipart uploads cleans it up",
                key,
                exc,
            )

    def _head(self, key: str, action: str) -> dict[str, Any]:
        try:
            head: dict[str, Any] = self._client.head_object(Bucket=self._bucket, Key=key)
        except Exception as exc:
            raise self._translate(exc, action, key) from exc
        return head

    def _refuse_if_locked(self, key: str, head: dict[str, Any]) -> None:
        until = head.get("ObjectLockRetainUntilDate")
        now = dt.datetime.now(dt.UTC)
        if isinstance(until, dt.datetime) and until.astimezone(dt.UTC) > now:
            raise PermissionDenied(
                f"{key} is protected by Object Lock ({head.get('ObjectLockMode', 'retention')}) "
                f"until {until.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC and cannot be deleted before then.",
                hint="This is the ransomware protection you chose. Prune will remove the file "
                "after its lock ends; keep the lock period shorter than your retention policy.",
            )
        if head.get("ObjectLockLegalHoldStatus") == "ON":
            raise PermissionDenied(
                f"{key} is under an Object Lock legal hold and cannot be deleted.",
                hint="Remove the legal hold in your storage provider's console if it is no longer needed.",
            )

    def _ensure_lock_enabled(self) -> None:
        with self._lock_guard:
            if self._lock_checked:
                return
            try:
                conf = self._client.get_object_lock_configuration(Bucket=self._bucket)
                enabled = conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
            except botocore.exceptions.ClientError as exc:
                if _code(exc) not in (
                    "ObjectLockConfigurationNotFoundError",
                    "ObjectLockConfigurationNotFound",
                ):
                    raise self._translate(exc, "read the Object Lock settings of", self._bucket) from exc
                enabled = False
            except Exception as exc:
                raise self._translate(exc, "read the Object Lock settings of", self._bucket) from exc
            if not enabled:
                raise InvalidLocation(
                    f"The bucket {self._bucket} does not have Object Lock enabled, so the "
                    f"{self._lock_days}-day protection you chose (s3.object-lock-days) cannot be applied. "
                    "Nothing was uploaded.",
                    hint="Object Lock can only be switched on when a bucket is created: create a new "
                    "bucket with Object Lock enabled in your provider's console, or remove the "
                    "s3.object-lock-days option to back up without it.",
                )
            self._lock_checked = True

    def _make_bucket(self, cancel: CancelToken) -> None:
        cancel.raise_if_cancelled()
        args: dict[str, Any] = {"Bucket": self._bucket}
        if self._region not in (AWS_DEFAULT_REGION, "auto", ""):
            args["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
        if self._lock_days is not None:
            args["ObjectLockEnabledForBucket"] = True
        log.info("creating bucket %s at %s", self._bucket, self._endpoint)
        try:
            self._client.create_bucket(**args)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) != "BucketAlreadyOwnedByYou":
                raise self._translate(exc, "create the bucket", self._bucket) from exc

    def _translate(self, exc: BaseException, action: str, what: str) -> StorageError:
        """An SDK exception as a typed storage error with a message for a person."""
        if isinstance(exc, StorageError):
            return exc
        where = self._endpoint
        if isinstance(exc, botocore.exceptions.ClientError):
            return self._translate_client_error(exc, action, what)
        if isinstance(
            exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
        ):
            return PermissionDenied(
                f"No S3 access key was given for {self._raw}.",
                hint="Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or save the keys with the "
                "destination in the app).",
            )
        if isinstance(exc, botocore.exceptions.SSLError):
            return InvalidLocation(
                f"A secure connection to {where} failed: {exc.kwargs.get('error', exc)}.",
                hint="Check the address. If the server only speaks plain HTTP (a test server on "
                "your network), write the location as s3:http://host:port/bucket.",
            )
        if isinstance(exc, botocore.exceptions.EndpointConnectionError):
            cause = str(exc.kwargs.get("error", ""))
            if "Name or service not known" in cause or "NameResolution" in cause or "getaddrinfo" in cause:
                why = f"the name {self._address.host} could not be found"
            elif "refused" in cause.lower():
                why = "the connection was refused"
            else:
                why = "there was no answer"
            return TransientStorageError(
                f"Cannot reach {where}: {why}.",
                hint="Check the server address and port in the location, and that this computer is "
                "online. Safekeep retries a few times before giving up.",
            )
        if isinstance(
            exc,
            botocore.exceptions.ConnectTimeoutError
            | botocore.exceptions.ReadTimeoutError
            | botocore.exceptions.ConnectionClosedError
            | botocore.exceptions.ConnectionError
            | botocore.exceptions.HTTPClientError
            | botocore.exceptions.IncompleteReadError
            | botocore.exceptions.ResponseStreamingError,
        ):
            return TransientStorageError(
                f"The connection to {where} failed while trying to {action} {what}: {exc}.",
                hint="Safekeep will try again; if this keeps happening check the network.",
            )
        if isinstance(exc, botocore.exceptions.ParamValidationError):
            return InvalidLocation(f"Cannot {action} {what} at {self._raw}: {exc}.")
        if isinstance(exc, OSError):
            return TransientStorageError(
                f"The connection to {where} failed while trying to {action} {what}: {exc}.",
                hint="Safekeep will try again; if this keeps happening check the network.",
            )
        return S3StorageError(f"Cannot {action} {what} at {where}: {exc}.")

    def _translate_client_error(
        self, exc: botocore.exceptions.ClientError, action: str, what: str
    ) -> StorageError:
        code = _code(exc)
        meta = exc.response.get("ResponseMetadata", {})
        status = int(meta.get("HTTPStatusCode", 0) or 0)
        headers = meta.get("HTTPHeaders", {}) or {}
        message = exc.response.get("Error", {}).get("Message", "") or code
        where = self._endpoint
        if code in ("NoSuchBucket",):
            return InvalidLocation(
                f"The bucket {self._bucket} does not exist at {where}.",
                hint="Create it in your storage provider's console (or let Safekeep create it with "
                "-o s3.create-bucket=true), and check the bucket name in the location.",
            )
        if code in ("NoSuchKey", "NotFound", "404") or status == 404:
            return NotFound(f"{what} was not found in the bucket {self._bucket}.")
        if code in _WRONG_KEY_CODES:
            return PermissionDenied(
                f"{where} refused the S3 keys: the access key or secret key is wrong ({code}).",
                hint="Copy the access key (AWS_ACCESS_KEY_ID) and the secret key "
                "(AWS_SECRET_ACCESS_KEY) again from your provider's console; check for extra spaces.",
            )
        if code == "AuthorizationHeaderMalformed" or code in ("PermanentRedirect", "301") or status == 301:
            region = headers.get("x-amz-bucket-region", "")
            return InvalidLocation(
                f"The bucket {self._bucket} is in another region than {self._region}"
                + (f" (it is in {region})" if region else "")
                + ".",
                hint=f"Use the endpoint of the bucket's region or set -o s3.region={region or '<region>'}.",
            )
        if code in ("AccessDenied", "AllAccessDisabled", "403", "Forbidden") or status == 403:
            if "object lock" in message.lower() or "retention" in message.lower():
                return PermissionDenied(
                    f"{what} is protected by Object Lock and cannot be changed or deleted yet.",
                    hint="Prune removes it after its lock period ends.",
                )
            return PermissionDenied(
                f"The S3 key may not {action} {what} in the bucket {self._bucket} (access denied).",
                hint="Give the key the permissions Safekeep needs: 'safekeep storage policy "
                f"{self._raw}' prints a policy to paste. If you just created the key, check that "
                "the access key and secret key belong together.",
            )
        if code == "InvalidObjectState" or (code == "InvalidRequest" and "lock" in message.lower()):
            return S3StorageError(
                f"Cannot {action} {what} at {where}: {message}.",
                hint="Check the storage class and Object Lock settings of the bucket.",
            )
        if code in _QUOTA_CODES or status == 507:
            return QuotaExceeded(
                f"The bucket {self._bucket} at {where} is full or over its quota ({message}).",
                hint="Raise the quota or free space in your provider's console, then run the backup again.",
            )
        if code in _TRANSIENT_CODES or status in (408, 429) or status >= 500:
            return TransientStorageError(
                f"{where} could not {action} {what} right now ({code or status}).",
                hint="The service is busy or had a hiccup; Safekeep will try again.",
                retry_after=_retry_after(headers.get("retry-after")),
            )
        return S3StorageError(f"Cannot {action} {what} at {where}: {message} ({code}).")


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode("ascii")


def _parse(raw: str, rest: str) -> Location:
    address = parse_address(raw, rest)
    return Location(
        scheme="s3", path=address.prefix, raw=raw, host=address.host, port=address.port, bucket=address.bucket
    )


def _open(location: Location, settings: ProviderSettings) -> S3Backend:
    raw = location.raw
    rest = raw.split(":", 1)[1] if raw.lower().startswith("s3:") else raw
    return S3Backend(parse_address(raw, rest), settings, raw=raw)


register_provider("s3", _open, parser=_parse)
