"""The ``gdrive`` provider and its sign-in against the local Google Drive fake (not Google).

Google Drive cannot run here: these tests drive the real google-api-python-client, google-auth
and google-auth-oauthlib (the real loopback + PKCE sign-in, silent refresh, resumable uploads,
ranged downloads, paged queries) against a FAKE over TLS that follows Google's documented wire
format (``tests/fakes/gdrive_fake.py``). Every test here runs with ``loopback_only``: a connection
to anything but this machine fails the test.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from tests.fakes.gdrive_fake import FULL_SCOPE, ConsentBrowser, GDriveFake
from tests.fakes.tls import TestCA
from tests.integration.roundtrip import round_trip

from safekeep.common.clock import FakeClock
from safekeep.storage.base import FileInfo, FileType, Handle
from safekeep.storage.compose import StorageOptions
from safekeep.storage.errors import (
    InvalidLocation,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    TransientStorageError,
)
from safekeep.storage.oauth_loopback import SignInError
from safekeep.storage.providers.gdrive import GDriveBackend
from safekeep.storage.providers.gdrive_auth import SCOPE, TOKEN_SECRET, TokenRecord
from safekeep.storage.registry import ProviderSettings, create_backend, parse_location
from safekeep.storage.secrets import MemorySecretStore
from safekeep.storage.signin import sign_in_flow

MiB = 1024 * 1024


@pytest.fixture
def drive(trust_test_ca: TestCA, loopback_only: None) -> Iterator[GDriveFake]:
    with GDriveFake(trust_test_ca.server_context) as fake:
        yield fake


def signed_in(fake: GDriveFake, *, scope: str = SCOPE) -> MemorySecretStore:
    return MemorySecretStore({TOKEN_SECRET: fake.offline_token(scope=scope)})


def backend(
    fake: GDriveFake,
    location: str = "gdrive:Safekeep/office",
    store: MemorySecretStore | None = None,
    *,
    clock: FakeClock | None = None,
    **options: str,
) -> GDriveBackend:
    settings = fake.settings(store or signed_in(fake), **options)
    if clock is not None:
        return GDriveBackend(parse_location(location), settings, clock=clock)
    b = create_backend(parse_location(location), settings)
    assert isinstance(b, GDriveBackend)
    return b


def pack(data: bytes) -> Handle:
    return Handle(FileType.PACK, hashlib.sha256(data).hexdigest())


# -- sign-in -------------------------------------------------------------------------------------


def test_sign_in_through_the_browser_then_use_the_drive(drive: GDriveFake) -> None:
    store = MemorySecretStore()
    location = parse_location("gdrive:Safekeep/office")
    settings = drive.settings(store)
    browser = drive.browser()
    account = sign_in_flow("gdrive").sign_in(location, settings, store, browser)
    assert browser.error is None
    assert (account.name, account.email) == ("Office Admin", "office@example.org")
    # the consent address asked for PKCE (S256), a state, offline access and only drive.file
    (url,) = browser.opened
    assert url.startswith(drive.url + "/o/oauth2/auth?")
    query = dict(urllib.parse.parse_qsl(url.split("?", 1)[1]))
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) >= 43
    assert query["state"] and query["access_type"] == "offline" and query["scope"] == SCOPE
    assert query["redirect_uri"].startswith("http://127.0.0.1:")
    assert browser.landed is not None and browser.landed.startswith(query["redirect_uri"])
    assert [r["grant_type"] for r in drive.token_requests] == ["authorization_code"]
    record = TokenRecord.from_json(store.get(TOKEN_SECRET) or "")
    assert record.refresh_token.startswith("1//") and record.client_id == drive.client_id
    assert record.refresh_token not in repr(record)
    assert sign_in_flow("gdrive").account(location, settings, store) == account

    b = create_backend(location, settings)
    b.create()
    b.save(Handle.config(), b"config")
    assert b.load(Handle.config()) == b"config"
    # the access token from the sign-in was refreshed from the stored refresh token
    assert [r["grant_type"] for r in drive.token_requests] == ["authorization_code", "refresh_token"]
    b.close()


def test_sign_in_on_a_headless_machine_by_pasting_the_address(drive: GDriveFake) -> None:
    store = MemorySecretStore()
    browser = drive.browser(paste=True)
    account = sign_in_flow("gdrive").sign_in(
        parse_location("gdrive:x"), drive.settings(store), store, browser
    )
    assert browser.error is None and browser.landed is None  # the loopback was never visited
    assert account.email == "office@example.org"
    assert store.get(TOKEN_SECRET)


def test_sign_in_refused_by_the_person(drive: GDriveFake) -> None:
    store = MemorySecretStore()
    with pytest.raises(SignInError) as info:
        sign_in_flow("gdrive").sign_in(
            parse_location("gdrive:x"), drive.settings(store), store, drive.browser(decision="deny")
        )
    assert "did not allow" in str(info.value) and "Allow" in info.value.hint
    assert store.get(TOKEN_SECRET) is None


class _ForgingBrowser(ConsentBrowser):
    """An answer that does not belong to this sign-in (another ``state``)."""

    def redirected(self, cancel):  # type: ignore[no-untyped-def]
        pasted = super().redirected(cancel)
        assert pasted is not None
        return pasted.replace("state=", "state=forged")


def test_sign_in_checks_the_state(drive: GDriveFake) -> None:
    store = MemorySecretStore()
    with pytest.raises(SignInError) as info:
        sign_in_flow("gdrive").sign_in(
            parse_location("gdrive:x"), drive.settings(store), store, _ForgingBrowser(paste=True)
        )
    assert "does not belong to this sign-in" in str(info.value)
    assert store.get(TOKEN_SECRET) is None


def test_the_fake_verifies_pkce(drive: GDriveFake, trust_test_ca: TestCA) -> None:
    """The token endpoint refuses a code without the right verifier, so the sign-in above proves PKCE."""
    verifier = "v" * 50
    challenge = "x" * 43  # not the S256 of the verifier
    consent = requests.get(
        drive.url + "/o/oauth2/auth",
        params={
            "client_id": drive.client_id,
            "redirect_uri": "http://127.0.0.1:9/",
            "response_type": "code",
            "scope": SCOPE,
            "state": "s",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        timeout=10,
    )
    consent_id = consent.text.split('name="consent" value="')[1].split('"')[0]
    reply = requests.post(
        drive.url + "/o/oauth2/approve",
        data={"consent": consent_id, "decision": "allow"},
        allow_redirects=False,
    )
    code = dict(urllib.parse.parse_qsl(reply.headers["Location"].split("?", 1)[1]))["code"]
    token = requests.post(
        drive.url + "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": drive.client_id,
            "client_secret": drive.client_secret,
            "redirect_uri": "http://127.0.0.1:9/",
            "code_verifier": verifier,
        },
        timeout=10,
    )
    assert token.status_code == 400 and token.json()["error"] == "invalid_grant"
    without = requests.get(drive.url + "/o/oauth2/auth", params={"client_id": drive.client_id}, timeout=10)
    assert without.status_code == 400


def test_sign_out_revokes_and_forgets(drive: GDriveFake) -> None:
    store = MemorySecretStore()
    location = parse_location("gdrive:x")
    settings = drive.settings(store)
    flow = sign_in_flow("gdrive")
    flow.sign_in(location, settings, store, drive.browser())
    record = TokenRecord.from_json(store.get(TOKEN_SECRET) or "")
    flow.sign_out(location, settings, store)
    assert store.get(TOKEN_SECRET) is None
    assert drive.grants[record.refresh_token].revoked
    assert flow.account(location, settings, store) is None
    with pytest.raises(PermissionDenied) as info:
        create_backend(location, settings)
    assert "not signed in" in str(info.value) and "safekeep login gdrive" in info.value.hint


def test_sign_out_while_google_is_unreachable_still_forgets(drive: GDriveFake) -> None:
    store = signed_in(drive)
    settings = drive.settings(store, **{"gdrive.revoke-uri": "https://127.0.0.1:9/revoke"})
    sign_in_flow("gdrive").sign_out(parse_location("gdrive:x"), settings, store)
    assert store.get(TOKEN_SECRET) is None


# -- tokens --------------------------------------------------------------------------------------


def test_expired_access_token_is_refreshed_silently(drive: GDriveFake) -> None:
    b = backend(drive)
    data = b"snapshot"
    h = Handle(FileType.SNAPSHOT, hashlib.sha256(data).hexdigest())
    b.save(h, data)
    refreshes = len(drive.token_requests)
    drive.expire_access_tokens()  # Drive now answers 401 to the token the client believes valid
    assert b.load(h) == data
    assert len(drive.token_requests) == refreshes + 1


def test_rotated_refresh_token_is_stored(drive: GDriveFake) -> None:
    drive.rotate_refresh_tokens = True
    store = signed_in(drive)
    before = TokenRecord.from_json(store.get(TOKEN_SECRET) or "").refresh_token
    b = backend(drive, store=store)
    b.create()
    after = TokenRecord.from_json(store.get(TOKEN_SECRET) or "")
    assert after.refresh_token != before and after.account_email == "office@example.org"
    drive.expire_access_tokens()
    assert list(b.list(FileType.SNAPSHOT)) == []  # refreshes again with the rotated token
    assert TokenRecord.from_json(store.get(TOKEN_SECRET) or "").refresh_token != after.refresh_token


def test_revoked_access_means_signed_out(drive: GDriveFake) -> None:
    b = backend(drive)
    b.create()
    drive.revoke_all()  # the person removed Safekeep in their Google Account
    drive.expire_access_tokens()
    with pytest.raises(PermissionDenied) as info:
        list(b.list(FileType.SNAPSHOT))
    assert "signed out" in str(info.value) and "Sign in again" in info.value.hint


def test_not_signed_in(drive: GDriveFake) -> None:
    for store in (None, MemorySecretStore(), MemorySecretStore({TOKEN_SECRET: "{damaged"})):
        with pytest.raises(PermissionDenied) as info:
            create_backend(parse_location("gdrive:x"), drive.settings(store))
        assert "not signed in" in str(info.value)
        assert "Sign in" in info.value.hint


# -- the round trip and large files --------------------------------------------------------------


def test_round_trip_through_the_engine(drive: GDriveFake, tmp_path: Path) -> None:
    drive.page_cap = 10
    settings = drive.settings(
        signed_in(drive), **{"gdrive.upload-threshold": "1MiB", "gdrive.chunk-size": "1MiB"}
    )
    round_trip("gdrive:Backups/office", StorageOptions(provider=settings), tmp_path)
    assert drive.find("Backups", "office", "config")
    assert any(q.get("uploadType") == "resumable" for q in (e.query for e in drive.log))


def test_upload_resumes_after_a_dropped_connection(drive: GDriveFake) -> None:
    clock = FakeClock()
    b = backend(drive, clock=clock, **{"gdrive.upload-threshold": "1MiB", "gdrive.chunk-size": "1MiB"})
    data = random.Random(1).randbytes(6 * MiB + 123)
    h = pack(data)
    drive.drop_upload_chunks = 3  # more than httplib2's own single re-send
    received = drive.upload_bytes_received
    b.save(h, data)
    sent = drive.upload_bytes_received - received
    assert b.load(h) == data
    assert drive.drop_upload_chunks == 0  # all three connections were dropped mid-chunk
    # resumed, not started over: at most what the drops cost again (whether a dropped chunk's
    # bytes are sent twice depends on how far the client got before the hang-up, so equality
    # with the file size is a perfect resume, not a missed drop)
    assert len(data) <= sent < 1.5 * len(data)
    status_queries = [
        e
        for e in drive.log
        if e.method == "PUT" and e.headers.get("content-range", "").startswith("bytes */")
    ]
    assert status_queries  # asked Drive how much had arrived
    assert len(drive.find("Safekeep", "office", "data", h.name[:2], h.name)) == 1


def test_upload_resumes_after_5xx_and_429_mid_session(drive: GDriveFake) -> None:
    clock = FakeClock()
    b = backend(drive, clock=clock, **{"gdrive.upload-threshold": "1MiB", "gdrive.chunk-size": "1MiB"})
    data = random.Random(2).randbytes(4 * MiB)
    drive.inject("chunk", 503, skip=1)
    drive.inject("chunk", 429, "rateLimitExceeded", retry_after=9, skip=1)
    b.save(pack(data), data)
    assert b.load(pack(data)) == data
    assert 9.0 in clock.sleeps  # honoured Retry-After while resuming


def test_ranged_loads_of_a_large_file(drive: GDriveFake) -> None:
    b = backend(drive)
    data = random.Random(3).randbytes(3 * MiB + 7)
    h = pack(data)
    b.save(h, data)
    assert b.load(h, MiB + 5, 1000) == data[MiB + 5 : MiB + 1005]
    assert b.load(h, 3 * MiB) == data[3 * MiB :]
    ranges = [e.headers.get("range") for e in drive.log if e.query.get("alt") == "media"]
    assert f"bytes={MiB + 5}-{MiB + 1004}" in ranges


# -- rate limits, failures, quota ----------------------------------------------------------------


@pytest.mark.parametrize(("status", "reason"), [(429, "rateLimitExceeded"), (403, "userRateLimitExceeded")])
def test_rate_limits_are_transient_with_retry_after(drive: GDriveFake, status: int, reason: str) -> None:
    b = backend(drive)
    b.create()
    drive.inject("list", status, reason, retry_after=7)
    with pytest.raises(TransientStorageError) as info:
        b.stat(Handle.config())
    assert info.value.retry_after == 7.0
    with pytest.raises(NotFound):  # the next call goes through
        b.stat(Handle.config())


def test_server_errors_are_transient(drive: GDriveFake) -> None:
    b = backend(drive)
    b.save(Handle.config(), b"cfg")
    drive.inject("media", 503)
    with pytest.raises(TransientStorageError):
        b.load(Handle.config())
    assert b.load(Handle.config()) == b"cfg"


def test_full_drive_is_a_clear_quota_error(drive: GDriveFake) -> None:
    b = backend(drive)
    b.create()
    drive.quota_limit = drive.used() + 10_000
    assert b.free_space() == 10_000
    small = b"k" * 5000
    b.save(Handle(FileType.KEY, hashlib.sha256(small).hexdigest()), small)
    for size in (20_000, 3 * MiB):  # multipart, and a resumable session
        data = random.Random(size).randbytes(size)
        with pytest.raises(QuotaExceeded) as info:
            backend(drive, **{"gdrive.upload-threshold": "1MiB"}).save(pack(data), data)
        assert "Google Drive is full" in str(info.value) and "Free up space" in info.value.hint
        with pytest.raises(NotFound):
            b.stat(pack(data))


def test_listing_pages(drive: GDriveFake) -> None:
    drive.page_cap = 7
    b = backend(drive)
    names = set()
    for i in range(30):
        h = Handle(FileType.LOCK, f"{i:064x}")
        b.save(h, f"lock {i}".encode())
        names.add(h.name)
    before = len(drive.log)
    listed = list(b.list(FileType.LOCK))
    assert sorted(fi.name for fi in listed) == sorted(names)
    pages = [e for e in drive.log[before:] if e.path == "/drive/v3/files" and e.method == "GET"]
    assert len(pages) >= 5 and sum("pageToken" in e.query for e in pages) == len(pages) - 1


# -- folders, duplicates, narrow access ----------------------------------------------------------


def test_one_folder_per_name_under_concurrent_saves(drive: GDriveFake) -> None:
    b = backend(drive)
    b.create()
    blobs = [b"ab" + bytes([i]) for i in range(16)]
    handles = [Handle(FileType.PACK, "ab" + hashlib.sha256(d).hexdigest()[2:]) for d in blobs]
    barrier = threading.Barrier(8)

    def save(i: int) -> None:
        barrier.wait()
        for j in range(i, 16, 8):
            b.save(handles[j], blobs[j])

    threads = [threading.Thread(target=save, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(drive.find("Safekeep", "office", "data", "ab", folder=True)) == 1
    assert len(list(b.list(FileType.PACK))) == 16


def test_separate_clients_racing_converge_on_the_oldest_folder(drive: GDriveFake) -> None:
    """Four clients (own caches, like four computers) create the same new folder at once."""
    store = signed_in(drive)
    backend(drive, store=store).create()
    clients = [backend(drive, store=store) for _ in range(4)]
    blobs = [b"cd" + bytes([i]) for i in range(4)]
    handles = [Handle(FileType.PACK, "cd" + hashlib.sha256(d).hexdigest()[2:]) for d in blobs]
    barrier = threading.Barrier(4)

    def save(i: int) -> None:
        barrier.wait()
        clients[i].save(handles[i], blobs[i])

    threads = [threading.Thread(target=save, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    folders = drive.find("Safekeep", "office", "data", "cd", folder=True)
    assert folders  # maybe more than one: no client deletes a folder another may use
    oldest = folders[0]
    assert {it.name for it in drive.children(oldest.id)} == {h.name for h in handles}
    fresh = backend(drive, store=store)
    assert sorted(fi.name for fi in fresh.list(FileType.PACK)) == sorted(h.name for h in handles)


def test_duplicates_found_in_the_wild(drive: GDriveFake) -> None:
    """Two "Dup" folders, two "keys" folders, and a key file present twice: read safely."""
    first = drive.put_folder("Dup")
    second = drive.put_folder("Dup")
    keys_a = drive.put_folder("keys", first)
    keys_b = drive.put_folder("keys", second)
    key = b"key file content"
    name = hashlib.sha256(key).hexdigest()
    drive.put_file(name, keys_b, key)
    drive.put_file(name, keys_a, key)  # the same content-addressed file, twice
    other = b"another key"
    drive.put_file(hashlib.sha256(other).hexdigest(), keys_b, other)
    b = backend(drive, "gdrive:Dup")
    assert sorted(b.list(FileType.KEY), key=lambda fi: fi.name) == sorted(
        [FileInfo(name, len(key)), FileInfo(hashlib.sha256(other).hexdigest(), len(other))],
        key=lambda fi: fi.name,
    )
    assert b.load(Handle(FileType.KEY, name)) == key
    b.create()  # uses the oldest folders; makes no third
    assert len(drive.find("Dup", folder=True)) == 2 and len(drive.find("Dup", "keys", folder=True)) == 2
    b.save(Handle(FileType.KEY, name), key)  # already there: no third copy
    assert len(drive.find("Dup", "keys", name)) == 2
    new = b"new key"
    b.save(Handle(FileType.KEY, hashlib.sha256(new).hexdigest()), new)
    assert drive.find("Dup", "keys", hashlib.sha256(new).hexdigest())[0].parents == [keys_a]  # the oldest
    b.remove(Handle(FileType.KEY, name))  # every copy of the name
    assert drive.find("Dup", "keys", name) == []
    with pytest.raises(NotFound):
        b.load(Handle(FileType.KEY, name))
    assert len(drive.find("Dup", folder=True)) == 2  # no folder was deleted


def test_config_with_other_content_is_not_replaced(drive: GDriveFake) -> None:
    b = backend(drive)
    b.save(Handle.config(), b"first")
    b.save(Handle.config(), b"first")  # the same again: fine
    from safekeep.storage.errors import AlreadyExists

    with pytest.raises(AlreadyExists):
        b.save(Handle.config(), b"other!")
    assert b.load(Handle.config()) == b"first"


def test_sees_only_its_own_files(drive: GDriveFake) -> None:
    """drive.file: a "Safekeep" folder the person made in the web page is invisible to the app."""
    theirs = drive.put_folder("Safekeep", app=None)
    drive.put_file("config", drive.put_folder("office", theirs, app=None), b"private", app=None)
    b = backend(drive)
    with pytest.raises(NotFound):
        b.load(Handle.config())
    b.create()
    folders = drive.find("Safekeep", folder=True)
    assert len(folders) == 2 and theirs in {f.id for f in folders}
    b.save(Handle.config(), b"mine")
    assert b.load(Handle.config()) == b"mine"
    assert [it.data for it in drive.find("Safekeep", "office", "config")] == [b"private", b"mine"]


def test_a_file_removed_elsewhere_is_looked_up_again(drive: GDriveFake) -> None:
    store = signed_in(drive)
    a, other = backend(drive, store=store), backend(drive, store=store)
    data = b"index"
    h = Handle(FileType.INDEX, hashlib.sha256(data).hexdigest())
    a.save(h, data)
    assert a.load(h) == data  # its ID is cached now
    other.remove(h)
    with pytest.raises(NotFound):
        a.stat(h)
    with pytest.raises(NotFound):
        a.load(h)
    other.save(h, data)  # a new file with a new ID
    assert a.load(h) == data


def test_a_folder_deleted_elsewhere_is_made_anew(drive: GDriveFake) -> None:
    b = backend(drive)
    b.create()
    b.save(Handle.config(), b"cfg")
    (keys,) = drive.find("Safekeep", "office", "keys", folder=True)
    with drive.lock:
        del drive.items[keys.id]  # the person deleted the folder in the Drive web page
    data = b"key"
    b.save(Handle(FileType.KEY, hashlib.sha256(data).hexdigest()), data)
    assert [it.data for it in drive.find("Safekeep", "office", "keys", hashlib.sha256(data).hexdigest())] == [
        data
    ]


# -- shared drives -------------------------------------------------------------------------------


def test_shared_drive_by_id(drive: GDriveFake) -> None:
    drive_id = drive.add_shared_drive("Office")
    b = backend(drive, **{"gdrive.shared-drive": drive_id})
    b.create()
    data = random.Random(5).randbytes(2 * MiB)
    h = pack(data)
    b.save(h, data)
    assert b.load(h, 10, 10) == data[10:20]
    assert [fi.name for fi in b.list(FileType.PACK)] == [h.name]
    stored = drive.find("Safekeep", "office", "data", h.name[:2], h.name, base=drive_id)
    assert len(stored) == 1 and stored[0].drive_id == drive_id
    assert not drive.find("Safekeep")  # nothing in My Drive
    assert b.free_space() is None
    lists = [e.query for e in drive.log if e.path == "/drive/v3/files" and e.method == "GET"]
    assert all(q["corpora"] == "drive" and q["driveId"] == drive_id for q in lists)
    assert all(q["includeItemsFromAllDrives"] == "true" and q["supportsAllDrives"] == "true" for q in lists)
    drive.shared_drive_role = "contributor"  # may not delete: moved to the trash instead
    b.remove(h)
    assert [fi.name for fi in b.list(FileType.PACK)] == []


def test_shared_drive_by_name(drive: GDriveFake) -> None:
    drive_id = drive.add_shared_drive("Office Backups")
    with pytest.raises(InvalidLocation) as info:
        backend(drive, **{"gdrive.shared-drive": "Office Backups"}).create()
    assert "ID" in info.value.hint  # drive.file cannot list shared drives
    wide = backend(
        drive, store=signed_in(drive, scope=FULL_SCOPE), **{"gdrive.shared-drive": "Office Backups"}
    )
    wide.create()
    assert drive.find("Safekeep", "office", "keys", base=drive_id)
    with pytest.raises(InvalidLocation):
        backend(drive, store=signed_in(drive, scope=FULL_SCOPE), **{"gdrive.shared-drive": "Nope"}).create()


# -- location ------------------------------------------------------------------------------------


def test_location_syntax() -> None:
    loc = parse_location("gdrive:/Safekeep//office/")
    assert (loc.scheme, loc.path) == ("gdrive", "Safekeep/office")
    for bad in ("gdrive:", "gdrive:/", "gdrive:a/../b"):
        with pytest.raises(InvalidLocation):
            parse_location(bad)


def test_bad_options(drive: GDriveFake) -> None:
    with pytest.raises(InvalidLocation):
        backend(drive, **{"gdrive.chunk-size": "100KiB"})
    with pytest.raises(InvalidLocation):
        backend(drive, **{"gdrive.api-endpoint": "http://127.0.0.1:1"})
    settings = ProviderSettings(options={"gdrive.client-id": ""}, store=MemorySecretStore())
    assert json.loads(drive.offline_token())["client_id"] == drive.client_id
    with pytest.raises(PermissionDenied):
        create_backend(parse_location("gdrive:x"), settings)
