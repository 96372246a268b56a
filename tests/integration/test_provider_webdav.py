"""The WebDAV provider against real servers: WsgiDAV, ``rclone serve webdav`` and the Nextcloud
fake (chunked upload v2 + paginated PROPFIND): round trips and bad input."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
from tests.integration.roundtrip import round_trip as shared_round_trip
from tests.integration.roundtrip import write_tree
from tests.servers import free_port
from tests.servers.webdav import DavServer

from safekeep.cli import storage_cmd
from safekeep.core.archiver import backup
from safekeep.core.checker import CheckOptions, check
from safekeep.core.format.keys import KDFParams
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.storage.base import FileType, Handle
from safekeep.storage.compose import StorageOptions, open_backend
from safekeep.storage.errors import (
    InvalidLocation,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    TransientStorageError,
)
from safekeep.storage.providers.webdav import WebDAVBackend
from safekeep.storage.registry import ProviderSettings, create_backend, parse_location
from safekeep.storage.validate import Status, probe

PW = "pw"
REPO_OPTS = RepositoryOptions(kdf=KDFParams(1024, 8, 1))
NC_OPTIONS = {
    "webdav.chunk-threshold": str(1 << 20),
    "webdav.chunk-size": str(256 << 10),
    "webdav.page-size": "7",
}


def _options(settings: ProviderSettings, attempts: int = 1) -> StorageOptions:
    return StorageOptions(provider=settings, retry_attempts=attempts, retry_base_delay=0.01)


def round_trip(location: str, settings: ProviderSettings, tmp_path: Path) -> None:
    shared_round_trip(location, _options(settings), tmp_path)


def test_location_forms() -> None:
    loc = parse_location("webdav:https://alice@cloud.example.org/remote.php/dav/files/alice/Backups/")
    assert (loc.scheme, loc.host, loc.user) == ("webdav", "cloud.example.org", "alice")
    assert loc.path == "https://cloud.example.org/remote.php/dav/files/alice/Backups"
    assert parse_location("webdav:nas.local:8443/backup").path == "https://nas.local:8443/backup"
    assert parse_location("webdav:http://nas.local/backup").path == "http://nas.local/backup"
    with pytest.raises(InvalidLocation, match="must not contain a password"):
        parse_location("webdav:https://alice:secret@cloud.example.org/x")
    with pytest.raises(InvalidLocation, match="names no WebDAV server"):
        parse_location("webdav:/just/a/path")


def test_credentials_from_url_user_and_stored_secret() -> None:
    loc = parse_location("webdav:https://alice@cloud.example.org/remote.php/dav/files/alice/B")
    b = create_backend(
        loc, ProviderSettings(env={}, secret=lambda ref: "app-pw" if ref == "webdav-password" else None)
    )
    assert isinstance(b, WebDAVBackend)
    assert b.flavour == "nextcloud"
    assert "app-pw" not in repr(b)
    with pytest.raises(PermissionDenied, match="No user name or password"):
        create_backend(parse_location("webdav:https://cloud.example.org/x"), ProviderSettings(env={}))
    with pytest.raises(InvalidLocation, match="Unknown WebDAV flavour"):
        create_backend(
            loc,
            ProviderSettings(
                env={"SAFEKEEP_WEBDAV_USER": "a", "SAFEKEEP_WEBDAV_PASSWORD": "b"},
                options={"webdav.flavour": "x"},
            ),
        )


@pytest.mark.parametrize("fixture", ["wsgidav_server", "rclone_webdav_server"])
def test_round_trip_generic(request: pytest.FixtureRequest, fixture: str, tmp_path: Path) -> None:
    server: DavServer = request.getfixturevalue(fixture)
    round_trip(server.location(f"rt-{tmp_path.name}"), ProviderSettings(env=server.env), tmp_path)


def test_round_trip_nextcloud_uses_chunked_upload_and_paging(
    nextcloud_server: DavServer, tmp_path: Path
) -> None:
    before = dict(nextcloud_server.fake.stats)
    settings = ProviderSettings(env=nextcloud_server.env, options=NC_OPTIONS)
    round_trip(nextcloud_server.location(f"nc-{tmp_path.name}"), settings, tmp_path)
    stats = nextcloud_server.fake.stats
    assert stats["assembled"] > before.get("assembled", 0)  # big packs went through chunked upload
    assert stats["chunk_put"] - before.get("chunk_put", 0) >= 4
    assert stats["propfind_page"] > before.get("propfind_page", 0)
    leftovers = [p for p in nextcloud_server.root.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_nextcloud_chunked_upload_of_one_large_file(nextcloud_server: DavServer) -> None:
    settings = ProviderSettings(env=nextcloud_server.env, options=NC_OPTIONS)
    b = create_backend(parse_location(nextcloud_server.location("chunky")), settings)
    b.create()
    data = os.urandom(3 * 1024 * 1024 + 5)
    h = Handle(FileType.PACK, "cd" + "1" * 62)
    before = nextcloud_server.fake.stats["chunk_put"]
    b.save(h, data)
    assert nextcloud_server.fake.stats["chunk_put"] - before == 13  # 3 MiB + 5 in 256 KiB chunks
    assert b.load(h) == data
    assert (nextcloud_server.root / "chunky" / h.path()).read_bytes() == data


def test_wrong_password_names_the_cause_and_app_passwords(wsgidav_server: DavServer) -> None:
    env = {"SAFEKEEP_WEBDAV_USER": "u", "SAFEKEEP_WEBDAV_PASSWORD": "wrong"}
    backend = open_backend(wsgidav_server.location("pwtest"), options=_options(ProviderSettings(env=env), 3))
    with pytest.raises(PermissionDenied) as info:
        Repository.init(backend, PW, options=REPO_OPTS)
    assert "refused the user name or password" in str(info.value)
    assert "'u'" in str(info.value) and "wrong" not in str(info.value)
    assert "app password" in info.value.hint


def test_full_destination_507_then_next_run_recovers(nextcloud_server: DavServer, tmp_path: Path) -> None:
    settings = ProviderSettings(env=nextcloud_server.env, options=NC_OPTIONS)
    location = nextcloud_server.location(f"quota-{tmp_path.name}")
    repo = Repository.init(open_backend(location, options=_options(settings)), PW, options=REPO_OPTS)
    src = tmp_path / "src"
    write_tree(src, 1)
    fake = nextcloud_server.fake
    fake.quota = sum(p.stat().st_size for p in nextcloud_server.root.rglob("*") if p.is_file()) + 200_000
    try:
        with pytest.raises(QuotaExceeded) as info:
            backup(repo, [str(src)])
        assert "is full" in str(info.value) and "quota" in info.value.hint
    finally:
        fake.quota = None
        repo.close()
    repo = Repository.open(open_backend(location, options=_options(settings)), PW, options=REPO_OPTS)
    try:
        repo.load_index()
        backup(repo, [str(src)])
        assert check(repo, CheckOptions(read_data=True)).ok
    finally:
        repo.close()


def test_missing_folder_is_not_found_with_the_address(wsgidav_server: DavServer) -> None:
    settings = ProviderSettings(env=wsgidav_server.env)
    backend = create_backend(parse_location(wsgidav_server.location("no/such/folder")), settings)
    with pytest.raises(NotFound):
        backend.load(Handle.config())
    assert list(backend.list(FileType.KEY)) == []
    with pytest.raises(NotFound) as info:
        backend.save(Handle(FileType.KEY, "k1"), b"x")
    assert "does not exist" in str(info.value)
    assert not (wsgidav_server.root / "no").exists()  # save never makes the repository folder


def test_wrong_endpoint_names_the_host(tmp_path: Path) -> None:
    port = free_port()
    env = {"SAFEKEEP_WEBDAV_USER": "u", "SAFEKEEP_WEBDAV_PASSWORD": "p"}
    backend = open_backend(
        f"webdav:http://127.0.0.1:{port}/x", options=_options(ProviderSettings(env=env), 2)
    )
    with pytest.raises(TransientStorageError) as info:
        backend.stat(Handle.config())
    assert f"127.0.0.1:{port}" in str(info.value) and "address and port" in info.value.hint


def test_probe_and_cli_against_wsgidav(
    wsgidav_server: DavServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = ProviderSettings(env=wsgidav_server.env)
    backend = open_backend(wsgidav_server.location("probe"), options=_options(settings))
    backend.create()
    result = probe(backend)
    assert result.ok, result.steps
    assert result.step("clock").status is Status.OK  # from the server's Date header
    assert not [p for p in (wsgidav_server.root / "probe").rglob("*") if p.is_file()]
    for k, v in wsgidav_server.env.items():
        monkeypatch.setenv(k, v)
    args = argparse.Namespace(
        storage_command="test", location=wsgidav_server.location("probe"), option=[], storage_json=False
    )
    assert storage_cmd.run(args) == 0
    out = capsys.readouterr().out
    assert "[ok] write: Wrote a test file" in out and "The location works for backups." in out
    monkeypatch.setenv("SAFEKEEP_WEBDAV_PASSWORD", "wrong")
    assert storage_cmd.run(args) == 1
    assert "[failed] connect" in capsys.readouterr().out
