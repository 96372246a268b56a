"""Location strings, provider registration and the wrapper stack built by compose."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from safekeep.common.clock import FakeClock
from safekeep.storage import registry
from safekeep.storage.base import Handle
from safekeep.storage.compose import StorageOptions, open_backend
from safekeep.storage.errors import InvalidLocation, PermissionDenied, TransientStorageError
from safekeep.storage.providers.local import LocalBackend
from safekeep.storage.providers.memory import MemoryBackend
from safekeep.storage.registry import Location, parse_location, register_provider
from safekeep.storage.wrappers.readonly import ReadOnlyBackend
from safekeep.storage.wrappers.retry import RetryBackend

# Schemes Safekeep names but has no provider module for; a provider landing for one of these
# must not break the test, so the list is filtered to what is really unavailable.
UNAVAILABLE = [
    raw
    for raw in (
        "gdrive:Backups",
        "onedrive:Backups",
        "dropbox:/Backups",
        "rest:https://host:8000/",
        "b2:bucket:path",
        "swift:container:/path",
    )
    if importlib.util.find_spec(f"safekeep.storage.providers.{raw.split(':', 1)[0]}") is None
]


# -- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("/srv/backup", "/srv/backup"),
        ("backup", "backup"),
        ("./backup/repo", "./backup/repo"),
        ("../repo", "../repo"),
        ("  /srv/backup  ", "/srv/backup"),
        ("local:/srv/backup", "/srv/backup"),
        ("local:relative/dir", "relative/dir"),
        ("C:\\Backup\\Repo", "C:\\Backup\\Repo"),
        ("d:/Backup", "d:/Backup"),
        ("E:", "E:"),
        ("local:C:\\Backup", "C:\\Backup"),
        ("backups:2024", "backups:2024"),  # unknown prefix: a local path, as in restic
        ("/media/usb/s3:odd", "/media/usb/s3:odd"),
    ],
)
def test_local_locations(raw: str, path: str) -> None:
    loc = parse_location(raw)
    assert loc.scheme == "local"
    assert loc.path == path
    assert loc.raw == raw.strip()
    assert str(loc) == raw.strip()


def test_location_is_frozen() -> None:
    loc = parse_location("/x")
    with pytest.raises(AttributeError):
        loc.path = "/y"  # type: ignore[misc]
    assert loc == Location(scheme="local", path="/x", raw="/x")


@pytest.mark.parametrize("raw", [*UNAVAILABLE, "zz-cloud:bucket/path"])
def test_known_but_unavailable_schemes_are_refused_clearly(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.KNOWN_SCHEMES, "zz-cloud", "a test cloud without a provider")
    scheme = raw.split(":", 1)[0]
    with pytest.raises(InvalidLocation) as info:
        parse_location(raw)
    msg = str(info.value)
    assert f"The {scheme} provider" in msg
    assert "not available in this version of Safekeep" in msg
    assert info.value.hint


@pytest.mark.parametrize("raw", ["", "   ", "local:", "local:   "])
def test_empty_locations_are_refused(raw: str) -> None:
    with pytest.raises(InvalidLocation):
        parse_location(raw)


@pytest.mark.parametrize("raw", ["http://example.org/repo", "https://example.org/repo"])
def test_web_addresses_point_to_the_right_scheme(raw: str) -> None:
    with pytest.raises(InvalidLocation) as info:
        parse_location(raw)
    assert "rest:" in info.value.hint and "webdav:" in info.value.hint


def test_unknown_url_scheme_is_refused() -> None:
    with pytest.raises(InvalidLocation, match="unknown storage type"):
        parse_location("xyz://host/path")


# -- registration -----------------------------------------------------------------------------


@pytest.fixture
def cleanup() -> Iterator[list[str]]:
    """Schemes a test registers; afterwards the registry is as it was (real providers included)."""
    schemes: list[str] = []
    before = dict(registry._providers)
    yield schemes
    for s in schemes:
        registry.unregister_provider(s)
    registry._providers.update({k: v for k, v in before.items() if k in schemes})


def test_register_a_new_provider(cleanup: list[str]) -> None:
    made: list[Location] = []

    def factory(loc: Location, _settings: registry.ProviderSettings) -> MemoryBackend:
        made.append(loc)
        return MemoryBackend(location=loc.raw)

    register_provider("memtest", factory)
    cleanup.append("memtest")
    loc = parse_location("memtest:some/where")
    assert loc == Location(scheme="memtest", path="some/where", raw="memtest:some/where")
    backend = registry.create_backend(loc)
    assert isinstance(backend, MemoryBackend)
    assert made == [loc]
    assert "memtest" in registry.registered_schemes()
    with pytest.raises(InvalidLocation, match="incomplete"):
        parse_location("memtest:")


def test_registering_a_known_scheme_makes_it_available(cleanup: list[str]) -> None:
    def parser(raw: str, rest: str) -> Location:
        host, _, bucket = rest.partition("/")
        return Location(scheme="s3", path="", raw=raw, host=host, bucket=bucket)

    register_provider("s3", lambda loc, _settings: MemoryBackend(location=loc.raw), parser=parser)
    cleanup.append("s3")
    loc = parse_location("s3:minio.local/bucket")
    assert (loc.scheme, loc.host, loc.bucket) == ("s3", "minio.local", "bucket")
    backend = open_backend("s3:minio.local/bucket", options=StorageOptions(retry_attempts=1))
    assert isinstance(backend, MemoryBackend)
    assert backend.properties.location == "s3:minio.local/bucket"


def test_missing_optional_sdk_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_import(name: str) -> object:
        raise ModuleNotFoundError("No module named 'zzsdk'", name="zzsdk")

    monkeypatch.setitem(registry.KNOWN_SCHEMES, "zz-cloud", "a test cloud whose SDK is missing")
    monkeypatch.setattr(importlib, "import_module", fake_import)
    with pytest.raises(InvalidLocation, match="zzsdk is not installed"):
        parse_location("zz-cloud:host/bucket")


def test_register_rejects_bad_schemes() -> None:
    for bad in ["", "C", "S3", "with space", "1abc"]:
        with pytest.raises(ValueError):
            register_provider(bad, lambda loc, _settings: MemoryBackend())


# -- compose ----------------------------------------------------------------------------------


def test_open_backend_default_stack(tmp_path: Path) -> None:
    backend = open_backend(str(tmp_path / "repo"))
    assert isinstance(backend, RetryBackend)
    assert isinstance(backend.inner, LocalBackend)
    assert backend.properties.is_local
    backend.create()
    backend.save(Handle.config(), b"cfg")
    assert backend.load(Handle.config()) == b"cfg"


def test_open_backend_local_scheme_and_no_retry(tmp_path: Path) -> None:
    backend = open_backend(f"local:{tmp_path}", options=StorageOptions(retry_attempts=1))
    assert isinstance(backend, LocalBackend)
    assert backend.root == tmp_path


def test_open_backend_read_only_is_outermost(tmp_path: Path) -> None:
    rw = open_backend(str(tmp_path))
    rw.create()
    rw.save(Handle.config(), b"cfg")
    ro = open_backend(str(tmp_path), options=StorageOptions(read_only=True))
    assert isinstance(ro, ReadOnlyBackend)
    assert isinstance(ro.inner, RetryBackend)
    with pytest.raises(PermissionDenied, match="repository opened read-only"):
        ro.save(Handle.config(), b"other")
    with pytest.raises(PermissionDenied):
        ro.remove(Handle.config())
    assert ro.load(Handle.config()) == b"cfg"


def test_open_backend_uses_the_injected_clock(cleanup: list[str]) -> None:
    inner = MemoryBackend()
    register_provider("memtest", lambda loc, _settings: inner)
    cleanup.append("memtest")
    clock = FakeClock()
    backend = open_backend("memtest:x", options=StorageOptions(retry_attempts=3, retry_seed=1), clock=clock)
    inner.fail_next("create", TransientStorageError("busy"), count=2)
    backend.create()
    assert inner.calls["create"] == 3
    assert clock.sleeps


def test_open_backend_unavailable_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.KNOWN_SCHEMES, "zz-cloud", "a test cloud without a provider")
    with pytest.raises(InvalidLocation, match="not available"):
        open_backend("zz-cloud:bucket/repo")


def test_storage_options_validate() -> None:
    assert StorageOptions().retry_attempts > 1
    assert StorageOptions().read_only is False
    with pytest.raises(ValueError):
        StorageOptions(retry_attempts=0)
