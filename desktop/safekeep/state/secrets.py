"""Repository passwords and provider credentials, kept in the OS keyring.

The app database never holds a secret; it holds references. A secret is found by a *scope* and a
*name*: the scope is a destination's id (or ``app`` for app-wide secrets such as the SMTP
password), the name is the secret's own (``repository-password``, ``AWS_SECRET_ACCESS_KEY``,
``oauth-token``). In the keyring each secret is an entry of the service ``Safekeep`` with the
user name ``<scope>/<name>``, so it can be found and removed with the desktop's own keyring tool
(Passwords and Keys, Keychain Access, Windows Credential Manager).

:meth:`Secrets.scope` hands a provider a :class:`~safekeep.storage.secrets.SecretStore` bound to
one destination. Each scope also keeps the list of its names (the entry ``<scope>/.names``, no
secret in it) because keyrings cannot be searched portably; :meth:`Secrets.delete_scope` uses
it to forget everything of a removed destination.

**Where the keyring is** comes from the ``keyring`` package: the Secret Service (GNOME Keyring,
KWallet) on Linux, the Keychain on macOS, the Credential Manager on Windows.

**No keyring (a headless server).** When ``keyring`` has no usable backend, or the Secret
Service cannot be reached, :meth:`Secrets.open` refuses with :class:`KeyringUnavailable`. Only
an explicit choice stores secrets elsewhere: with the environment variable
``SAFEKEEP_SECRETS=file`` they go to ``secrets.json`` in Safekeep's config folder
(:func:`safekeep.state.paths.config_dir`). That file is **not encrypted**: it is created with
mode 0600 in a 0700 folder, it is refused when its permissions let anyone but its owner read it
(checked on every read), and every open logs a warning that secrets are stored unencrypted on
disk. Use it only on a machine whose disk and admin account you trust, such as a locked-down
server. (On Windows the permission check is left to the folder's ACLs.)

Secret values never appear in logs, errors or ``repr``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Protocol

import keyring
import keyring.errors
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null

from safekeep.common.errors import SafekeepError
from safekeep.state import paths
from safekeep.state.model import PASSWORD_SECRET

if sys.platform != "win32":
    import fcntl

log = logging.getLogger(__name__)

SERVICE = "Safekeep"
"""The keyring service name every Safekeep secret is stored under."""

APP_SCOPE = "app"
"""The scope of app-wide secrets (the SMTP password, a webhook token)."""

ENV_SECRETS = "SAFEKEEP_SECRETS"
"""``keyring`` (the default) or ``file`` (the unencrypted fallback, see the module docstring)."""

SECRETS_FILE_NAME = "secrets.json"

_INDEX = ".names"
_HINT_FILE = (
    "On a computer without a desktop keyring (a server), set the environment variable "
    f"{ENV_SECRETS}=file to keep secrets in a file readable only by this user account "
    "(not encrypted)."
)


# ---------------------------------------------------------------------------------------------
# Errors


class SecretsError(SafekeepError):
    """A secret could not be read, stored or removed."""


class KeyringUnavailable(SecretsError):
    """There is no usable OS keyring."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"No keyring is available to keep passwords safely ({detail}).",
            hint="Log in to the desktop so its keyring runs (GNOME Keyring or KWallet on Linux). "
            + _HINT_FILE,
        )


class KeyringLocked(SecretsError):
    """The keyring is locked and was not unlocked."""

    def __init__(self) -> None:
        super().__init__(
            "The keyring is locked, so Safekeep cannot read or store passwords.",
            hint="Unlock your keyring, or log in to the desktop, and try again.",
        )


class SecretsFileInsecure(SecretsError):
    """The fallback secrets file can be read by other users."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            f"The secrets file {path} is not private ({detail}); Safekeep will not use it.",
            hint=f"Make it readable only by you: chmod 600 '{path}' (and chmod 700 its folder). "
            "If others could read it, change the passwords it holds.",
        )


class SecretsFileUnreadable(SecretsError):
    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            f"The secrets file {path} cannot be read ({detail}).",
            hint="Restore it from a copy, or move it away and enter the destinations' passwords again.",
        )


# ---------------------------------------------------------------------------------------------
# Vaults: where the values are


class _Vault(Protocol):
    """A flat store of ``key -> value`` strings (the key is ``<scope>/<name>``)."""

    kind: str

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...

    def delete(self, key: str) -> None: ...

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Serialise a read-modify-write of several keys."""
        ...


def keyring_usable(backend: KeyringBackend) -> bool:
    """Whether ``backend`` can store anything (not keyring's fail/null backend or an empty chain)."""
    if isinstance(backend, fail.Keyring | null.Keyring):
        return False
    if isinstance(backend, chainer.ChainerBackend):
        return bool(backend.backends)
    return True


def _backend_name(backend: KeyringBackend) -> str:
    return f"{type(backend).__module__}.{type(backend).__qualname__}"


