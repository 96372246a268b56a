"""The ``gdrive`` provider against the REAL Google Drive — only when credentials are given.

Skipped unless these environment variables are set, and always skipped under ``CI=true`` (CI has
no Google account):

- ``SAFEKEEP_LIVE_GDRIVE_TOKEN`` — a stored sign-in: the JSON Safekeep keeps in the keyring after
  ``safekeep login gdrive`` (at least ``{"refresh_token": "...", "client_id": "...",
  "client_secret": "..."}`` of a "Desktop app" OAuth client with the Drive API enabled).
- ``SAFEKEEP_LIVE_GDRIVE_FOLDER`` (optional) — the folder the test works in (default
  ``Safekeep live tests``); each run makes a subfolder and deletes it at the end.
- ``SAFEKEEP_LIVE_GDRIVE_SHARED_DRIVE`` (optional) — a shared drive ID to run in instead of My Drive.

The client ID and secret of the token are used (``gdrive.client-id``/``gdrive.client-secret``).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import uuid
from collections.abc import Iterator

import pytest

from safekeep.common.cancel import NEVER
from safekeep.storage.base import FileInfo, FileType, Handle
from safekeep.storage.errors import NotFound
from safekeep.storage.providers.gdrive import GDriveBackend
from safekeep.storage.providers.gdrive_auth import TOKEN_SECRET, TokenRecord
from safekeep.storage.registry import ProviderSettings, parse_location
from safekeep.storage.secrets import MemorySecretStore

TOKEN = os.environ.get("SAFEKEEP_LIVE_GDRIVE_TOKEN", "")
pytestmark = [
    pytest.mark.skipif(
        os.environ.get("CI", "").lower() in ("1", "true", "yes"), reason="no live tests in CI"
    ),
    pytest.mark.skipif(not TOKEN, reason="SAFEKEEP_LIVE_GDRIVE_TOKEN is not set"),
]


@pytest.fixture
def live() -> Iterator[GDriveBackend]:
    record = TokenRecord.from_json(TOKEN)
    folder = os.environ.get("SAFEKEEP_LIVE_GDRIVE_FOLDER", "Safekeep live tests").strip("/")
    run = f"run-{uuid.uuid4().hex[:10]}"
    options = {
        "gdrive.client-id": record.client_id,
        "gdrive.client-secret": record.client_secret,
        "gdrive.upload-threshold": "1MiB",
        "gdrive.chunk-size": "1MiB",
    }
    shared = os.environ.get("SAFEKEEP_LIVE_GDRIVE_SHARED_DRIVE", "").strip()
    if shared:
        options["gdrive.shared-drive"] = shared
    store = MemorySecretStore({TOKEN_SECRET: json.dumps(json.loads(TOKEN))})
    backend = GDriveBackend(
        parse_location(f"gdrive:{folder}/{run}"), ProviderSettings(options=options, store=store)
    )
    try:
        yield backend
    finally:
        # Delete this run's folder (and everything in it) through the same client.
        ids = backend._folder_ids((*folder.split("/"), run), create=False, cancel=NEVER)
        for folder_id in ids:
            with contextlib.suppress(Exception):
                backend._drive.files().delete(fileId=folder_id, supportsAllDrives=True).execute()
        backend.close()


def test_live_save_load_list_remove(live: GDriveBackend) -> None:
    live.create()
    small = b"live config"
    live.save(Handle.config(), small)
    big = random.Random(1).randbytes(3 * 1024 * 1024 + 5)  # a resumable session of 4 chunks
    h = Handle(FileType.PACK, "ab" + "0" * 62)
    live.save(h, big)
    assert live.load(Handle.config()) == small
    assert live.load(h, 1024 * 1024 + 3, 100) == big[1024 * 1024 + 3 : 1024 * 1024 + 103]
    assert live.load(h) == big
    assert list(live.list(FileType.PACK)) == [FileInfo(h.name, len(big))]
    live.save(h, big)  # the same again: kept, no second copy
    assert list(live.list(FileType.PACK)) == [FileInfo(h.name, len(big))]
    live.remove(h)
    with pytest.raises(NotFound):
        live.stat(h)
    space = live.free_space()
    assert space is None or space >= 0
