"""Real WebDAV servers on 127.0.0.1: WsgiDAV on cheroot (in-process), ``rclone serve webdav``, and
a Nextcloud stand-in (WsgiDAV behind :class:`tests.fakes.nextcloud_fake.NextcloudFake`).

Every server uses basic authentication with user ``u`` and password ``p`` and serves a fresh temp
folder. Tests make their own sub-folder per repository (``server.url_for(name)``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port, require

USER = "u"
PASSWORD = "p"


@dataclass
class DavServer:
    """A running WebDAV server. ``base`` ends without a slash; ``root`` is its folder on disk."""

    base: str
    root: Path
    fake: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def url_for(self, name: str) -> str:
        return f"{self.base}/{name}"

    def location(self, name: str) -> str:
        return "webdav:" + self.url_for(name)

    @property
    def env(self) -> dict[str, str]:
        return {"SAFEKEEP_WEBDAV_USER": USER, "SAFEKEEP_WEBDAV_PASSWORD": PASSWORD}


def _wsgidav_app(root: Path, mount: str) -> Any:
    from wsgidav.wsgidav_app import WsgiDAVApp

    config = {
        "provider_mapping": {mount: str(root)},
        "simple_dc": {"user_mapping": {"*": {USER: {"password": PASSWORD}}}},
        "http_authenticator": {
            "domain_controller": None,
            "accept_basic": True,
            "accept_digest": False,
            "default_to_digest": False,
        },
        "verbose": 0,
        "logging": {"enable": False, "enable_loggers": []},
        "lock_storage": True,
        "property_manager": True,
        "dir_browser": {"enable": False},
    }
    return WsgiDAVApp(config)


def _serve(app: Any) -> tuple[Any, int, threading.Thread]:
    from cheroot import wsgi

    server = wsgi.Server(("127.0.0.1", 0), app, numthreads=16, timeout=30)
    server.prepare()
    port = server.bind_addr[1]
    thread = threading.Thread(target=server.serve, name="webdav-server", daemon=True)
    thread.start()
    return server, port, thread


def _wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def wsgidav_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DavServer]:
    """WsgiDAV in-process on cheroot, basic auth (u/p), serving a temp folder at ``/dav``."""
    folder = tmp_path_factory.mktemp("wsgidav")
    try:
        app = _wsgidav_app(folder, "/dav")
    except ImportError as exc:
        require(False, f"wsgidav/cheroot are not installed: {exc}")
        raise
    server, port, thread = _serve(app)
    yield DavServer(base=f"http://127.0.0.1:{port}/dav", root=folder)
    server.stop()
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def nextcloud_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DavServer]:
    """WsgiDAV behind the Nextcloud fake: ``/remote.php/dav/files/u/`` plus chunked uploads."""
    from tests.fakes.nextcloud_fake import NextcloudFake

    root = tmp_path_factory.mktemp("nextcloud")
    try:
        inner = _wsgidav_app(root, f"/remote.php/dav/files/{USER}")
    except ImportError as exc:
        require(False, f"wsgidav/cheroot are not installed: {exc}")
        raise
    fake = NextcloudFake(inner, root=root, user=USER)
    server, port, thread = _serve(fake)
    yield DavServer(base=f"http://127.0.0.1:{port}/remote.php/dav/files/{USER}", root=root, fake=fake)
    server.stop()
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def rclone_webdav_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DavServer]:
    """``rclone serve webdav`` (Debian's rclone) on a temp folder, basic auth u/p."""
    rclone = shutil.which("rclone")
    require(rclone is not None, "rclone is not installed")
    assert rclone is not None
    root = tmp_path_factory.mktemp("rclone-webdav")
    conf = tmp_path_factory.mktemp("rclone-conf") / "rclone.conf"
    conf.write_text("")
    port = free_port()
    log = tmp_path_factory.mktemp("rclone-log") / "rclone.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                rclone,
                "serve",
                "webdav",
                "--config",
                str(conf),
                "--addr",
                f"127.0.0.1:{port}",
                "--user",
                USER,
                "--pass",
                PASSWORD,
                str(root),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RCLONE_CONFIG": str(conf)},
        )
    try:
        up = _wait_port(port, proc)
        if not up:
            require(False, "rclone serve webdav did not start: " + log.read_text(errors="replace")[-2000:])
        yield DavServer(base=f"http://127.0.0.1:{port}", root=root)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
