"""The Azure provider against Azurite: round trip, block uploads, access tier, and bad input
(wrong key, missing container, wrong endpoint, the Archive tier)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.integration.test_provider_webdav import round_trip
from tests.servers import free_port
from tests.servers.azurite import Azurite

from safekeep.core.errors import RepositoryNotFound
from safekeep.core.format.keys import KDFParams
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.storage.base import FileType, Handle
from safekeep.storage.compose import StorageOptions, open_backend
from safekeep.storage.errors import InvalidLocation, NotFound, PermissionDenied, TransientStorageError
from safekeep.storage.providers.azure import AzureBackend
from safekeep.storage.registry import ProviderSettings, create_backend, parse_location
from safekeep.storage.validate import Status, probe

PW = "pw"
REPO_OPTS = RepositoryOptions(kdf=KDFParams(1024, 8, 1))


def test_location_forms() -> None:
    loc = parse_location("azure:backups:/office/main")
    assert (loc.scheme, loc.bucket, loc.path) == ("azure", "backups", "office/main")
    assert parse_location("azure:backups:").path == ""
    with pytest.raises(InvalidLocation, match="names no Azure container"):
        parse_location("azure:backups")
    with pytest.raises(InvalidLocation, match="not a valid Azure container name"):
        parse_location("azure:Bad_Name:/x")


def test_credentials_are_required_and_archive_is_refused() -> None:
    loc = parse_location("azure:backups:/x")
    with pytest.raises(PermissionDenied, match="account name"):
        create_backend(loc, ProviderSettings(env={}))
    with pytest.raises(PermissionDenied, match="No key"):
        create_backend(loc, ProviderSettings(env={"AZURE_ACCOUNT_NAME": "acct"}))
    env = {"AZURE_ACCOUNT_NAME": "acct", "AZURE_ACCOUNT_KEY": "c2VjcmV0"}
    with pytest.raises(InvalidLocation) as info:
        create_backend(loc, ProviderSettings(env=env, options={"azure.access-tier": "Archive"}))
    assert "Archive" in str(info.value) and "rehydrated" in info.value.hint
    b = create_backend(loc, ProviderSettings(env=env))
    assert isinstance(b, AzureBackend) and "c2VjcmV0" not in repr(b)
    sas = create_backend(
        loc, ProviderSettings(env={"AZURE_ACCOUNT_NAME": "acct", "AZURE_ACCOUNT_SAS": "?sv=1&sig=x"})
    )
    assert isinstance(sas, AzureBackend)
    with pytest.raises(PermissionDenied, match="not base64"):
        create_backend(
            loc, ProviderSettings(env={"AZURE_ACCOUNT_NAME": "a", "AZURE_ACCOUNT_KEY": "not base64!"})
        )


def test_round_trip_with_block_uploads_and_cool_tier(azurite: Azurite, tmp_path: Path) -> None:
    container = azurite.new_container()
    settings = ProviderSettings(
        env=azurite.env(),
        options=azurite.options(**{"azure.block-size": str(1 << 20), "azure.access-tier": "Cool"}),
    )
    round_trip(f"azure:{container}:/repo", settings, tmp_path)
    from azure.storage.blob import BlobServiceClient

    client = BlobServiceClient(
        azurite.endpoint,
        credential={"account_name": "devstoreaccount1", "account_key": azurite.env()["AZURE_ACCOUNT_KEY"]},
    )
    blobs = list(client.get_container_client(container).list_blobs(name_starts_with="repo/data/"))
    assert blobs and all(str(b.blob_tier).lower() == "cool" for b in blobs)


def test_large_file_goes_in_blocks(azurite: Azurite) -> None:
    settings = ProviderSettings(
        env=azurite.env(), options=azurite.options(**{"azure.block-size": str(256 << 10)})
    )
    b = create_backend(parse_location(f"azure:{azurite.new_container()}:/p"), settings)
    b.create()
    data = os.urandom(1_000_003)
    h = Handle(FileType.PACK, "ef" + "2" * 62)
    b.save(h, data)
    assert b.load(h) == data and b.load(h, 300_000, 10) == data[300_000:300_010]
    props = b._container.get_blob_client("p/" + h.path()).get_blob_properties()  # type: ignore[attr-defined]
    assert props.blob_type.lower().startswith("block") and props.size == len(data)


def test_wrong_key_names_the_cause(azurite: Azurite) -> None:
    bad_key = "A" * 86 + "=="
    settings = ProviderSettings(env=azurite.env(key=bad_key), options=azurite.options())
    backend = open_backend(
        f"azure:{azurite.new_container()}:/r", options=StorageOptions(provider=settings, retry_attempts=1)
    )
    with pytest.raises(PermissionDenied) as info:
        Repository.init(backend, PW, options=REPO_OPTS)
    assert "refused the account key" in str(info.value) and "devstoreaccount1" in str(info.value)
    assert "Access keys" in info.value.hint
    assert bad_key not in str(info.value) + info.value.hint


def test_missing_container_is_named(azurite: Azurite) -> None:
    settings = ProviderSettings(env=azurite.env(), options=azurite.options())
    backend = open_backend(
        "azure:no-such-container:/r", options=StorageOptions(provider=settings, retry_attempts=1)
    )
    with pytest.raises(NotFound) as info:
        backend.load(Handle.config())
    assert "'no-such-container' does not exist" in str(info.value)
    assert list(backend.list(FileType.SNAPSHOT)) == []
    with pytest.raises((RepositoryNotFound, NotFound)):
        Repository.open(backend, PW, options=REPO_OPTS)


def test_wrong_endpoint_is_transient_and_named() -> None:
    port = free_port()
    settings = ProviderSettings(
        env={"AZURE_ACCOUNT_NAME": "devstoreaccount1", "AZURE_ACCOUNT_KEY": "c2VjcmV0"},
        options={"azure.endpoint": f"http://127.0.0.1:{port}/devstoreaccount1"},
    )
    backend = create_backend(parse_location("azure:c1c:/r"), settings)
    with pytest.raises(TransientStorageError) as info:
        backend.stat(Handle.config())
    assert f"127.0.0.1:{port}" in str(info.value) and "endpoint" in info.value.hint


def test_probe_against_azurite(azurite: Azurite) -> None:
    settings = ProviderSettings(env=azurite.env(), options=azurite.options())
    backend = open_backend(
        f"azure:{azurite.new_container()}:/probe", options=StorageOptions(provider=settings)
    )
    backend.create()
    result = probe(backend)
    assert result.ok, result.steps
    assert result.step("clock").status is Status.OK
    assert result.step("free-space").status is Status.SKIPPED
