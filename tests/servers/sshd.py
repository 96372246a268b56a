"""A real OpenSSH ``sshd`` on 127.0.0.1 for the SFTP provider's tests.

The server runs from a temp dir with its own config, its own Ed25519 host key and an
``authorized_keys`` file holding a client key generated for the session. It lets root log in
(the tests run as root) with that key; passwords are accepted by the protocol (so a wrong
password is refused by the server, not by the client) but no account here has one.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import free_port, require

SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class SshServer:
    host: str
    port: int
    user: str
    client_key: Path
    """A private key that the server accepts for ``user``."""
    host_key_line: str
    """``<type> <base64>`` of the server's host key."""
    fingerprint: str
    """``SHA256:...`` of the host key, as ``ssh-keygen -l`` prints it."""
    known_hosts: Path
    """A known_hosts file (read-only for tests: copy it) that trusts this server."""

    def location(self, path: str | os.PathLike[str]) -> str:
        return f"sftp://{self.user}@{self.host}:{self.port}/{os.fspath(path)}"

    def options(self, known_hosts: Path | None = None, **extra: str) -> dict[str, str]:
        """Provider options for a test: this client key, a known_hosts file, no ~/.ssh, no agent."""
        opts = {
            "sftp.key-file": str(self.client_key),
            "sftp.known-hosts": str(known_hosts or self.known_hosts),
            "sftp.system-known-hosts": "",
            "sftp.agent": "false",
        }
        opts.update(extra)
        return opts


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "safekeep-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """A running sshd with SFTP; see :class:`SshServer`."""
    require(os.path.exists(SSHD) and shutil.which("ssh-keygen") is not None, "OpenSSH sshd is not installed")
    require(os.geteuid() == 0, "the sshd test server logs in as root and needs root")
    d = tmp_path_factory.mktemp("sshd")
    os.makedirs("/run/sshd", exist_ok=True)
    host_key, client_key = d / "host_ed25519", d / "client_ed25519"
    _keygen(host_key)
    _keygen(client_key)
    authorized = d / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    port = free_port()
    config = d / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "ListenAddress 127.0.0.1",
                f"Port {port}",
                f"HostKey {host_key}",
                f"PidFile {d / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "UsePAM no",
                "StrictModes no",
                "PermitRootLogin yes",
                "PubkeyAuthentication yes",
                "PasswordAuthentication yes",
                "KbdInteractiveAuthentication no",
                "MaxSessions 20",
                "MaxStartups 50",
                "Subsystem sftp internal-sftp",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    log = open(d / "sshd.log", "wb")  # noqa: SIM115 - closed at the end
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        up = _wait_for_port(port, proc)
        require(up, "sshd did not start: " + (d / "sshd.log").read_text(errors="replace")[-2000:])
        key_type, key_b64 = host_key.with_suffix(".pub").read_text().split()[:2]
        fp = subprocess.run(
            ["ssh-keygen", "-l", "-f", str(host_key.with_suffix(".pub"))],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()[1]
        known = d / "known_hosts"
        known.write_text(f"[127.0.0.1]:{port} {key_type} {key_b64}\n")
        yield SshServer(
            host="127.0.0.1",
            port=port,
            user="root",
            client_key=client_key,
            host_key_line=f"{key_type} {key_b64}",
            fingerprint=fp,
            known_hosts=known,
        )
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
