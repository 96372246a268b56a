"""The ``onedrive`` provider and its sign-in against the local fake of Microsoft's identity
platform and Graph (``tests/fakes/onedrive_fake.py``), over TLS with a throw-away CA.

OneDrive cannot run here: these tests drive the real MSAL library (its authorization-code flow
with PKCE and state, its token cache and silent refresh) and the provider's real Graph requests
against a FAKE that follows Microsoft's documented wire formats — not against Microsoft. Every
test uses ``loopback_only``, which fails any connection to another machine.
"""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

import pytest
import requests
from tests.fakes.onedrive_fake import (
    APP_FOLDER,
    FRAGMENT_MULTIPLE,
    ConsentBrowser,
    OneDriveFake,
    shared_fake,
    sign_in,
    signed_in_store,
)
from tests.fakes.tls import TestCA
from tests.integration.roundtrip import round_trip

from safekeep.common.cancel import CancelToken
from safekeep.common.clock import FakeClock
from safekeep.common.errors import Cancelled
from safekeep.storage.base import FileInfo, FileType, Handle
from safekeep.storage.compose import StorageOptions, open_backend
from safekeep.storage.errors import (
    InvalidLocation,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    TransientStorageError,
)
from safekeep.storage.oauth_loopback import SignInError
from safekeep.storage.providers.onedrive import OneDriveBackend
from safekeep.storage.providers.onedrive_auth import TOKEN_SECRET, OneDriveSignIn
from safekeep.storage.registry import ProviderSettings, create_backend, parse_location
from safekeep.storage.secrets import MemorySecretStore
from safekeep.storage.signin import sign_in_flow

SMALL_SESSIONS = {"onedrive.upload-threshold": "1MiB", "onedrive.fragment-size": "320KiB"}


@pytest.fixture
def onedrive(request: pytest.FixtureRequest, trust_test_ca: TestCA, loopback_only: None) -> OneDriveFake:
    return shared_fake(request)


@pytest.fixture
def signed_in(
    request: pytest.FixtureRequest, onedrive: OneDriveFake, trust_test_ca: TestCA
) -> MemorySecretStore:
    return signed_in_store(request, onedrive, trust_test_ca.bundle)


def folder() -> str:
    return f"repo-{uuid.uuid4().hex[:12]}"


def backend(
    fake: OneDriveFake, store: MemorySecretStore | None, where: str = "", **options: str
) -> OneDriveBackend:
    b = create_backend(parse_location(f"onedrive:{where or folder()}"), fake.settings(store, **options))
    assert isinstance(b, OneDriveBackend)
    return b


