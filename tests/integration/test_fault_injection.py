"""Backups through a faulty network: dropped and reset connections, HTTP 500/503/429 and stalls.

A :class:`~tests.fakes.faulty_proxy.FaultyProxy` sits between Safekeep and a real server
(WsgiDAV; moto's S3 server when ``tests/servers/s3.py`` provides it). With the standard wrapper
stack (retry with short delays) the backup still completes, the restore is byte for byte, and
``check --read-data`` passes.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from tests.fakes.faulty_proxy import FaultyProxy

from safekeep.core.archiver import backup
from safekeep.core.checker import CheckOptions, check
from safekeep.core.format.keys import KDFParams
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.core.restorer import restore
from safekeep.storage.compose import StorageOptions, open_backend
from safekeep.storage.registry import ProviderSettings

PW = "pw"
REPO_OPTS = RepositoryOptions(kdf=KDFParams(1024, 8, 1))
KINDS = ["drop", "reset", "500", "503", "429", "stall", "cut"]
SCHEDULE = [*KINDS, "reset", "503"]
"""Every kind once first (all are always reached), then extra ones while the backup runs."""
STORAGE = dict(retry_attempts=12, retry_base_delay=0.01, retry_max_delay=0.05, retry_seed=7)


def _tree(root: Path, version: int) -> dict[str, bytes]:
    files = {
        "docs/a.txt": f"minutes of the meeting, version {version}\n".encode() * 200,
        "big.bin": os.urandom(2 * 1024 * 1024),
        "photos/p1.jpg": os.urandom(300_000),
    }
    if version == 2:
        files["docs/new.txt"] = b"added after the first backup"
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def _backup_restore_check(location: str, settings: ProviderSettings, tmp_path: Path) -> None:
    options = StorageOptions(provider=settings, **STORAGE)  # type: ignore[arg-type]
    src = tmp_path / "src"
    _tree(src, 1)
    repo = Repository.init(open_backend(location, options=options), PW, options=REPO_OPTS)
    backup(repo, [str(src)])
    expected = _tree(src, 2)
    backup(repo, [str(src)])
    repo.close()
    repo = Repository.open(open_backend(location, options=options), PW, options=REPO_OPTS)
    try:
        repo.load_index()
        target = tmp_path / "restored"
        restore(repo, repo.find_snapshot("latest"), str(target))
        base = target / str(src).lstrip("/")
        for rel, data in expected.items():
            assert (base / rel).read_bytes() == data, rel
        assert check(repo, CheckOptions(read_data=True)).ok
    finally:
        repo.close()


def test_webdav_backup_survives_faults(wsgidav_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    up = urlsplit(wsgidav_server.base)
    with FaultyProxy(("127.0.0.1", up.port or 80), SCHEDULE, every=2) as proxy:
        location = f"webdav:http://127.0.0.1:{proxy.port}{up.path}/faults-{tmp_path.name}"
        settings = ProviderSettings(env=wsgidav_server.env, options={"webdav.timeout": "5"})
        _backup_restore_check(location, settings, tmp_path)
        assert set(proxy.applied) == set(KINDS), proxy.applied


@pytest.mark.skipif(
    importlib.util.find_spec("tests.servers.s3") is None or importlib.util.find_spec("boto3") is None,
    reason="the S3 test server (tests/servers/s3.py) or boto3 is not available",
)
def test_s3_backup_survives_faults(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    moto = request.getfixturevalue("moto_s3")
    up = urlsplit(moto.endpoint)
    with FaultyProxy(("127.0.0.1", up.port or 80), SCHEDULE, every=2) as proxy:
        location = moto.location(moto.plain_bucket).replace(moto.endpoint, f"http://127.0.0.1:{proxy.port}")
        _backup_restore_check(location, ProviderSettings(env=moto.env()), tmp_path)
        assert set(proxy.applied) == set(KINDS), proxy.applied
