"""The engine's service in-process, with real worker processes: backup, browse, restore, check,
cancel — and the audit log entries each of them leaves."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from safekeep.engine.events import JobEvent
from safekeep.engine.service import Service
from safekeep.state.model import Outcome, Plan, new_id

PASSWORD = "correct horse battery staple"


def _plan(service: Service, source: Path, repo: Path) -> Plan:
    dest = service.add_destination("USB", str(repo), password=PASSWORD)
    return service.save_plan(
        Plan(id=new_id(), name="Office", sources=(str(source),), destination_ids=(dest.id,))
    )


def test_backup_browse_restore_check(service: Service, tmp_path: Path, restic_bin: str) -> None:
    source = tmp_path / "office"
    (source / "letters").mkdir(parents=True)
    (source / "letters" / "a.txt").write_text("dear member\n" * 100)
    (source / "budget.bin").write_bytes(os.urandom(300_000))
    plan = _plan(service, source, tmp_path / "usb")
    events: list[JobEvent] = []
    run = service.wait(service.run_plan(plan.name, on_event=events.append))
    assert run.outcome is Outcome.SUCCESS, run
    assert {e.kind for e in events} >= {"started", "finished"}

    snaps = service.snapshots("USB")
    assert len(snaps) == 1 and snaps[0].id == run.results[0].snapshot_id
    names = {e.name for e in service.list_dir("USB", snaps[0].id, str(source))}
    assert names == {"letters", "budget.bin"}

    target = tmp_path / "restored"
    restored = service.wait(service.restore("USB", snaps[0].id, str(target), paths=[str(source / "letters")]))
    assert restored.kind == "restore" and restored.outcome is Outcome.SUCCESS, restored
    copy = target / str(source).lstrip("/") / "letters" / "a.txt"
    assert copy.read_text() == (source / "letters" / "a.txt").read_text()
    assert not (target / str(source).lstrip("/") / "budget.bin").exists()

    checked = service.wait(service.check("USB", read_data=True))
    assert checked.kind == "check" and checked.outcome is Outcome.SUCCESS, checked

    actions = [e.action for e in service.audit.verify().entries]
    assert actions[:2] == ["destination-add", "plan-add"]
    assert actions[2:] == ["backup", "restore", "check"]


def test_cancel_leaves_a_valid_repository_and_no_snapshot(
    service: Service, tmp_path: Path, restic_bin: str
) -> None:
    source = tmp_path / "big"
    source.mkdir()
    for i in range(10):
        (source / f"d{i}.bin").write_bytes(os.urandom(8_000_000))
    repo = tmp_path / "usb"
    plan = _plan(service, source, repo)
    cancelled: list[bool] = []

    def on_event(e: JobEvent) -> None:
        if e.kind == "progress" and e.data.get("bytes_done", 0) > 0 and not cancelled:
            cancelled.append(service.cancel(e.run_id))

    run = service.wait(service.run_plan(plan.name, on_event=on_event))
    assert cancelled == [True]
    assert run.outcome is Outcome.CANCELLED, run
    assert service.snapshots("USB") == []
    env = dict(os.environ, RESTIC_PASSWORD=PASSWORD, RESTIC_CACHE_DIR=str(tmp_path / "rc"))
    r = subprocess.run(
        [restic_bin, "-r", str(repo), "check"], env=env, capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stdout + r.stderr