class _KeyringVault:
    kind = "keyring"

    def __init__(self, backend: KeyringBackend) -> None:
        self.backend = backend
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"keyring {_backend_name(self.backend)}"

    def _translate(self, exc: Exception) -> SecretsError:
        if isinstance(exc, keyring.errors.KeyringLocked) or "locked" in type(exc).__name__.lower():
            return KeyringLocked()
        if isinstance(exc, keyring.errors.NoKeyringError | keyring.errors.InitError):
            return KeyringUnavailable(str(exc) or type(exc).__name__)
        if isinstance(exc, keyring.errors.KeyringError):
            return SecretsError(
                f"The keyring refused the request ({type(exc).__name__}: {exc}).",
                hint="Check that the keyring is unlocked and working, then try again.",
            )
        # secretstorage / jeepney / OS errors: the keyring service could not be reached.
        return KeyringUnavailable(f"{type(exc).__name__}: {exc}")

    def get(self, key: str) -> str | None:
        try:
            return self.backend.get_password(SERVICE, key)
        except Exception as exc:
            raise self._translate(exc) from exc

    def set(self, key: str, value: str) -> None:
        try:
            self.backend.set_password(SERVICE, key, value)
        except Exception as exc:
            raise self._translate(exc) from exc

    def delete(self, key: str) -> None:
        try:
            self.backend.delete_password(SERVICE, key)
        except keyring.errors.PasswordDeleteError:
            return  # not stored: nothing to forget
        except Exception as exc:
            raise self._translate(exc) from exc

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with self._lock:
            yield


class _FileVault:
    """The unencrypted fallback: one JSON object in a file only its owner may read."""

    kind = "file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0  # how deeply this vault's lock is held (by the thread holding _lock)

    def __repr__(self) -> str:
        return f"file {self.path}"

    def check_private(self) -> None:
        """Refuse the file (and its folder) if others may read or change it."""
        if os.name != "posix":
            return
        for target, what in ((self.path.parent, "folder"), (self.path, "file")):
            try:
                st = target.stat()
            except FileNotFoundError:
                continue
            if st.st_uid != os.geteuid():
                raise SecretsFileInsecure(self.path, f"the {what} belongs to another user (uid {st.st_uid})")
            if what == "file" and st.st_mode & 0o077:
                raise SecretsFileInsecure(
                    self.path, f"its permissions are {stat.filemode(st.st_mode)}, not -rw-------"
                )
            if what == "folder" and st.st_mode & 0o022:
                raise SecretsFileInsecure(
                    self.path, f"its folder can be changed by others ({stat.filemode(st.st_mode)})"
                )

    def _read(self) -> dict[str, str]:
        self.check_private()
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise SecretsFileUnreadable(self.path, exc.strerror or str(exc)) from exc
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SecretsFileUnreadable(self.path, "it is not valid JSON") from exc
        items = doc.get("secrets") if isinstance(doc, dict) else None
        if not isinstance(items, dict) or not all(isinstance(v, str) for v in items.values()):
            raise SecretsFileUnreadable(self.path, "it is not a Safekeep secrets file")
        return {str(k): v for k, v in items.items()}

    def _write(self, items: Mapping[str, str]) -> None:
        self._ensure_folder()
        data = json.dumps(
            {"version": 1, "secrets": dict(sorted(items.items()))}, ensure_ascii=False, indent=1
        )
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _ensure_folder(self) -> None:
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this process's lock and, on POSIX, an advisory lock shared with other processes."""
        with self._lock:
            if sys.platform == "win32" or self._depth:  # re-entered: this thread holds it already
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._ensure_folder()
            fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._depth = 1
                yield
            finally:
                self._depth = 0
                os.close(fd)  # closing releases the lock

    def get(self, key: str) -> str | None:
        with self.locked():
            return self._read().get(key)

    def set(self, key: str, value: str) -> None:
        with self.locked():
            items = self._read()
            items[key] = value
            self._write(items)

    def delete(self, key: str) -> None:
        with self.locked():
            items = self._read()
            if items.pop(key, None) is not None:
                self._write(items)


# ---------------------------------------------------------------------------------------------
# The public API


def _check_scope(scope_id: str) -> None:
    if not scope_id or "/" in scope_id or scope_id.startswith("."):
        raise ValueError(f"invalid secret scope {scope_id!r}")


def _check_name(name: str) -> None:
    if not name or name.startswith("."):
        raise ValueError(f"invalid secret name {name!r}")


