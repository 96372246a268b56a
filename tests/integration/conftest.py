"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from safekeep.engine.service import Service


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    """The app's service on a private home: file secrets, cheap test scrypt parameters."""
    monkeypatch.setenv("SAFEKEEP_SECRETS", "file")
    monkeypatch.setenv("SAFEKEEP_TEST_KDF", "1024,8,1")
    monkeypatch.setenv("SAFEKEEP_HOME", str(tmp_path / "home"))
    s = Service.open(tmp_path / "home")
    yield s
    s.close()