def blob(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def pack(data: bytes) -> Handle:
    import hashlib

    return Handle(FileType.PACK, hashlib.sha256(data).hexdigest())


# -- sign-in ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["query", "form_post"])
def test_sign_in_end_to_end(onedrive: OneDriveFake, trust_test_ca: TestCA, mode: str) -> None:
    flow = sign_in_flow("onedrive")
    assert isinstance(flow, OneDriveSignIn)
    store = MemorySecretStore()
    settings = onedrive.settings(store, **{"onedrive.response-mode": mode})
    browser = ConsentBrowser(trust_test_ca.bundle)
    before = len(onedrive.token_requests)
    account = flow.sign_in(parse_location("onedrive:office"), settings, store, browser)
    assert (account.name, account.email) == ("Office Admin", "office@example.org")
    # the consent page was asked for with PKCE (S256), a state, the loopback redirect and only
    # the app-folder scope (plus what MSAL adds for the refresh and ID tokens)
    query = dict(p.split("=", 1) for p in browser.opened[0].split("?", 1)[1].split("&"))
    assert query["code_challenge_method"] == "S256" and query["code_challenge"] and query["state"]
    assert requests.utils.unquote(query["redirect_uri"]).startswith("http://127.0.0.1:")
    assert set(requests.utils.unquote(query["scope"]).replace("+", " ").split()) == {
        "Files.ReadWrite.AppFolder",
        "offline_access",
        "openid",
        "profile",
    }
    assert query.get("response_mode", "query") == mode
    # the code was redeemed with the PKCE verifier (the fake checked it against the challenge)
    redeemed = [r for r in onedrive.token_requests[before:] if r.get("grant_type") == "authorization_code"]
    assert len(redeemed) == 1 and redeemed[0]["code_verifier"]
    record = json.loads(store.get(TOKEN_SECRET) or "{}")
    assert record["username"] == "office@example.org"
    assert "RefreshToken" in record["msal_cache"]
    assert flow.account(parse_location("onedrive:office"), settings, store) == account
    b = backend(onedrive, store)  # the tokens work
    b.save(Handle.config(), b"hello")
    assert b.load(Handle.config()) == b"hello"
    assert onedrive.files(prefix=APP_FOLDER + "/")  # inside the app folder, nowhere else


def test_sign_in_from_a_pasted_address(onedrive: OneDriveFake, trust_test_ca: TestCA) -> None:
    """Headless: the browser cannot reach the loopback address; the person pastes where it ended."""
    store = MemorySecretStore()
    browser = ConsentBrowser(trust_test_ca.bundle, paste=True)
    account = OneDriveSignIn().sign_in(parse_location("onedrive:x"), onedrive.settings(store), store, browser)
    assert account.email == "office@example.org"
    assert store.get(TOKEN_SECRET)


def test_sign_in_declined_or_forged(onedrive: OneDriveFake, trust_test_ca: TestCA) -> None:
    store = MemorySecretStore()
    flow = OneDriveSignIn()
    with pytest.raises(SignInError) as info:
        flow.sign_in(
            parse_location("onedrive:x"),
            onedrive.settings(store),
            store,
            ConsentBrowser(trust_test_ca.bundle, decision="deny"),
        )
    assert "declined" in str(info.value) and "Allow" in info.value.hint
    before = len(onedrive.token_requests)
    with pytest.raises(SignInError) as info:
        flow.sign_in(
            parse_location("onedrive:x"),
            onedrive.settings(store),
            store,
            ConsentBrowser(trust_test_ca.bundle, tamper_state=True),
        )
    assert "does not belong to this sign-in" in str(info.value)
    assert len(onedrive.token_requests) == before  # a forged answer is never redeemed
    assert store.names() == []


def test_the_fake_checks_the_pkce_verifier(onedrive: OneDriveFake) -> None:
    params = {
        "client_id": next(iter(onedrive.clients)),
        "response_type": "code",
        "redirect_uri": "http://127.0.0.1:9/",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
        "scope": "Files.ReadWrite.AppFolder offline_access openid",
    }
    code = onedrive.issue_code(params)
    status, body = onedrive.token(
        {**params, "grant_type": "authorization_code", "code": code, "code_verifier": "wrong"}
    )
    assert status == 400 and body["error"] == "invalid_grant" and "AADSTS501481" in body["error_description"]
    code = onedrive.issue_code(params)  # RFC 7636 appendix B's verifier for that challenge
    status, body = onedrive.token(
        {
            **params,
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        }
    )
    assert status == 200 and body["refresh_token"]


def test_not_signed_in(onedrive: OneDriveFake) -> None:
    for store in (None, MemorySecretStore(), MemorySecretStore({TOKEN_SECRET: "{garbage"})):
        with pytest.raises(PermissionDenied) as info:
            backend(onedrive, store)
        assert "not signed in" in str(info.value)
        assert "safekeep login onedrive" in info.value.hint and "Sign in" in info.value.hint


def test_sign_out(onedrive: OneDriveFake, trust_test_ca: TestCA) -> None:
    store = sign_in(onedrive, trust_test_ca.bundle)
    flow = OneDriveSignIn()
    settings = onedrive.settings(store)
    assert flow.account(parse_location("onedrive:x"), settings, store) is not None
    flow.sign_out(parse_location("onedrive:x"), settings, store)
    assert store.names() == []
    assert flow.account(parse_location("onedrive:x"), settings, store) is None
    with pytest.raises(PermissionDenied, match="not signed in"):
        backend(onedrive, store)


# -- tokens ----------------------------------------------------------------------------------


def test_expired_access_token_is_refreshed_silently(
    onedrive: OneDriveFake, signed_in: MemorySecretStore
) -> None:
    b = backend(onedrive, signed_in)
    b.save(Handle.config(), b"one")
    stored = signed_in.get(TOKEN_SECRET)
    onedrive.expire_access_tokens()
    before = len(onedrive.token_requests)
    assert b.load(Handle.config()) == b"one"
    refreshes = [r for r in onedrive.token_requests[before:] if r["grant_type"] == "refresh_token"]
    assert len(refreshes) == 1
    # Microsoft rotated the refresh token: the new one is in the store
    assert signed_in.get(TOKEN_SECRET) != stored
    old_rt = json.loads(json.loads(stored or "")["msal_cache"])["RefreshToken"]
    new_rt = json.loads(json.loads(signed_in.get(TOKEN_SECRET) or "")["msal_cache"])["RefreshToken"]
    assert [v["secret"] for v in old_rt.values()] != [v["secret"] for v in new_rt.values()]
    # a new backend (the next run) starts from the stored tokens
    assert (
        backend(onedrive, signed_in, b.properties.location.split(":", 1)[1]).load(Handle.config()) == b"one"
    )


def test_short_lived_access_tokens_refresh_before_they_expire(
    onedrive: OneDriveFake, trust_test_ca: TestCA
) -> None:
    onedrive.token_lifetime = 120  # MSAL refreshes tokens with less than five minutes left
    store = sign_in(onedrive, trust_test_ca.bundle)
    b = backend(onedrive, store)
    before_answers, before_tokens = len(onedrive.answers), len(onedrive.token_requests)
    b.create()
    b.save(Handle.config(), b"x")
    refreshed = [r for r in onedrive.token_requests[before_tokens:] if r["grant_type"] == "refresh_token"]
    assert refreshed
    # no request was refused: the token was refreshed before use, not after a 401
    assert [a for a in onedrive.answers[before_answers:] if a[2] == 401] == []


def test_revoked_refresh_token_asks_to_sign_in_again(onedrive: OneDriveFake, trust_test_ca: TestCA) -> None:
    store = sign_in(onedrive, trust_test_ca.bundle)
    b = backend(onedrive, store)
    b.save(Handle.config(), b"x")
    onedrive.revoke_refresh_tokens()
    with pytest.raises(PermissionDenied) as info:
        b.load(Handle.config())
    assert "signed Safekeep out" in str(info.value) and "withdrawn" in str(info.value)
    assert "Sign in again" in info.value.hint and "safekeep login onedrive" in info.value.hint


def test_token_service_outage_is_transient(onedrive: OneDriveFake, signed_in: MemorySecretStore) -> None:
    b = backend(onedrive, signed_in)
    b.save(Handle.config(), b"x")
    onedrive.expire_access_tokens()
    # MSAL itself holds back repeats of a failed token request for Retry-After (5 s by default)
    onedrive.fail_next(503, where="token", retry_after="0")
    with pytest.raises(TransientStorageError) as info:
        b.load(Handle.config())
    assert "sign-in service" in str(info.value)
    assert b.load(Handle.config()) == b"x"


# -- the file API ----------------------------------------------------------------------------


def test_round_trip_through_the_engine(
    onedrive: OneDriveFake, signed_in: MemorySecretStore, tmp_path: Path
) -> None:
    where = folder()
    options = StorageOptions(provider=onedrive.settings(signed_in, **SMALL_SESSIONS))
    round_trip(f"onedrive:{where}", options, tmp_path)
    stored = onedrive.files(prefix=f"{APP_FOLDER}/{where}/")
    assert f"{APP_FOLDER}/{where}/config" in stored
    assert any(p.startswith(f"{APP_FOLDER}/{where}/data/") for p in stored)


def test_dropped_upload_resumes_where_it_stopped(
    onedrive: OneDriveFake, signed_in: MemorySecretStore
) -> None:
    b = backend(onedrive, signed_in, **SMALL_SESSIONS)
    data = blob(10 * FRAGMENT_MULTIPLE + 12345, seed=1)
    h = pack(data)
    b.create()
    onedrive.drop_upload_after = FRAGMENT_MULTIPLE // 2  # the first fragment's connection drops halfway
    received = onedrive.bytes_received
    before = len(onedrive.log)
    b.save(h, data)
    assert b.load(h) == data
    sent = onedrive.bytes_received - received
    assert len(data) <= sent < len(data) + 2 * FRAGMENT_MULTIPLE  # resumed, not started over
    session_gets = [p for m, p, _ in onedrive.log[before:] if m == "GET" and p.startswith("/upload/")]
    assert len(session_gets) == 1  # asked the session where to continue
    assert all(not auth for m, p, auth in onedrive.log[before:] if p.startswith("/upload/"))
    assert onedrive.open_sessions() == 0


def test_dropped_upload_late_in_a_large_file(onedrive: OneDriveFake, signed_in: MemorySecretStore) -> None:
    b = backend(onedrive, signed_in, **SMALL_SESSIONS)
    data = blob(6 * 1024 * 1024, seed=2)
    h = pack(data)
    received = onedrive.bytes_received
    onedrive.fail_next(503, where="fragment", retry_after="1")  # a 5xx on one fragment
    b.save(h, data)
    onedrive.drop_upload_after = 1000
    data2 = blob(6 * 1024 * 1024, seed=3)
    b.save(pack(data2), data2)
    assert b.load(h) == data and b.load(pack(data2)) == data2
    assert onedrive.bytes_received - received < 2 * (len(data) + len(data2))


def test_cancelled_session_is_deleted(onedrive: OneDriveFake, signed_in: MemorySecretStore) -> None:
    b = backend(onedrive, signed_in, **SMALL_SESSIONS)
    b.create()
    data = blob(3 * 1024 * 1024, seed=4)
    h = pack(data)

    class CancelAfterFragments(CancelToken):
        checks = 0

        def raise_if_cancelled(self) -> None:
            self.checks += 1
            if self.checks == 8:
                self.cancel()
            super().raise_if_cancelled()

    with pytest.raises(Cancelled):
        b.save(h, data, cancel=CancelAfterFragments())
    assert onedrive.open_sessions() == 0
    with pytest.raises(NotFound):
        b.stat(h)
    assert list(b.list(FileType.PACK)) == []


def test_listing_follows_next_links(onedrive: OneDriveFake, signed_in: MemorySecretStore) -> None:
    onedrive.page_cap = 7
    b = backend(onedrive, signed_in)
    names = set()
    for i in range(23):
        h = Handle(FileType.LOCK, f"{i:064x}")
        b.save(h, b"lock %d" % i)
        names.add(h.name)
    before = len(onedrive.log)
    listed = list(b.list(FileType.LOCK))
    assert sorted(fi.name for fi in listed) == sorted(names)
    assert FileInfo(f"{3:064x}", 6) in listed
    calls = [p for m, p, _ in onedrive.log[before:] if m == "GET" and p.endswith("/children")]
    assert len(calls) == 4  # 7 + 7 + 7 + 2


def test_ranged_download_uses_the_preauthenticated_address(
    onedrive: OneDriveFake, signed_in: MemorySecretStore
) -> None:
    b = backend(onedrive, signed_in)
    data = blob(5000, seed=5)
    h = pack(data)
    b.save(h, data)
    before = len(onedrive.log)
    assert b.load(h, 100, 50) == data[100:150]
    assert b.load(h, 4990) == data[4990:]
    assert b.load(h, 6000, 10) == b""
    downloads = [(p, auth) for m, p, auth in onedrive.log[before:] if p.startswith("/download/")]
    assert len(downloads) == 3 and not any(auth for _, auth in downloads)


def test_expired_download_address_is_transient(onedrive: OneDriveFake, signed_in: MemorySecretStore) -> None:
    b = backend(onedrive, signed_in)
    b.save(Handle.config(), b"x")
    onedrive.fail_next(401, where="download")
    with pytest.raises(TransientStorageError, match="download address"):
        b.load(Handle.config())
    assert b.load(Handle.config()) == b"x"  # still signed in: a new address works


def test_rate_limit_carries_retry_after(onedrive: OneDriveFake, signed_in: MemorySecretStore) -> None:
    b = backend(onedrive, signed_in)
    b.save(Handle.config(), b"x")
    onedrive.fail_next(429, retry_after="7")
    with pytest.raises(TransientStorageError) as info:
        b.load(Handle.config())
    assert info.value.retry_after == 7.0
    onedrive.fail_next(503, retry_after="3", code="serviceNotAvailable")
    with pytest.raises(TransientStorageError) as info:
        b.stat(Handle.config())
    assert info.value.retry_after == 3.0
    onedrive.fail_next(500)
    with pytest.raises(TransientStorageError):
        list(b.list(FileType.KEY))


def test_retry_wrapper_waits_as_told(onedrive: OneDriveFake, signed_in: MemorySecretStore) -> None:
    where = folder()
    clock = FakeClock()
    options = StorageOptions(provider=onedrive.settings(signed_in), retry_seed=1)
    b = open_backend(f"onedrive:{where}", options=options, clock=clock)
    onedrive.fail_next(429, count=2, retry_after="11")
    b.save(Handle.config(), b"config")
    assert b.load(Handle.config()) == b"config"
    assert sum(clock.sleeps) >= 22  # twice the Retry-After, on the injected clock


def test_full_drive_is_quota_exceeded(onedrive: OneDriveFake, signed_in: MemorySecretStore) -> None:
    b = backend(onedrive, signed_in, **SMALL_SESSIONS)
    b.create()
    onedrive.quota_total = sum(len(d) for d in onedrive.files().values()) + 1000
    for data in (blob(5000, seed=6), blob(2 * 1024 * 1024, seed=7)):  # simple upload, then a session
        h = pack(data)
        received = onedrive.bytes_received
        with pytest.raises(QuotaExceeded) as info:
            b.save(h, data)
        assert "The OneDrive is full" in str(info.value) and "recycle bin" in info.value.hint
        with pytest.raises(NotFound):
            b.stat(h)
    # the session was refused when it was opened (Graph is told the size): no byte was sent
    assert onedrive.bytes_received == received
    assert onedrive.open_sessions() == 0
    free = b.free_space()
    assert free is not None and free <= 1000


def test_drive_filling_up_during_a_session(onedrive: OneDriveFake, signed_in: MemorySecretStore) -> None:
    b = backend(onedrive, signed_in, **SMALL_SESSIONS)
    b.create()
    data = blob(2 * 1024 * 1024, seed=10)
    onedrive.fail_next(507, where="fragment")  # another device filled the drive meanwhile
    with pytest.raises(QuotaExceeded):
        b.save(pack(data), data)
    assert onedrive.open_sessions() == 0 and list(b.list(FileType.PACK)) == []


def test_folders_made_by_another_client_are_used(
    onedrive: OneDriveFake, signed_in: MemorySecretStore
) -> None:
    where = folder()
    first, second = backend(onedrive, signed_in, where), backend(onedrive, signed_in, where)
    first.create()
    before = len(onedrive.answers)
    second.create()  # every folder already exists: 409 nameAlreadyExists is fine
    assert [
        s for m, p, s in onedrive.answers[before:] if m == "POST" and p.endswith("/children") and s != 401
    ] == [409] * 5
    data = blob(100, seed=8)
    first.save(pack(data), data)
    assert second.load(pack(data)) == data
    again = blob(101, seed=9)
    second.save(Handle(FileType.PACK, pack(data).name[:2] + "f" * 62), again)  # the shard exists
    assert len(onedrive.folders(prefix=f"{APP_FOLDER}/{where}/data/")) == 1


def test_chosen_drive_needs_the_wider_scope(onedrive: OneDriveFake, trust_test_ca: TestCA) -> None:
    library = onedrive.add_drive("b!library-" + uuid.uuid4().hex[:8])
    options = {"onedrive.drive": library.id, "onedrive.root": "Backups/Safekeep"}
    app_folder_only = sign_in(onedrive, trust_test_ca.bundle)
    b = backend(onedrive, app_folder_only, "office", **options)
    with pytest.raises(PermissionDenied) as info:
        b.create()
    assert "Sign in again" in info.value.hint
    store = sign_in(onedrive, trust_test_ca.bundle, **options)
    scope = [r for r in onedrive.token_requests if r.get("grant_type") == "authorization_code"][-1]["scope"]
    assert "Files.ReadWrite.All" in scope.split()
    b = backend(onedrive, store, "office", **options)
    b.create()
    b.save(Handle.config(), b"in the library")
    assert onedrive.files(library.id) == {"Backups/Safekeep/office/config": b"in the library"}
    assert b.free_space() is not None


def test_options_and_location_syntax(onedrive: OneDriveFake, signed_in: MemorySecretStore) -> None:
    assert parse_location("onedrive:office/backup").path == "office/backup"
    assert parse_location("onedrive:").path == ""
    for bad in ("onedrive:a/../b", "onedrive:what?", "onedrive:a:b"):
        with pytest.raises(InvalidLocation):
            parse_location(bad)
    for opts in (
        {"onedrive.fragment-size": "300KiB"},
        {"onedrive.fragment-size": "61MiB"},
        {"onedrive.root": "x"},
        {"onedrive.graph-endpoint": "http://graph.example"},
        {"onedrive.authority": "http://login.example/common"},
        {"onedrive.response-mode": "fragment"},
    ):
        with pytest.raises(InvalidLocation):
            backend(onedrive, signed_in, **opts)
    no_client = ProviderSettings(env={}, options={}, store=signed_in)
    with pytest.raises(InvalidLocation) as info:
        create_backend(parse_location("onedrive:x"), no_client)
    assert "onedrive.client-id" in info.value.hint
