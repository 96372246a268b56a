"""Restoring through the service with real worker processes: conflict policies and decisions,
restoring into a folder, the report of what went where, the conflict preview, opening an old
version, the catalog from another thread, the audit entries — on a repository made by Safekeep
and on one made by restic."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import ResticRunner

from safekeep.common.errors import UsageError
from safekeep.engine.events import JobEvent
from safekeep.engine.service import Service
from safekeep.state.model import Outcome, Plan, new_id

PASSWORD = "correct horse battery staple"


@pytest.fixture
def office(tmp_path: Path) -> Path:
    source = tmp_path / "office"
    (source / "letters").mkdir(parents=True)
    (source / "letters" / "a.txt").write_text("dear member\n" * 100)
    (source / "letters" / "b.txt").write_text("dear treasurer\n")
    (source / "budget.xlsx").write_bytes(os.urandom(300_000))
    return source


@pytest.fixture
def snapshot(service: Service, office: Path, tmp_path: Path) -> str:
    """A backup of ``office`` made by Safekeep's worker to the destination "USB"."""
    dest = service.add_destination("USB", str(tmp_path / "usb"), password=PASSWORD)
    plan = service.save_plan(
        Plan(id=new_id(), name="Office", sources=(str(office),), destination_ids=(dest.id,))
    )
    run = service.wait(service.run_plan(plan.name))
    assert run.outcome is Outcome.SUCCESS, run
    return run.results[0].snapshot_id


def _restore(service: Service, *args: Any, **kwargs: Any) -> tuple[Any, list[JobEvent]]:
    events: list[JobEvent] = []
    run = service.wait(service.restore(*args, on_event=events.append, **kwargs))
    return run, events


def _kept(folder: Path, stem: str, ext: str = "") -> Path:
    """The one kept-both copy of ``stem + ext`` in ``folder`` (named by the worker's local date)."""
    found = list(folder.glob(f"{stem} (restored 20[0-9][0-9]-[01][0-9]-[0-3][0-9]){ext}"))
    assert len(found) == 1, found
    return found[0]


def _audit(service: Service, action: str = "restore") -> list[Any]:
    return [e for e in service.audit.verify().entries if e.action == action]


