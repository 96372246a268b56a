"""The ``dropbox`` provider against the REAL Dropbox service (not the fake), when credentials exist.

Skipped unless ``SAFEKEEP_LIVE_DROPBOX_TOKEN`` is set, and always skipped under ``CI=true`` (CI
has no Dropbox account). The variable holds the JSON Safekeep keeps after signing in, e.g.::

    SAFEKEEP_LIVE_DROPBOX_TOKEN='{"refresh_token": "...", "app_key": "<the app key it was issued to>"}'

Get one by signing in once (``safekeep login dropbox``) and copying the ``oauth-token`` secret of
that destination from the keyring. The tests work in a fresh folder ``safekeep-live-<random>``
inside the app folder and delete it afterwards. They make real network connections, so they do
not use the loopback guard.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator

import pytest
from tests.servers import in_ci

from safekeep.storage.base import FileInfo, FileType, Handle
from safekeep.storage.errors import NotFound
from safekeep.storage.providers.dropbox import DropboxBackend
from safekeep.storage.providers.dropbox_auth import TOKEN_SECRET, StoredToken
from safekeep.storage.registry import ProviderSettings, create_backend, parse_location
from safekeep.storage.secrets import MemorySecretStore

TOKEN_ENV = "SAFEKEEP_LIVE_DROPBOX_TOKEN"

pytestmark = [
    pytest.mark.skipif(in_ci(), reason="live Dropbox tests never run in CI"),
    pytest.mark.skipif(not os.environ.get(TOKEN_ENV), reason=f"{TOKEN_ENV} is not set"),
]


@pytest.fixture
def live() -> Iterator[DropboxBackend]:
    token = StoredToken.from_json(os.environ[TOKEN_ENV])
    assert token is not None, f"{TOKEN_ENV} must hold JSON with refresh_token and app_key"
    folder = f"safekeep-live-{uuid.uuid4().hex[:10]}"
    options = {"dropbox.upload-threshold": "1MiB", "dropbox.chunk-size": "1MiB"}
    settings = ProviderSettings(options=options, store=MemorySecretStore({TOKEN_SECRET: token.to_json()}))
    b = create_backend(parse_location(f"dropbox:{folder}"), settings)
    assert isinstance(b, DropboxBackend)
    b.create()
    try:
        yield b
    finally:
        b.client.files_delete_v2("/" + folder)
        b.close()


def test_live_save_load_list_remove(live: DropboxBackend) -> None:
    small = b"hello from safekeep"
    big = random.Random(1).randbytes(3 * 1024 * 1024 + 5)  # an upload session
    hs = Handle(FileType.SNAPSHOT, "a" * 64)
    hb = Handle(FileType.PACK, "b" * 64)
    live.save(hs, small)
    live.save(hb, big)
    assert live.load(hs) == small
    assert live.load(hb, 1_000_000, 10) == big[1_000_000:1_000_010]
    assert list(live.list(FileType.PACK)) == [FileInfo(hb.name, len(big))]
    assert live.stat(hs) == FileInfo(hs.name, len(small))
    live.remove(hs)
    with pytest.raises(NotFound):
        live.stat(hs)
