"""The providers the contract suite runs against.

Each parameter of ``backend_factory`` is one provider. A new provider adds its name to
``PROVIDERS`` and a branch in ``_make_target`` that returns a :class:`ProviderUnderTest`.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from safekeep.storage.base import Backend
from safekeep.storage.errors import StorageError
from safekeep.storage.providers.local import LocalBackend
from safekeep.storage.providers.memory import MemoryBackend

PROVIDERS = ["memory", "local"]


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


@pytest.fixture(params=PROVIDERS)
def backend_factory(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ProviderUnderTest:
    return _make_target(request.param, tmp_path, monkeypatch)


@pytest.fixture
def backend(backend_factory: ProviderUnderTest) -> Iterator[Backend]:
    b = backend_factory.make()
    b.create()
    yield b
    b.close()
