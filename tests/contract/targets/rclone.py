"""The rclone provider against Debian's rclone serving a local folder (``:local:`` remote)."""

from __future__ import annotations

import http.client
import itertools
import shutil
from pathlib import Path

import pytest

from safekeep.storage.base import Backend
from safekeep.storage.registry import ProviderSettings, create_backend, parse_location
from tests.contract.conftest import ProviderUnderTest
from tests.servers import require


def make_target(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ProviderUnderTest:
    require(shutil.which("rclone") is not None, "rclone is not installed")
    config = tmp_path / "rclone.conf"
    config.write_text("[localtest]\ntype = local\n")
    settings = ProviderSettings(env={}, options={"rclone.config": str(config)})
    counter = itertools.count()

    def make() -> Backend:
        return create_backend(parse_location(f"rclone:localtest:{tmp_path}/repo{next(counter)}"), settings)

    def fail_save(backend: Backend) -> None:
        real_send = http.client.HTTPConnection.send
        calls = itertools.count()

        def broken_send(self: http.client.HTTPConnection, data: object) -> None:
            if next(calls) == 2:  # headers, first MiB of the body, then the connection drops
                monkeypatch.setattr(http.client.HTTPConnection, "send", real_send)
                self.close()
                raise ConnectionResetError("injected reset")
            real_send(self, data)  # type: ignore[arg-type]

        monkeypatch.setattr(http.client.HTTPConnection, "send", broken_send)

    return ProviderUnderTest("rclone", make, fail_save)
