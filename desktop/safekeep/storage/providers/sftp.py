"""A repository on an SSH server, over SFTP (paramiko), in restic's layout.

Locations, as restic writes them::

    sftp:user@host:/srv/backup        absolute path
    sftp:user@host:backup             relative to the login folder
    sftp://user@host:2222//srv/backup absolute path on port 2222 (``/backup`` = relative)

Without ``user@`` the local user name is used.

Authentication, tried in this order: the keys of a running ssh-agent (``SSH_AUTH_SOCK``), the
key file(s) in option ``sftp.key-file`` (comma-separated; default ``~/.ssh/id_ed25519``,
``~/.ssh/id_ecdsa``, ``~/.ssh/id_rsa`` where they exist; a passphrase from
``SAFEKEEP_SFTP_KEY_PASSPHRASE`` or the stored secret ``sftp-key-passphrase``), then a password
from ``SAFEKEEP_SFTP_PASSWORD`` or the stored secret ``sftp-password`` (the app's keyring).
:mod:`safekeep.storage.providers.sftp_keys` makes a key pair for the setup wizard.

Server identity: host keys are checked against Safekeep's own known-hosts file (option
``sftp.known-hosts``, default ``<user data dir>/safekeep/known_hosts``) and, read-only, the
user's ``~/.ssh/known_hosts`` (option ``sftp.system-known-hosts``; empty to ignore it).

- An unknown server is refused with :class:`UnknownHostKey`, which carries the fingerprint
  (``SHA256:...`` as ``ssh-keygen -l`` prints it). Trusting it is an explicit step:
  :func:`trust_host_key` records it after the person confirmed the fingerprint. For headless
  use, option ``sftp.trust-on-first-use=true`` records a new server's key silently.
- A server whose key differs from the recorded one is refused with :class:`HostKeyChanged`,
  loudly, always — trust-on-first-use never overrides it.

Writes are atomic: the bytes go to ``<dir>/<name>.tmp-<random>`` (never listed) and are then
renamed into place. The plain SFTP rename is used first because OpenSSH's implementation never
replaces an existing file (it links then unlinks), which keeps repository files immutable;
when it fails and the target does not exist, ``posix-rename@openssh.com`` is tried. A failed
or cancelled save removes its temporary file.

Connections: one SSH transport with a small pool of SFTP channels (option ``sftp.connections``,
default 2), keepalives every 30 s, and a fresh transport when the old one dropped; dropped
connections and timeouts are :class:`~safekeep.storage.errors.TransientStorageError` (the retry
wrapper retries). A full destination is :class:`~safekeep.storage.errors.QuotaExceeded`:
OpenSSH reports a full disk only as "Failure", so a failed write is checked against the free
space the server reports (``statvfs@openssh.com``, also :meth:`SftpBackend.free_space`).
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import posixpath
import secrets
import socket
import stat as stat_mod
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import paramiko
import platformdirs
from paramiko.sftp import CMD_EXTENDED, CMD_EXTENDED_REPLY, CMD_STATUS, CMD_WRITE, int64

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.errors import Cancelled
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
from safekeep.storage.registry import (
    DEFAULT_SETTINGS,
    Location,
    ProviderSettings,
    parse_location,
    register_provider,
)

log = logging.getLogger(__name__)

PASSWORD_ENV = "SAFEKEEP_SFTP_PASSWORD"  # noqa: S105 - a variable name
PASSPHRASE_ENV = "SAFEKEEP_SFTP_KEY_PASSPHRASE"  # noqa: S105 - a variable name
PASSWORD_SECRET = "sftp-password"  # noqa: S105 - a keyring reference
PASSPHRASE_SECRET = "sftp-key-passphrase"  # noqa: S105 - a keyring reference
TEMP_MARKER = ".tmp-"
_RESTIC_TEMP_MARKER = "-tmp-"
_CHUNK = 1 << 20
_REQUEST = 32768
_WINDOW = 64
_KEEPALIVE = 30
_DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
_TRUE = {"1", "true", "yes", "on"}


class UnknownHostKey(PermanentStorageError):
    """The server's host key is not recorded yet; it must be confirmed and trusted first."""

    def __init__(self, host: str, port: int, key_type: str, fingerprint: str) -> None:
        super().__init__(
            f"The server's identity is new: {host} (port {port}) presents the {key_type} key with "
            f"fingerprint {fingerprint}. Check it with the server's administrator, then trust it.",
            hint="The administrator can show the fingerprint with: ssh-keygen -lf "
            "/etc/ssh/ssh_host_ed25519_key.pub. Trust it in the setup wizard, with "
            "'safekeep storage trust', or set the option sftp.trust-on-first-use=true.",
        )
        self.host = host
        self.port = port
        self.key_type = key_type
        self.fingerprint = fingerprint


