"""The repository key is unlocked in the background while the command's modules load, and the
command uses that result only for the same location and password."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from safekeep.cli import early_key
from safekeep.cli.main import main
from safekeep.common.cancel import CancelToken
from safekeep.common.secret import Secret
from safekeep.core.errors import RepositoryError, WrongPassword
from safekeep.core.format.keys import KDFParams
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.storage.providers.local import LocalBackend

CHEAP = KDFParams(16, 1, 1)


def _init(path: Path, password: str = "pw") -> str:
    backend = LocalBackend(str(path))
    Repository.init(backend, password, options=RepositoryOptions(kdf=CHEAP)).close()
    backend.close()
    return str(path)


@pytest.fixture
def unlocks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of the thread of every Repository.unlock call."""
    calls: list[str] = []
    real = Repository.unlock

    def recording(*args: Any, **kw: Any) -> Any:
        calls.append(threading.current_thread().name)
        return real(*args, **kw)

    monkeypatch.setattr(Repository, "unlock", staticmethod(recording))
    return calls


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SAFEKEEP_PASSWORD", "RESTIC_PASSWORD", "SAFEKEEP_PASSWORD_FILE", "RESTIC_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("SAFEKEEP_REPOSITORY", "RESTIC_REPOSITORY"):
        monkeypatch.delenv(name, raising=False)


def test_the_key_is_unlocked_in_the_background_and_used_once(
    tmp_path: Path, unlocks: list[str], clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _init(tmp_path / "repo")
    monkeypatch.setenv("SAFEKEEP_PASSWORD", "pw")
    assert main(["-r", repo, "--no-lock", "snapshots"]) == 0
    assert unlocks == ["safekeep-early-key"]  # not derived a second time in the main thread


def test_a_wrong_password_is_reported_as_usual_and_derived_once(
    tmp_path: Path, unlocks: list[str], clean_env: None, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    repo = _init(tmp_path / "repo")
    monkeypatch.setenv("SAFEKEEP_PASSWORD", "not the password")
    assert main(["-r", repo, "snapshots"]) == WrongPassword.exit_code
    assert "password" in capsys.readouterr().err.lower()
    assert unlocks == ["safekeep-early-key"]


def test_a_missing_repository_is_reported_as_usual(
    tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("SAFEKEEP_PASSWORD", "pw")
    code = main(["-r", str(tmp_path / "nothing-here"), "snapshots"])
    assert code == 10  # restic's exit status for "the repository does not exist"
    assert "There is no repository at" in capsys.readouterr().err


def test_a_password_from_a_file_starts_it_too(tmp_path: Path, unlocks: list[str], clean_env: None) -> None:
    repo = _init(tmp_path / "repo")
    pw = tmp_path / "pw.txt"
    pw.write_text("pw\n")
    assert main(["-r", repo, "--password-file", str(pw), "--no-lock", "snapshots"]) == 0
    assert unlocks == ["safekeep-early-key"]


@pytest.mark.parametrize(
    ("command", "argv", "env"),
    [
        ("version", ["version"], {"SAFEKEEP_PASSWORD": "pw"}),  # opens no repository
        ("init", ["init"], {"SAFEKEEP_PASSWORD": "pw"}),  # makes a new key
        ("backup", ["backup", "--plan", "p"], {"SAFEKEEP_PASSWORD": "pw"}),  # the service unlocks
        ("snapshots", ["snapshots"], {}),  # the password would be asked for
        ("snapshots", ["snapshots"], {"SAFEKEEP_PASSWORD_FILE": "/nonexistent/pw"}),  # reported later
    ],
)
def test_it_does_not_start_when_it_cannot_help(command: str, argv: list[str], env: dict[str, str]) -> None:
    assert early_key.start(command, "/some/repo", None, argv, env) is None


def test_it_does_not_start_without_a_location() -> None:
    assert early_key.start("snapshots", None, None, ["snapshots"], {"SAFEKEEP_PASSWORD": "pw"}) is None
    started = early_key.start(
        "snapshots", None, None, ["snapshots"], {"SAFEKEEP_PASSWORD": "pw", "SAFEKEEP_REPOSITORY": "/r"}
    )
    assert started is not None and started.location == "/r"


def test_the_result_is_only_for_the_same_location_and_password(tmp_path: Path) -> None:
    repo = _init(tmp_path / "repo")
    early = early_key.EarlyKey(repo, Secret("pw"))
    cancel = CancelToken()
    assert early.take(repo, Secret("other"), cancel) is None
    assert early.take(str(tmp_path / "elsewhere"), Secret("pw"), cancel) is None
    unlocked = early.take(repo, Secret("pw"), cancel)
    assert unlocked is not None
    backend = LocalBackend(repo)
    opened = Repository.open(backend, "ignored: already unlocked", unlocked=unlocked)
    assert opened.config.id == unlocked.config.id and opened.key_id == unlocked.key_id
    opened.close()


def test_a_key_of_another_repository_is_refused(tmp_path: Path) -> None:
    first, second = _init(tmp_path / "a"), _init(tmp_path / "b")
    unlocked = Repository.unlock(LocalBackend(first), "pw")
    with pytest.raises(RepositoryError):
        Repository.open(LocalBackend(second), "pw", unlocked=unlocked)


def test_an_unexpected_failure_falls_back_to_the_usual_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _init(tmp_path / "repo")

    def broken(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("not a storage or repository problem")

    monkeypatch.setattr(Repository, "unlock", staticmethod(broken))
    early = early_key.EarlyKey(repo, Secret("pw"))
    assert early.take(repo, Secret("pw"), CancelToken()) is None


def test_a_remote_repository_is_left_to_the_command_s_own_connection(unlocks: list[str]) -> None:
    early = early_key.EarlyKey("s3:http://127.0.0.1:9/bucket/repo", Secret("pw"))
    assert early.take("s3:http://127.0.0.1:9/bucket/repo", Secret("pw"), CancelToken()) is None
    assert unlocks == []
