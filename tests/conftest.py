"""Shared pytest fixtures."""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture(scope="session")
def restic_bin() -> str:
    """Path of the ``restic`` program (the interoperability oracle).

    Missing restic skips the test locally but fails it in CI (``CI=true``), so the oracle can
    never silently drop out of the pipeline.
    """
    path = shutil.which("restic")
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("restic is required in CI but was not found on PATH")
        pytest.skip("restic is not installed")
    return path
