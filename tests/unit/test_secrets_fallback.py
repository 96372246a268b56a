"""Secrets without a desktop keyring: the refusal that names the fallback, the explicit
``SAFEKEEP_SECRETS=file`` fallback (0600 file, a warning on every open, wrong permissions
refused), and the scope bookkeeping over an in-memory keyring backend."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from pathlib import Path

import keyring
import keyring.errors
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null

from safekeep.common.errors import SafekeepError
from safekeep.state import paths
from safekeep.state.model import PASSWORD_SECRET
from safekeep.state.secrets import (
    ENV_SECRETS,
    SECRETS_FILE_NAME,
    KeyringLocked,
    KeyringUnavailable,
    Secrets,
    SecretsError,
    SecretsFileInsecure,
    SecretsFileUnreadable,
)

SECRET = "s3cr3t-Grüße-🔑"


class MemoryKeyring(KeyringBackend):
    """A keyring backend in memory (unit tests only; the real one is tested on a Secret Service)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}
        self.fail_with: Exception | None = None

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def get_password(self, service: str, username: str) -> str | None:
        self._check()
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self._check()
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self._check()
        if self.items.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError("not found")


def file_env(home: Path) -> dict[str, str]:
    return {ENV_SECRETS: "file", paths.ENV_HOME: str(home)}


# ---------------------------------------------------------------------------------------------
# No keyring


@pytest.mark.parametrize("backend", [fail.Keyring(), null.Keyring()], ids=["fail", "null"])
def test_no_keyring_backend_is_refused_with_the_fallback_named(backend: KeyringBackend) -> None:
    with pytest.raises(KeyringUnavailable) as err:
        Secrets.open(env={}, backend=backend)
    assert f"{ENV_SECRETS}=file" in err.value.hint
    assert "not encrypted" in err.value.hint
    assert isinstance(err.value, SafekeepError)


def test_empty_chainer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [])
    with pytest.raises(KeyringUnavailable):
        Secrets.open(env={}, backend=chainer.ChainerBackend())


def test_the_keyring_package_choice_is_used_by_default() -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        with pytest.raises(KeyringUnavailable):
            Secrets.open(env={})
        memory = MemoryKeyring()
        keyring.set_keyring(memory)
        Secrets.open(env={}).scope("d1").set(PASSWORD_SECRET, SECRET)
        assert memory.items[("Safekeep", f"d1/{PASSWORD_SECRET}")] == SECRET
    finally:
        keyring.set_keyring(previous)


def test_unreachable_service_at_open_is_unavailable() -> None:
    memory = MemoryKeyring()
    memory.fail_with = ConnectionRefusedError("org.freedesktop.secrets: connection refused")
    with pytest.raises(KeyringUnavailable) as err:
        Secrets.open(env={}, backend=memory)
    assert "connection refused" in err.value.message


def test_locked_keyring_says_to_unlock() -> None:
    memory = MemoryKeyring()
    store = Secrets.open(env={}, backend=memory).scope("d1")
    memory.fail_with = keyring.errors.KeyringLocked("Failed to unlock the collection!")
    with pytest.raises(KeyringLocked) as err:
        store.get(PASSWORD_SECRET)
    assert "Unlock your keyring" in err.value.hint and "log in to the desktop" in err.value.hint


def test_unknown_choice_is_refused() -> None:
    with pytest.raises(SecretsError) as err:
        Secrets.open(env={ENV_SECRETS: "plaintext"})
    assert "keyring" in err.value.hint and "file" in err.value.hint


# ---------------------------------------------------------------------------------------------
# The scope bookkeeping (over an in-memory keyring)


def test_scopes_names_and_delete_scope() -> None:
    memory = MemoryKeyring()
    secrets = Secrets.open(env={}, backend=memory)
    a, b = secrets.scope("dest-a"), secrets.scope("dest-b")
    a.set(PASSWORD_SECRET, "pa")
    a.set("AWS_SECRET_ACCESS_KEY", "ka")
    b.set(PASSWORD_SECRET, "pb")
    assert a.names() == ["AWS_SECRET_ACCESS_KEY", PASSWORD_SECRET]
    a.delete("AWS_SECRET_ACCESS_KEY")
    assert a.names() == [PASSWORD_SECRET]
    secrets.delete_scope("dest-a")
    assert a.get(PASSWORD_SECRET) is None and a.names() == []
    assert b.get(PASSWORD_SECRET) == "pb"
    assert {user for _, user in memory.items} == {f"dest-b/{PASSWORD_SECRET}", "dest-b/.names"}


