"""A guard that fails any connection from the test process to a non-loopback address.

Tests talk only to 127.0.0.1; the fakes of cloud providers must never let an SDK reach the real
service by accident (a wrong endpoint, a discovery document, a token refresh). The guard wraps
``socket.socket.connect``/``connect_ex`` and raises before the connection is attempted.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest


class NonLoopbackConnection(AssertionError):
    """A test tried to connect somewhere other than this machine."""


def _check(sock: socket.socket, address: Any) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0] if isinstance(address, tuple) else address
    try:
        ip = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        raise NonLoopbackConnection(f"a test tried to connect to {host!r} (not an IP address)") from None
    if not ip.is_loopback:
        raise NonLoopbackConnection(f"a test tried to connect to {host} — tests talk only to 127.0.0.1")


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: Any) -> None:
        _check(self, address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _check(self, address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield
