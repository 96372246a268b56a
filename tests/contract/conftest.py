"""The providers the contract suite runs against.

Each parameter of ``backend_factory`` is one provider. ``memory`` and ``local`` are built in
here; every other provider adds a module ``tests/contract/targets/<name>.py`` with a function
``make_target(request, tmp_path, monkeypatch) -> ProviderUnderTest`` (it may start or reuse a
real server through ``request.getfixturevalue``). Targets are discovered, so adding a provider
touches no shared file.
"""

from __future__ import annotations

import errno
import importlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from safekeep.storage.base import Backend
from safekeep.storage.errors import StorageError
from safekeep.storage.providers.local import LocalBackend
from safekeep.storage.providers.memory import MemoryBackend

TARGETS = Path(__file__).parent / "targets"
PROVIDERS = ["memory", "local"] + sorted(p.stem for p in TARGETS.glob("*.py") if not p.stem.startswith("_"))


@dataclass
class ProviderUnderTest:
    """How the suite makes a fresh backend and breaks its next save."""

    name: str
    make: Callable[[], Backend]
    inject_save_failure: Callable[[Backend], None]
    """Arrange for the next ``save`` on ``backend`` to fail part-way with a ``StorageError``."""


def _make_target(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ProviderUnderTest:
    if name == "memory":

        def fail_memory(backend: Backend) -> None:
            assert isinstance(backend, MemoryBackend)
            backend.fail_next("save", StorageError("injected failure"))

        return ProviderUnderTest(name, MemoryBackend, fail_memory)
    if name == "local":
        counter = iter(range(1_000_000))

        def make_local() -> Backend:
            return LocalBackend(tmp_path / f"repo{next(counter)}")

        def fail_local(backend: Backend) -> None:
            real_fsync = os.fsync

            def broken_fsync(fd: int) -> None:
                monkeypatch.setattr(os, "fsync", real_fsync)  # fail once
                raise OSError(errno.EIO, "Input/output error")

            monkeypatch.setattr(os, "fsync", broken_fsync)

        return ProviderUnderTest(name, make_local, fail_local)
    raise AssertionError(f"unknown provider {name}")


def _load_target(name: str) -> Callable[..., ProviderUnderTest]:
    module = importlib.import_module(f"tests.contract.targets.{name}")
    make: Callable[..., ProviderUnderTest] = module.make_target
    return make


@pytest.fixture(params=PROVIDERS)
def backend_factory(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ProviderUnderTest:
    if request.param in ("memory", "local"):
        return _make_target(request.param, tmp_path, monkeypatch)
    return _load_target(request.param)(request, tmp_path, monkeypatch)


@pytest.fixture
def backend(backend_factory: ProviderUnderTest) -> Iterator[Backend]:
    b = backend_factory.make()
    b.create()
    yield b
    b.close()