def test_delete_scope_also_removes_names_it_was_told_about() -> None:
    memory = MemoryKeyring()
    memory.items[("Safekeep", "dest-x/legacy-token")] = "old"
    memory.items[("Safekeep", f"dest-x/{PASSWORD_SECRET}")] = "pw"
    Secrets.open(env={}, backend=memory).delete_scope("dest-x", also=["legacy-token"])
    assert memory.items == {}


@pytest.mark.parametrize("scope", ["", "a/b", ".hidden"])
def test_bad_scope_names_are_refused(scope: str) -> None:
    with pytest.raises(ValueError):
        Secrets.open(env={}, backend=MemoryKeyring()).scope(scope)


def test_reserved_secret_names_are_refused() -> None:
    store = Secrets.open(env={}, backend=MemoryKeyring()).scope("d")
    with pytest.raises(ValueError):
        store.set(".names", "x")


def test_values_never_logged_or_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = Secrets.open(env={}, backend=MemoryKeyring())
    store = secrets.scope("d")
    store.set(PASSWORD_SECRET, SECRET)
    assert store.get(PASSWORD_SECRET) == SECRET
    store.delete(PASSWORD_SECRET)
    assert "d/repository-password" in caplog.text  # the name is logged ...
    assert SECRET not in caplog.text  # ... the value never
    assert SECRET not in repr(store) + repr(secrets)


# ---------------------------------------------------------------------------------------------
# The file fallback


def test_file_fallback_round_trip_and_permissions(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="safekeep.state.secrets")
    env = file_env(tmp_path / "home")
    secrets = Secrets.open(env=env)
    assert secrets.kind == "file"
    a, app = secrets.scope("dest-a"), secrets.scope("app")
    a.set(PASSWORD_SECRET, SECRET)
    app.set("smtp-password", "smtp")
    path = paths.config_dir(env) / SECRETS_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    doc = json.loads(path.read_text("utf-8"))
    assert doc["secrets"][f"dest-a/{PASSWORD_SECRET}"] == SECRET
    # a second process (here: a second open) reads the same file
    again = Secrets.open(env=env)
    assert again.scope("dest-a").get(PASSWORD_SECRET) == SECRET
    assert again.scope("app").get("smtp-password") == "smtp"
    assert again.scope("dest-b").get(PASSWORD_SECRET) is None
    again.delete_scope("dest-a")
    assert secrets.scope("dest-a").get(PASSWORD_SECRET) is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # rewritten, still private
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "UNENCRYPTED" in r.getMessage()]
    assert len(warnings) == 2  # one per open
    assert str(path) in warnings[0].getMessage()
    assert SECRET not in caplog.text


def test_file_fallback_refuses_a_readable_file(tmp_path: Path) -> None:
    env = file_env(tmp_path / "home")
    store = Secrets.open(env=env).scope("d")
    store.set(PASSWORD_SECRET, SECRET)
    path = paths.config_dir(env) / SECRETS_FILE_NAME
    os.chmod(path, 0o644)
    with pytest.raises(SecretsFileInsecure) as err:
        store.get(PASSWORD_SECRET)  # checked on every read, not only at open
    assert "-rw-r--r--" in err.value.message
    assert "chmod 600" in err.value.hint
    assert SECRET not in err.value.user_text()
    with pytest.raises(SecretsFileInsecure):
        Secrets.open(env=env)
    os.chmod(path, 0o600)
    assert store.get(PASSWORD_SECRET) == SECRET


def test_file_fallback_refuses_a_folder_others_can_change(tmp_path: Path) -> None:
    env = file_env(tmp_path / "home")
    Secrets.open(env=env).scope("d").set(PASSWORD_SECRET, SECRET)
    os.chmod(paths.config_dir(env), 0o777)
    with pytest.raises(SecretsFileInsecure) as err:
        Secrets.open(env=env)
    assert "folder" in err.value.message


def test_file_fallback_damaged_file(tmp_path: Path) -> None:
    env = file_env(tmp_path / "home")
    folder = paths.config_dir(env)
    folder.mkdir(parents=True, mode=0o700)
    path = folder / SECRETS_FILE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"{not json")
    os.close(fd)
    with pytest.raises(SecretsFileUnreadable):
        Secrets.open(env=env).scope("d").get(PASSWORD_SECRET)


def test_file_fallback_from_several_threads(tmp_path: Path) -> None:
    secrets = Secrets.open(env=file_env(tmp_path / "home"))
    store = secrets.scope("d")

    def work(i: int) -> None:
        for j in range(5):
            store.set(f"name-{i}-{j}", f"value-{i}-{j}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.names()) == 20
    assert all(store.get(f"name-{i}-{j}") == f"value-{i}-{j}" for i in range(4) for j in range(5))
