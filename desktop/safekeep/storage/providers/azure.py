"""A repository in Azure Blob Storage (or Azurite), on Microsoft's ``azure-storage-blob`` SDK.

Location syntax (restic's)::

    azure:CONTAINER:/PREFIX          e.g. azure:backups:/office
    azure:CONTAINER:                 (the repository at the container's top)

Credentials (restic's environment variable names): ``AZURE_ACCOUNT_NAME`` plus either
``AZURE_ACCOUNT_KEY`` (the storage account's access key) or ``AZURE_ACCOUNT_SAS`` (a shared access
signature token, with or without the leading ``?``). ``AZURE_ENDPOINT_SUFFIX`` changes the
endpoint suffix (default ``core.windows.net``; e.g. ``core.chinacloudapi.cn``).

Options (``-o`` style):

- ``azure.endpoint`` — the account URL, replacing ``https://ACCOUNT.blob.SUFFIX``; for Azurite
  ``http://127.0.0.1:PORT/devstoreaccount1``.
- ``azure.access-tier=Hot|Cool|Cold`` — the tier uploaded blobs get. ``Archive`` is refused:
  archived blobs cannot be read until "rehydrated" (hours, per blob), and every backup, check
  and restore must read the repository's index and snapshots.
- ``azure.block-size`` (bytes, default 16 MiB): files larger than this are uploaded as blocks
  (``stage_block`` then ``commit_block_list``), the cancel token checked between blocks. Until
  the block list is committed nothing is visible; uncommitted blocks are discarded by Azure.
- ``azure.connections`` (default 5), ``azure.page-size`` (list page size, default 5000).

Files are blobs named ``PREFIX/config``, ``PREFIX/data/<2 hex>/<id>``, ... (restic's layout).
Uploads never overwrite: they are conditional on the blob not existing (``If-None-Match: *``);
when it exists with identical bytes the save is a no-op, otherwise ``AlreadyExists``.

The SDK's own retries are turned off: Safekeep's retry wrapper is the one place that retries.
Errors: ``AuthenticationFailed`` → wrong account key or SAS; ``AuthorizationPermissionMismatch``
and other 403s → no permission; ``ContainerNotFound`` → the container is named in the message;
``ServerBusy``, 500/503, timeouts and resets → transient.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobBlock, BlobServiceClient, StandardBlobTier

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.secret import Secret
from safekeep.storage.base import Backend, FileInfo, FileType, Handle, Properties, check_range
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

DEFAULT_BLOCK_SIZE = 16 << 20
DEFAULT_PAGE_SIZE = 5000
TIERS = {"hot": StandardBlobTier.HOT, "cool": StandardBlobTier.COOL, "cold": StandardBlobTier.COLD}
_TRANSIENT_CODES = {"ServerBusy", "InternalError", "OperationTimedOut"}


class AzureStorageError(PermanentStorageError):
    """An Azure answer that fits none of the specific storage errors."""


@dataclass(frozen=True, slots=True)
class AzureConfig:
    account_url: str
    account: str
    container: str
    prefix: str
    key: Secret | None = None
    sas: Secret | None = None
    tier: str | None = None
    block_size: int = DEFAULT_BLOCK_SIZE
    connections: int = 5
    page_size: int = DEFAULT_PAGE_SIZE


class AzureBackend:
    """A restic-layout repository under ``prefix`` in one container. See the module docstring."""

    def __init__(self, config: AzureConfig) -> None:
        self._cfg = config
        credential: Any
        if config.key is not None:
            credential = AzureNamedKeyCredential(config.account, config.key.reveal())
        elif config.sas is not None:
            credential = AzureSasCredential(config.sas.reveal().lstrip("?"))
        else:
            credential = None
        self._service = BlobServiceClient(
            config.account_url,
            credential=credential,
            retry_total=0,
            connection_timeout=30,
            read_timeout=120,
            max_single_put_size=config.block_size,
            max_block_size=config.block_size,
        )
        self._container = self._service.get_container_client(config.container)
        self._tier = TIERS[config.tier] if config.tier else None
        where = (
            f"azure:{config.container}:/{config.prefix}".rstrip("/")
            if config.prefix
            else (f"azure:{config.container}:")
        )
        self._properties = Properties(location=where, connections=config.connections, supports_ranges=True)

    def __repr__(self) -> str:
        return f"AzureBackend(account={self._cfg.account!r}, container={self._cfg.container!r})"

    @property
    def properties(self) -> Properties:
        return self._properties

    # -- Backend -------------------------------------------------------------------------------

    def create(self, *, cancel: CancelToken = NEVER) -> None:
        cancel.raise_if_cancelled()
        try:
            self._container.create_container()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise self._map(exc, "create the container") from exc

    def save(self, h: Handle, data: bytes | bytearray | memoryview, *, cancel: CancelToken = NEVER) -> None:
        name = self._name(h)
        cancel.raise_if_cancelled()
        view = memoryview(data).cast("B")
        blob = self._container.get_blob_client(name)
        try:
            if len(view) <= self._cfg.block_size:
                cancel.raise_if_cancelled()
                blob.upload_blob(bytes(view), overwrite=False, standard_blob_tier=self._tier)
            else:
                self._upload_blocks(blob, view, cancel)
        except ResourceExistsError:
            self._same_or_raise(h, view, cancel)
        except HttpResponseError as exc:
            if _code(exc) in ("BlobAlreadyExists", "ConditionNotMet") or exc.status_code == 409:
                self._same_or_raise(h, view, cancel)
                return
            raise self._map(exc, f"save {h.path()}") from exc
        except AzureError as exc:
            raise self._map(exc, f"save {h.path()}") from exc

    def _upload_blocks(self, blob: Any, view: memoryview, cancel: CancelToken) -> None:
        size = self._cfg.block_size
        run = secrets.token_hex(8)
        blocks: list[BlobBlock] = []
        for i, start in enumerate(range(0, len(view), size)):
            cancel.raise_if_cancelled()
            block_id = base64.b64encode(f"{run}-{i:08d}".encode()).decode()
            blob.stage_block(block_id, bytes(view[start : start + size]))
            blocks.append(BlobBlock(block_id=block_id))
        cancel.raise_if_cancelled()  # the commit is what makes the file visible
        blob.commit_block_list(blocks, standard_blob_tier=self._tier, if_none_match="*")

    def _same_or_raise(self, h: Handle, view: memoryview, cancel: CancelToken) -> None:
        if self.load(h, cancel=cancel) != view:
            raise AlreadyExists(
                f"{h.path()} already exists in Azure with different content.",
                hint="Repository files are never overwritten; the repository may be in use by "
                "another program or damaged.",
            )

    def load(
        self, h: Handle, offset: int = 0, length: int | None = None, *, cancel: CancelToken = NEVER
    ) -> bytes:
        check_range(offset, length)
        name = self._name(h)
        cancel.raise_if_cancelled()
        if length == 0:
            self.stat(h, cancel=cancel)
            return b""
        blob = self._container.get_blob_client(name)
        try:
            if offset or length is not None:
                stream = blob.download_blob(offset=offset, length=length)
            else:
                stream = blob.download_blob()
            parts: list[bytes] = []
            for chunk in stream.chunks():
                cancel.raise_if_cancelled()
                parts.append(chunk)
            return b"".join(parts)
        except HttpResponseError as exc:
            if exc.status_code == 416 or _code(exc) == "InvalidRange":
                self.stat(h, cancel=cancel)  # beyond the end of an existing file: nothing
                return b""
            raise self._map(exc, f"read {h.path()}") from exc
        except AzureError as exc:
            raise self._map(exc, f"read {h.path()}") from exc

    def stat(self, h: Handle, *, cancel: CancelToken = NEVER) -> FileInfo:
        name = self._name(h)
        cancel.raise_if_cancelled()
        try:
            props = self._container.get_blob_client(name).get_blob_properties()
        except AzureError as exc:
            raise self._map(exc, f"inspect {h.path()}") from exc
        return FileInfo(h.name, int(props.size))

    def list(self, type: FileType, *, cancel: CancelToken = NEVER) -> Iterator[FileInfo]:
        cancel.raise_if_cancelled()
        if type is FileType.CONFIG:
            try:
                yield self.stat(Handle.config(), cancel=cancel)
            except NotFound:
                return
            return
        prefix = self._base() + type.value + "/"
        try:
            pages = self._container.list_blobs(
                name_starts_with=prefix, results_per_page=self._cfg.page_size
            ).by_page()
            for page in pages:
                cancel.raise_if_cancelled()
                for item in page:
                    rest = item.name[len(prefix) :]
                    if type is FileType.PACK:
                        shard, _, name = rest.partition("/")
                        if len(shard) != 2 or not name or "/" in name:
                            continue
                    else:
                        name = rest
                        if "/" in name:
                            continue
                    if name and not name.startswith("."):
                        yield FileInfo(name, int(item.size))
        except ResourceNotFoundError as exc:
            if _code(exc) == "ContainerNotFound":
                return  # like a never-created folder: nothing listed
            raise self._map(exc, f"list {type.value}") from exc
        except AzureError as exc:
            raise self._map(exc, f"list {type.value}") from exc

    def remove(self, h: Handle, *, cancel: CancelToken = NEVER) -> None:
        name = self._name(h)
        cancel.raise_if_cancelled()
        try:
            self._container.delete_blob(name)
        except AzureError as exc:
            raise self._map(exc, f"delete {h.path()}") from exc

    def close(self) -> None:
        self._service.close()

    # -- extras for the probe -----------------------------------------------------------------------

    def server_time(self) -> datetime | None:
        """Azure's clock, from the ``Date`` header of a container request."""
        seen: list[str] = []

        def hook(response: Any) -> None:
            value = response.http_response.headers.get("Date")
            if value:
                seen.append(str(value))

        try:
            self._container.get_container_properties(raw_response_hook=hook)
        except AzureError as exc:
            raise self._map(exc, "read the container's properties") from exc
        date = seen[-1] if seen else None
        if date:
            try:
                return parsedate_to_datetime(date)
            except (TypeError, ValueError):
                return None
        return None

    # -- internals ---------------------------------------------------------------------------------

    def _base(self) -> str:
        return f"{self._cfg.prefix}/" if self._cfg.prefix else ""

    def _name(self, h: Handle) -> str:
        return self._base() + h.checked_path()

    def _map(self, exc: AzureError, action: str) -> StorageError:
        """Translate an SDK exception into a typed storage error with a message for a person."""
        account, container = self._cfg.account, self._cfg.container
        code = _code(exc)
        status = getattr(exc, "status_code", None)
        if isinstance(exc, (ServiceRequestError, ServiceResponseError, IncompleteReadError)):
            return TransientStorageError(
                f"Cannot reach Azure Blob Storage at {self._cfg.account_url} to {action}.",
                hint="Check the network and the endpoint (azure.endpoint / AZURE_ENDPOINT_SUFFIX); "
                "Safekeep will try again.",
            )
        text = str(getattr(exc, "message", "") or exc)
        if (
            code == "AuthenticationFailed"
            or "failed to authenticate" in text  # Azurite says AuthorizationFailure for a bad key
            or (isinstance(exc, ClientAuthenticationError) and not code and status in (None, 401))
        ):
            what = (
                "shared access signature (AZURE_ACCOUNT_SAS)"
                if self._cfg.sas
                else ("account key (AZURE_ACCOUNT_KEY)")
            )
            return PermissionDenied(
                f"Azure refused the {what} for the storage account {account!r}.",
                hint="Copy the key again from the Azure portal (Storage account → Access keys), or "
                "make a new SAS token; check that AZURE_ACCOUNT_NAME is the right account.",
            )
        if code in ("AuthorizationPermissionMismatch", "AuthorizationFailure") or status == 403:
            return PermissionDenied(
                f"The credentials for Azure account {account!r} are not allowed to {action}.",
                hint="Give the key or SAS token read, write, list and delete permission on the "
                f"container {container!r}.",
            )
        if code == "ContainerNotFound":
            return NotFound(
                f"The Azure container {container!r} does not exist in the account {account!r}.",
                hint="Check the container's name, or create the repository first (Safekeep creates "
                "the container).",
            )
        if isinstance(exc, ResourceNotFoundError) or status == 404:
            return NotFound(f"Cannot {action}: it was not found in the Azure container {container!r}.")
        if code == "AccountIsDisabled":
            return PermissionDenied(f"The Azure storage account {account!r} is disabled.")
        if code in ("InsufficientAccountPermissions",):
            return PermissionDenied(f"The Azure credentials are not allowed to {action}.")
        if code in ("AccountLimitExceeded", "BlobTooLarge", "BlockCountExceedsLimit"):
            return QuotaExceeded(
                f"Azure refused to {action}: the account or blob is over its limit ({code}).",
                hint="Free space in the storage account or raise its limits.",
            )
        if code in {"BlobArchived", "BlobBeingRehydrated"}:
            return AzureStorageError(
                f"Cannot {action}: the blob is in the Archive tier.",
                hint="Move the repository's blobs back to the Hot or Cool tier in the Azure portal.",
            )
        retry_after = None
        response = getattr(exc, "response", None)
        if response is not None:
            value = response.headers.get("Retry-After") if response.headers else None
            if value and str(value).isdigit():
                retry_after = float(value)
        if code in _TRANSIENT_CODES or status in (408, 429) or (status is not None and status >= 500):
            return TransientStorageError(
                f"Azure Blob Storage is busy or failing ({code or status}) while trying to {action}.",
                hint="Safekeep will try again.",
                retry_after=retry_after,
            )
        if status == 409:
            return AzureStorageError(
                f"Azure refused to {action}: a conflicting operation is in progress ({code}).",
                hint="If the container was just deleted, wait a minute and try again.",
            )
        return AzureStorageError(
            f"Azure Blob Storage could not {action}: {code or status or type(exc).__name__}."
        )


