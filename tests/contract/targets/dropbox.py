"""The contract suite against the ``dropbox`` provider on the local Dropbox fake (not Dropbox).

The real ``dropbox`` SDK talks HTTPS to ``tests/fakes/dropbox_fake.py`` (hosts given as provider
options, the CA trusted, any non-loopback connection failing the test). Each backend gets a
fresh folder in the fake account's app folder and a refresh token the fake issued, kept in a
memory secret store. Files above 1 MiB go through upload sessions in 512 KiB pieces, and the
fake answers at most 100 entries per ``list_folder`` page, so listing 300 packs pages. A save is
broken by making the fake's next upload request fail with a 503.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from safekeep.storage.base import Backend
from safekeep.storage.registry import ProviderSettings, create_backend, parse_location
from safekeep.storage.secrets import MemorySecretStore
from tests.contract.conftest import ProviderUnderTest
from tests.fakes.dropbox_fake import APP_KEY, Account, DropboxFake, shared_fake

OPTIONS = {"dropbox.upload-threshold": "1MiB", "dropbox.chunk-size": "512KiB"}


def signed_in_store(fake: DropboxFake, account: Account | None = None) -> MemorySecretStore:
    """A secret store holding what a completed sign-in keeps (see ``dropbox_auth.StoredToken``)."""
    account = account or fake.default_account
    token = {
        "version": 1,
        "refresh_token": fake.issue_refresh_token(account),
        "app_key": APP_KEY,
        "account_id": account.account_id,
        "name": account.name,
        "email": account.email,
    }
    return MemorySecretStore({"oauth-token": json.dumps(token)})


def settings_for(fake: DropboxFake, account: Account | None = None, **options: str) -> ProviderSettings:
    return ProviderSettings(
        env={}, options=fake.options(**{**OPTIONS, **options}), store=signed_in_store(fake, account)
    )


def make_target(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ProviderUnderTest:
    request.getfixturevalue("trust_test_ca")
    request.getfixturevalue("loopback_only")
    fake = shared_fake(request)
    fake.reset_faults()
    fake.page_cap = 100
    settings = settings_for(fake)

    def make() -> Backend:
        return create_backend(parse_location(f"dropbox:contract/repo-{uuid.uuid4().hex[:12]}"), settings)

    def fail(backend: Backend) -> None:
        fake.fail(1, status=503, route="files/upload")

    return ProviderUnderTest("dropbox", make, fail)
