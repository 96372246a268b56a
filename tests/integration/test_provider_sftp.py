"""The SFTP provider against a real OpenSSH sshd: round trip, restic as the oracle, host keys,
logins and a full destination."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.roundtrip import round_trip as shared_round_trip
from tests.servers.sshd import SshServer

from safekeep.common.secret import Secret
from safekeep.core.archiver import backup
from safekeep.core.checker import CheckOptions, check
from safekeep.core.format.keys import KDFParams
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.storage.base import FileType, Handle
from safekeep.storage.compose import StorageOptions, open_backend
from safekeep.storage.errors import InvalidLocation, PermissionDenied, QuotaExceeded
from safekeep.storage.providers.sftp import (
    HostKeyChanged,
    SftpBackend,
    UnknownHostKey,
    parse_sftp_location,
    server_fingerprint,
    trust_host_key,
)
from safekeep.storage.providers.sftp_keys import generate_key_pair
from safekeep.storage.registry import ProviderSettings, parse_location

PW = "pw"
REPO_OPTS = RepositoryOptions(kdf=KDFParams(1024, 8, 1))


def _options(settings: ProviderSettings) -> StorageOptions:
    return StorageOptions(provider=settings, retry_attempts=1)


def _round_trip(location: str, settings: ProviderSettings, tmp_path: Path) -> None:
    shared_round_trip(location, _options(settings), tmp_path)


@pytest.fixture()
def settings(sshd_server: SshServer) -> ProviderSettings:
    return ProviderSettings(env={}, options=sshd_server.options())


def test_location_forms() -> None:
    a = parse_location("sftp:alice@nas.example:/srv/backup")
    assert (a.user, a.host, a.port, a.path) == ("alice", "nas.example", 22, "/srv/backup")
    b = parse_location("sftp:alice@nas.example:backup/office")
    assert (b.user, b.host, b.path) == ("alice", "nas.example", "backup/office")
    c = parse_location("sftp://alice@nas.example:2222//srv/backup")
    assert (c.user, c.host, c.port, c.path) == ("alice", "nas.example", 2222, "/srv/backup")
    d = parse_location("sftp://nas.example/relative")
    assert (d.host, d.port, d.path) == ("nas.example", 22, "relative")
    with pytest.raises(InvalidLocation, match="has no folder"):
        parse_sftp_location("sftp:alice@nas.example", "alice@nas.example")


def test_round_trip_and_restic_checks_it(
    sshd_server: SshServer, settings: ProviderSettings, tmp_path: Path, restic_bin: str
) -> None:
    repo_dir = tmp_path / "repo"
    _round_trip(sshd_server.location(repo_dir), settings, tmp_path)
    ssh = (
        f"ssh -p {sshd_server.port} -i {sshd_server.client_key} -o StrictHostKeyChecking=no "
        f"-o UserKnownHostsFile=/dev/null -o BatchMode=yes root@127.0.0.1 -s sftp"
    )
    env = dict(os.environ, RESTIC_PASSWORD=PW, RESTIC_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run(
        [
            restic_bin,
            "-r",
            f"sftp:root@127.0.0.1:{repo_dir}",
            "-o",
            f"sftp.command={ssh}",
            "check",
            "--read-data",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no errors were found" in proc.stdout
    # nothing but repository files was left on the server
    leftovers = [p for p in repo_dir.rglob("*") if ".tmp-" in p.name]
    assert leftovers == []


def test_unknown_host_is_refused_with_its_fingerprint_then_trusted(
    sshd_server: SshServer, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"  # does not exist yet: nothing is trusted
    settings = ProviderSettings(env={}, options=sshd_server.options(known_hosts=known))
    location = sshd_server.location(tmp_path / "repo")
    backend = open_backend(location, options=_options(settings))
    with pytest.raises(UnknownHostKey) as info:
        backend.create()
    err = info.value
    assert err.fingerprint == sshd_server.fingerprint
    assert err.fingerprint.startswith("SHA256:")
    assert f"The server's identity is new: 127.0.0.1 (port {sshd_server.port})" in str(err)
    assert sshd_server.fingerprint in str(err)
    assert "Check it with the server's administrator, then trust it" in str(err)
    assert not known.exists()
    assert not (tmp_path / "repo").exists()  # nothing was written to an unverified server

    assert server_fingerprint(location, settings) == sshd_server.fingerprint
    with pytest.raises(Exception, match="Nothing was trusted"):
        trust_host_key(location, "SHA256:" + "A" * 43, settings)
    assert not known.exists()
    trust_host_key(location, err.fingerprint, settings)
    assert sshd_server.host_key_line in known.read_text()
    backend = open_backend(location, options=_options(settings))
    backend.create()
    backend.save(Handle.config(), b"hello")
    assert backend.load(Handle.config()) == b"hello"
    backend.close()


def test_trust_on_first_use_option_records_the_key(sshd_server: SshServer, tmp_path: Path) -> None:
    known = tmp_path / "sub" / "known_hosts"
    settings = ProviderSettings(
        env={}, options=sshd_server.options(known_hosts=known, **{"sftp.trust-on-first-use": "true"})
    )
    backend = open_backend(sshd_server.location(tmp_path / "repo"), options=_options(settings))
    backend.create()
    backend.close()
    assert known.read_text() == sshd_server.known_hosts.read_text()


def test_changed_host_key_is_refused_loudly_even_with_tofu(sshd_server: SshServer, tmp_path: Path) -> None:
    generate_key_pair(tmp_path / "impostor")
    impostor = (tmp_path / "impostor.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd_server.port} {impostor[0]} {impostor[1]}\n")
    before = known.read_text()
    settings = ProviderSettings(
        env={}, options=sshd_server.options(known_hosts=known, **{"sftp.trust-on-first-use": "true"})
    )
    backend = open_backend(sshd_server.location(tmp_path / "repo"), options=_options(settings))
    with pytest.raises(HostKeyChanged) as info:
        backend.create()
    text = str(info.value)
    assert text.startswith("WARNING: the server's identity has CHANGED")
    assert "intercepting" in text and "refuses to connect" in text
    assert sshd_server.fingerprint in text
    assert str(known) in text
    assert known.read_text() == before  # TOFU never overwrites a recorded key
    with pytest.raises(HostKeyChanged):
        trust_host_key(sshd_server.location(tmp_path / "repo"), sshd_server.fingerprint, settings)


def test_wrong_key_is_refused_with_a_clear_message(sshd_server: SshServer, tmp_path: Path) -> None:
    generate_key_pair(tmp_path / "not_installed")
    settings = ProviderSettings(
        env={}, options=sshd_server.options(**{"sftp.key-file": str(tmp_path / "not_installed")})
    )
    backend = open_backend(sshd_server.location(tmp_path / "repo"), options=_options(settings))
    with pytest.raises(PermissionDenied) as info:
        backend.create()
    assert f"refused the login as 'root' with the key {tmp_path / 'not_installed'}" in str(info.value)
    assert "authorized_keys" in info.value.hint


def test_wrong_password_is_refused_and_never_shown(sshd_server: SshServer, tmp_path: Path) -> None:
    opts = sshd_server.options(**{"sftp.key-file": str(tmp_path / "no-such-key")})
    settings = ProviderSettings(env={"SAFEKEEP_SFTP_PASSWORD": "hunter2-wrong"}, options=opts)
    backend = open_backend(sshd_server.location(tmp_path / "repo"), options=_options(settings))
    with pytest.raises(PermissionDenied) as info:
        backend.create()
    assert "the password" in str(info.value)
    assert "hunter2" not in info.value.user_text()
    assert "hunter2" not in repr(backend)
    # the keyring reference works the same way
    keyring = ProviderSettings(env={}, options=opts, secret={"sftp-password": "from-keyring"}.get)
    backend = open_backend(sshd_server.location(tmp_path / "repo"), options=_options(keyring))
    with pytest.raises(PermissionDenied, match="the password"):
        backend.create()


def test_generated_key_logs_in(sshd_server: SshServer, tmp_path: Path) -> None:
    line = generate_key_pair(tmp_path / "wizard_key", comment="office-pc", passphrase=Secret("s3cret"))
    assert line.startswith("ssh-ed25519 ") and line.endswith(" office-pc")
    assert (tmp_path / "wizard_key").stat().st_mode & 0o077 == 0
    with pytest.raises(FileExistsError):
        generate_key_pair(tmp_path / "wizard_key")
    authorized = sshd_server.client_key.parent / "authorized_keys"
    with open(authorized, "a") as f:
        f.write(line + "\n")
    opts = sshd_server.options(**{"sftp.key-file": str(tmp_path / "wizard_key")})
    settings = ProviderSettings(env={"SAFEKEEP_SFTP_KEY_PASSPHRASE": "s3cret"}, options=opts)
    backend = open_backend(sshd_server.location(tmp_path / "repo"), options=_options(settings))
    backend.create()
    assert list(backend.list(FileType.KEY)) == []
    backend.close()


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_destination(
    sshd_server: SshServer, settings: ProviderSettings, tiny_disk: Path, tmp_path: Path
) -> None:
    location = sshd_server.location(tiny_disk / "repo")
    backend = open_backend(location, options=_options(settings))
    repo = Repository.init(backend, PW, options=REPO_OPTS)
    inner = backend
    while not isinstance(inner, SftpBackend):
        inner = inner.inner  # type: ignore[attr-defined]
    free = inner.free_space()
    assert free is not None and 0 < free <= 4 * 1024 * 1024
    filler = tiny_disk / "filler"
    filler.write_bytes(b"\0" * (free - 256 * 1024))
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    with pytest.raises(QuotaExceeded) as info:
        backup(repo, [str(src)])
    assert "is full" in str(info.value)
    assert "Free space" in info.value.hint
    assert [p for p in (tiny_disk / "repo").rglob("*") if ".tmp-" in p.name] == []
    assert list(backend.list(FileType.SNAPSHOT)) == []
    repo.close()

    filler.unlink()  # the administrator frees space; the next run works
    repo = Repository.open(open_backend(location, options=_options(settings)), PW, options=REPO_OPTS)
    repo.load_index()
    backup(repo, [str(src)])
    assert len(list(repo.backend.list(FileType.SNAPSHOT))) == 1  # type: ignore[attr-defined]
    assert check(repo, CheckOptions(read_data=True)).ok
    repo.close()