def _code(exc: AzureError) -> str:
    code = getattr(exc, "error_code", None)
    if code is None:
        return ""
    return str(getattr(code, "value", code))


# -- registry --------------------------------------------------------------------------------------


def parse_azure(raw: str, rest: str) -> Location:
    """``azure:CONTAINER:/PREFIX`` → Location(bucket=CONTAINER, path=PREFIX without slashes)."""
    container, sep, prefix = rest.partition(":")
    container = container.strip()
    if not container or not sep:
        raise InvalidLocation(
            f"The location {raw!r} names no Azure container.",
            hint="Write it as azure:CONTAINER:/path, e.g. azure:backups:/office.",
        )
    if not (3 <= len(container) <= 63) or not all(c.islower() or c.isdigit() or c == "-" for c in container):
        raise InvalidLocation(
            f"{container!r} is not a valid Azure container name.",
            hint="Container names have 3 to 63 characters: lower-case letters, digits and hyphens.",
        )
    return Location(scheme="azure", path=prefix.strip().strip("/"), raw=raw, bucket=container)


def _int_option(settings: ProviderSettings, name: str, default: int) -> int:
    text = settings.option(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise InvalidLocation(f"The option {name}={text!r} is not a whole number.") from exc
    if value < 1:
        raise InvalidLocation(f"The option {name} must be at least 1.")
    return value


def config_from(location: Location, settings: ProviderSettings) -> AzureConfig:
    account = settings.getenv("AZURE_ACCOUNT_NAME")
    key = settings.getenv("AZURE_ACCOUNT_KEY")
    sas = settings.getenv("AZURE_ACCOUNT_SAS")
    if not account:
        raise PermissionDenied(
            "No Azure storage account name was given.",
            hint="Set AZURE_ACCOUNT_NAME and AZURE_ACCOUNT_KEY (or AZURE_ACCOUNT_SAS).",
        )
    if not key and not sas:
        raise PermissionDenied(
            f"No key for the Azure storage account {account!r}.",
            hint="Set AZURE_ACCOUNT_KEY (Storage account → Access keys) or AZURE_ACCOUNT_SAS.",
        )
    if key:
        try:
            base64.b64decode(key, validate=True)
        except ValueError as exc:
            raise PermissionDenied(
                f"The Azure account key for {account!r} is not valid: it is not base64 text.",
                hint="Copy the whole key again from the Azure portal (Storage account → Access keys).",
            ) from exc
    tier = (settings.option("azure.access-tier") or "").strip().lower()
    if tier == "archive":
        raise InvalidLocation(
            "The Archive access tier cannot hold a backup repository.",
            hint="Archived blobs cannot be read until they are rehydrated (hours per blob), but "
            "every backup, check and restore reads the repository's index and snapshots. Use "
            "Cool or Cold, and an Azure lifecycle rule if you want old data archived.",
        )
    if tier and tier not in TIERS:
        raise InvalidLocation(f"Unknown Azure access tier {tier!r}.", hint="Use Hot, Cool or Cold.")
    endpoint = settings.option("azure.endpoint").strip().rstrip("/")
    if not endpoint:
        suffix = settings.getenv("AZURE_ENDPOINT_SUFFIX") or "core.windows.net"
        endpoint = f"https://{account}.blob.{suffix}"
    elif not endpoint.startswith(("http://", "https://")):
        raise InvalidLocation(
            f"The Azure endpoint {endpoint!r} is not a web address.",
            hint="Write it as https://ACCOUNT.blob.core.windows.net (or http://127.0.0.1:PORT/ACCOUNT "
            "for Azurite).",
        )
    return AzureConfig(
        account_url=endpoint,
        account=account,
        container=location.bucket,
        prefix=location.path,
        key=Secret(key) if key else None,
        sas=Secret(sas) if (sas and not key) else None,
        tier=tier or None,
        block_size=_int_option(settings, "azure.block-size", DEFAULT_BLOCK_SIZE),
        connections=_int_option(settings, "azure.connections", 5),
        page_size=_int_option(settings, "azure.page-size", DEFAULT_PAGE_SIZE),
    )


def _open(location: Location, settings: ProviderSettings) -> Backend:
    return AzureBackend(config_from(location, settings))


register_provider("azure", _open, parser=parse_azure)
