"""Location strings and the providers that serve them.

A location is written in restic's style: ``/srv/backup``, ``backup`` (relative), ``C:\\Backup``,
``local:/srv/backup``, ``s3:host/bucket/prefix``, ``sftp:user@host:/path``, ... The part before
the first ``:`` names the provider (the *scheme*); a string with no known scheme is a local path,
as in restic. A Windows drive letter (``C:\\...``, ``D:/...``) is a path, never a scheme.

:func:`parse_location` turns a string into a :class:`Location`; :func:`create_backend` turns a
location into a provider. Providers plug in with :func:`register_provider` (a factory and,
optionally, a parser for their scheme's syntax). Schemes Safekeep knows about but whose provider
is not registered are looked up lazily in ``safekeep.storage.providers.<scheme>`` — a provider
module registers itself when imported — and if there is no such module (or its optional SDK is
missing) the location is refused with a clear :class:`~safekeep.storage.errors.InvalidLocation`.

Providers today: ``local``, ``s3``, ``sftp``, ``webdav``, ``azure``, ``gs``, ``ftp``, ``rclone``.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from safekeep.storage.base import Backend
from safekeep.storage.errors import InvalidLocation
from safekeep.storage.providers.local import LocalBackend
from safekeep.storage.secrets import SecretStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Location:
    """A parsed location. ``path`` is the provider-specific part after ``scheme:``.

    For ``local`` it is the folder exactly as given (relative paths stay relative). Providers
    with structured syntax may fill ``host``, ``port``, ``user`` and ``bucket``.
    """

    scheme: str
    path: str
    raw: str
    host: str = ""
    port: int | None = None
    user: str = ""
    bucket: str = ""

    def __str__(self) -> str:
        return self.raw


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """What a provider needs besides the location: where credentials come from, and options.

    ``env`` holds credentials under restic's environment variable names (``AWS_ACCESS_KEY_ID``,
    ``AZURE_ACCOUNT_NAME``, ...); ``None`` means the process environment. ``options`` are
    provider options in restic's ``-o name=value`` style, e.g. ``s3.storage-class=GLACIER``.
    ``store`` holds the destination's secrets (the app's keyring, scoped to the destination):
    passwords the person entered and tokens a provider obtained by signing in. ``secret`` is the
    read-only form kept for providers that only read; :meth:`lookup_secret` consults both.
    """

    env: Mapping[str, str] | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    secret: Callable[[str], str | None] | None = None
    store: SecretStore | None = None

    def lookup_secret(self, name: str) -> str | None:
        if self.secret is not None and (value := self.secret(name)) is not None:
            return value
        return self.store.get(name) if self.store is not None else None

    def getenv(self, name: str, default: str = "") -> str:
        source = os.environ if self.env is None else self.env
        return source.get(name, default)

    def option(self, name: str, default: str = "") -> str:
        return self.options.get(name, default)


DEFAULT_SETTINGS = ProviderSettings()

ProviderFactory = Callable[[Location, ProviderSettings], Backend]
LocationParser = Callable[[str, str], Location]
"""``parser(raw, rest)``: ``rest`` is ``raw`` without the ``scheme:`` prefix."""

KNOWN_SCHEMES: dict[str, str] = {
    "local": "local folder",
    "s3": "S3",
    "sftp": "SFTP",
    "rest": "REST server",
    "b2": "Backblaze B2",
    "azure": "Azure Blob Storage",
    "gs": "Google Cloud Storage",
    "swift": "OpenStack Swift",
    "webdav": "WebDAV",
    "ftp": "FTP",
    "rclone": "rclone",
    "gdrive": "Google Drive",
    "onedrive": "OneDrive",
    "dropbox": "Dropbox",
}
"""Schemes in restic's style that Safekeep recognises, with a name a person understands."""


@dataclass(frozen=True, slots=True)
class _Provider:
    factory: ProviderFactory
    parser: LocationParser | None


_lock = threading.Lock()
_providers: dict[str, _Provider] = {}

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", re.DOTALL)
_WINDOWS_DRIVE_RE = re.compile(r"^[A-Za-z]:([\\/]|$)")


