"""The ``dropbox`` provider and its sign-in against the local Dropbox fake (``tests/fakes/dropbox_fake.py``).

Dropbox cannot run here: these tests drive the real ``dropbox`` SDK — its OAuth redirect flow
with PKCE and its CSRF-checked ``state``, silent token refresh, upload sessions, ranged
downloads, paged listings — over HTTPS against a FAKE that follows Dropbox's documented wire
format, not against Dropbox. Every test that talks to the fake runs under ``loopback_only``
(through the ``dropbox_fake`` fixture), which fails any connection to another machine: the SDK
is pointed at the fake only through provider options, never through its process-wide hosts.
"""

from __future__ import annotations

import json
import random
import socket
import urllib.parse
import uuid
from pathlib import Path

import dropbox.session
import pytest
import requests
from tests.contract.targets.dropbox import settings_for
from tests.fakes.dropbox_fake import APP_KEY, Drop, DropboxFake
from tests.integration.roundtrip import round_trip

from safekeep.common.clock import FakeClock
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
from safekeep.storage.providers.dropbox import DropboxBackend
from safekeep.storage.providers.dropbox_auth import TOKEN_SECRET
from safekeep.storage.registry import ProviderSettings, create_backend, parse_location
from safekeep.storage.secrets import MemorySecretStore
from safekeep.storage.signin import sign_in_flow

MiB = 1024 * 1024


def fresh_location() -> str:
    return f"dropbox:tests/repo-{uuid.uuid4().hex[:12]}"


def provider(location: str, settings: ProviderSettings) -> DropboxBackend:
    b = create_backend(parse_location(location), settings)
    assert isinstance(b, DropboxBackend)
    return b


def pack(data: bytes) -> Handle:
    import hashlib

    return Handle(FileType.PACK, hashlib.sha256(data).hexdigest())


# -- sign-in -----------------------------------------------------------------------------------


def test_interactive_sign_in_end_to_end(dropbox_fake: DropboxFake) -> None:
    fake = dropbox_fake
    location = parse_location(fresh_location())
    settings = ProviderSettings(env={}, options=fake.options())
    store = MemorySecretStore()
    flow = sign_in_flow("dropbox")
    browser = fake.browser("allow")

    account = flow.sign_in(location, settings, store, browser)

    assert (account.name, account.email) == ("Office Admin", "office.admin@example.org")
    (url,) = browser.opened
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    assert (parts.scheme, parts.netloc, parts.path) == ("https", fake.host("web"), "/oauth2/authorize")
    assert query["client_id"] == APP_KEY
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["token_access_type"] == "offline"
    assert len(query["state"]) >= 20
    assert urllib.parse.urlsplit(query["redirect_uri"]).hostname == "127.0.0.1"
    assert "Allow" in browser.consent_page
    stored = json.loads(store.get(TOKEN_SECRET) or "{}")
    assert fake.token_alive(stored["refresh_token"])
    assert stored["app_key"] == APP_KEY and stored["account_id"] == fake.default_account.account_id
    assert "access_token" not in stored  # access tokens stay in memory
    assert flow.account(location, settings, store) == account

    # the tokens work for the storage; the first call refreshes the access token silently
    backend = provider(location.raw, ProviderSettings(env={}, options=fake.options(), store=store))
    backend.create()
    backend.save(Handle.config(), b"signed in")
    assert backend.load(Handle.config()) == b"signed in"
    backend.close()

    revocations = fake.revocations
    flow.sign_out(location, settings, store)
    assert fake.revocations == revocations + 1
    assert not fake.token_alive(stored["refresh_token"])
    assert store.get(TOKEN_SECRET) is None
    assert flow.account(location, settings, store) is None
    with pytest.raises(PermissionDenied) as info:
        provider(location.raw, ProviderSettings(env={}, options=fake.options(), store=store))
    assert "not signed in" in str(info.value)
    assert "safekeep login dropbox" in info.value.hint


def test_sign_in_pasting_the_address_on_a_headless_machine(dropbox_fake: DropboxFake) -> None:
    settings = ProviderSettings(env={}, options=dropbox_fake.options())
    store = MemorySecretStore()
    account = sign_in_flow("dropbox").sign_in(
        parse_location("dropbox:x"), settings, store, dropbox_fake.browser("allow", paste=True)
    )
    assert account.name == "Office Admin"
    assert dropbox_fake.token_alive(json.loads(store.get(TOKEN_SECRET) or "{}")["refresh_token"])


