"""The contract suite against the ``gdrive`` provider on the local Google Drive fake (not Google).

Each test gets its own fake (``tests/fakes/gdrive_fake.py``, HTTPS with the test CA, connections
to anything but 127.0.0.1 fail) and a stored sign-in for it; every backend gets a fresh folder.
The upload threshold and chunk size are lowered to 1 MiB so larger files go through resumable
sessions; pages hold at most 25 items, so listing 300 packs pages. A save is broken by a full
Drive answering the second chunk of the next upload session.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from safekeep.storage.base import Backend
from safekeep.storage.providers.gdrive_auth import TOKEN_SECRET
from safekeep.storage.registry import create_backend, parse_location
from safekeep.storage.secrets import MemorySecretStore
from tests.contract.conftest import ProviderUnderTest
from tests.fakes.gdrive_fake import GDriveFake
from tests.fakes.tls import TestCA


def make_target(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ProviderUnderTest:
    ca: TestCA = request.getfixturevalue("trust_test_ca")
    request.getfixturevalue("loopback_only")
    fake = GDriveFake(ca.server_context).start()
    request.addfinalizer(fake.stop)
    fake.page_cap = 25
    store = MemorySecretStore({TOKEN_SECRET: fake.offline_token()})
    settings = fake.settings(store, **{"gdrive.upload-threshold": "1MiB", "gdrive.chunk-size": "1MiB"})

    def make() -> Backend:
        return create_backend(parse_location(f"gdrive:Safekeep/repo-{uuid.uuid4().hex[:12]}"), settings)

    def fail(backend: Backend) -> None:
        fake.inject(
            "chunk", 403, "storageQuotaExceeded", "The user's Drive storage quota has been exceeded.", skip=1
        )

    return ProviderUnderTest("gdrive", make, fail)
