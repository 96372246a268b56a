"""Unit tests of the ``gdrive`` provider's pieces that need no server: options, the stored sign-in,
error translation, ``Retry-After``, query quoting, and silent refresh over a stub transport."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import google.auth.exceptions
import httplib2  # type: ignore[import-untyped]
import pytest
from googleapiclient.errors import HttpError  # type: ignore[import-untyped]
from tests.fakes.gdrive_fake import DriveItem, parse_query

from safekeep.common.clock import FakeClock
from safekeep.storage.errors import (
    InvalidLocation,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    StorageError,
    TransientStorageError,
)
from safekeep.storage.oauth_loopback import SignInError
from safekeep.storage.providers.gdrive import (
    DEFAULT_CHUNK_SIZE,
    GDriveBackend,
    GDriveOptions,
    GDriveStorageError,
    _retry_after,
    quote,
)
from safekeep.storage.providers.gdrive_auth import (
    DEFAULT_API_ENDPOINT,
    DEFAULT_TOKEN_URI,
    SCOPE,
    TOKEN_SECRET,
    GoogleConfig,
    GoogleDriveSignIn,
    StoredCredentials,
    TokenRecord,
)
from safekeep.storage.registry import ProviderSettings, parse_location
from safekeep.storage.secrets import MemorySecretStore


def record(**kw: Any) -> TokenRecord:
    return TokenRecord(**{"refresh_token": "1//refresh", "client_id": "cid", "client_secret": "sec", **kw})


def make_backend(**options: str) -> GDriveBackend:
    store = MemorySecretStore({TOKEN_SECRET: record().to_json()})
    settings = ProviderSettings(env={}, options=options, store=store)
    return GDriveBackend(parse_location("gdrive:Safekeep/office"), settings, clock=FakeClock())


def http_error(status: int, reason: str = "", message: str = "msg", **headers: str) -> HttpError:
    resp = httplib2.Response({"status": status, **headers})
    body = {"error": {"code": status, "message": message, "errors": [{"domain": "global", "reason": reason}]}}
    return HttpError(resp, json.dumps(body).encode(), uri="https://www.googleapis.com/drive/v3/files")


# -- options and configuration -------------------------------------------------------------------


def test_options_defaults_and_checks() -> None:
    assert GDriveOptions.from_settings(ProviderSettings()) == GDriveOptions()
    assert GDriveOptions().chunk_size == DEFAULT_CHUNK_SIZE
    opts = GDriveOptions.from_settings(
        ProviderSettings(
            options={
                "gdrive.chunk-size": "512KiB",
                "gdrive.upload-threshold": "1MiB",
                "gdrive.connections": "2",
            }
        )
    )
    assert (opts.chunk_size, opts.upload_threshold, opts.connections) == (512 * 1024, 1024 * 1024, 2)
    for bad in ({"gdrive.chunk-size": "300KiB"}, {"gdrive.chunk-size": "lots"}, {"gdrive.connections": "0"}):
        with pytest.raises(InvalidLocation):
            GDriveOptions.from_settings(ProviderSettings(options=bad))


def test_config_defaults_are_googles_and_can_be_replaced() -> None:
    config = GoogleConfig.from_settings(ProviderSettings(env={}))
    assert config.token_uri == DEFAULT_TOKEN_URI and config.api_endpoint == DEFAULT_API_ENDPOINT
    assert config.drive_endpoint == "https://www.googleapis.com/drive/v3/"
    by_env = GoogleConfig.from_settings(
        ProviderSettings(
            env={"SAFEKEEP_GDRIVE_CLIENT_ID": "org-id", "SAFEKEEP_GDRIVE_CLIENT_SECRET": "org-secret"}
        )
    )
    assert (by_env.client_id, by_env.client_secret) == ("org-id", "org-secret")
    by_option = GoogleConfig.from_settings(
        ProviderSettings(env={"SAFEKEEP_GDRIVE_CLIENT_ID": "org-id"}, options={"gdrive.client-id": "opt-id"})
    )
    assert by_option.client_id == "opt-id"
    assert "secret" not in repr(by_env)
    with pytest.raises(InvalidLocation):
        GoogleConfig.from_settings(ProviderSettings(options={"gdrive.token-uri": "http://example.org/token"}))


def test_sign_in_without_a_client_id_says_what_to_do() -> None:
    settings = ProviderSettings(env={}, options={})
    if GoogleConfig.from_settings(settings).client_id:
        pytest.skip("this build ships its own Google client ID")
    with pytest.raises(SignInError) as info:
        GoogleDriveSignIn().sign_in(parse_location("gdrive:x"), settings, MemorySecretStore(), browser=None)  # type: ignore[arg-type]
    assert "gdrive.client-id" in info.value.hint


def test_token_record_round_trip_hides_the_token() -> None:
    r = record(account_name="Office", account_email="office@example.org")
    assert TokenRecord.from_json(r.to_json()) == r
    assert "1//refresh" not in repr(r) and "sec" not in repr(r)
    assert str(r.account) == "Office <office@example.org>"
    assert TokenRecord.from_json(json.dumps({"refresh_token": "x", "client_id": "c"})).scopes == (SCOPE,)


def test_sign_in_flow_account_and_sign_out_without_a_token() -> None:
    store = MemorySecretStore()
    flow = GoogleDriveSignIn()
    assert flow.account(parse_location("gdrive:x"), ProviderSettings(), store) is None
    flow.sign_out(parse_location("gdrive:x"), ProviderSettings(), store)  # nothing to revoke: no error
    assert store.names() == []


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (http_error(429, "rateLimitExceeded", **{"retry-after": "12"}), TransientStorageError),
        (http_error(403, "userRateLimitExceeded"), TransientStorageError),
        (http_error(403, "rateLimitExceeded"), TransientStorageError),
        (http_error(403, "storageQuotaExceeded"), QuotaExceeded),
        (http_error(403, "teamDriveFileLimitExceeded"), QuotaExceeded),
        (http_error(403, "insufficientFilePermissions"), PermissionDenied),
        (http_error(401, "authError"), PermissionDenied),
        (http_error(404, "notFound"), NotFound),
        (http_error(500, "backendError"), TransientStorageError),
        (http_error(503, "backendError"), TransientStorageError),
        (http_error(400, "invalid"), GDriveStorageError),
        (google.auth.exceptions.RefreshError("invalid_grant"), PermissionDenied),
        (ConnectionResetError(104, "reset"), TransientStorageError),
        (httplib2.ServerNotFoundError("no such host"), TransientStorageError),
        (TimeoutError("timed out"), TransientStorageError),
    ],
)
def test_errors_are_typed(error: BaseException, expected: type[StorageError]) -> None:
    translated = make_backend()._translate(error, "save", "data/ab/abcd")
    assert type(translated) is expected
    assert str(translated) and "1//refresh" not in str(translated)


def test_error_details() -> None:
    b = make_backend()
    limited = b._translate(http_error(429, "rateLimitExceeded", **{"retry-after": "12"}), "list", "keys")
    assert isinstance(limited, TransientStorageError) and limited.retry_after == 12.0
    full = b._translate(http_error(403, "storageQuotaExceeded"), "save", "x")
    assert "Google Drive is full" in str(full) and "Free up space" in full.hint
    signed_out = b._translate(http_error(401, "authError"), "list", "keys")
    assert "signed out" in str(signed_out) and "safekeep login gdrive" in signed_out.hint
    assert isinstance(b._translate(http_error(404), "save", "x", parent_level=True), InvalidLocation)
    assert isinstance(b._translate(http_error(404), "save", "x", session=True), TransientStorageError)
    assert isinstance(b._translate(http_error(410), "save", "x", session=True), TransientStorageError)
    assert b.properties.connections == 4 and b.properties.supports_ranges


def test_retry_after_in_seconds_or_as_a_date() -> None:
    clock = FakeClock()
    assert _retry_after("30", clock) == 30.0
    assert _retry_after(None, clock) is None
    assert _retry_after("soon", clock) is None
    later = (clock.now() + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert _retry_after(later, clock) == 90.0


def test_query_quoting_survives_the_query_parser() -> None:
    name = "Bob's \\ backups"
    assert quote(name) == "'Bob\\'s \\\\ backups'"
    item = DriveItem("id1", name, "application/vnd.google-apps.folder", ["p1"], None, b"", "t", None)
    assert parse_query(f"name = {quote(name)} and ('p0' in parents or 'p1' in parents) and trashed = false")(
        item
    )
    assert not parse_query(f"name = {quote('Bob')} or not trashed = false")(item)
    with pytest.raises(ValueError):
        parse_query("name = 'x' and")


# -- silent refresh ------------------------------------------------------------------------------


class _Reply:
    def __init__(self, status: int, doc: dict[str, Any]) -> None:
        self.status = status
        self.headers: dict[str, str] = {"content-type": "application/json"}
        self.data = json.dumps(doc).encode()


class _TokenEndpoint:
    """A stand-in transport for google-auth's token request (a callable returning a response)."""

    def __init__(self, status: int, doc: dict[str, Any]) -> None:
        self.reply = _Reply(status, doc)
        self.bodies: list[str] = []

    def __call__(
        self, url: str, method: str = "GET", body: Any = None, headers: Any = None, **kw: Any
    ) -> _Reply:
        self.bodies.append(body.decode() if isinstance(body, bytes) else str(body))
        return self.reply


def test_refresh_keeps_a_rotated_refresh_token() -> None:
    store = MemorySecretStore({TOKEN_SECRET: record(account_email="a@b").to_json()})
    creds = StoredCredentials(record(account_email="a@b"), store, GoogleConfig(client_id="cid"))
    endpoint = _TokenEndpoint(
        200, {"access_token": "ya29.x", "expires_in": 3600, "refresh_token": "1//new", "scope": SCOPE}
    )
    creds.refresh(endpoint)  # type: ignore[arg-type]
    assert creds.token == "ya29.x"
    stored = TokenRecord.from_json(store.get(TOKEN_SECRET) or "")
    assert stored.refresh_token == "1//new" and stored.account_email == "a@b"
    assert "grant_type=refresh_token" in endpoint.bodies[0]


def test_refused_refresh_means_signed_out() -> None:
    creds = StoredCredentials(record(), MemorySecretStore(), GoogleConfig(client_id="cid"))
    endpoint = _TokenEndpoint(
        400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
    )
    with pytest.raises(PermissionDenied) as info:
        creds.refresh(endpoint)  # type: ignore[arg-type]
    assert "signed out" in str(info.value)
