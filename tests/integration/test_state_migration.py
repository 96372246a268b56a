"""A database saved by the first release (schema version 1, ``tests/data/appdb-v1.sqlite``, made
by ``tests/data/make_appdb_v1.py``) opens with today's code: a copy is kept, nothing is lost, and
the new features work on it. Also several processes opening the old file at once."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from safekeep.common.clock import FakeClock
from safekeep.state.db import AppDatabase, backup_path, latest_version
from safekeep.state.model import (
    ChannelKind,
    Destination,
    DestinationResult,
    NotificationChannel,
    Outcome,
    Plan,
    Reason,
    Retention,
    RetryPolicy,
    Run,
    SchedulerState,
    SkippedFile,
    Trigger,
)

SAVED_V1 = Path(__file__).resolve().parents[1] / "data" / "appdb-v1.sqlite"
T0 = 1767225600.0
DAY = 86400.0

DESTINATIONS = [
    Destination(
        id="d0nas0000003",
        name="Office NAS",
        location="sftp:backup@nas.office.lan:/volume1/safekeep",
        secret_env=("sftp-password",),
        options={"sftp.known-hosts": "/home/office/.ssh/known_hosts"},
        download_limit_kib=8192,
    ),
    Destination(
        id="d0usbdisk001",
        name="USB disk",
        location="/media/office/USB-BACKUP/safekeep",
        removable=True,
        low_space_mib=2048,
    ),
    Destination(
        id="d0wasabi0002",
        name="Wasabi (off-site)",
        location="s3:s3.eu-central-1.wasabisys.com/st-marys-backup/office",
        env={"AWS_ACCESS_KEY_ID": "WASABIKEY123", "AWS_DEFAULT_REGION": "eu-central-1"},
        secret_env=("AWS_SECRET_ACCESS_KEY",),
        options={"s3.storage-class": "STANDARD"},
        upload_limit_kib=4096,
    ),
]

PLANS = [
    Plan(
        id="p0accounts02",
        name="Accounts database",
        sources=("/srv/accounts/ledger.sqlite",),
        destination_ids=("d0nas0000003",),
        triggers=(Trigger("weekly", {"times": ["23:00"], "weekdays": [4]}),),
        retention=Retention(),
        retry=RetryPolicy(),
        enabled=False,
    ),
    Plan(
        id="p0documents1",
        name="Office documents",
        sources=("/home/office/Documents", "/home/office/Église – Gemeinde"),
        destination_ids=("d0wasabi0002", "d0usbdisk001"),
        excludes=("*.tmp", "~$*", "/home/office/Documents/Scratch"),
        triggers=(
            Trigger("daily", {"times": ["12:30", "18:00"]}),
            Trigger("file-change", {"max_delay_seconds": 3600, "quiet_seconds": 120}),
            Trigger("disk-connected", {}),
        ),
        retention=Retention(keep_last=3, keep_daily=7, keep_weekly=4, keep_monthly=12, keep_yearly=2),
        retry=RetryPolicy(delays=(300, 900, 3600)),
    ),
]

LOCKED = "file is locked by another program"
RUNS = {
    "r00000000001": Run(
        id="r00000000001",
        plan_id="p0documents1",
        kind="backup",
        reason=Reason.SCHEDULE,
        reason_text="",
        started=T0 + DAY,
        finished=T0 + DAY + 95.5,
        outcome=Outcome.SUCCESS,
        results=(
            DestinationResult(
                "d0wasabi0002",
                Outcome.SUCCESS,
                "a1" * 32,
                1200,
                734003200,
                734003200,
                "",
                (),
                T0 + DAY,
                T0 + DAY + 90,
            ),
            DestinationResult(
                "d0usbdisk001",
                Outcome.SUCCESS,
                "b2" * 32,
                1200,
                734003200,
                734003200,
                "",
                (),
                T0 + DAY,
                T0 + DAY + 95.5,
            ),
        ),
    ),
    "r00000000002": Run(
        id="r00000000002",
        plan_id="p0documents1",
        kind="backup",
        reason=Reason.CHANGE,
        reason_text="",
        started=T0 + 2 * DAY,
        finished=T0 + 2 * DAY + 61.25,
        outcome=Outcome.WARNING,
        results=(
            DestinationResult(
                "d0wasabi0002",
                Outcome.WARNING,
                "c3" * 32,
                1203,
                734100000,
                96800,
                "",
                (
                    SkippedFile("/home/office/Documents/Budget 2026.xlsx", LOCKED),
                    SkippedFile("/home/office/Église – Gemeinde/Grüße.docx", "permission denied"),
                ),
                T0 + 2 * DAY,
                T0 + 2 * DAY + 61.25,
            ),
            DestinationResult(
                "d0usbdisk001",
                Outcome.WARNING,
                "d4" * 32,
                1203,
                734100000,
                96800,
                "",
                (SkippedFile("/home/office/Documents/Budget 2026.xlsx", LOCKED),),
                T0 + 2 * DAY,
                T0 + 2 * DAY + 58,
                skipped_omitted=12500,
            ),
        ),
    ),
    "r00000000003": Run(
        id="r00000000003",
        plan_id="p0documents1",
        kind="backup",
        reason=Reason.MANUAL,
        reason_text="",
        started=T0 + 3 * DAY,
        finished=T0 + 3 * DAY + 300,
        outcome=Outcome.FAILED,
        results=(
            DestinationResult(
                "d0wasabi0002",
                Outcome.FAILED,
                error="Could not connect to s3.eu-central-1.wasabisys.com: timed out",
                started=T0 + 3 * DAY,
                finished=T0 + 3 * DAY + 300,
            ),
            DestinationResult(
                "d0usbdisk001",
                Outcome.SUCCESS,
                "e5" * 32,
                1204,
                734200000,
                100000,
                started=T0 + 3 * DAY,
                finished=T0 + 3 * DAY + 40,
            ),
        ),
    ),
    "r00000000004": Run(
        id="r00000000004",
        plan_id="p0accounts02",
        kind="check",
        reason=Reason.MANUAL,
        reason_text="",
        started=T0 + 3 * DAY + 600,
        finished=T0 + 3 * DAY + 660,
        outcome=Outcome.SUCCESS,
        results=(
            DestinationResult(
                "d0nas0000003", Outcome.SUCCESS, started=T0 + 3 * DAY + 600, finished=T0 + 3 * DAY + 660
            ),
        ),
    ),
    "r00000000005": Run(
        id="r00000000005",
        plan_id="p0documents1",
        kind="backup",
        reason=Reason.RETRY,
        reason_text="",
        started=T0 + 3 * DAY + 900,
        finished=None,
        outcome=Outcome.RUNNING,
        results=(
            DestinationResult(
                "d0wasabi0002",
                Outcome.RUNNING,
                files=10,
                bytes=4096,
                bytes_added=4096,
                started=T0 + 3 * DAY + 900,
            ),
        ),
    ),
}

SETTINGS = {
    "ui.language": "de",
    "notify.desktop": True,
    "network.metered": {"pause_on_metered": True, "upload_limit_kib": 512},
    "first_run_done": True,
}


def _table_contents(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    try:
        tables = [
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        ]
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in tables}
    finally:
        conn.close()


@pytest.fixture()
def old_db(tmp_path: Path) -> Path:
    assert SAVED_V1.exists(), "tests/data/appdb-v1.sqlite is missing: run tests/data/make_appdb_v1.py"
    path = tmp_path / "safekeep.sqlite3"
    shutil.copyfile(SAVED_V1, path)
    return path


def test_saved_v1_database_is_really_version_1() -> None:
    conn = sqlite3.connect(f"file:{SAVED_V1}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        columns = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
        assert "reason_text" not in columns
    finally:
        conn.close()


def test_v1_database_migrates_without_losing_anything(old_db: Path) -> None:
    original = _table_contents(old_db)
    clock = FakeClock()
    with AppDatabase.open(old_db, clock=clock) as db:
        assert db.schema_version == latest_version() == 2

        # the copy taken before the migration is the untouched version-1 database
        copy = backup_path(old_db, 2)
        assert copy.exists() and copy.name == "safekeep.sqlite3.before-v2.bak"
        assert _table_contents(copy) == original
        conn = sqlite3.connect(copy)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        conn.close()

        # every record reads back intact
        assert db.destinations() == DESTINATIONS
        assert db.plans() == PLANS
        assert db.find_plan("office DOCUMENTS") == PLANS[1]
        for run_id, expected in RUNS.items():
            assert db.run(run_id) == expected, run_id
        assert [r.id for r in db.runs()] == sorted(RUNS, reverse=True)
        assert [r.id for r in db.runs(plan_id="p0documents1", kind="backup", limit=2)] == [
            "r00000000005",
            "r00000000003",
        ]
        assert db.settings() == SETTINGS
        assert db.last_success("p0documents1") == T0 + 2 * DAY + 61.25
        assert db.last_success("p0documents1", "d0usbdisk001") == T0 + 3 * DAY + 40

        # the rules still hold on old data
        with pytest.raises(Exception, match="still used by"):
            db.remove_destination("d0usbdisk001")
        # a run recorded on another computer ("office-pc") is not judged from here
        assert db.interrupt_unfinished(lambda pid: False) == []

        # and what version 2 added works on the upgraded database
        db.set_scheduler_state(SchedulerState("p0documents1", last_scheduled=T0 + 3 * DAY, retry_attempt=1))
        db.save_notification_channel(NotificationChannel("c1", "Admin", ChannelKind.EMAIL, {"to": ["a@b.c"]}))
        new_run = Run(
            "r6",
            "p0documents1",
            "backup",
            Reason.CHANGE,
            "files changed in Documents",
            T0 + 4 * DAY,
            Outcome.RUNNING,
        )
        db.add_run(new_run)
        assert db.run("r6") == new_run
        assert db.scheduler_state("p0documents1").retry_attempt == 1

    # reopening the upgraded database migrates nothing more
    with AppDatabase.open(old_db, clock=clock) as db:
        assert db.schema_version == 2
        assert db.run("r00000000002") == RUNS["r00000000002"]
    assert sorted(p.name for p in old_db.parent.glob("*.bak")) == ["safekeep.sqlite3.before-v2.bak"]


def test_several_processes_open_the_old_database_at_once(old_db: Path) -> None:
    """The GUI, the daemon and a CLI command starting together after an update: one of them
    migrates, the others wait for it, and all of them work."""
    child = textwrap.dedent(
        """
        import sys, time
        from safekeep.state.db import AppDatabase
        from safekeep.state.model import Outcome, Reason, Run
        path, n, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
        while time.time() < start:
            time.sleep(0.005)
        with AppDatabase.open(path) as db:
            db.add_run(Run("child-" + n, "p0documents1", "backup", Reason.EXTERNAL, "", 1.0, Outcome.QUEUED))
            print(db.schema_version)
        """
    )
    start = time.time() + 1.0  # a common starting line, so the opens really overlap
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", child, str(old_db), str(i), str(start)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == "2"
    with AppDatabase.open(old_db) as db:
        assert {r.id for r in db.runs(limit=100)} == {*RUNS, "child-0", "child-1", "child-2"}
        assert db.plans() == PLANS
    assert [p.name for p in old_db.parent.glob("*.bak")] == ["safekeep.sqlite3.before-v2.bak"]