class Secrets:
    """The app's secrets. Create with :meth:`open`; safe to use from several threads."""

    def __init__(self, vault: _Vault) -> None:
        self._vault = vault

    @classmethod
    def open(cls, *, env: Mapping[str, str] | None = None, backend: KeyringBackend | None = None) -> Secrets:
        """The secrets store chosen by ``SAFEKEEP_SECRETS`` in ``env`` (default: the process's).

        ``keyring`` (or unset): the OS keyring, ``backend`` if given (tests) else the one
        ``keyring`` selects. It is tried once here, so an unusable keyring raises
        :class:`KeyringUnavailable` (or :class:`KeyringLocked`) now rather than mid-backup.
        ``file``: the unencrypted file fallback, with a logged warning.
        """
        environ = os.environ if env is None else env
        choice = environ.get(ENV_SECRETS, "").strip().lower() or "keyring"
        if choice == "file":
            return cls.in_file(paths.config_dir(environ) / SECRETS_FILE_NAME)
        if choice != "keyring":
            raise SecretsError(
                f"{ENV_SECRETS}={environ.get(ENV_SECRETS)!r} is not understood.",
                hint=f"Use {ENV_SECRETS}=keyring (the default) or {ENV_SECRETS}=file.",
            )
        return cls.in_keyring(backend if backend is not None else keyring.get_keyring())

    @classmethod
    def in_keyring(cls, backend: KeyringBackend) -> Secrets:
        """Secrets in this keyring backend, after checking that it answers."""
        if not keyring_usable(backend):
            raise KeyringUnavailable(f"no keyring backend is usable; keyring chose {_backend_name(backend)}")
        vault = _KeyringVault(backend)
        vault.get(f"{APP_SCOPE}/{_INDEX}")  # the first call reaches the keyring service
        log.debug("secrets are kept in the keyring (%s)", _backend_name(backend))
        return cls(vault)

    @classmethod
    def in_file(cls, path: Path) -> Secrets:
        """Secrets in the unencrypted file ``path`` (the explicit fallback); logs a warning."""
        vault = _FileVault(path)
        vault.check_private()
        log.warning(
            "Secrets are stored UNENCRYPTED on disk in %s (%s=file). Anyone who can read this file "
            "or a copy of it can read the repository passwords. Use the OS keyring where there is one.",
            path,
            ENV_SECRETS,
        )
        return cls(vault)

    @property
    def kind(self) -> str:
        """``keyring`` or ``file``."""
        return self._vault.kind

    def __repr__(self) -> str:
        return f"Secrets({self._vault!r})"

    def scope(self, scope_id: str) -> SecretScope:
        """The secrets of one destination (its id) or of the app (:data:`APP_SCOPE`)."""
        _check_scope(scope_id)
        return SecretScope(self, scope_id)

    def delete_scope(self, scope_id: str, also: Iterable[str] = ()) -> None:
        """Forget every secret of a scope (the names it recorded, the repository password and
        any names in ``also``)."""
        _check_scope(scope_id)
        with self._vault.locked():
            names = set(self._names(scope_id)) | {PASSWORD_SECRET, *also}
            for name in sorted(names):
                self._vault.delete(f"{scope_id}/{name}")
            self._vault.delete(f"{scope_id}/{_INDEX}")

    # -- used by SecretScope ------------------------------------------------------------------

    def _names(self, scope_id: str) -> list[str]:
        raw = self._vault.get(f"{scope_id}/{_INDEX}")
        if not raw:
            return []
        try:
            names = json.loads(raw)
        except json.JSONDecodeError:
            log.warning("the list of secret names of scope %s is damaged; starting a new one", scope_id)
            return []
        return [str(n) for n in names] if isinstance(names, list) else []

    def _get(self, scope_id: str, name: str) -> str | None:
        _check_name(name)
        return self._vault.get(f"{scope_id}/{name}")

    def _set(self, scope_id: str, name: str, value: str) -> None:
        _check_name(name)
        with self._vault.locked():
            self._vault.set(f"{scope_id}/{name}", value)
            names = self._names(scope_id)
            if name not in names:
                self._vault.set(f"{scope_id}/{_INDEX}", json.dumps(sorted([*names, name])))
        log.debug("stored secret %s/%s", scope_id, name)

    def _delete(self, scope_id: str, name: str) -> None:
        _check_name(name)
        with self._vault.locked():
            self._vault.delete(f"{scope_id}/{name}")
            names = self._names(scope_id)
            if name in names:
                rest = [n for n in names if n != name]
                if rest:
                    self._vault.set(f"{scope_id}/{_INDEX}", json.dumps(rest))
                else:
                    self._vault.delete(f"{scope_id}/{_INDEX}")
        log.debug("forgot secret %s/%s", scope_id, name)


class SecretScope:
    """The named secrets of one scope: a :class:`~safekeep.storage.secrets.SecretStore`."""

    def __init__(self, secrets: Secrets, scope_id: str) -> None:
        self._secrets = secrets
        self.scope_id = scope_id

    def get(self, name: str) -> str | None:
        return self._secrets._get(self.scope_id, name)

    def set(self, name: str, value: str) -> None:
        self._secrets._set(self.scope_id, name, value)

    def delete(self, name: str) -> None:
        self._secrets._delete(self.scope_id, name)

    def names(self) -> list[str]:
        """The names stored through Safekeep in this scope (never the values)."""
        with self._secrets._vault.locked():
            return sorted(self._secrets._names(self.scope_id))

    def __repr__(self) -> str:  # never show the secrets themselves
        return f"SecretScope({self.scope_id!r}, {self._secrets.kind})"
