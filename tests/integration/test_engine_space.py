"""A backup to a destination that is filling up ends with a warning, before backups fail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safekeep.engine.jobs import Job
from safekeep.engine.worker import with_space_warning
from safekeep.state.model import Destination, DestinationResult, Outcome


def _job(location: Path, low_space_mib: int | None) -> Job:
    dest = Destination(id="d1", name="USB disk", location=str(location), low_space_mib=low_space_mib)
    return Job(kind="backup", run_id="r1", destination=dest, password="pw")


def test_low_space_turns_success_into_a_warning(tmp_path: Path, sk_repo: Any) -> None:
    repo = sk_repo(tmp_path / "repo")
    ok = DestinationResult("d1", Outcome.SUCCESS, snapshot_id="abc", bytes_added=1000)
    # a threshold far above any real disk: the warning must come
    warned = with_space_warning(_job(tmp_path / "repo", 10**12), repo, ok)
    assert warned.outcome is Outcome.WARNING
    assert "is free on “USB disk”" in warned.error and "backups will fail when it is full" in warned.error
    assert warned.snapshot_id == "abc"  # the backup itself stands


def test_enough_space_changes_nothing(tmp_path: Path, sk_repo: Any) -> None:
    repo = sk_repo(tmp_path / "repo")
    ok = DestinationResult("d1", Outcome.SUCCESS, snapshot_id="abc", bytes_added=1000)
    assert with_space_warning(_job(tmp_path / "repo", 0), repo, ok) == ok
