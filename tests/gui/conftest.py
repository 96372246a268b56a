"""GUI test fixtures: an offscreen (or Xvfb) display, the engine double, a screenshots folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from tests.gui.engine_double import EngineDouble


@pytest.fixture()
def engine() -> EngineDouble:
    return EngineDouble()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``SAFEKEEP_SCREENSHOTS`` or a temp folder (never committed)."""
    target = os.environ.get("SAFEKEEP_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture()
def home(tmp_path: Path) -> Iterator[Path]:
    """A home folder with Documents and Desktop (Pictures missing), some files in them."""
    h = tmp_path / "home"
    for name in ("Documents", "Desktop"):
        (h / name).mkdir(parents=True)
    (h / "Documents" / "letter.odt").write_bytes(b"x" * 5000)
    (h / "Documents" / "budget.ods").write_bytes(b"y" * 12000)
    (h / "Desktop" / "notes.txt").write_text("remember the backup\n")
    yield h
