"""A plan's retention is applied after its backups: old snapshots go, their space is freed, the
audit log records both, and a retention that cannot run leaves the backup standing with a
warning. Real worker processes; restic checks the repository afterwards."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from safekeep.core.locks import Lock
from safekeep.core.repository import Repository
from safekeep.engine.events import JobEvent
from safekeep.engine.service import Service
from safekeep.state.model import Outcome, Plan, Retention, new_id
from safekeep.storage.compose import open_backend

PASSWORD = "correct horse battery staple"


def _plan(service: Service, source: Path, repo: Path, retention: Retention) -> Plan:
    dest = service.add_destination("USB", str(repo), password=PASSWORD)
    return service.save_plan(
        Plan(
            id=new_id(),
            name="Office",
            sources=(str(source),),
            destination_ids=(dest.id,),
            retention=retention,
        )
    )


def _data_size(repo: Path) -> int:
    return sum(p.stat().st_size for p in (repo / "data").rglob("*") if p.is_file())


def _restic_check(restic_bin: str, repo: Path, tmp_path: Path) -> None:
    env = dict(os.environ, RESTIC_PASSWORD=PASSWORD, RESTIC_CACHE_DIR=str(tmp_path / "rc"))
    r = subprocess.run(
        [restic_bin, "-r", str(repo), "check", "--read-data"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_old_backups_are_removed_and_their_space_freed(
    service: Service, tmp_path: Path, restic_bin: str
) -> None:
    source = tmp_path / "office"
    source.mkdir()
    (source / "letter.txt").write_text("dear member\n")
    (source / "old-video.bin").write_bytes(os.urandom(5_000_000))
    repo = tmp_path / "usb"
    plan = _plan(service, source, repo, Retention(keep_last=2))

    first = service.wait(service.run_plan(plan.name))
    assert first.outcome is Outcome.SUCCESS, first
    with_video = _data_size(repo)
    (source / "old-video.bin").unlink()
    ids = [first.results[0].snapshot_id]
    events: list[JobEvent] = []
    for n in range(2):
        (source / "letter.txt").write_text(f"dear member, version {n}\n")
        run = service.wait(service.run_plan(plan.name, on_event=events.append))
        assert run.outcome is Outcome.SUCCESS, run
        ids.append(run.results[0].snapshot_id)

    assert [s.id for s in service.snapshots("USB")] == ids[1:]  # the oldest went, the newest two stay
    assert with_video - _data_size(repo) >= 4_900_000  # the video's data is gone from the storage
    retention = [e.data for e in events if e.kind == "retention"]
    assert retention[0]["removed"] == [] and retention[0]["kept"] == 2
    assert retention[1]["removed"] == [ids[0]] and retention[1]["bytes_freed"] >= 4_900_000
    progress = [e.data for e in events if e.kind == "progress"]
    steps = {d["current_path"] for d in progress if d["phase"] == "retention"}
    assert "reading trees" in steps  # the app can say "removing old backups" meanwhile

    entries = service.audit.verify().entries
    assert [e.action for e in entries][2:] == ["backup", "backup", "backup", "forget", "prune"]
    forget_entry, prune_entry = entries[-2], entries[-1]
    assert forget_entry.details["removed"] == [ids[0]] and forget_entry.details["kept"] == 2
    assert prune_entry.details["bytes_freed"] >= 4_900_000 and prune_entry.outcome == "success"
    assert 'plan "Office"' in forget_entry.target
    _restic_check(restic_bin, repo, tmp_path)


def test_a_plan_that_keeps_everything_removes_nothing(service: Service, tmp_path: Path) -> None:
    source = tmp_path / "office"
    source.mkdir()
    plan = _plan(service, source, tmp_path / "usb", Retention())
    for n in range(3):
        (source / "a.txt").write_text(str(n))
        assert service.wait(service.run_plan(plan.name)).outcome is Outcome.SUCCESS
    assert len(service.snapshots("USB")) == 3
    assert "forget" not in [e.action for e in service.audit.verify().entries]


def test_a_repository_in_use_keeps_the_backup_and_warns(
    service: Service, tmp_path: Path, restic_bin: str
) -> None:
    source = tmp_path / "office"
    source.mkdir()
    repo_path = tmp_path / "usb"
    plan = _plan(service, source, repo_path, Retention(keep_last=1))
    (source / "a.txt").write_text("one")
    assert service.wait(service.run_plan(plan.name)).outcome is Outcome.SUCCESS
    repo = Repository.open(open_backend(str(repo_path)), PASSWORD)
    try:
        with Lock(repo, exclusive=False).acquire():  # another program reads the repository
            (source / "a.txt").write_text("two")
            run = service.wait(service.run_plan(plan.name))
    finally:
        repo.close()
    result = run.results[0]
    assert run.outcome is Outcome.WARNING and result.snapshot_id, run
    assert "old backups were not removed this time" in result.error
    assert len(service.snapshots("USB")) == 2  # both kept: the new backup counts

    (source / "a.txt").write_text("three")
    later = service.wait(service.run_plan(plan.name))  # the next backup catches up
    assert later.outcome is Outcome.SUCCESS, later
    assert [s.id for s in service.snapshots("USB")] == [later.results[0].snapshot_id]
    _restic_check(restic_bin, repo_path, tmp_path)
