"""The FTP provider over FTPS against pyftpdlib with TLS on 127.0.0.1 (``tests/servers/ftps.py``)."""

from __future__ import annotations

import itertools
import ssl
import uuid
from pathlib import Path

import pytest

from safekeep.storage.base import Backend
from safekeep.storage.registry import ProviderSettings, create_backend, parse_location
from tests.contract.conftest import ProviderUnderTest


def make_target(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ProviderUnderTest:
    server = request.getfixturevalue("ftps_server")
    base = f"/c{uuid.uuid4().hex[:8]}"
    settings = ProviderSettings(
        env={"SAFEKEEP_FTP_PASSWORD": server.password}, options={"ftp.ca-file": str(server.ca_file)}
    )
    counter = itertools.count()

    def make() -> Backend:
        return create_backend(parse_location(server.location(f"{base}/repo{next(counter)}")), settings)

    def fail_save(backend: Backend) -> None:
        real = ssl.SSLSocket.sendall
        calls = itertools.count()

        def broken(self: ssl.SSLSocket, data: object, flags: int = 0) -> None:
            if len(data) >= 256 * 1024 and next(calls) == 2:  # type: ignore[arg-type]
                monkeypatch.setattr(ssl.SSLSocket, "sendall", real)
                raise ConnectionResetError("injected reset")
            real(self, data, flags)  # type: ignore[arg-type]

        monkeypatch.setattr(ssl.SSLSocket, "sendall", broken)

    return ProviderUnderTest("ftp", make, fail_save)