class HostKeyChanged(PermanentStorageError):
    """The server's host key differs from the recorded one. Never bypassed."""

    def __init__(self, host: str, port: int, fingerprint: str, known_in: str) -> None:
        super().__init__(
            f"WARNING: the server's identity has CHANGED! {host} (port {port}) now presents a key "
            f"with fingerprint {fingerprint}, which is not the key recorded in {known_in}. "
            "Someone may be intercepting the connection; Safekeep refuses to connect.",
            hint="Do not trust the new key until the server's administrator confirms the server was "
            "reinstalled or its key replaced. Only then remove the old entry from " + known_in + ".",
        )
        self.host = host
        self.port = port
        self.fingerprint = fingerprint


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:<base64>`` exactly as ``ssh-keygen -l`` prints it."""
    return str(key.fingerprint)


# -- location and settings -------------------------------------------------------------------------


def parse_sftp_location(raw: str, rest: str) -> Location:
    """Parse ``sftp:[user@]host:path`` and ``sftp://[user@]host[:port]/path``."""
    if rest.startswith("//"):
        url = urllib.parse.urlsplit("sftp:" + rest)
        try:
            port = url.port
        except ValueError as exc:
            raise InvalidLocation(
                f"The port in {raw!r} is not a number.", hint="Write it as sftp://user@host:22//path."
            ) from exc
        host = url.hostname or ""
        user = urllib.parse.unquote(url.username or "")
        path = urllib.parse.unquote(url.path)
        path = path[1:] if path.startswith("/") else path  # "//abs" -> "/abs", "/rel" -> "rel"
    else:
        user, sep, hostpath = rest.rpartition("@")
        if not sep:
            user, hostpath = "", rest
        if hostpath.startswith("["):  # [ipv6]:path
            end = hostpath.find("]")
            host, path = hostpath[1:end], hostpath[end + 2 :] if end >= 0 else ""
            ok = end >= 0 and hostpath[end + 1 : end + 2] == ":"
        else:
            host, colon, path = hostpath.partition(":")
            ok = bool(colon)
        if not ok:
            raise InvalidLocation(
                f"The SFTP location {raw!r} has no folder.",
                hint="Write it as sftp:user@host:/path/to/folder (or sftp://user@host:port//path).",
            )
        port = None
    if not host:
        raise InvalidLocation(
            f"The SFTP location {raw!r} names no server.", hint="Write it as sftp:user@host:/path."
        )
    if not path:
        raise InvalidLocation(
            f"The SFTP location {raw!r} names no folder.", hint="Write it as sftp:user@host:/path."
        )
    return Location(scheme="sftp", path=path, raw=raw, host=host, port=port or 22, user=user)


