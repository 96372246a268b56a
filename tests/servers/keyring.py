"""A real Secret Service (GNOME Keyring) on a private D-Bus session bus, for the keyring tests.

``dbus-daemon --session`` gives a bus of our own (its address goes into
``DBUS_SESSION_BUS_ADDRESS``), and ``gnome-keyring-daemon --foreground --unlock
--components=secrets`` on it creates and unlocks a ``login`` keyring with the password read from
stdin. Both run with a temp ``HOME`` and XDG folders, so the keyrings are files in a temp dir and
nothing of the person's own keyring is touched. The daemons live for the test session and are
stopped by PID; each test gets the bus address in its environment and the ``SecretService``
backend selected explicitly in ``keyring`` (restored afterwards).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers import require

KEYRING_PASSWORD = "safekeep-test-keyring"
SECRETS_BUS_NAME = "org.freedesktop.secrets"


@dataclass(frozen=True)
class SecretServiceBus:
    """A running private bus with GNOME Keyring on it."""

    address: str
    """The D-Bus address (what ``DBUS_SESSION_BUS_ADDRESS`` must hold)."""
    env: dict[str, str] = field(default_factory=dict)
    """An environment for a child process that should use this keyring (temp HOME, XDG dirs, bus)."""
    keyring_dir: Path = Path()
    """Where gnome-keyring keeps its keyring files."""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _read_address(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> str:
    """The first line dbus-daemon prints (``--print-address=1``), or "" if it does not come."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while b"\n" not in buf and time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
    finally:
        sel.close()
    return buf.split(b"\n", 1)[0].decode().strip()


def _service_running(address: str) -> bool:
    from jeepney.bus_messages import message_bus
    from jeepney.io.blocking import open_dbus_connection

    try:
        with open_dbus_connection(bus=address) as conn:
            reply = conn.send_and_get_reply(message_bus.NameHasOwner(SECRETS_BUS_NAME), timeout=5)
            return bool(reply.body[0])
    except (OSError, ConnectionError, TimeoutError):
        return False


@contextlib.contextmanager
def running_secret_service(d: Path) -> Iterator[SecretServiceBus]:
    """Start a private bus and GNOME Keyring with their files under ``d``; stop them on exit.

    The daemons get a minimal environment of their own (no ``DISPLAY``), so a keyring prompt
    that D-Bus would start fails at once instead of waiting for someone to type a password.
    """
    dbus_daemon = shutil.which("dbus-daemon")
    gnome_keyring = shutil.which("gnome-keyring-daemon")
    require(dbus_daemon is not None, "dbus-daemon is not installed (apt package dbus)")
    require(gnome_keyring is not None, "gnome-keyring-daemon is not installed (apt package gnome-keyring)")
    assert dbus_daemon is not None and gnome_keyring is not None
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(d / "home"),
        "XDG_DATA_HOME": str(d / "data"),
        "XDG_CONFIG_HOME": str(d / "config"),
        "XDG_CACHE_HOME": str(d / "cache"),
        "XDG_RUNTIME_DIR": str(d / "run"),
    }
    for key in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR"):
        Path(env[key]).mkdir(mode=0o700)
    with open(d / "dbus.log", "wb") as bus_log:
        bus = subprocess.Popen(
            [dbus_daemon, "--session", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=bus_log,
            env=env,
        )
    daemon: subprocess.Popen[bytes] | None = None
    try:
        address = _read_address(bus)
        require(
            bool(address),
            "dbus-daemon did not start: " + (d / "dbus.log").read_text(errors="replace")[-2000:],
        )
        env["DBUS_SESSION_BUS_ADDRESS"] = address
        with open(d / "gnome-keyring.log", "wb") as log:
            daemon = subprocess.Popen(
                [gnome_keyring, "--foreground", "--unlock", "--components=secrets"],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        assert daemon.stdin is not None
        daemon.stdin.write(KEYRING_PASSWORD.encode())
        daemon.stdin.close()
        deadline = time.monotonic() + 20
        while not _service_running(address) and daemon.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        require(
            _service_running(address),
            "gnome-keyring-daemon did not start: "
            + (d / "gnome-keyring.log").read_text(errors="replace")[-2000:],
        )
        yield SecretServiceBus(address=address, env=env, keyring_dir=Path(env["XDG_DATA_HOME"]) / "keyrings")
    finally:
        if daemon is not None:
            _stop(daemon)
        _stop(bus)
        if bus.stdout is not None:
            bus.stdout.close()


@pytest.fixture(scope="session")
def secret_service_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretServiceBus]:
    """The session's private D-Bus with GNOME Keyring (see the module docstring)."""
    with running_secret_service(tmp_path_factory.mktemp("secret-service")) as bus:
        yield bus


@pytest.fixture()
def secret_service(
    secret_service_bus: SecretServiceBus, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SecretServiceBus]:
    """This test talks to the private Secret Service: ``DBUS_SESSION_BUS_ADDRESS`` points at its
    bus and ``keyring`` uses its ``SecretService`` backend (the previous backend is restored)."""
    import keyring
    import keyring.backends.SecretService

    previous = keyring.get_keyring()
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", secret_service_bus.address)
    keyring.set_keyring(keyring.backends.SecretService.Keyring())
    try:
        yield secret_service_bus
    finally:
        keyring.set_keyring(previous)
