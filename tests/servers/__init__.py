"""Fixture plugins that start real servers on 127.0.0.1 for the tests (one module per server).

Convention: a server that cannot start fails the test in CI (``CI=true``) and skips it
elsewhere, through :func:`tests.servers.require`.
"""

from __future__ import annotations

import os
import socket

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, why: str) -> None:
    """Fail in CI, skip elsewhere, when a real server or tool is unavailable."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"required in CI but unavailable: {why}")
    pytest.skip(why)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