def test_policies_decisions_report_and_audit(
    service: Service, office: Path, snapshot: str, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    base = target / str(office).lstrip("/")
    (base / "letters").mkdir(parents=True)
    (base / "letters" / "a.txt").write_text("my own a")
    (base / "letters" / "b.txt").write_text("my own b")
    (base / "budget.xlsx").write_text("my own budget")
    run, events = _restore(
        service,
        "USB",
        snapshot,
        str(target),
        paths=[str(office)],
        conflict="keep-both",
        decisions={str(office / "letters" / "b.txt"): "skip", str(office / "budget.xlsx"): "overwrite"},
    )
    assert run.kind == "restore" and run.outcome is Outcome.SUCCESS, run
    assert (base / "letters" / "a.txt").read_text() == "my own a"
    kept = _kept(base / "letters", "a", ".txt")
    assert kept.read_text() == (office / "letters" / "a.txt").read_text()
    assert (base / "letters" / "b.txt").read_text() == "my own b"
    assert not list((base / "letters").glob("b (*"))
    assert (base / "budget.xlsx").read_bytes() == (office / "budget.xlsx").read_bytes()

    summary = [e for e in events if e.kind == "restore_summary"]
    assert len(summary) == 1
    counts = summary[0].data
    assert (counts["restored"], counts["kept_both"], counts["skipped"], counts["overwritten"]) == (2, 1, 1, 1)
    assert counts["verified"] == 2 and counts["failed"] == 0 and counts["complete"] is True
    assert Path(counts["report"]).is_file()

    report = service.restore_report(run.id)
    assert report is not None and report.run_id == run.id and report.snapshot_id == snapshot
    actions = {os.path.relpath(i.snapshot_path, office): (i.action, i.target_path) for i in report.items}
    assert actions == {
        "letters/a.txt": ("kept-both", str(kept)),
        "letters/b.txt": ("skipped", str(base / "letters" / "b.txt")),
        "budget.xlsx": ("overwritten", str(base / "budget.xlsx")),
    }
    assert service.restore_report("no-such-run") is None
    assert service.restore_report("../../etc/passwd") is None

    entry = _audit(service)[-1]
    assert entry.outcome == "success" and str(target) in entry.target
    d = entry.details
    assert d["snapshot"] == snapshot and d["into"] == str(target)
    assert d["paths"] == [str(office)] and d["paths_count"] == 1
    assert d["conflict"] == "keep-both" and d["decisions"] == 2
    assert (d["restored"], d["overwritten"], d["kept_both"], d["skipped"], d["failed"], d["verified"]) == (
        2,
        1,
        1,
        1,
        0,
        2,
    )


def test_restore_into_a_folder_and_the_conflict_preview(
    service: Service, office: Path, snapshot: str, tmp_path: Path
) -> None:
    folder = tmp_path / "desktop"
    (folder / "letters").mkdir(parents=True)
    (folder / "letters" / "a.txt").write_text("mine")
    (folder / "budget.xlsx").mkdir()  # a folder where the backup has a file

    scan = service.restore_conflicts(
        "USB",
        snapshot,
        str(folder),
        paths=[str(office / "letters"), str(office / "budget.xlsx")],
        flatten=True,
    )
    assert not scan.more
    assert {(c.kind, c.target_path) for c in scan.conflicts} == {
        ("folder", str(folder / "letters")),
        ("file", str(folder / "letters" / "a.txt")),
        ("type", str(folder / "budget.xlsx")),
    }
    assert (
        service.restore_conflicts("USB", snapshot, str(tmp_path / "empty"), paths=[str(office)]).conflicts
        == ()
    )

    run, _ = _restore(
        service,
        "USB",
        snapshot[:8],
        str(folder),
        paths=[str(office / "letters"), str(office / "budget.xlsx")],
        flatten=True,
        conflict="skip",
    )
    assert run.outcome is Outcome.WARNING, run  # the type clash is reported
    assert (folder / "letters" / "a.txt").read_text() == "mine"
    assert (folder / "letters" / "b.txt").read_text() == "dear treasurer\n"
    assert (folder / "budget.xlsx").is_dir()
    report = service.restore_report(run.id)
    assert report is not None and report.failed == 1 and report.skipped == 1 and report.restored == 1
    assert [os.path.basename(p) for p, _ in report.errors] == ["budget.xlsx"]
    assert _audit(service)[-1].details["failed"] == 1


def test_a_bad_policy_is_refused(service: Service, snapshot: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        service.restore("USB", snapshot, str(tmp_path / "t"), conflict="ask")
    with pytest.raises(UsageError):
        service.restore("USB", snapshot, str(tmp_path / "t"), decisions={"/x": "merge"})


def test_open_version_makes_a_private_read_only_copy(
    service: Service, office: Path, snapshot: str, tmp_path: Path
) -> None:
    assert service.cache_dir is not None
    opened = service.cache_dir / "opened"
    old = opened / "copy-old"
    old.mkdir(parents=True)
    (old / "stale.txt").write_text("from the day before yesterday")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    (office / "letters" / "a.txt").write_text("changed since the backup")

    copy = service.open_version("USB", snapshot, str(office / "letters" / "a.txt"))
    assert copy.name == "a.txt" and copy.parent.parent == opened
    assert copy.read_text() == "dear member\n" * 100
    assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
    assert not copy.stat().st_mode & 0o222, "the copy must be read-only"
    assert (office / "letters" / "a.txt").read_text() == "changed since the backup"
    assert not old.exists(), "copies older than a day are removed"

    with pytest.raises(UsageError):
        service.open_version("USB", snapshot, str(office / "letters"))
    entries = _audit(service)
    assert [e.outcome for e in entries] == ["success", "failed"]
    assert entries[0].details["note"] == "opened a copy"
    assert entries[0].details["paths"] == [str(office / "letters" / "a.txt")]
    assert entries[0].details["snapshot"] == snapshot
    assert sorted(p.name for p in opened.iterdir()) == [copy.parent.name]  # the failed one left nothing


def test_catalog_is_shared_and_usable_from_another_thread(
    service: Service, office: Path, snapshot: str
) -> None:
    assert service.cache_dir is not None
    with service.catalog("USB") as catalog:
        assert catalog.path is not None and catalog.path.is_relative_to(service.cache_dir / "repositories")
        assert [s.id for s in catalog.snapshots()] == [snapshot]
        got: list[Any] = []
        t = threading.Thread(target=lambda: got.append(catalog.list_dir(snapshot, str(office / "letters"))))
        t.start()
        t.join()
        assert [e.name for e in got[0]] == ["a.txt", "b.txt"]
    with service.catalog("USB", update=False) as again:  # the index was kept
        assert again.is_indexed(snapshot)


def test_restic_made_repository(service: Service, restic: ResticRunner, tmp_path: Path) -> None:
    source = tmp_path / "shop"
    source.mkdir()
    (source / "stock.csv").write_text("apples,3\n")
    (source / ".profile").write_text("restic made this\n")
    repo = tmp_path / "restic-repo"
    restic(repo, "init", password=PASSWORD)
    restic(repo, "backup", str(source), password=PASSWORD)
    snap_id = restic.json(repo, "snapshots", password=PASSWORD)[0]["id"]
    service.add_destination("Old", str(repo), password=PASSWORD, create=False)

    target = tmp_path / "back"
    base = target / str(source).lstrip("/")
    base.mkdir(parents=True)
    (base / ".profile").write_text("mine")
    run, _ = _restore(service, "Old", snap_id, str(target), conflict="keep-both")
    assert run.outcome is Outcome.SUCCESS, run
    assert (base / "stock.csv").read_text() == "apples,3\n"
    assert (base / ".profile").read_text() == "mine"
    assert _kept(base, ".profile").read_text() == "restic made this\n"
    report = service.restore_report(run.id)
    assert report is not None and report.verified == 2 and report.kept_both == 1

    copy = service.open_version("Old", snap_id, str(source / "stock.csv"))
    assert copy.read_text() == "apples,3\n"