@dataclass(frozen=True)
class SftpConfig:
    """Everything needed to connect, from the location and the provider settings."""

    host: str
    port: int
    user: str
    path: str
    key_files: tuple[Path, ...]
    explicit_key_files: bool
    passphrase: Secret | None
    password: Secret | None
    known_hosts: Path
    system_known_hosts: Path | None
    trust_on_first_use: bool
    connections: int
    timeout: float
    use_agent: bool

    @staticmethod
    def from_settings(location: Location, settings: ProviderSettings) -> SftpConfig:
        keys_opt = settings.option("sftp.key-file")
        ssh_dir = Path.home() / ".ssh"
        if keys_opt:
            key_files = tuple(Path(p.strip()).expanduser() for p in keys_opt.split(",") if p.strip())
        else:
            key_files = tuple(ssh_dir / n for n in _DEFAULT_KEYS if (ssh_dir / n).is_file())
        known = settings.option("sftp.known-hosts") or str(
            Path(platformdirs.user_data_dir("safekeep")) / "known_hosts"
        )
        system = settings.option("sftp.system-known-hosts", str(ssh_dir / "known_hosts"))
        try:
            connections = max(1, int(settings.option("sftp.connections", "2")))
            timeout = float(settings.option("sftp.timeout", "30"))
        except ValueError as exc:
            raise InvalidLocation(
                "The option sftp.connections or sftp.timeout is not a number.",
                hint="Write for example -o sftp.connections=2 -o sftp.timeout=30.",
            ) from exc
        return SftpConfig(
            host=location.host,
            port=location.port or 22,
            user=location.user or getpass.getuser(),
            path=location.path,
            key_files=key_files,
            explicit_key_files=bool(keys_opt),
            passphrase=_secret(settings, PASSPHRASE_ENV, PASSPHRASE_SECRET),
            password=_secret(settings, PASSWORD_ENV, PASSWORD_SECRET),
            known_hosts=Path(known).expanduser(),
            system_known_hosts=Path(system).expanduser() if system else None,
            trust_on_first_use=settings.option("sftp.trust-on-first-use").lower() in _TRUE,
            connections=connections,
            timeout=timeout,
            use_agent=settings.option("sftp.agent", "true").lower() in _TRUE
            and bool(os.environ.get("SSH_AUTH_SOCK")),
        )

    @property
    def where(self) -> str:
        return self.host if self.port == 22 else f"{self.host} (port {self.port})"

    @property
    def known_hosts_name(self) -> str:
        """The host's name in a known_hosts file (``[host]:port`` for other ports, as OpenSSH)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def _secret(settings: ProviderSettings, env: str, ref: str) -> Secret | None:
    value = settings.getenv(env)
    if not value:
        value = settings.lookup_secret(ref) or ""
    return Secret(value) if value else None


# -- connecting ------------------------------------------------------------------------------------

_known_hosts_lock = threading.Lock()


def _known_keys(cfg: SftpConfig) -> tuple[dict[str, paramiko.PKey], str]:
    """Recorded keys for the server by key type, and the file(s) they came from."""
    found: dict[str, paramiko.PKey] = {}
    sources: list[str] = []
    for path in (cfg.known_hosts, cfg.system_known_hosts):
        if path is None or not path.is_file():
            continue
        hk = paramiko.HostKeys()
        try:
            hk.load(str(path))
        except (OSError, paramiko.SSHException) as exc:
            log.warning("cannot read known hosts file %s: %s", path, exc)
            continue
        entry = hk.lookup(cfg.known_hosts_name)
        if entry:
            sources.append(str(path))
            for key_type in entry:
                found.setdefault(key_type, entry[key_type])
    return found, " and ".join(sources)


def _record_host_key(cfg: SftpConfig, key: paramiko.PKey) -> None:
    with _known_hosts_lock:
        cfg.known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(cfg.known_hosts, "a", encoding="ascii") as f:
            f.write(f"{cfg.known_hosts_name} {key.get_name()} {key.get_base64()}\n")
    log.info("recorded the host key %s of %s in %s", fingerprint(key), cfg.where, cfg.known_hosts)


def _open_transport(cfg: SftpConfig) -> paramiko.Transport:
    """A connected transport whose server key was checked (not yet authenticated)."""
    try:
        sock = socket.create_connection((cfg.host, cfg.port), timeout=cfg.timeout)
    except socket.gaierror as exc:
        raise InvalidLocation(
            f"The server name {cfg.host!r} could not be found.",
            hint="Check the spelling of the server address and this computer's network connection.",
        ) from exc
    except ConnectionRefusedError as exc:
        raise TransientStorageError(
            f"The SFTP server {cfg.where} refused the connection.",
            hint="Check the address and port, and that the SSH service is running on the server.",
        ) from exc
    except OSError as exc:
        raise TransientStorageError(
            f"Cannot reach the SFTP server {cfg.where}: {exc.strerror or exc}.",
            hint="Check the network connection and the server address.",
        ) from exc
    transport = paramiko.Transport(sock)
    transport.banner_timeout = cfg.timeout
    transport.handshake_timeout = cfg.timeout
    known, _ = _known_keys(cfg)
    if known:  # ask for the key type we know first, as OpenSSH does
        opts = transport.get_security_options()
        wanted: list[str] = []
        for kt in known:
            wanted += ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] if kt == "ssh-rsa" else [kt]
        supported = list(opts.key_types)
        first = [k for k in wanted if k in supported]
        opts.key_types = tuple(first + [k for k in supported if k not in first])
    try:
        transport.start_client(timeout=cfg.timeout)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        transport.close()
        raise TransientStorageError(
            f"The secure connection to {cfg.where} could not be set up: {exc}.",
            hint="Check that the address and port are those of an SSH/SFTP server.",
        ) from exc
    try:
        _verify_host_key(cfg, transport.get_remote_server_key())
    except BaseException:
        transport.close()
        raise
    return transport


def _verify_host_key(cfg: SftpConfig, key: paramiko.PKey) -> None:
    known, sources = _known_keys(cfg)
    fp = fingerprint(key)
    if known:
        recorded = known.get(key.get_name())
        if recorded is not None and recorded.asbytes() == key.asbytes():
            return
        log.error("host key of %s changed: now %s (recorded in %s)", cfg.where, fp, sources)
        raise HostKeyChanged(cfg.host, cfg.port, fp, sources)
    if cfg.trust_on_first_use:
        log.warning("trusting the new server %s on first use: %s %s", cfg.where, key.get_name(), fp)
        _record_host_key(cfg, key)
        return
    raise UnknownHostKey(cfg.host, cfg.port, key.get_name(), fp)


def _authenticate(cfg: SftpConfig, transport: paramiko.Transport) -> None:
    tried: list[str] = []
    problems: list[str] = []
    keys: list[tuple[str, paramiko.PKey]] = []
    if cfg.use_agent:
        try:
            keys += [("an ssh-agent key", k) for k in paramiko.Agent().get_keys()]
        except paramiko.SSHException as exc:
            log.debug("ssh-agent not usable: %s", exc)
    for path in cfg.key_files:
        try:
            pw = cfg.passphrase.reveal().encode() if cfg.passphrase else None
            keys.append((f"the key {path}", paramiko.PKey.from_path(str(path), cast(Any, pw))))
        except paramiko.PasswordRequiredException:
            problems.append(f"the key {path} is protected by a passphrase that was not given")
        except (OSError, paramiko.SSHException, ValueError) as exc:
            if cfg.explicit_key_files:
                problems.append(f"the key file {path} cannot be read ({exc})")
    last: Exception | None = None
    for label, key in keys:
        try:
            transport.auth_publickey(cfg.user, key)
        except paramiko.AuthenticationException as exc:
            tried.append(label)
            last = exc
            continue
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise _connection_lost(cfg, exc) from exc
        if transport.is_authenticated():
            return
    if cfg.password is not None:
        try:
            transport.auth_password(cfg.user, cfg.password.reveal())
        except paramiko.AuthenticationException as exc:
            tried.append("the password")
            last = exc
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise _connection_lost(cfg, exc) from exc
        if transport.is_authenticated():
            return
    detail = "; ".join(problems)
    if tried:
        message = f"The SFTP server {cfg.where} refused the login as {cfg.user!r} with " + ", ".join(tried)
    else:
        message = f"No SSH key or password is set up to log in to {cfg.where} as {cfg.user!r}"
    raise PermissionDenied(
        message + (f" ({detail})." if detail else "."),
        hint="Install Safekeep's public key in ~/.ssh/authorized_keys of that account on the server "
        "(the setup wizard can create one and show it), choose the right key file with "
        f"-o sftp.key-file=PATH, or set the password in {PASSWORD_ENV} or the app's keyring.",
    ) from last


def _connection_lost(cfg: SftpConfig, exc: BaseException) -> TransientStorageError:
    return TransientStorageError(
        f"The connection to the SFTP server {cfg.where} was lost ({exc or type(exc).__name__}).",
        hint="Safekeep retries automatically; check the network if this keeps happening.",
    )


def server_fingerprint(location: str, settings: ProviderSettings = DEFAULT_SETTINGS) -> str:
    """The fingerprint the server at ``location`` presents now (for the wizard to show)."""
    cfg = SftpConfig.from_settings(_sftp_location(location), settings)
    transport = _raw_transport(cfg)
    try:
        return fingerprint(transport.get_remote_server_key())
    finally:
        transport.close()


def trust_host_key(location: str, fingerprint_: str, settings: ProviderSettings = DEFAULT_SETTINGS) -> None:
    """Record the server's host key after a person confirmed ``fingerprint_``.

    Connects, and records the key only if the server still presents that fingerprint. A host
    whose recorded key differs is refused with :class:`HostKeyChanged` (remove the old entry by
    hand after the administrator confirmed the change).
    """
    cfg = SftpConfig.from_settings(_sftp_location(location), settings)
    transport = _raw_transport(cfg)
    try:
        key = transport.get_remote_server_key()
    finally:
        transport.close()
    fp = fingerprint(key)
    if fp != fingerprint_.strip():
        raise PermanentStorageError(
            f"The server {cfg.where} presents the fingerprint {fp}, not the {fingerprint_} that was "
            "confirmed. Nothing was trusted.",
            hint="Check the fingerprint with the server's administrator again.",
        )
    known, sources = _known_keys(cfg)
    if known:
        recorded = known.get(key.get_name())
        if recorded is not None and recorded.asbytes() == key.asbytes():
            return
        raise HostKeyChanged(cfg.host, cfg.port, fp, sources)
    _record_host_key(cfg, key)


def _raw_transport(cfg: SftpConfig) -> paramiko.Transport:
    """A transport with the key exchange done but the host key NOT checked (for trusting)."""
    try:
        sock = socket.create_connection((cfg.host, cfg.port), timeout=cfg.timeout)
        transport = paramiko.Transport(sock)
        transport.start_client(timeout=cfg.timeout)
    except socket.gaierror as exc:
        raise InvalidLocation(
            f"The server name {cfg.host!r} could not be found.", hint="Check the server address."
        ) from exc
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise _connection_lost(cfg, exc) from exc
    return transport


def _sftp_location(location: str) -> Location:
    loc = parse_location(location)
    if loc.scheme != "sftp":
        raise InvalidLocation(f"{location!r} is not an SFTP location.", hint="Write sftp:user@host:/path.")
    return loc


# -- the backend -----------------------------------------------------------------------------------


_Attrs = list[paramiko.SFTPAttributes]


def _dead(client: paramiko.SFTPClient) -> bool:
    channel = client.get_channel()
    return channel is None or channel.closed


class _Pool:
    """Up to ``size`` SFTP channels over one SSH transport, reconnecting when it dropped."""

    def __init__(self, cfg: SftpConfig) -> None:
        self._cfg = cfg
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(cfg.connections)
        self._transport: paramiko.Transport | None = None
        self._idle: list[paramiko.SFTPClient] = []
        self._closed = False

    def _new_client(self) -> paramiko.SFTPClient:
        with self._lock:
            if self._closed:
                raise PermanentStorageError("The SFTP connection was closed.")
            if self._transport is None or not self._transport.is_active():
                self._drop_locked()
                transport = _open_transport(self._cfg)
                try:
                    _authenticate(self._cfg, transport)
                except BaseException:
                    transport.close()
                    raise
                transport.set_keepalive(_KEEPALIVE)
                self._transport = transport
            transport = self._transport
        try:
            client = paramiko.SFTPClient.from_transport(transport)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise _connection_lost(self._cfg, exc) from exc
        if client is None:
            raise _connection_lost(self._cfg, EOFError("no SFTP channel"))
        channel = client.get_channel()
        if channel is not None:
            channel.settimeout(self._cfg.timeout * 4)
        return client

    def _drop_locked(self) -> None:
        for c in self._idle:
            with contextlib.suppress(Exception):
                c.close()
        self._idle.clear()
        if self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.close()
            self._transport = None

    @contextlib.contextmanager
    def client(self) -> Iterator[paramiko.SFTPClient]:
        self._slots.acquire()
        try:
            with self._lock:
                client = self._idle.pop() if self._idle else None
            if client is None or _dead(client):
                client = self._new_client()
            healthy = False
            try:
                yield client
                healthy = True
            except (TimeoutError, paramiko.SSHException, EOFError, ConnectionError):
                raise
            except BaseException:
                healthy = not _dead(client)
                raise
            finally:
                with self._lock:
                    channel = client.get_channel()
                    same = channel is not None and channel.transport is self._transport
                    if healthy and not self._closed and same:
                        self._idle.append(client)
                    else:
                        with contextlib.suppress(Exception):
                            client.close()
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop_locked()


class SftpBackend:
    """A repository in a folder on an SFTP server. See the module docstring."""

    def __init__(self, cfg: SftpConfig, location: str = "") -> None:
        self._cfg = cfg
        self._root = cfg.path.rstrip("/") or "/"
        self._pool = _Pool(cfg)
        self._properties = Properties(
            location=location or f"sftp:{cfg.user}@{cfg.host}:{cfg.path}",
            connections=cfg.connections,
            supports_ranges=True,
        )

    def __repr__(self) -> str:
        return f"SftpBackend({self._properties.location!r})"

    @property
    def properties(self) -> Properties:
        return self._properties

    # -- Backend -------------------------------------------------------------------------------

    def create(self, *, cancel: CancelToken = NEVER) -> None:
        cancel.raise_if_cancelled()
        with self._op("create the folder", self._root), self._pool.client() as c:
            self._makedirs(c, self._root)
            existing = self._names(c, self._root)
            for t in FileType:
                if t is not FileType.CONFIG and t.value not in existing:
                    self._mkdir(c, self._join(t.value))
            data = self._join(FileType.PACK.value)
            shards = self._names(c, data)
            for i in range(256):
                cancel.raise_if_cancelled()
                if f"{i:02x}" not in shards:
                    self._mkdir(c, f"{data}/{i:02x}")

    def save(self, h: Handle, data: bytes | bytearray | memoryview, *, cancel: CancelToken = NEVER) -> None:
        target = self._path(h)
        cancel.raise_if_cancelled()
        view = memoryview(data).cast("B")
        directory, name = posixpath.split(target)
        tmp = f"{directory}/{name}{TEMP_MARKER}{secrets.token_hex(6)}"
        with self._op("save", target), self._pool.client() as c:
            try:
                self._write(c, tmp, view, cancel)
                cancel.raise_if_cancelled()  # nothing becomes visible after cancel
                self._publish(c, tmp, target, view)
            except BaseException as exc:
                if isinstance(exc, OSError) and not isinstance(exc, (PermissionError, FileNotFoundError)):
                    full = self._full(c, directory, len(view))
                    self._discard(c, tmp)
                    if full is not None:
                        raise full from exc
                else:
                    self._discard(c, tmp)
                raise

    def load(
        self, h: Handle, offset: int = 0, length: int | None = None, *, cancel: CancelToken = NEVER
    ) -> bytes:
        check_range(offset, length)
        path = self._path(h)
        cancel.raise_if_cancelled()
        with self._op("read", path), self._pool.client() as c, c.open(path, "rb") as f:
            size = f.stat().st_size or 0
            end = size if length is None else min(size, offset + length)
            if end <= offset:
                return b""
            chunks = [(pos, min(_CHUNK, end - pos)) for pos in range(offset, end, _CHUNK)]
            parts: list[bytes] = []
            for part in f.readv(chunks):
                cancel.raise_if_cancelled()
                parts.append(part)
            return b"".join(parts)

    def stat(self, h: Handle, *, cancel: CancelToken = NEVER) -> FileInfo:
        path = self._path(h)
        cancel.raise_if_cancelled()
        with self._op("inspect", path), self._pool.client() as c:
            attr = c.stat(path)
        if attr.st_mode is not None and not stat_mod.S_ISREG(attr.st_mode):
            raise NotFound(
                f"{path} on {self._cfg.where} is not a file.", hint="The repository may be damaged."
            )
        return FileInfo(h.name, attr.st_size or 0)

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
            shards = sorted(
                a.filename
                for a in self._list_dir(base)
                if stat_mod.S_ISDIR(a.st_mode or 0) and _listable(a.filename)
            )
            for shard in shards:
                cancel.raise_if_cancelled()
                yield from self._files(self._list_dir(f"{base}/{shard}"))
        else:
            yield from self._files(self._list_dir(base))

    def remove(self, h: Handle, *, cancel: CancelToken = NEVER) -> None:
        path = self._path(h)
        cancel.raise_if_cancelled()
        with self._op("delete", path), self._pool.client() as c:
            c.remove(path)

    def close(self) -> None:
        self._pool.close()

    # -- extras --------------------------------------------------------------------------------

    def free_space(self) -> int | None:
        """Free bytes where the repository lives (``statvfs@openssh.com``), or None if unknown."""
        with self._op("inspect", self._root), self._pool.client() as c:
            return _statvfs_free(c, self._root)

    # -- internals -----------------------------------------------------------------------------

    def _join(self, rel: str) -> str:
        return f"{self._root}/{rel}" if self._root != "/" else f"/{rel}"

    def _path(self, h: Handle) -> str:
        return self._join(h.checked_path())

    def _list_dir(self, path: str) -> _Attrs:
        try:
            with self._op("list", path), self._pool.client() as c:
                return c.listdir_attr(path)
        except NotFound:
            return []

    @staticmethod
    def _files(attrs: _Attrs) -> Iterator[FileInfo]:
        for a in attrs:
            if stat_mod.S_ISREG(a.st_mode or 0) and _listable(a.filename):
                yield FileInfo(a.filename, a.st_size or 0)

    @staticmethod
    def _names(c: paramiko.SFTPClient, path: str) -> set[str]:
        try:
            return set(c.listdir(path))
        except FileNotFoundError:
            return set()

    def _mkdir(self, c: paramiko.SFTPClient, path: str) -> None:
        try:
            c.mkdir(path, 0o700)
        except OSError:
            try:  # OpenSSH answers "Failure" when it exists; fine if it is a folder
                attr = c.stat(path)
            except OSError:
                raise
            if not stat_mod.S_ISDIR(attr.st_mode or 0):
                raise PermanentStorageError(
                    f"Cannot create the folder {path} on {self._cfg.where}: a file is in the way.",
                    hint="Choose another location or move the file away.",
                ) from None

    def _makedirs(self, c: paramiko.SFTPClient, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        prefix = "/" if path.startswith("/") else ""
        for i in range(len(parts)):
            current = prefix + "/".join(parts[: i + 1])
            try:
                if stat_mod.S_ISDIR(c.stat(current).st_mode or 0):
                    continue
            except FileNotFoundError:
                pass
            self._mkdir(c, current)

    def _write(self, c: paramiko.SFTPClient, tmp: str, view: memoryview, cancel: CancelToken) -> None:
        try:
            f = c.open(tmp, "wbx")
        except FileNotFoundError:
            # The type or shard folder is missing: make it (never the repository folder itself).
            parent = posixpath.dirname(tmp)
            grand = posixpath.dirname(parent)
            if grand != self._root and grand != self._join(FileType.PACK.value):
                raise
            try:
                c.stat(self._root)
            except FileNotFoundError:
                raise NotFound(
                    f"The backup folder {self._root} does not exist on {self._cfg.where}.",
                    hint="Create the repository first (safekeep init) or check the path.",
                ) from None
            if grand != self._root:
                self._mkdir(c, grand)
            self._mkdir(c, parent)
            f = c.open(tmp, "wbx")
        with f:
            _pipelined_write(c, f, view, cancel)
            size = f.stat().st_size
        if size != len(view):  # never publish a short file
            raise OSError(f"Failure: wrote {size} of {len(view)} bytes")

    def _publish(self, c: paramiko.SFTPClient, tmp: str, target: str, view: memoryview) -> None:
        try:
            c.rename(tmp, target)  # OpenSSH never replaces an existing file here
            return
        except OSError as exc:
            rename_error = exc
        try:
            existing = c.stat(target)
        except FileNotFoundError:
            try:
                c.posix_rename(tmp, target)
                return
            except OSError:
                raise rename_error from None
        if existing.st_size == len(view):
            with c.open(target, "rb") as f:
                f.prefetch(len(view))
                if f.read() == view:
                    self._discard(c, tmp)
                    log.debug("%s already exists with identical content", target)
                    return
        self._discard(c, tmp)
        raise AlreadyExists(
            f"{target} on {self._cfg.where} already exists with different content.",
            hint="Repository files are never overwritten; the repository may be in use by another "
            "program or damaged.",
        )

    def _discard(self, c: paramiko.SFTPClient, tmp: str) -> None:
        try:
            c.remove(tmp)
        except FileNotFoundError:
            pass
        except Exception as exc:
            log.warning("could not remove the temporary file %s on %s: %s", tmp, self._cfg.where, exc)

    def _full(self, c: paramiko.SFTPClient, directory: str, needed: int) -> QuotaExceeded | None:
        try:
            free = _statvfs_free(c, directory)
        except Exception:
            return None
        if free is None or free >= needed:
            return None
        return self._quota_error()

    def _quota_error(self) -> QuotaExceeded:
        return QuotaExceeded(
            f"The backup destination {self._root} on {self._cfg.where} is full.",
            hint="Free space on the server (for example by pruning old snapshots), or ask its "
            "administrator for more space, then run the backup again.",
        )

    @contextlib.contextmanager
    def _op(self, action: str, path: str) -> Iterator[None]:
        try:
            yield
        except (StorageError, Cancelled, ValueError):
            raise
        except (TimeoutError, paramiko.SSHException, EOFError, ConnectionError) as exc:
            raise _connection_lost(self._cfg, exc) from exc
        except FileNotFoundError as exc:
            raise NotFound(
                f"{path} was not found on {self._cfg.where}.",
                hint="Check the folder in the location; a missing repository file may mean damage.",
            ) from exc
        except PermissionError as exc:
            raise PermissionDenied(
                f"The SFTP server {self._cfg.where} does not allow {self._cfg.user!r} to {action} {path}.",
                hint="Ask the server's administrator to give this account access to the folder, or "
                "choose a folder the account owns.",
            ) from exc
        except OSError as exc:
            text = str(exc).lower()
            if "no space" in text or "quota" in text or "disk full" in text:
                raise self._quota_error() from exc
            raise PermanentStorageError(
                f"The SFTP server {self._cfg.where} could not {action} {path}: {exc}.",
                hint="Check the folder's permissions and free space on the server.",
            ) from exc


class _WriteAcks:
    """Collects the server's answers to pipelined writes (paramiko's own pipelining drops write
    errors: a full disk would go unnoticed and a short file be published)."""

    def __init__(self, sftp: Any) -> None:
        self._sftp = sftp
        self.answered = 0
        self.error: Exception | None = None

    def _async_response(self, t: int, msg: paramiko.Message, num: int) -> None:
        self.answered += 1
        if t != CMD_STATUS:
            self.error = self.error or OSError("Failure: unexpected answer to a write")
            return
        try:
            self._sftp._convert_status(msg)
        except Exception as exc:
            self.error = self.error or exc


def _pipelined_write(
    c: paramiko.SFTPClient, f: paramiko.SFTPFile, view: memoryview, cancel: CancelToken
) -> None:
    """Write ``view`` with up to ``_WINDOW`` requests in flight, checking every answer."""
    sftp = cast(Any, c)
    acks = _WriteAcks(sftp)
    handle = cast(Any, f).handle
    sent = 0
    for pos in range(0, len(view), _REQUEST):
        if pos % _CHUNK == 0:
            cancel.raise_if_cancelled()
        sftp._async_request(acks, CMD_WRITE, handle, int64(pos), bytes(view[pos : pos + _REQUEST]))
        sent += 1
        while sent - acks.answered >= _WINDOW:
            sftp._read_response()
        if acks.error is not None:
            break
    while acks.answered < sent:
        sftp._read_response()
    if acks.error is not None:
        raise acks.error


def _statvfs_free(c: paramiko.SFTPClient, path: str) -> int | None:
    """Free bytes via the ``statvfs@openssh.com`` extension; None if the server lacks it."""
    try:
        t, msg = cast(Any, c)._request(CMD_EXTENDED, "statvfs@openssh.com", path)
    except OSError as exc:
        if "unsupported" in str(exc).lower():
            return None
        raise
    if t != CMD_EXTENDED_REPLY:
        return None
    _bsize, frsize, _blocks, _bfree, bavail = (msg.get_int64() for _ in range(5))
    return int(bavail * frsize)


def _listable(name: str) -> bool:
    return not name.startswith(".") and TEMP_MARKER not in name and _RESTIC_TEMP_MARKER not in name


def _open_sftp(location: Location, settings: ProviderSettings) -> Backend:
    return SftpBackend(SftpConfig.from_settings(location, settings), location.raw)


register_provider("sftp", _open_sftp, parser=parse_sftp_location)