def test_sign_in_refused_by_the_person(dropbox_fake: DropboxFake) -> None:
    store = MemorySecretStore()
    with pytest.raises(SignInError) as info:
        sign_in_flow("dropbox").sign_in(
            parse_location("dropbox:x"),
            ProviderSettings(env={}, options=dropbox_fake.options()),
            store,
            dropbox_fake.browser("deny"),
        )
    assert "did not allow" in str(info.value)
    assert store.names() == []


def test_sign_in_with_a_forged_state_is_refused(dropbox_fake: DropboxFake) -> None:
    store = MemorySecretStore()
    codes_before = {c for c, g in dropbox_fake.codes.items() if g.used}
    with pytest.raises(SignInError) as info:
        sign_in_flow("dropbox").sign_in(
            parse_location("dropbox:x"),
            ProviderSettings(env={}, options=dropbox_fake.options()),
            store,
            dropbox_fake.browser("allow", tamper_state=True),
        )
    assert "state did not match" in str(info.value)
    assert store.names() == []
    assert {c for c, g in dropbox_fake.codes.items() if g.used} == codes_before  # never redeemed


def test_token_endpoint_verifies_pkce(dropbox_fake: DropboxFake) -> None:
    """The fake's token endpoint refuses a code redeemed without the right verifier."""
    browser = dropbox_fake.browser("allow", paste=True)
    verifier = "v" * 64
    import base64
    import hashlib

    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    redirect = "http://127.0.0.1:9/"
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": APP_KEY,
            "redirect_uri": redirect,
            "state": "s" * 24,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    browser.open(f"https://{dropbox_fake.host('web')}/oauth2/authorize?{query}")
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(browser.redirected(None)).query))["code"]  # type: ignore[arg-type]
    token_url = f"https://{dropbox_fake.host('api')}/oauth2/token"
    form = {"grant_type": "authorization_code", "code": code, "client_id": APP_KEY, "redirect_uri": redirect}
    bad = requests.post(token_url, data={**form, "code_verifier": "w" * 64}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
    # a code is single-use: even the right verifier cannot redeem it after a failed attempt
    again = requests.post(token_url, data={**form, "code_verifier": verifier}, timeout=30)
    assert again.status_code == 400


def test_no_app_key_is_a_clear_sign_in_error(dropbox_fake: DropboxFake) -> None:
    options = {k: v for k, v in dropbox_fake.options().items() if k != "dropbox.client-id"}
    with pytest.raises(SignInError) as info:
        sign_in_flow("dropbox").sign_in(
            parse_location("dropbox:x"),
            ProviderSettings(env={}, options=options),
            MemorySecretStore(),
            dropbox_fake.browser(),
        )
    assert "SAFEKEEP_DROPBOX_CLIENT_ID" in info.value.hint


def test_busy_redirect_port_is_a_clear_sign_in_error(dropbox_fake: DropboxFake) -> None:
    browser = dropbox_fake.browser()
    with socket.socket() as other:  # another program holds the registered port
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(SignInError) as info:
            sign_in_flow("dropbox").sign_in(
                parse_location("dropbox:x"),
                ProviderSettings(
                    env={}, options=dropbox_fake.options(**{"dropbox.redirect-port": str(port)})
                ),
                MemorySecretStore(),
                browser,
            )
    assert f"port {port}" in str(info.value)
    assert browser.opened == []  # no consent page shown for a sign-in that cannot finish


# -- tokens ------------------------------------------------------------------------------------


def test_expired_access_token_is_refreshed_silently(dropbox_fake: DropboxFake) -> None:
    b = provider(fresh_location(), settings_for(dropbox_fake))
    b.create()
    refreshes = dropbox_fake.refreshes
    dropbox_fake.expire_access_tokens()
    b.save(Handle.config(), b"after expiry")
    assert b.load(Handle.config()) == b"after expiry"
    assert dropbox_fake.refreshes == refreshes + 1


def test_revoked_access_means_signed_out(dropbox_fake: DropboxFake) -> None:
    account = dropbox_fake.add_account(name="Revoked Person")
    settings = settings_for(dropbox_fake, account)
    location = fresh_location()
    b = provider(location, settings)
    b.create()
    dropbox_fake.revoke_all(account)  # the person removed Safekeep in their Dropbox settings
    with pytest.raises(PermissionDenied) as info:
        b.save(Handle.config(), b"x")  # the access token is refused
    assert "signed out" in str(info.value)
    assert "Sign in again" in info.value.hint
    with pytest.raises(PermissionDenied) as info:
        provider(location, settings).create()  # the refresh token is refused
    assert "signed out" in str(info.value)


# -- rate limits, server errors, quota ---------------------------------------------------------


def test_rate_limit_carries_retry_after(dropbox_fake: DropboxFake) -> None:
    b = provider(fresh_location(), settings_for(dropbox_fake))
    b.create()
    dropbox_fake.rate_limit(1, retry_after=7)
    with pytest.raises(TransientStorageError) as info:
        b.save(Handle.config(), b"x")
    assert info.value.retry_after == 7
    assert "slow down" in str(info.value)
    b.save(Handle.config(), b"x")
    assert b.load(Handle.config()) == b"x"


def test_server_error_is_transient_with_retry_after(dropbox_fake: DropboxFake) -> None:
    b = provider(fresh_location(), settings_for(dropbox_fake))
    b.create()
    dropbox_fake.fail(1, status=503, retry_after=11)
    with pytest.raises(TransientStorageError) as info:
        list(b.list(FileType.SNAPSHOT))
    assert info.value.retry_after == 11
    dropbox_fake.fail(1, status=500)
    with pytest.raises(TransientStorageError) as info:
        b.stat(Handle.config())
    assert info.value.retry_after is None


def test_retry_wrapper_honours_retry_after(dropbox_fake: DropboxFake) -> None:
    clock = FakeClock()
    options = StorageOptions(provider=settings_for(dropbox_fake), retry_seed=1)
    backend = open_backend(fresh_location(), options=options, clock=clock)
    backend.create()
    dropbox_fake.rate_limit(2, retry_after=4)
    backend.save(Handle.config(), b"patient")
    assert backend.load(Handle.config()) == b"patient"
    assert sum(clock.sleeps) >= 2 * 4  # waited as long as Dropbox asked, twice (on the fake clock)


def test_full_dropbox_is_quota_exceeded(dropbox_fake: DropboxFake) -> None:
    account = dropbox_fake.add_account(name="Full Drive", quota=3 * MiB)
    b = provider(fresh_location(), settings_for(dropbox_fake, account))
    b.create()
    first = random.Random(1).randbytes(2 * MiB + MiB // 2)
    b.save(pack(first), first)
    single = random.Random(2).randbytes(900 * 1024)  # one files/upload request
    session = random.Random(3).randbytes(2 * MiB)  # an upload session, refused at finish
    for data in (single, session):
        with pytest.raises(QuotaExceeded) as info:
            b.save(pack(data), data)
        assert "Your Dropbox is full" in str(info.value)
        assert "Free up space" in info.value.hint
        with pytest.raises(NotFound):
            b.stat(pack(data))
    free = b.free_space()
    assert free == MiB // 2


# -- uploads, downloads, listings --------------------------------------------------------------


@pytest.mark.parametrize("after_commit", [False, True], ids=["dropped-while-sending", "answer-lost"])
def test_upload_session_resumes_after_a_dropped_connection(
    dropbox_fake: DropboxFake, after_commit: bool
) -> None:
    b = provider(fresh_location(), settings_for(dropbox_fake))
    b.create()
    data = random.Random(5).randbytes(6 * MiB + 123)
    h = pack(data)
    dropbox_fake.drop(Drop("files/upload_session/append_v2", after_commit=after_commit, skip=5))
    received = dropbox_fake.bytes_received
    log_start = len(dropbox_fake.log)
    b.save(h, data)
    assert b.load(h) == data
    sent = dropbox_fake.bytes_received - received
    assert len(data) <= sent < 1.2 * len(data)  # one 512 KiB piece again at most, never a restart
    routes = [p for (_, _, p) in dropbox_fake.log[log_start:]]
    assert routes.count("/2/files/upload_session/start") == 1
    assert routes.count("/2/files/upload_session/finish") == 1
    pieces = -(-len(data) // (512 * 1024))
    # every piece once, the dropped request, one empty append asking Dropbox for its offset, and
    # the dropped piece again only if Dropbox had not kept it
    assert routes.count("/2/files/upload_session/append_v2") == pieces + (1 if after_commit else 2)
    if after_commit:
        assert sent == len(data)


def test_lost_answer_to_finish_is_recognised(dropbox_fake: DropboxFake) -> None:
    b = provider(fresh_location(), settings_for(dropbox_fake))
    b.create()
    data = random.Random(6).randbytes(2 * MiB)
    dropbox_fake.drop(Drop("files/upload_session/finish", after_commit=True))
    b.save(pack(data), data)
    assert b.load(pack(data)) == data
    assert list(b.list(FileType.PACK)) == [FileInfo(pack(data).name, len(data))]


def test_failed_session_leaves_nothing_and_the_next_save_works(dropbox_fake: DropboxFake) -> None:
    b = provider(fresh_location(), settings_for(dropbox_fake))
    b.create()
    data = random.Random(7).randbytes(3 * MiB)
    dropbox_fake.fail(1, status=500, route="files/upload_session/append_v2")
    with pytest.raises(TransientStorageError):
        b.save(pack(data), data)
    assert list(b.list(FileType.PACK)) == []
    b.save(pack(data), data)
    assert b.load(pack(data), 100, 50) == data[100:150]


def test_listing_follows_cursor_pages(dropbox_fake: DropboxFake) -> None:
    b = provider(fresh_location(), settings_for(dropbox_fake, **{"dropbox.page-size": "7"}))
    b.create()
    names = set()
    for i in range(30):
        h = Handle(FileType.LOCK, f"{i:064x}")
        b.save(h, f"lock {i}".encode())
        names.add(h.name)
    start = len(dropbox_fake.log)
    listed = list(b.list(FileType.LOCK))
    assert {fi.name for fi in listed} == names and len(listed) == 30
    calls = [p for (_, _, p) in dropbox_fake.log[start:]]
    assert calls.count("/2/files/list_folder") == 1
    assert calls.count("/2/files/list_folder/continue") == 4  # 30 entries in pages of 7


def test_requests_go_to_the_configured_hosts_only(dropbox_fake: DropboxFake) -> None:
    start = len(dropbox_fake.log)
    b = provider(fresh_location(), settings_for(dropbox_fake))
    b.create()
    data = random.Random(8).randbytes(2 * MiB)
    b.save(pack(data), data)
    assert b.load(pack(data), 5, 5) == data[5:10]
    b.remove(pack(data))
    roles = {(role, path) for (role, _, path) in dropbox_fake.log[start:]}
    assert ("api", "/oauth2/token") in roles
    assert ("api", "/2/files/create_folder_v2") in roles
    assert ("content", "/2/files/upload_session/append_v2") in roles
    assert ("content", "/2/files/download") in roles
    assert ("api", "/2/files/delete_v2") in roles
    # the SDK's process-wide hosts were never changed
    assert dropbox.session.API_HOST.endswith("dropboxapi.com")
    assert dropbox.session.API_CONTENT_HOST.endswith("dropboxapi.com")
    assert dropbox.session.WEB_HOST.endswith("dropbox.com")


def test_location_that_is_a_file(dropbox_fake: DropboxFake) -> None:
    name = uuid.uuid4().hex[:12]
    b = provider(f"dropbox:tests/{name}", settings_for(dropbox_fake))
    b.create()
    b.save(Handle.config(), b"x")
    clash = provider(f"dropbox:tests/{name}/config", settings_for(dropbox_fake))
    with pytest.raises(InvalidLocation) as info:
        clash.create()
    assert "is a file" in str(info.value)


def test_round_trip_through_the_engine(dropbox_fake: DropboxFake, tmp_path: Path) -> None:
    options = StorageOptions(provider=settings_for(dropbox_fake))
    round_trip(fresh_location(), options, tmp_path)
    stored = dropbox_fake.files()
    assert any("/data/" in p for p in stored) and any(p.endswith("/config") for p in stored)
