"""A repository on any rclone remote (Box, pCloud, Mega, Zoho WorkDrive, Egnyte, Seafile, ...).

Location: ``rclone:<remote>:<path>`` (restic's syntax), e.g. ``rclone:box:backups/office`` or
``rclone::local:/srv/test`` for rclone's on-the-fly remotes. The remote comes from the user's
rclone config, or one the app made with :mod:`safekeep.storage.providers.rclone_config`.

How it works, and why: like restic, Safekeep runs ``rclone serve restic`` and speaks restic's
REST backend protocol to it (``GET/POST/HEAD/DELETE /<type>/<name>``, ``GET /<type>/`` with the
v2 JSON listing, ``POST /?create=true``, ``Range`` reads). restic uses ``--stdio``, but over
stdio rclone speaks HTTP/2 without TLS (h2c), which Python's standard library cannot; so the
child listens on ``127.0.0.1:0`` instead, Safekeep reads the bound address from its log, and
every request carries a random user name and password (handed over in the environment,
``RCLONE_USER``/``RCLONE_PASS``, never on the command line) so other local users cannot use
the server. Debian's rclone 1.60 is enough.

Options: ``rclone.program`` (default ``rclone``), ``rclone.args`` (extra arguments for
``rclone serve restic``, shell-quoted; default ``--b2-hard-delete`` as restic), ``rclone.config``
(path of ``rclone.conf``; default the user's), ``rclone.connections`` (default 5),
``rclone.timeout`` (seconds to wait for rclone to start; default 60).

A failed or cancelled upload never stays half-written: rclone writes straight to the final
name, so Safekeep first ends the request body (half-closing the connection) and waits, bounded,
for rclone to answer — by then rclone has removed its partial file — then deletes the name and
polls, bounded, until rclone reports it absent. HTTP 404 is ``NotFound``, 401/403 ``PermissionDenied``, 507 or
a "quota"/"no space" reply ``QuotaExceeded``, other 5xx and broken connections transient; if
the rclone process died it is started again on the next call.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import os
import queue
import re
import secrets
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import IO

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.secret import Secret
from safekeep.storage.base import Backend, FileInfo, FileType, Handle, Properties, check_range, http_range
from safekeep.storage.errors import (
    InvalidLocation,
    NotFound,
    PermanentStorageError,
    PermissionDenied,
    QuotaExceeded,
    StorageError,
    TransientStorageError,
)
from safekeep.storage.registry import Location, ProviderSettings, register_provider

log = logging.getLogger(__name__)

_V2 = "application/vnd.x.restic.rest.v2"
_SERVING = re.compile(r"Serving restic REST API on (https?://[^\s/]+)/?")
_CHUNK = 1 << 20
_ABANDON_WAIT = 10.0  # seconds to wait for rclone to answer an upload ended part-way
_CLEANUP_POLLS = 40  # checks for a partial upload's absence (about 7 s in all, at most)
_CLEANUP_CONFIRM = 3  # consecutive "absent" answers that confirm it


def _parse_rclone(raw: str, rest: str) -> Location:
    if ":" not in rest:
        raise InvalidLocation(
            f"The rclone location {raw!r} names no remote.",
            hint="Write it as rclone:<remote>:<path>, e.g. rclone:box:backups (see 'rclone listremotes').",
        )
    return Location(scheme="rclone", path=rest, raw=raw)


class _Server:
    """One ``rclone serve restic`` child on 127.0.0.1."""

    def __init__(self, argv: list[str], env: dict[str, str], timeout: float, remote: str) -> None:
        self._remote = remote
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
            )
        except FileNotFoundError as exc:
            raise InvalidLocation(
                f"The rclone program {argv[0]!r} was not found, so {remote!r} cannot be used.",
                hint="Install rclone (on Debian/Ubuntu: apt install rclone) or set -o rclone.program=PATH.",
            ) from exc
        except PermissionError as exc:
            raise InvalidLocation(
                f"The rclone program {argv[0]!r} cannot be run.", hint="Check the path in rclone.program."
            ) from exc
        assert self.proc.stderr is not None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.tail: list[str] = []
        threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True).start()
        self.address = self._wait(timeout)

    def _drain(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            self.tail = [*self.tail[-30:], line]
            log.debug("rclone: %s", line)
            self._lines.put(line)
        self._lines.put(None)

    def _wait(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise TransientStorageError(
                    f"rclone did not start serving {self._remote!r} within {timeout:.0f} s.",
                    hint="Check the remote with 'rclone lsd " + self._remote + "'.",
                )
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait()
                raise self._startup_error()
            m = _SERVING.search(line)
            if m:
                return m.group(1).split("//", 1)[1]

    def _startup_error(self) -> StorageError:
        text = "\n".join(self.tail)
        detail = next((ln for ln in reversed(self.tail) if "ERROR" in ln or "Failed" in ln), text[-300:])
        detail = re.sub(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\s*", "", detail)
        if "didn't find section in config file" in text or "not found in config" in text:
            name = self._remote.split(":", 1)[0]
            return InvalidLocation(
                f"rclone has no remote named {name!r}.",
                hint="Create it with 'rclone config' (or in Safekeep's setup wizard), or check the name "
                "with 'rclone listremotes'; use -o rclone.config=PATH for another config file.",
            )
        if "unknown flag" in text or "unknown command" in text:
            return InvalidLocation(
                f"rclone refused the arguments: {detail}", hint="Check the option rclone.args."
            )
        return PermanentStorageError(
            f"rclone could not open {self._remote!r}: {detail}",
            hint="Run 'rclone lsd " + self._remote + "' to see the problem.",
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class RcloneBackend:
    """A repository on an rclone remote through ``rclone serve restic``. See the module docstring."""

    def __init__(self, location: Location, settings: ProviderSettings) -> None:
        self._remote = location.path
        self._program = settings.option("rclone.program", "rclone")
        self._extra = shlex.split(settings.option("rclone.args", "--b2-hard-delete"))
        self._config = settings.option("rclone.config")
        try:
            self._connections = max(1, int(settings.option("rclone.connections", "5")))
            self._timeout = float(settings.option("rclone.timeout", "60"))
        except ValueError as exc:
            raise InvalidLocation("rclone.connections and rclone.timeout must be numbers.") from exc
        user, password = secrets.token_hex(8), Secret(secrets.token_urlsafe(24))
        self._env = dict(os.environ, RCLONE_USER=user, RCLONE_PASS=password.reveal())
        self._auth = "Basic " + base64.b64encode(f"{user}:{password.reveal()}".encode()).decode()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._idle: list[http.client.HTTPConnection] = []
        self._properties = Properties(location=location.raw, connections=self._connections)

    def __repr__(self) -> str:
        return f"RcloneBackend({self._properties.location!r})"

    @property
    def properties(self) -> Properties:
        return self._properties

    # -- Backend -------------------------------------------------------------------------------

    def create(self, *, cancel: CancelToken = NEVER) -> None:
        cancel.raise_if_cancelled()
        self._request("POST", "/?create=true", what="create the repository")

    def save(self, h: Handle, data: bytes | bytearray | memoryview, *, cancel: CancelToken = NEVER) -> None:
        path = self._path(h)
        cancel.raise_if_cancelled()
        view = memoryview(data).cast("B")
        try:
            self._request("POST", path, body=view, cancel=cancel, what="save")
        except BaseException:
            self._remove_partial(h, path)
            raise

    def load(
        self, h: Handle, offset: int = 0, length: int | None = None, *, cancel: CancelToken = NEVER
    ) -> bytes:
        check_range(offset, length)
        path = self._path(h)
        cancel.raise_if_cancelled()
        if length == 0:
            self.stat(h, cancel=cancel)
            return b""
        headers = {}
        if (byte_range := http_range(offset, length)) is not None:
            headers["Range"] = byte_range
        status, body = self._request("GET", path, headers=headers, what="read", ok=(200, 206, 416))
        if status == 416:  # beyond the end
            self.stat(h, cancel=cancel)
            return b""
        if status == 200 and (offset or length is not None):
            return body[offset : None if length is None else offset + length]
        return body

    def stat(self, h: Handle, *, cancel: CancelToken = NEVER) -> FileInfo:
        cancel.raise_if_cancelled()
        _, _, size = self._head(self._path(h))
        return FileInfo(h.name, size)

    def list(self, type: FileType, *, cancel: CancelToken = NEVER) -> Iterator[FileInfo]:
        cancel.raise_if_cancelled()
        if type is FileType.CONFIG:
            try:
                yield self.stat(Handle.config(), cancel=cancel)
            except NotFound:
                pass
            return
        try:
            _, body = self._request("GET", f"/{type.value}/", headers={"Accept": _V2}, what="list")
        except NotFound:
            return
        for item in json.loads(body or b"[]"):
            yield FileInfo(str(item["name"]), int(item["size"]))

    def remove(self, h: Handle, *, cancel: CancelToken = NEVER) -> None:
        path = self._path(h)
        cancel.raise_if_cancelled()
        self._head(path)  # rclone answers a delete of a missing file with success
        self._request("DELETE", path, what="delete")

    def close(self) -> None:
        with self._lock:
            for conn in self._idle:
                conn.close()
            self._idle.clear()
            if self._server is not None:
                self._server.stop()
                self._server = None

    # -- internals -----------------------------------------------------------------------------

    @staticmethod
    def _path(h: Handle) -> str:
        if h.type is FileType.CONFIG:
            if h.name != "config":
                raise ValueError(f"the config handle must be named 'config', not {h.name!r}")
            return "/config"
        if not re.fullmatch(r"[0-9A-Za-z_-]+", h.name) or (h.type is FileType.PACK and len(h.name) < 2):
            raise ValueError(f"invalid repository file name {h.name!r}")
        return f"/{h.type.value}/{h.name}"

    def _remove_partial(self, h: Handle, path: str) -> None:
        """Delete what a failed upload may have left at ``path`` and confirm it is gone.

        rclone may still be finishing the broken request (writing, then removing its partial
        file) while this runs, so absence is confirmed by consecutive checks, with a bound. The
        checks list the folder rather than ask for the one file: rclone remembers every file it
        has been asked about, so a question answered while the partial file briefly existed
        would keep "finding" it after rclone itself removed it; a listing re-reads the folder and
        replaces what rclone remembers about it.
        """
        absent = 0
        for attempt in range(_CLEANUP_POLLS):
            try:
                present = self._present(h)
            except Exception as exc:
                log.debug("checking %s after a failed upload: %s", path, exc)
                absent = 0
            else:
                if not present:
                    absent += 1
                    if absent >= _CLEANUP_CONFIRM:
                        return
                else:
                    absent = 0
                    with contextlib.suppress(Exception):
                        self._request("DELETE", path, what="clean up")
            time.sleep(min(0.02 * (attempt + 1), 0.2))  # bounded: at most _CLEANUP_POLLS checks
        log.warning("could not confirm that the partial upload %s on %s was removed", path, self._remote)

    def _present(self, h: Handle) -> bool:
        if h.type is FileType.CONFIG:
            try:
                self._head(self._path(h))
            except NotFound:
                return False
            return True
        return any(info.name == h.name for info in self.list(h.type))

    def _ensure_server(self) -> str:
        with self._lock:
            if self._server is not None and not self._server.alive():
                log.warning(
                    "rclone stopped unexpectedly; starting it again: %s", " | ".join(self._server.tail[-3:])
                )
                self._idle.clear()
                self._server = None
            if self._server is None:
                argv = [self._program, "serve", "restic", "--addr", "127.0.0.1:0", *self._extra]
                if self._config:
                    argv += ["--config", self._config]
                argv.append(self._remote)
                self._server = _Server(argv, self._env, self._timeout, self._remote)
            return self._server.address

    def _conn(self) -> http.client.HTTPConnection:
        address = self._ensure_server()
        with self._lock:
            if self._idle:
                return self._idle.pop()
        host, port = address.rsplit(":", 1)
        return http.client.HTTPConnection(host, int(port), timeout=300)

    def _head(self, path: str) -> tuple[int, bytes, int]:
        status, _, length = self._exchange("HEAD", path, what="inspect")
        return status, b"", length

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: memoryview | None = None,
        headers: dict[str, str] | None = None,
        cancel: CancelToken = NEVER,
        what: str,
        ok: tuple[int, ...] = (200, 206),
    ) -> tuple[int, bytes]:
        status, data, _ = self._exchange(
            method, path, body=body, headers=headers, cancel=cancel, what=what, ok=ok
        )
        return status, data

    def _exchange(
        self,
        method: str,
        path: str,
        *,
        body: memoryview | None = None,
        headers: dict[str, str] | None = None,
        cancel: CancelToken = NEVER,
        what: str,
        ok: tuple[int, ...] = (200, 206),
    ) -> tuple[int, bytes, int]:
        conn = self._conn()
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            conn.putheader("Authorization", self._auth)
            for k, v in (headers or {}).items():
                conn.putheader(k, v)
            conn.putheader("Content-Length", str(len(body) if body is not None else 0))
            if body is not None:
                conn.putheader("Content-Type", "application/octet-stream")
            conn.endheaders()
            if body is not None:
                try:
                    for pos in range(0, len(body), _CHUNK):
                        cancel.raise_if_cancelled()
                        conn.send(body[pos : pos + _CHUNK])
                    cancel.raise_if_cancelled()
                except BaseException:
                    _abandon(conn)
                    raise
            resp = conn.getresponse()
            data = resp.read()
            length = int(resp.getheader("Content-Length") or len(data))
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise TransientStorageError(
                f"The connection to rclone ({self._remote}) was interrupted: {exc}.",
                hint="Safekeep retries automatically.",
            ) from exc
        except BaseException:
            conn.close()
            raise
        if resp.will_close:
            conn.close()
        else:
            with self._lock:
                self._idle.append(conn)
        if resp.status in ok:
            return resp.status, data, length
        raise self._error(resp.status, data.decode(errors="replace").strip(), what, path)

    def _error(self, status: int, text: str, what: str, path: str) -> StorageError:
        where = f"{path.lstrip('/')} on {self._remote}"
        low = text.lower()
        if status == 404:
            return NotFound(f"{where} was not found.", hint="Check the path in the location.")
        if status in (401, 403):
            return PermissionDenied(
                f"The remote {self._remote} does not allow Safekeep to {what} {where}.",
                hint="Reconnect the remote with 'rclone config reconnect' or check its permissions.",
            )
        if status == 507 or "quota" in low or "no space" in low or "storage full" in low:
            return QuotaExceeded(
                f"The rclone remote {self._remote} is full.",
                hint="Free space there (for example by pruning old snapshots) or buy more, then run "
                "the backup again.",
            )
        if status >= 500 or status == 429:
            return TransientStorageError(f"rclone could not {what} {where} (HTTP {status}: {text[:200]}).")
        return PermanentStorageError(
            f"rclone refused to {what} {where} (HTTP {status}: {text[:200]}).",
            hint="Run 'rclone lsd " + self._remote + "' to check the remote.",
        )


def _abandon(conn: http.client.HTTPConnection) -> None:
    """End an upload part-way: half-close, then wait (bounded) until rclone has answered.

    rclone sees the body end early, removes the partial file and replies; once the reply (or
    the close) arrives here, nothing of the upload is being written any more.
    """
    sock = conn.sock
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(_ABANDON_WAIT)
        while sock.recv(65536):
            pass
    conn.close()


def _open_rclone(location: Location, settings: ProviderSettings) -> Backend:
    return RcloneBackend(location, settings)


register_provider("rclone", _open_rclone, parser=_parse_rclone)
