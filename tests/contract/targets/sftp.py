"""The SFTP provider against a real OpenSSH sshd on 127.0.0.1 (``tests/servers/sshd.py``)."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import paramiko
import pytest
from paramiko.sftp import CMD_WRITE

from safekeep.storage.base import Backend
from safekeep.storage.registry import ProviderSettings, create_backend, parse_location
from tests.contract.conftest import ProviderUnderTest

_ids = itertools.count()


def make_target(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ProviderUnderTest:
    server = request.getfixturevalue("sshd_server")
    base = tmp_path / f"sftp-{uuid.uuid4().hex[:8]}"
    settings = ProviderSettings(env={}, options=server.options())

    def make() -> Backend:
        location = server.location(base / f"repo{next(_ids)}")
        return create_backend(parse_location(location), settings)

    def fail_save(backend: Backend) -> None:
        real_request = paramiko.SFTPClient._async_request
        writes = itertools.count()

        def broken_request(self: paramiko.SFTPClient, fileobj: object, t: int, *args: object) -> int:
            if t == CMD_WRITE and next(writes) == 10:  # part of the file is already on the server
                monkeypatch.setattr(paramiko.SFTPClient, "_async_request", real_request)
                raise OSError("Failure")
            result: int = real_request(self, fileobj, t, *args)
            return result

        monkeypatch.setattr(paramiko.SFTPClient, "_async_request", broken_request)

    return ProviderUnderTest("sftp", make, fail_save)
