"""Secrets through a real Secret Service (GNOME Keyring on a private D-Bus), not an in-memory
keyring: what a Linux desktop user meets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keyring
import pytest
from tests.servers.keyring import SecretServiceBus, running_secret_service

from safekeep.state.model import PASSWORD_SECRET
from safekeep.state.secrets import APP_SCOPE, SERVICE, Secrets
from safekeep.storage.secrets import SecretStore


def test_store_read_delete(secret_service: SecretServiceBus) -> None:
    secrets = Secrets.open(env={})
    assert secrets.kind == "keyring"
    store: SecretStore = secrets.scope("dest-store-read")
    assert store.get(PASSWORD_SECRET) is None
    store.set(PASSWORD_SECRET, "correct horse battery staple")
    assert store.get(PASSWORD_SECRET) == "correct horse battery staple"
    store.set(PASSWORD_SECRET, "a new password")  # replacing keeps one entry
    assert store.get(PASSWORD_SECRET) == "a new password"
    # the entry is where the desktop's keyring tools look: service "Safekeep", user "<scope>/<name>"
    assert keyring.get_password(SERVICE, f"dest-store-read/{PASSWORD_SECRET}") == "a new password"
    store.delete(PASSWORD_SECRET)
    assert store.get(PASSWORD_SECRET) is None
    store.delete(PASSWORD_SECRET)  # forgetting what is not stored is not an error
    assert keyring.get_password(SERVICE, f"dest-store-read/{PASSWORD_SECRET}") is None


def test_scopes_do_not_collide(secret_service: SecretServiceBus) -> None:
    secrets = Secrets.open(env={})
    a, b, app = secrets.scope("dest-a"), secrets.scope("dest-b"), secrets.scope(APP_SCOPE)
    a.set("oauth-token", "token of a")
    b.set("oauth-token", "token of b")
    app.set("smtp-password", "smtp secret")
    assert (a.get("oauth-token"), b.get("oauth-token")) == ("token of a", "token of b")
    assert a.get("smtp-password") is None
    a.delete("oauth-token")
    assert b.get("oauth-token") == "token of b"
    assert app.get("smtp-password") == "smtp secret"


def test_unicode_and_long_values(secret_service: SecretServiceBus) -> None:
    store = Secrets.open(env={}).scope("dest-unicode")
    values = {
        PASSWORD_SECRET: "Grüße aus Zürich – ünïcödé 🔐 密码",
        "sftp-password": " leading and trailing spaces ",
        "oauth-token": json.dumps({"refresh_token": "x" * 4000, "scope": "drive.file"}),
    }
    for name, value in values.items():
        store.set(name, value)
    for name, value in values.items():
        assert store.get(name) == value


def test_delete_scope_forgets_everything_of_that_scope(secret_service: SecretServiceBus) -> None:
    secrets = Secrets.open(env={})
    gone, kept = secrets.scope("dest-removed"), secrets.scope("dest-kept")
    for name in (PASSWORD_SECRET, "AWS_SECRET_ACCESS_KEY", "oauth-token"):
        gone.set(name, f"value of {name}")
    kept.set(PASSWORD_SECRET, "still here")
    assert gone.names() == sorted([PASSWORD_SECRET, "AWS_SECRET_ACCESS_KEY", "oauth-token"])
    secrets.delete_scope("dest-removed")
    for name in (PASSWORD_SECRET, "AWS_SECRET_ACCESS_KEY", "oauth-token", ".names"):
        assert keyring.get_password(SERVICE, f"dest-removed/{name}") is None
    assert gone.names() == []
    assert kept.get(PASSWORD_SECRET) == "still here"


def test_another_process_reads_what_this_one_stored(secret_service: SecretServiceBus) -> None:
    """A second Secrets in another process (the job worker, the daemon) sees the same keyring,
    chosen the normal way: keyring's own backend selection on the session bus."""
    Secrets.open(env={}).scope("dest-shared").set(PASSWORD_SECRET, "shared päss")
    child = textwrap.dedent(
        """
        import json, sys
        import keyring
        from safekeep.state.secrets import Secrets
        secrets = Secrets.open()
        scope = secrets.scope("dest-shared")
        got = scope.get("repository-password")
        scope.set("oauth-token", "from the child")
        print(json.dumps({"got": got, "backend": type(keyring.get_keyring()).__module__}))
        """
    )
    env = dict(secret_service.env, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"got": "shared päss", "backend": "keyring.backends.SecretService"}
    # and what the child stored is visible here
    assert Secrets.open(env={}).scope("dest-shared").get("oauth-token") == "from the child"


def test_repr_shows_no_secret(secret_service: SecretServiceBus) -> None:
    secrets = Secrets.open(env={})
    store = secrets.scope("dest-repr")
    store.set(PASSWORD_SECRET, "never-in-a-repr")
    assert "never-in-a-repr" not in repr(store) + repr(secrets)
    assert "dest-repr" in repr(store)


def test_unreachable_secret_service_is_a_clear_error(
    secret_service: SecretServiceBus, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from safekeep.state.secrets import KeyringUnavailable

    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-such-bus")
    with pytest.raises(KeyringUnavailable) as err:
        Secrets.open(env={})
    assert "SAFEKEEP_SECRETS=file" in err.value.hint


def test_locked_keyring_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A keyring locked after login (screen lock policies, a manual lock): the unlock prompt
    cannot be shown here, so keyring gives up, and the person is told to unlock it. Uses a keyring
    of its own so the shared one stays unlocked."""
    import keyring.backends.SecretService
    import secretstorage

    from safekeep.state.secrets import KeyringLocked

    with running_secret_service(tmp_path) as bus:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus.address)
        backend = keyring.backends.SecretService.Keyring()
        store = Secrets.open(env={}, backend=backend).scope("dest-locked")
        store.set(PASSWORD_SECRET, "locked away")
        conn = secretstorage.dbus_init()
        try:
            collection = secretstorage.get_default_collection(conn)
            collection.lock()
            assert collection.is_locked()
        finally:
            conn.close()
        with pytest.raises(KeyringLocked) as err:
            store.get(PASSWORD_SECRET)
        assert "Unlock your keyring" in err.value.hint
        assert "locked away" not in err.value.user_text()
        with pytest.raises(KeyringLocked):
            Secrets.open(env={}, backend=backend)
