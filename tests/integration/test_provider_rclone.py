"""The rclone provider against Debian's rclone with a local remote: round trip and bad input."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from tests.servers import require

from safekeep.core.archiver import backup
from safekeep.core.checker import CheckOptions, check
from safekeep.core.format.keys import KDFParams
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.core.restorer import restore
from safekeep.storage.base import FileType, Handle
from safekeep.storage.compose import StorageOptions, open_backend
from safekeep.storage.errors import InvalidLocation, PermanentStorageError
from safekeep.storage.providers.rclone_config import create_remote
from safekeep.storage.registry import ProviderSettings

PW = "pw"
REPO_OPTS = RepositoryOptions(kdf=KDFParams(1024, 8, 1))


@pytest.fixture()
def rclone_conf(tmp_path: Path) -> Path:
    require(shutil.which("rclone") is not None, "rclone is not installed")
    conf = tmp_path / "rclone.conf"
    create_remote("localtest", "local", {}, config=str(conf))
    assert "[localtest]" in conf.read_text() and "type = local" in conf.read_text()
    return conf


def _opts(conf: Path, **extra: str) -> StorageOptions:
    return StorageOptions(
        provider=ProviderSettings(env={}, options={"rclone.config": str(conf), **extra}), retry_attempts=1
    )


def test_round_trip(rclone_conf: Path, tmp_path: Path) -> None:
    location = f"rclone:localtest:{tmp_path}/repo"
    src = tmp_path / "src"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "a.txt").write_text("first version\n" * 100)
    (src / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    repo = Repository.init(open_backend(location, options=_opts(rclone_conf)), PW, options=REPO_OPTS)
    backup(repo, [str(src)])
    (src / "docs" / "a.txt").write_text("second version\n")
    (src / "docs" / "b.txt").write_text("new")
    backup(repo, [str(src)])
    repo.close()
    repo = Repository.open(open_backend(location, options=_opts(rclone_conf)), PW, options=REPO_OPTS)
    try:
        repo.load_index()
        restore(repo, repo.find_snapshot("latest"), str(tmp_path / "out"))
        out = tmp_path / "out" / str(src).lstrip("/")
        assert (out / "docs" / "a.txt").read_text() == "second version\n"
        assert (out / "docs" / "b.txt").read_text() == "new"
        assert (out / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
        assert check(repo, CheckOptions(read_data=True)).ok
        assert len(list(repo.backend.list(FileType.SNAPSHOT))) == 2
    finally:
        repo.close()
    # the files are in restic's layout on the remote
    assert (tmp_path / "repo" / "config").is_file()
    assert any((tmp_path / "repo" / "data").glob("??/*"))


def test_missing_remote_name(rclone_conf: Path, tmp_path: Path) -> None:
    backend = open_backend(f"rclone:nosuchremote:{tmp_path}/repo", options=_opts(rclone_conf))
    with pytest.raises(InvalidLocation) as info:
        backend.create()
    assert "rclone has no remote named 'nosuchremote'" in str(info.value)
    assert "rclone listremotes" in info.value.hint
    backend.close()


def test_rclone_not_installed(tmp_path: Path) -> None:
    opts = StorageOptions(
        provider=ProviderSettings(env={}, options={"rclone.program": "/nonexistent/rclone"}), retry_attempts=1
    )
    backend = open_backend(f"rclone:box:{tmp_path}/repo", options=opts)
    with pytest.raises(InvalidLocation) as info:
        backend.load(Handle.config())
    assert "The rclone program '/nonexistent/rclone' was not found" in str(info.value)
    assert "apt install rclone" in info.value.hint


def test_location_without_remote_is_refused() -> None:
    with pytest.raises(InvalidLocation, match="names no remote"):
        open_backend("rclone:justapath")


def test_create_remote_reports_a_bad_type(tmp_path: Path) -> None:
    require(shutil.which("rclone") is not None, "rclone is not installed")
    with pytest.raises(PermanentStorageError, match="could not create the remote") as info:
        create_remote("x", "no-such-backend", {"pass": "topsecret"}, config=str(tmp_path / "c.conf"))
    assert "topsecret" not in info.value.user_text()
