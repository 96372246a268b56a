"""How other programs reach the running trigger host (the app or ``safekeep daemon``).

The host listens on 127.0.0.1 on a random port and writes the port and a random token to
``<data folder>/host.json`` (readable by this user only). A client (``safekeep trigger``) reads
the file, connects, sends one JSON line and reads one JSON line back. Requests:

``{"token": T, "op": "trigger", "plan": NAME, "reason": TEXT}`` -> ``{"ok": true, "run_id": ...}``
``{"token": T, "op": "ping"}`` -> ``{"ok": true, "pid": ...}``

A wrong token is refused; so only processes of this user, who can read the file, can ask for
runs. Only one host runs per user: it holds an exclusive lock on ``host.lock`` for its lifetime.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from safekeep.common.errors import SafekeepError

log = logging.getLogger(__name__)

HOST_FILE = "host.json"
LOCK_FILE = "host.lock"

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class HostAlreadyRunning(SafekeepError):
    def __init__(self, pid: str) -> None:
        super().__init__(
            f"Safekeep is already running for this user (process {pid or 'unknown'}).",
            hint="Use the running app (or 'safekeep trigger'); stop it first to start another.",
        )


class HostLock:
    """The one-host-per-user lock (an OS file lock, released when the process ends)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._path = folder / LOCK_FILE
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        f = open(self._path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the host's lifetime
        try:
            _lock_file(f)
        except OSError:
            f.seek(0)
            pid = f.read().strip()
            f.close()
            raise HostAlreadyRunning(pid) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _lock_file(f: IO[str]) -> None:
    if os.name == "nt":
        import msvcrt  # noqa: PLC0415 - Windows only

        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
    else:
        import fcntl  # noqa: PLC0415 - POSIX only

        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


class ControlServer:
    """Answers requests from other programs on 127.0.0.1, one JSON line each way."""

    def __init__(self, folder: Path, handler: Handler) -> None:
        self._folder = folder
        self._token = secrets.token_urlsafe(24)
        outer = self

        class _Request(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline(1 << 16)
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("not an object")
                except ValueError:
                    reply: dict[str, Any] = {"ok": False, "error": "The request was not JSON."}
                else:
                    reply = outer._answer(request)
                self.wfile.write((json.dumps(reply) + "\n").encode())

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Request, bind_and_activate=False)
        self._server.daemon_threads = True
        self._server.allow_reuse_address = True
        self._server.server_bind()
        self._server.server_activate()
        self._handler = handler
        self._thread = threading.Thread(target=self._server.serve_forever, name="control", daemon=True)

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        if not secrets.compare_digest(str(request.get("token", "")), self._token):
            return {"ok": False, "error": "Not allowed."}
        if request.get("op") == "ping":
            return {"ok": True, "pid": os.getpid()}
        try:
            return self._handler(request)
        except SafekeepError as exc:
            return {"ok": False, "error": exc.message, "hint": exc.hint}
        except Exception as exc:
            log.exception("a control request failed")
            return {"ok": False, "error": f"The request failed: {exc}"}

    def start(self) -> None:
        self._thread.start()
        path = self._folder / HOST_FILE
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"port": self._server.server_address[1], "token": self._token, "pid": os.getpid()}, f)
        os.replace(tmp, path)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            (self._folder / HOST_FILE).unlink()
        self._server.shutdown()
        self._server.server_close()


def send(folder: Path, request: dict[str, Any], *, timeout: float = 10.0) -> dict[str, Any] | None:
    """Send ``request`` to the running host; ``None`` when no host is running."""
    try:
        info = json.loads((folder / HOST_FILE).read_text(encoding="utf-8"))
        port, token = int(info["port"]), str(info["token"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall((json.dumps({**request, "token": token}) + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        log.info("no trigger host answers (%s)", exc)
        return None
    try:
        reply = json.loads(data)
    except ValueError:
        return None
    return reply if isinstance(reply, dict) else None
