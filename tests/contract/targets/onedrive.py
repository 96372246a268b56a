"""The contract suite against the ``onedrive`` provider on the local fake of Microsoft's sign-in
service and Graph (``tests/fakes/onedrive_fake.py``, over TLS; not against OneDrive).

The session signs in through the real MSAL flow once (each test gets a copy of the tokens) and
each backend gets a fresh folder in the
app folder. The upload threshold is lowered to 1 MiB with 640 KiB fragments so the suite's larger
files go through upload sessions; the fake pages listings at 100 children, so listing 300 packs
pages. A save is broken by making the fake refuse the next upload request with a 503.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from safekeep.storage.base import Backend
from safekeep.storage.registry import create_backend, parse_location
from tests.contract.conftest import ProviderUnderTest
from tests.fakes.onedrive_fake import shared_fake, signed_in_store

OPTIONS = {"onedrive.upload-threshold": "1MiB", "onedrive.fragment-size": "640KiB"}


def make_target(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ProviderUnderTest:
    request.getfixturevalue("loopback_only")
    ca = request.getfixturevalue("trust_test_ca")
    fake = shared_fake(request)
    fake.page_cap = 100
    store = signed_in_store(request, fake, ca.bundle)
    settings = fake.settings(store, **OPTIONS)

    def make() -> Backend:
        return create_backend(parse_location(f"onedrive:repo-{uuid.uuid4().hex[:12]}"), settings)

    def fail(backend: Backend) -> None:
        fake.fail_next(503, where="upload")

    return ProviderUnderTest("onedrive", make, fail)
