"""The ``onedrive`` provider's pure parts: location syntax, options, Graph answers it parses,
and the stored sign-in record. Nothing here touches the network (see
``tests/integration/test_provider_onedrive.py`` for the provider against the fake)."""

from __future__ import annotations

import json

import pytest
import requests

from safekeep.storage.errors import InvalidLocation, PermissionDenied
from safekeep.storage.providers.onedrive import (
    DEFAULT_FRAGMENT,
    FRAGMENT_MULTIPLE,
    OneDriveOptions,
    _error_of,
    _next_offset,
    _retry_after,
)
from safekeep.storage.providers.onedrive_auth import (
    ALL_FILES_SCOPES,
    APP_FOLDER_SCOPES,
    CLIENT_ID_ENV,
    TOKEN_SECRET,
    AuthConfig,
    GraphTokens,
    OneDriveSignIn,
)
from safekeep.storage.registry import ProviderSettings, parse_location
from safekeep.storage.secrets import MemorySecretStore
from safekeep.storage.signin import sign_in_flow, sign_in_schemes


def response(status: int, body: object, headers: dict[str, str] | None = None) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = json.dumps(body).encode()
    r.headers.update(headers or {})
    return r


def test_location_and_registration() -> None:
    loc = parse_location("onedrive:Office/Backups")
    assert (loc.scheme, loc.path) == ("onedrive", "Office/Backups")
    assert parse_location("onedrive:/a//b/").path == "a/b"
    for bad in ("onedrive:a/../b", "onedrive:x*y", "onedrive:trailing.", "onedrive:a|b"):
        with pytest.raises(InvalidLocation):
            parse_location(bad)
    assert isinstance(sign_in_flow("onedrive"), OneDriveSignIn)
    assert "onedrive" in sign_in_schemes()


def test_options_defaults_and_limits() -> None:
    opts = OneDriveOptions.from_settings(ProviderSettings())
    assert opts.fragment_size == DEFAULT_FRAGMENT and DEFAULT_FRAGMENT % FRAGMENT_MULTIPLE == 0
    assert opts.graph_endpoint == "https://graph.microsoft.com/v1.0" and opts.drive_id == ""
    opts = OneDriveOptions.from_settings(
        ProviderSettings(
            options={
                "onedrive.drive": "b!AbC_12-x",
                "onedrive.root": "Shared/Backups",
                "onedrive.fragment-size": "640KiB",
                "onedrive.upload-threshold": "2MiB",
                "onedrive.page-size": "5000",
            }
        )
    )
    assert opts.root == ("Shared", "Backups") and opts.fragment_size == 2 * FRAGMENT_MULTIPLE
    assert opts.upload_threshold == 2 * 1024 * 1024 and opts.page_size == 999
    for bad in (
        {"onedrive.fragment-size": "1MiB"},  # not a multiple of 320 KiB
        {"onedrive.drive": "my drive"},
        {"onedrive.connections": "0"},
        {"onedrive.upload-threshold": "lots"},
    ):
        with pytest.raises(InvalidLocation):
            OneDriveOptions.from_settings(ProviderSettings(options=bad))


def test_auth_config_client_id_and_scopes() -> None:
    with pytest.raises(InvalidLocation) as info:
        AuthConfig.from_settings(ProviderSettings(env={}))
    assert CLIENT_ID_ENV in info.value.hint and "onedrive.client-id" in info.value.hint
    cfg = AuthConfig.from_settings(ProviderSettings(env={CLIENT_ID_ENV: "env-id"}))
    assert cfg.client_id == "env-id" and cfg.scopes == APP_FOLDER_SCOPES
    assert cfg.authority == "https://login.microsoftonline.com/common" and cfg.response_mode == "query"
    cfg = AuthConfig.from_settings(
        ProviderSettings(
            env={CLIENT_ID_ENV: "env-id"},
            options={
                "onedrive.client-id": "org-id",
                "onedrive.drive": "b!x",
                "onedrive.authority": "https://l/t/",
            },
        )
    )
    assert (cfg.client_id, cfg.scopes, cfg.authority) == ("org-id", ALL_FILES_SCOPES, "https://l/t")


def test_graph_answers() -> None:
    assert _next_offset(response(202, {"nextExpectedRanges": ["655360-"]})) == 655360
    assert _next_offset(response(202, {"nextExpectedRanges": ["0-327679", "655360-"]})) == 0
    assert _next_offset(response(202, {})) is None
    assert _error_of(response(507, {"error": {"code": "quotaLimitReached", "message": "full"}})) == (
        "quotaLimitReached",
        "full",
    )
    nested = {"error": {"code": "accessDenied", "message": "m", "innerError": {"code": "quotaLimitReached"}}}
    assert _error_of(response(403, nested))[0] == "quotaLimitReached"
    assert _retry_after("17") == 17.0
    assert _retry_after(None) is None and _retry_after("soon") is None
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: now


def test_stored_sign_in_record() -> None:
    flow = OneDriveSignIn()
    loc = parse_location("onedrive:x")
    settings = ProviderSettings(env={CLIENT_ID_ENV: "id"})
    store = MemorySecretStore()
    assert flow.account(loc, settings, store) is None
    with pytest.raises(PermissionDenied, match="not signed in"):
        GraphTokens(AuthConfig.from_settings(settings), store)
    record = {"format": 1, "msal_cache": "{}", "home_account_id": "u.t", "username": "a@b.org", "name": "A B"}
    store.set(TOKEN_SECRET, json.dumps(record))
    account = flow.account(loc, settings, store)
    assert account is not None and (account.name, account.email) == ("A B", "a@b.org")
    flow.sign_out(loc, settings, store)
    assert store.names() == [] and flow.account(loc, settings, store) is None
    assert "a@b.org" not in repr(store)
