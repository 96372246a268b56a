"""A repository on an FTP server, over FTPS (explicit TLS) with ftplib, in restic's layout.

Locations: ``ftp:ftps://user@host[:port]/path`` — TLS on the control and the data connections
(``AUTH TLS``, ``PROT P``), the server's certificate verified against the system's CAs (option
``ftp.ca-file=PATH`` for a company CA or a self-signed certificate; ``ftp.insecure-skip-verify=true``
to skip the check, which a warning reports). Plain ``ftp:ftp://...`` sends the password in clear
text and is refused unless the option ``ftp.allow-plaintext=true`` is given (then a warning is
logged each time it connects).

The password comes from ``SAFEKEEP_FTP_PASSWORD`` or the stored secret ``ftp-password`` (the
app's keyring); never from the location. Writes go to ``<name>.tmp-<random>`` in the target
folder (never listed) and are renamed into place (RNFR/RNTO); a failed write deletes its temporary
file. Ranged reads use REST. Listings use MLSD, or NLST plus SIZE for old servers. A small pool
of logged-in connections (option ``ftp.connections``, default 2) is reused. Replies map to typed
errors: 550 ``NotFound``, 530 ``PermissionDenied``, 552/452 ``QuotaExceeded``, other 4xx and
dropped connections transient.
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import logging
import posixpath
import secrets
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.secret import Secret
from safekeep.storage.base import Backend, FileInfo, FileType, Handle, Properties, check_range
from safekeep.storage.errors import (
    AlreadyExists,
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

PASSWORD_ENV = "SAFEKEEP_FTP_PASSWORD"  # noqa: S105 - a variable name
PASSWORD_SECRET = "ftp-password"  # noqa: S105 - a keyring reference
TEMP_MARKER = ".tmp-"
_BLOCK = 256 * 1024
_TRUE = {"1", "true", "yes", "on"}


def _parse_ftp(raw: str, rest: str) -> Location:
    url = urllib.parse.urlsplit(rest)
    if url.scheme not in ("ftps", "ftp") or not url.hostname:
        raise InvalidLocation(
            f"The FTP location {raw!r} cannot be understood.",
            hint="Write it as ftp:ftps://user@host/path (or ftp:ftps://user@host:port/path).",
        )
    if url.password:
        raise InvalidLocation(
            "Do not put the FTP password in the location.",
            hint=f"Store it in the app's keyring or set {PASSWORD_ENV}.",
        )
    try:
        port = url.port
    except ValueError as exc:
        raise InvalidLocation(f"The port in {raw!r} is not a number.") from exc
    path = urllib.parse.unquote(url.path).rstrip("/") or "/"
    return Location(
        scheme="ftp",
        path=path,
        raw=raw,
        host=url.hostname,
        port=port or 21,
        user=urllib.parse.unquote(url.username or "anonymous"),
        bucket=url.scheme,  # "ftps" or "ftp"
    )


@dataclass(frozen=True)
class _Config:
    host: str
    port: int
    user: str
    root: str
    tls: bool
    password: Secret | None
    context: ssl.SSLContext | None
    connections: int
    timeout: float

    @property
    def where(self) -> str:
        return self.host if self.port == 21 else f"{self.host} (port {self.port})"


def _config(location: Location, settings: ProviderSettings) -> _Config:
    tls = location.bucket == "ftps"
    if not tls and settings.option("ftp.allow-plaintext").lower() not in _TRUE:
        raise InvalidLocation(
            f"{location.raw} is plain FTP, which sends the password and the backups' names in clear "
            "text over the network.",
            hint="Use ftp:ftps://... if the server supports TLS, or opt in with the option "
            "ftp.allow-plaintext=true if you accept the risk.",
        )
    password = settings.getenv(PASSWORD_ENV)
    if not password:
        password = settings.lookup_secret(PASSWORD_SECRET) or ""
    context = None
    if tls:
        context = ssl.create_default_context(cafile=settings.option("ftp.ca-file") or None)
        if settings.option("ftp.insecure-skip-verify").lower() in _TRUE:
            log.warning("the certificate of %s is not checked (ftp.insecure-skip-verify)", location.host)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    try:
        connections = max(1, int(settings.option("ftp.connections", "2")))
        timeout = float(settings.option("ftp.timeout", "60"))
    except ValueError as exc:
        raise InvalidLocation("ftp.connections and ftp.timeout must be numbers.") from exc
    return _Config(
        host=location.host,
        port=location.port or 21,
        user=location.user,
        root=location.path,
        tls=tls,
        password=Secret(password) if password else None,
        context=context,
        connections=connections,
        timeout=timeout,
    )


_Entries = list[tuple[str, str, int]]


class FtpBackend:
    """A repository in a folder on an FTP(S) server. See the module docstring."""

    def __init__(self, cfg: _Config, location: str) -> None:
        self._cfg = cfg
        self._root = cfg.root
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(cfg.connections)
        self._idle: list[ftplib.FTP] = []
        self._properties = Properties(location=location, connections=cfg.connections)

    def __repr__(self) -> str:
        return f"FtpBackend({self._properties.location!r})"

    @property
    def properties(self) -> Properties:
        return self._properties

    # -- connections ---------------------------------------------------------------------------

    def _connect(self) -> ftplib.FTP:
        cfg = self._cfg
        ftp: ftplib.FTP
        if cfg.tls:
            ftp = ftplib.FTP_TLS(context=cfg.context, timeout=cfg.timeout)  # noqa: S321 - FTPS
        else:
            log.warning("connecting to %s with plain FTP: the password is sent in clear text", cfg.where)
            ftp = ftplib.FTP(timeout=cfg.timeout)  # noqa: S321 - explicit opt-in
        try:
            ftp.connect(cfg.host, cfg.port)
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.auth()
            ftp.login(cfg.user, cfg.password.reveal() if cfg.password else "")
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.prot_p()
            ftp.voidcmd("TYPE I")
        except ssl.SSLCertVerificationError as exc:
            ftp.close()
            raise PermissionDenied(
                f"The certificate of the FTPS server {cfg.where} cannot be trusted: {exc.verify_message}.",
                hint="Give the server's CA certificate with -o ftp.ca-file=PATH, or (only if you are "
                "sure of the network) -o ftp.insecure-skip-verify=true.",
            ) from exc
        except ftplib.error_perm as exc:
            ftp.close()
            if str(exc).startswith("530"):
                raise PermissionDenied(
                    f"The FTP server {cfg.where} refused the login as {cfg.user!r}: wrong user name or "
                    "password.",
                    hint=f"Check the user name in the location and the password ({PASSWORD_ENV} or the "
                    "app's keyring).",
                ) from exc
            raise PermanentStorageError(f"The FTP server {cfg.where} refused the login: {exc}.") from exc
        except socket.gaierror as exc:
            ftp.close()
            raise InvalidLocation(
                f"The server name {cfg.host!r} could not be found.", hint="Check the server address."
            ) from exc
        except (OSError, EOFError, ftplib.Error) as exc:
            ftp.close()
            raise TransientStorageError(
                f"Cannot connect to the FTP server {cfg.where}: {exc}.",
                hint="Check the address and port and that the server is running.",
            ) from exc
        return ftp

    @contextlib.contextmanager
    def _client(self, action: str, path: str) -> Iterator[ftplib.FTP]:
        self._slots.acquire()
        try:
            with self._lock:
                ftp = self._idle.pop() if self._idle else None
            if ftp is None:
                ftp = self._connect()
            healthy = False
            try:
                yield ftp
                healthy = True
            except ftplib.error_perm as exc:
                healthy = True
                raise self._map(exc, action, path) from exc
            except (ftplib.error_temp, ftplib.error_reply, ftplib.error_proto, OSError, EOFError) as exc:
                raise self._map(exc, action, path) from exc
            finally:
                if healthy:
                    with self._lock:
                        self._idle.append(ftp)
                else:
                    with contextlib.suppress(Exception):
                        ftp.close()
        finally:
            self._slots.release()

    def _map(self, exc: BaseException, action: str, path: str) -> StorageError:
        text = str(exc)
        where = f"{path} on {self._cfg.where}"
        if text[:3] in ("552", "452") or "no space" in text.lower():
            return QuotaExceeded(
                f"The FTP destination {self._cfg.where} is full (while trying to {action} {path}).",
                hint="Free space on the server (for example by pruning old snapshots) or ask its "
                "administrator for more, then run the backup again.",
            )
        if text.startswith("550"):
            return NotFound(f"{where} was not found.", hint="Check the folder in the location.")
        if text.startswith(("530", "532", "553")):
            return PermissionDenied(
                f"The FTP server {self._cfg.where} does not allow {self._cfg.user!r} to {action} {path}.",
                hint="Ask the server's administrator for write access to the folder.",
            )
        if isinstance(exc, ftplib.error_perm):
            return PermanentStorageError(f"The FTP server could not {action} {where}: {text}.")
        return TransientStorageError(
            f"The connection to the FTP server {self._cfg.where} failed while trying to {action} {path}: "
            f"{text or type(exc).__name__}.",
            hint="Safekeep retries automatically.",
        )

    # -- Backend -------------------------------------------------------------------------------

    def create(self, *, cancel: CancelToken = NEVER) -> None:
        cancel.raise_if_cancelled()
        with self._client("create the folder", self._root) as ftp:
            parts = [p for p in self._root.split("/") if p]
            for i in range(len(parts)):
                self._mkd(ftp, "/" + "/".join(parts[: i + 1]))
            existing = self._names(ftp, self._root)
            for t in FileType:
                if t is not FileType.CONFIG and t.value not in existing:
                    self._mkd(ftp, self._join(t.value))
            shards = self._names(ftp, self._join("data"))
            for i in range(256):
                cancel.raise_if_cancelled()
                if f"{i:02x}" not in shards:
                    self._mkd(ftp, self._join(f"data/{i:02x}"))

    def save(self, h: Handle, data: bytes | bytearray | memoryview, *, cancel: CancelToken = NEVER) -> None:
        target = self._path(h)
        cancel.raise_if_cancelled()
        view = memoryview(data).cast("B")
        tmp = f"{target}{TEMP_MARKER}{secrets.token_hex(6)}"
        with self._client("save", target) as ftp:
            try:
                self._store(ftp, tmp, view, cancel)
                cancel.raise_if_cancelled()
                stored = self._size(ftp, tmp)
                if stored != len(view):
                    raise TransientStorageError(
                        f"The FTP server {self._cfg.where} stored {stored} of {len(view)} bytes of {target}.",
                        hint="Safekeep retries automatically.",
                    )
                existing = self._size(ftp, target)
                if existing is None:
                    ftp.rename(tmp, target)
                    return
                ftp.delete(tmp)
                if existing != len(view):
                    raise AlreadyExists(f"{target} already exists with different content.")
            except BaseException:
                self._discard(ftp, tmp)
                raise

    def load(
        self, h: Handle, offset: int = 0, length: int | None = None, *, cancel: CancelToken = NEVER
    ) -> bytes:
        check_range(offset, length)
        path = self._path(h)
        cancel.raise_if_cancelled()
        with self._client("read", path) as ftp:
            size = self._size(ftp, path)
            if size is None:
                raise ftplib.error_perm(f"550 {path}: not found")  # noqa: S321
            end = size if length is None else min(size, offset + length)
            if end <= offset:
                return b""
            want = end - offset
            buf = io.BytesIO()
            ftp.voidcmd("TYPE I")
            conn = ftp.transfercmd(f"RETR {path}", rest=offset or None)
            complete = True
            try:
                while buf.tell() < want:
                    cancel.raise_if_cancelled()
                    block = conn.recv(min(_BLOCK, want - buf.tell()))
                    if not block:
                        break
                    buf.write(block)
                if buf.tell() < size - offset:
                    complete = False  # stopped early: the server will report an aborted transfer
            except BaseException:
                complete = False
                raise
            finally:
                if complete:
                    _close_data(conn, buf.tell())
                else:
                    conn.close()
            if complete:
                ftp.voidresp()
            else:
                with contextlib.suppress(ftplib.Error, OSError, EOFError):
                    ftp.voidresp()
            return buf.getvalue()

    def stat(self, h: Handle, *, cancel: CancelToken = NEVER) -> FileInfo:
        path = self._path(h)
        cancel.raise_if_cancelled()
        with self._client("inspect", path) as ftp:
            size = self._size(ftp, path)
        if size is None:
            raise NotFound(f"{path} on {self._cfg.where} was not found.")
        return FileInfo(h.name, size)

    def list(self, type: FileType, *, cancel: CancelToken = NEVER) -> Iterator[FileInfo]:
        cancel.raise_if_cancelled()
        if type is FileType.CONFIG:
            try:
                yield self.stat(Handle.config(), cancel=cancel)
            except NotFound:
                pass
            return
        base = self._join(type.value)
        if type is FileType.PACK:
            for name, kind, _ in self._entries(base):
                if kind == "dir" and _listable(name):
                    cancel.raise_if_cancelled()
                    for n, k, size in self._entries(f"{base}/{name}"):
                        if k == "file" and _listable(n):
                            yield FileInfo(n, size)
        else:
            for name, kind, size in self._entries(base):
                if kind == "file" and _listable(name):
                    yield FileInfo(name, size)

    def remove(self, h: Handle, *, cancel: CancelToken = NEVER) -> None:
        path = self._path(h)
        cancel.raise_if_cancelled()
        with self._client("delete", path) as ftp:
            ftp.delete(path)

    def close(self) -> None:
        with self._lock:
            for ftp in self._idle:
                with contextlib.suppress(Exception):
                    ftp.quit()
            self._idle.clear()

    # -- internals -----------------------------------------------------------------------------

    def _join(self, rel: str) -> str:
        return posixpath.join(self._root, rel)

    def _path(self, h: Handle) -> str:
        if h.type is FileType.CONFIG:
            if h.name != "config":
                raise ValueError(f"the config handle must be named 'config', not {h.name!r}")
        elif (
            not h.name
            or any(c in h.name for c in "/\\\0\r\n .")
            or (h.type is FileType.PACK and len(h.name) < 2)
        ):
            raise ValueError(f"invalid repository file name {h.name!r}")
        return self._join(h.path())

    def _store(self, ftp: ftplib.FTP, tmp: str, view: memoryview, cancel: CancelToken) -> None:
        ftp.voidcmd("TYPE I")
        try:
            conn = ftp.transfercmd(f"STOR {tmp}")
        except ftplib.error_perm as exc:
            if not str(exc).startswith("550"):
                raise
            parent = posixpath.dirname(tmp)  # a missing type or shard folder: make it
            if posixpath.dirname(parent) not in (self._root, self._join("data")):
                raise
            if self._size(ftp, self._root) is None and not self._is_dir(ftp, self._root):
                raise NotFound(
                    f"The backup folder {self._root} does not exist on {self._cfg.where}."
                ) from exc
            self._mkd(ftp, posixpath.dirname(parent))
            self._mkd(ftp, parent)
            conn = ftp.transfercmd(f"STOR {tmp}")
        try:
            for pos in range(0, len(view), _BLOCK):
                cancel.raise_if_cancelled()
                conn.sendall(view[pos : pos + _BLOCK])
            _close_data(conn, 0)  # nothing is received on STOR; save() checks the stored size
        except (OSError, EOFError) as exc:
            conn.close()
            try:  # the server's reply says why the data connection broke (e.g. 452 disk full)
                ftp.voidresp()
            except ftplib.Error as reply:
                raise reply from exc
            except (OSError, EOFError):
                pass
            raise
        except BaseException:
            conn.close()
            with contextlib.suppress(ftplib.Error, OSError, EOFError):
                ftp.voidresp()
            raise
        ftp.voidresp()

    def _discard(self, ftp: ftplib.FTP, tmp: str) -> None:
        try:
            ftp.delete(tmp)
        except ftplib.error_perm:
            pass
        except Exception as exc:
            log.warning("could not remove the temporary file %s on %s: %s", tmp, self._cfg.where, exc)

    def _size(self, ftp: ftplib.FTP, path: str) -> int | None:
        try:
            size = ftp.size(path)
        except ftplib.error_perm as exc:
            if str(exc).startswith("550"):
                return None
            raise
        return size

    def _is_dir(self, ftp: ftplib.FTP, path: str) -> bool:
        try:
            ftp.cwd(path)
        except ftplib.error_perm:
            return False
        ftp.cwd("/")
        return True

    def _mkd(self, ftp: ftplib.FTP, path: str) -> None:
        try:
            ftp.mkd(path)
        except ftplib.error_perm:
            if not self._is_dir(ftp, path):
                raise

    def _names(self, ftp: ftplib.FTP, path: str) -> set[str]:
        try:
            return {posixpath.basename(n) for n in _lines(ftp, f"NLST {path}") if n}
        except ftplib.error_perm:
            return set()

    def _entries(self, path: str) -> _Entries:
        with self._client("list", path) as ftp:
            try:
                return _mlsd(ftp, path)
            except ftplib.error_perm as exc:
                if str(exc).startswith("550"):
                    return []
                if not str(exc).startswith(("500", "502")):
                    if not self._is_dir(ftp, path):  # e.g. pyftpdlib's "501 No such directory"
                        return []
                    raise
            out = []  # no MLSD: NLST, then SIZE for each (a folder has no size)
            for name in self._names(ftp, path):
                size = self._size(ftp, f"{path}/{name}")
                out.append((name, "dir" if size is None else "file", size or 0))
            return out


def _close_data(conn: socket.socket, received: int) -> None:
    """Close a data connection after a complete transfer, ending TLS cleanly.

    With TLS 1.3 the server's session tickets arrive after the handshake; a client that read no
    application data (an empty listing, an upload) has not processed them, and OpenSSL refuses
    the shutdown with ``SHUTDOWN_WHILE_IN_INIT`` (python/cpython#75908, bpo-34391). That is
    harmless when nothing was to be received: the transfer's outcome comes on the control
    connection (226), and uploads are checked by size. Any other TLS error is raised.
    """
    try:
        if isinstance(conn, ssl.SSLSocket):
            try:
                conn.unwrap()
            except ssl.SSLError as exc:
                if exc.reason != "SHUTDOWN_WHILE_IN_INIT" or received:
                    raise
    finally:
        conn.close()


def _lines(ftp: ftplib.FTP, cmd: str) -> list[str]:
    """The lines a listing command sends on a data connection (in binary mode: TYPE stays I)."""
    chunks: list[bytes] = []
    received = 0
    conn = ftp.transfercmd(cmd)
    try:
        while True:
            block = conn.recv(_BLOCK)
            if not block:
                break
            chunks.append(block)
            received += len(block)
    except BaseException:
        conn.close()
        with contextlib.suppress(ftplib.Error, OSError, EOFError):
            ftp.voidresp()
        raise
    _close_data(conn, received)
    ftp.voidresp()
    return b"".join(chunks).decode(ftp.encoding, "surrogateescape").splitlines()


def _mlsd(ftp: ftplib.FTP, path: str) -> _Entries:
    with contextlib.suppress(ftplib.Error):
        ftp.sendcmd("OPTS MLST type;size;")
    out: _Entries = []
    for line in _lines(ftp, f"MLSD {path}"):
        facts_text, sep, name = line.partition(" ")
        if not sep or not name:
            continue
        facts = {}
        for fact in facts_text.rstrip(";").split(";"):
            key, _, value = fact.partition("=")
            facts[key.lower()] = value
        kind = facts.get("type", "").lower()
        if kind in ("cdir", "pdir"):
            continue
        try:
            size = int(facts.get("size", "0") or 0)
        except ValueError:
            size = 0
        out.append((name, kind, size))
    return out


def _listable(name: str) -> bool:
    return not name.startswith(".") and TEMP_MARKER not in name


def _open_ftp(location: Location, settings: ProviderSettings) -> Backend:
    return FtpBackend(_config(location, settings), location.raw)


register_provider("ftp", _open_ftp, parser=_parse_ftp)
