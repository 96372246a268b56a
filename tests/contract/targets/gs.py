"""The contract suite against the ``gs`` provider on the local GCS JSON API fake (not real GCS).

Each backend gets a fresh prefix in the fake's bucket. The chunk size is lowered to 1 MiB so files
above it go through resumable uploads; the fake caps list pages at 100 items, so listing 300
packs pages. A save is broken by making the fake's next upload request fail with a 503.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from safekeep.storage.base import Backend
from safekeep.storage.registry import ProviderSettings, create_backend, parse_location
from tests.contract.conftest import ProviderUnderTest
from tests.fakes.gcs_fake import GcsFake
from tests.servers.gcs import BUCKET


def settings_for(fake: GcsFake, **options: str) -> ProviderSettings:
    env = {
        "GOOGLE_APPLICATION_CREDENTIALS": str(fake.key_file),
        "GOOGLE_PROJECT_ID": "test-project",
        "STORAGE_EMULATOR_HOST": fake.url,
    }
    return ProviderSettings(env=env, options={"gs.chunk-size": "1MiB", **options})


def make_target(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ProviderUnderTest:
    fake: GcsFake = request.getfixturevalue("gcs_fake")
    settings = settings_for(fake)

    def make() -> Backend:
        return create_backend(parse_location(f"gs:{BUCKET}:/repo-{uuid.uuid4().hex[:12]}"), settings)

    def fail(backend: Backend) -> None:
        fake.fail_next_upload = 1

    return ProviderUnderTest("gs", make, fail)
