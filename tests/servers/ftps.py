"""pyftpdlib FTP servers on 127.0.0.1 for the FTP provider: FTPS with a throw-away CA (trustme),
a plain-FTP one, and a tiny-quota FTPS one whose disk is "full" (ENOSPC) once the files in its home
pass a byte budget."""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers import require

USER, PASSWORD = "alice", "correct horse"


@dataclass(frozen=True)
class FtpServer:
    host: str
    port: int
    home: Path
    ca_file: Path | None
    tls: bool
    password: str = PASSWORD
    user: str = USER

    def location(self, path: str) -> str:
        return f"ftp:{'ftps' if self.tls else 'ftp'}://{self.user}@{self.host}:{self.port}/{path.lstrip('/')}"


def _start(tmp: Path, *, tls: bool, quota: int | None) -> Iterator[FtpServer]:
    try:
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.filesystems import AbstractedFS
        from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
        from pyftpdlib.servers import ThreadedFTPServer
    except ImportError as exc:  # pragma: no cover
        require(False, f"pyftpdlib is not installed: {exc}")
        raise
    home = tmp / "home"
    home.mkdir(parents=True)
    auth = DummyAuthorizer()
    auth.add_user(USER, PASSWORD, str(home), perm="elradfmwMT")
    ca_file = None
    base: Any = FTPHandler
    if tls:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        cert_file = tmp / "server.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
        ca_file = tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        base = TLS_FTPHandler

    attrs: dict[str, Any] = {"authorizer": auth, "passive_ports": None, "banner": "safekeep test"}
    if tls:
        attrs.update(certfile=str(cert_file), tls_control_required=True, tls_data_required=True)
    if quota is not None:
        limit = quota
        lock = threading.Lock()

        def used() -> int:
            return sum(p.stat().st_size for p in home.rglob("*") if p.is_file())

        class _Full(AbstractedFS):  # type: ignore[misc]
            def open(self, filename: str, mode: str) -> Any:
                f = super().open(filename, mode)
                if "w" not in mode and "a" not in mode:
                    return f
                real_write = f.write

                def write(data: bytes) -> int:
                    with lock:
                        f.flush()
                        if used() + len(data) > limit:
                            raise OSError(errno.ENOSPC, "No space left on device")
                        return int(real_write(data))

                f.write = write
                return f

        def ftp_STOR(self: Any, file: str, mode: str = "w") -> Any:
            # a real "disk full" reply up front: pyftpdlib's TLS data channel never sends the
            # 426 reply after a write error mid-transfer (ENOSPC above stays as a backstop)
            if used() + 1024 * 1024 > limit:
                self.respond("552 Requested file action aborted: exceeded storage allocation.")
                return None
            return base.ftp_STOR(self, file, mode)

        attrs["abstracted_fs"] = _Full
        attrs["ftp_STOR"] = ftp_STOR
    handler = type("Handler", (base,), attrs)
    server = ThreadedFTPServer(("127.0.0.1", 0), handler)
    host, port = server.address[:2]
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.2}, daemon=True)
    thread.start()
    try:
        yield FtpServer(host, port, home, ca_file, tls)
    finally:
        server.close_all()
        thread.join(10)


@pytest.fixture(scope="session")
def ftps_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    yield from _start(tmp_path_factory.mktemp("ftps"), tls=True, quota=None)


@pytest.fixture(scope="session")
def ftp_plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    yield from _start(tmp_path_factory.mktemp("ftp"), tls=False, quota=None)


@pytest.fixture()
def ftps_tiny_server(tmp_path: Path) -> Iterator[FtpServer]:
    """FTPS whose "disk" (the files under its home) holds 4 MiB; deleting files frees space."""
    yield from _start(tmp_path / "tiny", tls=True, quota=4 * 1024 * 1024)
