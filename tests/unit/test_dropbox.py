"""The ``dropbox`` provider's pure parts: location syntax, options, stored tokens, error mapping.

No network: errors are the SDK's own exception and error-union objects, built as the SDK builds
them from Dropbox's answers. The provider against a fake Dropbox is tested in
``tests/integration/test_provider_dropbox.py``.
"""

from __future__ import annotations

import os

import dropbox.session
import pytest
import requests
from dropbox import auth, files
from dropbox.exceptions import ApiError, AuthError, BadInputError, RateLimitError

from safekeep.storage.errors import (
    InvalidLocation,
    NotFound,
    PermanentStorageError,
    PermissionDenied,
    QuotaExceeded,
    TransientStorageError,
)
from safekeep.storage.providers.dropbox import DropboxBackend, incorrect_offset, tag_path
from safekeep.storage.providers.dropbox_auth import (
    DEFAULT_API_HOST,
    TOKEN_SECRET,
    DropboxAuthConfig,
    DropboxEndpoints,
    ServerError,
    StoredToken,
    make_client,
)
from safekeep.storage.registry import ProviderSettings, create_backend, parse_location
from safekeep.storage.secrets import MemorySecretStore

TOKEN = StoredToken(refresh_token="rt.secret-value", app_key="key", account_id="dbid:x", name="Office")


def backend(**options: str) -> DropboxBackend:
    store = MemorySecretStore({TOKEN_SECRET: TOKEN.to_json()})
    b = create_backend(
        parse_location("dropbox:office/backup"), ProviderSettings(options=options, store=store)
    )
    assert isinstance(b, DropboxBackend)
    return b


def test_location_syntax() -> None:
    loc = parse_location("dropbox:office/backup/")
    assert (loc.scheme, loc.path) == ("dropbox", "office/backup")
    assert parse_location("dropbox:/office").path == "office"
    assert parse_location("dropbox:").path == ""  # the app folder itself
    for bad in ("dropbox:office/../x", "dropbox:./x", "dropbox:a/ b"):
        with pytest.raises(InvalidLocation):
            parse_location(bad)


def test_paths_are_inside_the_folder() -> None:
    from safekeep.storage.base import FileType, Handle

    b = backend()
    name = "ab" + "0" * 62
    assert b.path(Handle(FileType.PACK, name)) == f"/office/backup/data/ab/{name}"
    assert b.path(Handle.config()) == "/office/backup/config"
    with pytest.raises(ValueError):
        b.path(Handle(FileType.KEY, "../x"))
    assert b.properties.connections == 4 and b.properties.supports_ranges
    b.close()


def test_not_signed_in() -> None:
    for settings in (ProviderSettings(), ProviderSettings(store=MemorySecretStore())):
        with pytest.raises(PermissionDenied) as info:
            create_backend(parse_location("dropbox:x"), settings)
        assert "not signed in" in str(info.value)
        assert "Sign in" in info.value.hint and "safekeep login dropbox" in info.value.hint


def test_host_options() -> None:
    config = DropboxAuthConfig.from_settings(
        ProviderSettings(
            options={"dropbox.api-host": "https://127.0.0.1:8443/", "dropbox.redirect-port": "0"}
        )
    )
    assert config.endpoints.api_host == "127.0.0.1:8443"
    assert config.endpoints.content_host == "content.dropboxapi.com"
    assert config.redirect_port == 0
    for name, value in (
        ("dropbox.api-host", "http://127.0.0.1:80"),
        ("dropbox.web-host", "host/with/path"),
        ("dropbox.redirect-port", "http"),
    ):
        with pytest.raises(InvalidLocation):
            DropboxAuthConfig.from_settings(ProviderSettings(options={name: value}))
    with pytest.raises(InvalidLocation):
        backend(**{"dropbox.chunk-size": "200MiB"})
    with pytest.raises(InvalidLocation):
        backend(**{"dropbox.connections": "0"})


def test_client_id_order() -> None:
    env = {"SAFEKEEP_DROPBOX_CLIENT_ID": "from-env"}
    assert DropboxAuthConfig.from_settings(ProviderSettings(env=env)).app_key == "from-env"
    settings = ProviderSettings(env=env, options={"dropbox.client-id": "from-option"})
    assert DropboxAuthConfig.from_settings(settings).app_key == "from-option"


