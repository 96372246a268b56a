"""GUI test fixtures: an offscreen (or Xvfb) display, the real engine, a screenshots folder.

The engine is the real :class:`~safekeep.engine.service.Service` over a temp app folder: its app
database, a secrets file instead of the keyring (``SAFEKEEP_SECRETS=file``), cheap repository
keys (``SAFEKEEP_TEST_KDF``) and real worker processes for the backups.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from safekeep.engine.service import Service
from safekeep.gui.background import Background

TEST_KDF = "1024,8,1"


def open_service(app_home: Path, monkeypatch: pytest.MonkeyPatch) -> Service:
    """The real service over ``app_home``; the worker processes inherit these settings."""
    monkeypatch.setenv("SAFEKEEP_SECRETS", "file")
    monkeypatch.setenv("SAFEKEEP_TEST_KDF", TEST_KDF)
    monkeypatch.setenv("SAFEKEEP_HOME", str(app_home))
    return Service.open(app_home)


def close_service(service: Service) -> None:
    for run in service.running():
        service.cancel(run.id)
        service.wait(run.id, 60)
    service.close()


@pytest.fixture()
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))  # start-at-login entries
    service = open_service(tmp_path / "app", monkeypatch)
    yield service
    close_service(service)


@pytest.fixture()
def background(engine: Service) -> Iterator[Background]:
    """The windows' background runner; kept until its calls are done (before the engine closes)."""
    bg = Background()
    yield bg
    bg.wait_for_done(60_000)


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