def register_provider(scheme: str, factory: ProviderFactory, *, parser: LocationParser | None = None) -> None:
    """Make ``scheme:`` locations open with ``factory`` (replacing an earlier registration).

    ``parser`` turns the string into a :class:`Location`; without one the part after
    ``scheme:`` becomes :attr:`Location.path`.
    """
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme) or len(scheme) < 2:
        raise ValueError(f"invalid scheme {scheme!r}")
    with _lock:
        _providers[scheme] = _Provider(factory, parser)


def unregister_provider(scheme: str) -> None:
    """Forget a provider (for tests)."""
    with _lock:
        _providers.pop(scheme, None)


def registered_schemes() -> list[str]:
    with _lock:
        return sorted(_providers)


def parse_location(s: str) -> Location:
    """Parse a restic-style location string. Raises ``InvalidLocation`` with a clear message."""
    raw = s.strip()
    if not raw:
        raise InvalidLocation(
            "No backup location was given.", hint="Choose a folder or enter a storage address."
        )
    if _WINDOWS_DRIVE_RE.match(raw):
        return Location(scheme="local", path=raw, raw=raw)
    m = _SCHEME_RE.match(raw)
    if m is None:
        return Location(scheme="local", path=raw, raw=raw)
    scheme, rest = m.group(1).lower(), m.group(2)
    if scheme in ("http", "https") and rest.startswith("//"):
        raise InvalidLocation(
            f"{raw} is a web address, not a backup location.",
            hint="For a restic REST server write rest:" + raw + "; for WebDAV write webdav:" + raw + ".",
        )
    provider = _lookup(scheme)
    if provider is None:
        if scheme in KNOWN_SCHEMES:
            raise _unavailable(scheme)
        if rest.startswith("//"):
            raise InvalidLocation(
                f"{raw} uses the unknown storage type {scheme!r}.",
                hint="Supported types: " + ", ".join(f"{k}:" for k in sorted(KNOWN_SCHEMES)) + ".",
            )
        # Like restic, anything else with a colon is just a local path ("backups:2024").
        return Location(scheme="local", path=raw, raw=raw)
    if provider.parser is not None:
        return provider.parser(raw, rest)
    if not rest:
        raise InvalidLocation(
            f"The location {raw!r} is incomplete.", hint=f"Write it as {scheme}:<address or path>."
        )
    return Location(scheme=scheme, path=rest, raw=raw)


def create_backend(location: Location, settings: ProviderSettings = DEFAULT_SETTINGS) -> Backend:
    """The bare provider (no wrappers) for ``location``; use ``compose.open_backend`` instead."""
    provider = _lookup(location.scheme)
    if provider is None:
        raise _unavailable(location.scheme)
    return provider.factory(location, settings)


def _lookup(scheme: str) -> _Provider | None:
    with _lock:
        found = _providers.get(scheme)
    if found is not None or scheme not in KNOWN_SCHEMES:
        return found
    module = f"safekeep.storage.providers.{scheme}"
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            log.warning("the %s provider needs %s, which is not installed", scheme, exc.name)
            raise _unavailable(scheme, missing=exc.name) from exc
        return None
    with _lock:
        return _providers.get(scheme)


def _unavailable(scheme: str, *, missing: str | None = None) -> InvalidLocation:
    name = KNOWN_SCHEMES.get(scheme, scheme)
    if missing:
        return InvalidLocation(
            f"The {scheme} provider ({name}) cannot be used: the package {missing} is not installed.",
            hint="Reinstall Safekeep with its optional storage packages, or choose another location.",
        )
    return InvalidLocation(
        f"The {scheme} provider ({name}) is not available in this version of Safekeep.",
        hint="Choose a local folder, a USB drive or a mounted network share instead.",
    )


def _parse_local(raw: str, rest: str) -> Location:
    if not rest.strip():
        raise InvalidLocation(
            f"The location {raw!r} names no folder.", hint="Write it as local:/path/to/folder."
        )
    return Location(scheme="local", path=rest, raw=raw)


def _open_local(location: Location, settings: ProviderSettings) -> Backend:
    return LocalBackend(location.path)


register_provider("local", _open_local, parser=_parse_local)