def test_client_uses_its_own_hosts_without_touching_the_sdk() -> None:
    endpoints = DropboxEndpoints("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")
    config = DropboxAuthConfig(app_key="key", endpoints=endpoints)
    client = make_client(config, TOKEN)
    assert client._host_map == {"api": "127.0.0.1:1", "content": "127.0.0.1:2", "notify": "127.0.0.1:1"}
    assert client.clone()._host_map == client._host_map
    assert (client._max_retries_on_error, client._max_retries_on_rate_limit) == (0, 0)
    assert os.environ.get("DROPBOX_API_HOST", DEFAULT_API_HOST) == dropbox.session.API_HOST
    client.close()


def test_stored_token_json() -> None:
    again = StoredToken.from_json(TOKEN.to_json())
    assert again == TOKEN
    assert "rt.secret-value" not in repr(TOKEN)
    assert StoredToken.from_json("{not json") is None
    assert StoredToken.from_json('{"app_key": "k"}') is None
    assert TOKEN.account().name == "Office"


def test_tag_path_and_incorrect_offset() -> None:
    upload = files.UploadError.path(
        files.UploadWriteFailed(reason=files.WriteError.insufficient_space, upload_session_id="s")
    )
    assert tag_path(upload) == ["path", "insufficient_space"]
    lookup = files.LookupError.not_found
    assert tag_path(files.DeleteError.path_lookup(lookup)) == ["path_lookup", "not_found"]
    offset = files.UploadSessionAppendError.incorrect_offset(files.UploadSessionOffsetError(correct_offset=7))
    assert incorrect_offset(ApiError("r", offset, None, None)) == 7
    finish = files.UploadSessionFinishError.lookup_failed(
        files.UploadSessionLookupError.incorrect_offset(files.UploadSessionOffsetError(correct_offset=9))
    )
    assert incorrect_offset(ApiError("r", finish, None, None)) == 9
    assert incorrect_offset(ApiError("r", files.UploadSessionAppendError.closed, None, None)) is None


def test_error_mapping() -> None:
    b = backend()

    def mapped(exc: BaseException) -> object:
        return b._translate(exc, "save", "/office/backup/config")

    busy = RateLimitError("r", auth.RateLimitError(reason=auth.RateLimitReason.too_many_requests), 9)
    t = mapped(busy)
    assert isinstance(t, TransientStorageError) and t.retry_after == 9
    t = mapped(ServerError("r", 503, "down", 12.0))
    assert isinstance(t, TransientStorageError) and t.retry_after == 12.0
    assert isinstance(mapped(requests.exceptions.ConnectionError("reset")), TransientStorageError)
    assert isinstance(
        mapped(requests.exceptions.SSLError("EOF occurred in violation")), TransientStorageError
    )
    cert = mapped(requests.exceptions.SSLError("certificate verify failed"))
    assert isinstance(cert, PermanentStorageError)
    signed_out = mapped(AuthError("r", auth.AuthError.invalid_access_token))
    assert isinstance(signed_out, PermissionDenied) and "signed out" in str(signed_out)
    assert isinstance(mapped(BadInputError("r", '{"error": "invalid_grant"}')), PermissionDenied)
    scope = mapped(AuthError("r", auth.AuthError.missing_scope(auth.TokenScopeError(required_scope="x"))))
    assert isinstance(scope, PermissionDenied) and "App Console" in scope.hint
    full = files.UploadSessionFinishError.path(files.WriteError.insufficient_space)
    quota = mapped(ApiError("r", full, None, None))
    assert isinstance(quota, QuotaExceeded) and "full" in str(quota)
    missing = files.DownloadError.path(files.LookupError.not_found)
    assert isinstance(mapped(ApiError("r", missing, None, None)), NotFound)
    writes = files.UploadSessionFinishError.too_many_write_operations
    assert isinstance(mapped(ApiError("r", writes, None, None)), TransientStorageError)
    odd = mapped(ApiError("r", files.UploadError.payload_too_large, None, None))
    assert isinstance(odd, PermanentStorageError) and "payload_too_large" in str(odd)
    b.close()
