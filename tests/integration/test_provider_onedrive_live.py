"""The ``onedrive`` provider against the REAL OneDrive (Microsoft Graph), when credentials are given.

Skipped unless these environment variables are set, and always skipped under ``CI=true`` (CI has
no Microsoft account):

- ``SAFEKEEP_LIVE_ONEDRIVE_TOKEN`` — the stored sign-in: the JSON Safekeep keeps in the keyring
  under the secret name ``oauth-token`` for a ``onedrive:`` destination. To make one, run
  ``python -m tests.integration.test_provider_onedrive_live`` on a machine with a browser: it
  signs in and prints the JSON.
- ``SAFEKEEP_ONEDRIVE_CLIENT_ID`` — the Application (client) ID of the app registration the token
  was issued to (a public client with the redirect URI ``http://localhost`` and the Graph
  permission ``Files.ReadWrite.AppFolder``).
- optional ``SAFEKEEP_LIVE_ONEDRIVE_DRIVE`` — a drive or SharePoint library ID to test
  ``onedrive.drive`` instead of the app folder (the token must then carry ``Files.ReadWrite.All``:
  sign in with that variable set).

The test works in a fresh folder ``safekeep-live-<random>`` and deletes it at the end.
"""

from __future__ import annotations

import os
import random
import uuid
import webbrowser
from collections.abc import Iterator

import pytest

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.storage.base import FileType, Handle
from safekeep.storage.errors import NotFound
from safekeep.storage.providers.onedrive import OneDriveBackend
from safekeep.storage.providers.onedrive_auth import CLIENT_ID_ENV, TOKEN_SECRET, OneDriveSignIn
from safekeep.storage.registry import ProviderSettings, create_backend, parse_location
from safekeep.storage.secrets import MemorySecretStore

TOKEN_ENV = "SAFEKEEP_LIVE_ONEDRIVE_TOKEN"
DRIVE_ENV = "SAFEKEEP_LIVE_ONEDRIVE_DRIVE"


def _options() -> dict[str, str]:
    options = {"onedrive.upload-threshold": "1MiB", "onedrive.fragment-size": "320KiB"}
    if os.environ.get(DRIVE_ENV):
        options["onedrive.drive"] = os.environ[DRIVE_ENV]
    return options


@pytest.fixture
def live() -> Iterator[OneDriveBackend]:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.skip("live OneDrive tests never run in CI")
    token, client_id = os.environ.get(TOKEN_ENV), os.environ.get(CLIENT_ID_ENV)
    if not token or not client_id:
        pytest.skip(f"set {TOKEN_ENV} and {CLIENT_ID_ENV} to test against the real OneDrive")
    store = MemorySecretStore({TOKEN_SECRET: token})
    settings = ProviderSettings(env={CLIENT_ID_ENV: client_id}, options=_options(), store=store)
    backend = create_backend(parse_location(f"onedrive:safekeep-live-{uuid.uuid4().hex[:10]}"), settings)
    assert isinstance(backend, OneDriveBackend)
    try:
        yield backend
    finally:
        resp = backend._call("DELETE", backend._item_url(backend._path("")), NEVER)  # the test folder
        resp.close()
        backend.close()


def test_live_round_trip(live: OneDriveBackend) -> None:
    live.create()
    small = b"live config"
    big = random.Random(1).randbytes(3 * 1024 * 1024 + 5)  # an upload session
    pack = Handle(FileType.PACK, "ab" + uuid.uuid4().hex * 2)
    live.save(Handle.config(), small)
    live.save(pack, big)
    assert live.load(Handle.config()) == small
    assert live.load(pack, 1_000_000, 10) == big[1_000_000:1_000_010]
    assert live.load(pack) == big
    assert [fi.name for fi in live.list(FileType.PACK)] == [pack.name]
    assert live.stat(pack).size == len(big)
    live.remove(pack)
    with pytest.raises(NotFound):
        live.stat(pack)
    assert live.free_space() is None or live.free_space() >= 0  # type: ignore[operator]


class _SystemBrowser:
    def open(self, url: str) -> None:
        print(f"Opening {url}")
        webbrowser.open(url)

    def redirected(self, cancel: CancelToken) -> str | None:
        return None


if __name__ == "__main__":  # make SAFEKEEP_LIVE_ONEDRIVE_TOKEN
    client = os.environ.get(CLIENT_ID_ENV)
    if not client:
        raise SystemExit(f"Set {CLIENT_ID_ENV} to your app registration's client ID first.")
    signed_in = MemorySecretStore()
    opts = {"onedrive.drive": os.environ[DRIVE_ENV]} if os.environ.get(DRIVE_ENV) else {}
    OneDriveSignIn().sign_in(
        parse_location("onedrive:x"),
        ProviderSettings(env={CLIENT_ID_ENV: client}, options=opts),
        signed_in,
        _SystemBrowser(),
    )
    print(signed_in.get(TOKEN_SECRET))
