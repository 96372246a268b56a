"""The loopback-only guard the cloud-drive tests rely on."""

from __future__ import annotations

import socket

import pytest
from tests.fakes.netguard import NonLoopbackConnection


def test_guard_refuses_a_public_address(loopback_only: None) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(NonLoopbackConnection):
            s.connect(("192.0.2.1", 443))  # TEST-NET-1: never routed
    finally:
        s.close()


def test_guard_allows_loopback(loopback_only: None) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    try:
        with socket.create_connection(server.getsockname()[:2], timeout=5) as client:
            assert client.getpeername()[0] == "127.0.0.1"
    finally:
        server.close()
