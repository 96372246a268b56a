"""Azurite (Microsoft's Azure Storage emulator, from npm) on 127.0.0.1 for the Azure tests.

``tests/run.sh`` installs it with ``npm install --prefix tests/.node azurite@3``; the fixture finds
``azurite-blob`` there, in ``$AZURITE_BLOB``, or on ``PATH``. It always runs with
``--disableTelemetry`` (otherwise it tries to reach the internet), in memory, with API version
checks off and loose mode on.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import free_port, require

ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
NODE_BIN = Path(__file__).resolve().parent.parent / ".node" / "node_modules" / ".bin"


@dataclass
class Azurite:
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    def env(self, key: str = KEY) -> dict[str, str]:
        return {"AZURE_ACCOUNT_NAME": ACCOUNT, "AZURE_ACCOUNT_KEY": key}

    def options(self, **extra: str) -> dict[str, str]:
        return {"azure.endpoint": self.endpoint, **extra}

    @staticmethod
    def new_container() -> str:
        return "c" + uuid.uuid4().hex[:20]


def azurite_binary() -> str | None:
    found = os.environ.get("AZURITE_BLOB")
    if found and os.access(found, os.X_OK):
        return found
    local = NODE_BIN / "azurite-blob"
    if local.exists():
        return str(local)
    return shutil.which("azurite-blob")


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    binary = azurite_binary()
    require(binary is not None and shutil.which("node") is not None, "azurite (npm) or node is not installed")
    assert binary is not None
    workdir = tmp_path_factory.mktemp("azurite")
    port = free_port()
    log = workdir / "azurite.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(port),
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--loose",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    try:
        deadline = time.monotonic() + 60
        up = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    up = True
                    break
            except OSError:
                time.sleep(0.1)
        if not up:
            require(False, "azurite did not start: " + log.read_text(errors="replace")[-2000:])
        yield Azurite(port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
