"""The FTP provider against pyftpdlib on 127.0.0.1: FTPS round trip, an empty folder's listing
over TLS, plain FTP only with an opt-in, a wrong password, an untrusted certificate and a full
destination."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from tests.integration.roundtrip import round_trip as shared_round_trip
from tests.servers.ftps import FtpServer

from safekeep.core.archiver import backup
from safekeep.core.checker import CheckOptions, check
from safekeep.core.format.keys import KDFParams
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.storage.base import FileType, Handle
from safekeep.storage.compose import StorageOptions, open_backend
from safekeep.storage.errors import InvalidLocation, PermissionDenied, QuotaExceeded
from safekeep.storage.registry import ProviderSettings, create_backend, parse_location

PW = "pw"
REPO_OPTS = RepositoryOptions(kdf=KDFParams(1024, 8, 1))


def _settings(server: FtpServer, **options: str) -> ProviderSettings:
    opts = {"ftp.ca-file": str(server.ca_file)} if server.ca_file else {}
    opts.update(options)
    return ProviderSettings(env={"SAFEKEEP_FTP_PASSWORD": server.password}, options=opts)


def _options(settings: ProviderSettings) -> StorageOptions:
    return StorageOptions(provider=settings, retry_attempts=1)


def _round_trip(location: str, settings: ProviderSettings, tmp_path: Path) -> None:
    shared_round_trip(location, _options(settings), tmp_path)


def test_location_forms() -> None:
    loc = parse_location("ftp:ftps://alice@nas.example:2121/backups/office")
    assert (loc.user, loc.host, loc.port, loc.path) == ("alice", "nas.example", 2121, "/backups/office")
    with pytest.raises(InvalidLocation) as info:
        parse_location("ftp:ftps://alice:secret@nas.example/backups")
    assert "password" in str(info.value)
    assert "secret" not in info.value.user_text()


def test_round_trip_over_ftps(ftps_server: FtpServer, tmp_path: Path) -> None:
    _round_trip(ftps_server.location(f"/rt-{tmp_path.name}"), _settings(ftps_server), tmp_path)


def test_listing_an_empty_folder_over_tls(ftps_server: FtpServer, tmp_path: Path) -> None:
    """Regression: an empty MLSD/NLST over TLS 1.3 made ftplib fail with SHUTDOWN_WHILE_IN_INIT."""
    location = ftps_server.location(f"/empty-{tmp_path.name}")
    backend = create_backend(parse_location(location), _settings(ftps_server))
    try:
        backend.create()
        for _ in range(3):  # the pooled connection stays usable after each empty transfer
            for kind in FileType:
                assert list(backend.list(kind)) == []
        backend.save(Handle(FileType.KEY, "k1"), b"key")
        assert [(f.name, f.size) for f in backend.list(FileType.KEY)] == [("k1", 3)]
        assert list(backend.list(FileType.SNAPSHOT)) == []
    finally:
        backend.close()


def test_plain_ftp_is_refused_without_opt_in(ftp_plain_server: FtpServer) -> None:
    location = ftp_plain_server.location("/plain-refused")
    with pytest.raises(InvalidLocation) as info:
        create_backend(parse_location(location), _settings(ftp_plain_server))
    assert "clear text" in str(info.value)
    assert "ftp.allow-plaintext=true" in info.value.hint
    assert "ftp:ftps://" in info.value.hint


def test_plain_ftp_works_with_opt_in_and_warns(
    ftp_plain_server: FtpServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(ftp_plain_server, **{"ftp.allow-plaintext": "true"})
    with caplog.at_level(logging.WARNING, logger="safekeep.storage.providers.ftp"):
        _round_trip(ftp_plain_server.location(f"/plain-{tmp_path.name}"), settings, tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("clear text" in w for w in warnings)
    assert not any(ftp_plain_server.password in w for w in warnings)


def test_wrong_password(ftps_server: FtpServer) -> None:
    settings = ProviderSettings(
        env={"SAFEKEEP_FTP_PASSWORD": "not it"}, options={"ftp.ca-file": str(ftps_server.ca_file)}
    )
    backend = create_backend(parse_location(ftps_server.location("/wrong-pw")), settings)
    with pytest.raises(PermissionDenied) as info:
        backend.create()
    assert "wrong user name or password" in str(info.value)
    assert "SAFEKEEP_FTP_PASSWORD" in info.value.hint
    assert "not it" not in info.value.user_text()


def test_password_from_the_keyring(ftps_server: FtpServer) -> None:
    asked: list[str] = []

    def secret(name: str) -> str:
        asked.append(name)
        return ftps_server.password

    settings = ProviderSettings(env={}, options={"ftp.ca-file": str(ftps_server.ca_file)}, secret=secret)
    backend = create_backend(parse_location(ftps_server.location("/from-keyring")), settings)
    try:
        backend.create()
        assert list(backend.list(FileType.KEY)) == []
    finally:
        backend.close()
    assert asked == ["ftp-password"]


def test_untrusted_certificate(ftps_server: FtpServer) -> None:
    settings = ProviderSettings(env={"SAFEKEEP_FTP_PASSWORD": ftps_server.password}, options={})
    backend = create_backend(parse_location(ftps_server.location("/untrusted")), settings)
    with pytest.raises(PermissionDenied) as info:
        backend.create()
    assert "certificate" in str(info.value)
    assert "cannot be trusted" in str(info.value)
    assert "ftp.ca-file" in info.value.hint


def test_skipping_verification_is_possible_and_logged(
    ftps_server: FtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ProviderSettings(
        env={"SAFEKEEP_FTP_PASSWORD": ftps_server.password}, options={"ftp.insecure-skip-verify": "true"}
    )
    with caplog.at_level(logging.WARNING, logger="safekeep.storage.providers.ftp"):
        backend = create_backend(parse_location(ftps_server.location("/skip-verify")), settings)
    try:
        backend.create()
        assert list(backend.list(FileType.INDEX)) == []
    finally:
        backend.close()
    assert any("not checked" in r.getMessage() for r in caplog.records)


def test_full_destination(ftps_tiny_server: FtpServer, tmp_path: Path) -> None:
    settings = _settings(ftps_tiny_server)
    location = ftps_tiny_server.location("/repo")
    repo = Repository.init(open_backend(location, options=_options(settings)), PW, options=REPO_OPTS)
    filler = ftps_tiny_server.home / "filler.bin"
    filler.write_bytes(b"\0" * (3 * 1024 * 1024 + 512 * 1024))  # the 4 MiB "disk" is nearly full
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    with pytest.raises(QuotaExceeded) as info:
        backup(repo, [str(src)])
    assert "is full" in str(info.value)
    assert "Free space" in info.value.hint
    repo_dir = ftps_tiny_server.home / "repo"
    assert [p for p in repo_dir.rglob("*") if ".tmp-" in p.name] == []  # nothing partial left
    assert list(repo.backend.list(FileType.SNAPSHOT)) == []
    repo.close()

    filler.unlink()  # the administrator frees space; the next run works
    repo = Repository.open(open_backend(location, options=_options(settings)), PW, options=REPO_OPTS)
    try:
        repo.load_index()
        backup(repo, [str(src)])
        assert len(list(repo.backend.list(FileType.SNAPSHOT))) == 1
        assert check(repo, CheckOptions(read_data=True)).ok
    finally:
        repo.close()
