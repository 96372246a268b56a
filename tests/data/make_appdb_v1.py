"""Writes ``appdb-v1.sqlite``: an app database as the first release (schema version 1) left it.

The migration test opens a copy of the saved file with today's code and checks that every
record survives the upgrade. The rows are written with plain SQL against the version-1 schema
(``0001_initial.sql``, which is never edited once released), not through ``AppDatabase``, which
always writes the newest schema.

Run from the repository root to regenerate (only needed if this script changes)::

    .venv/bin/python tests/data/make_appdb_v1.py
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_V1 = ROOT / "desktop" / "safekeep" / "state" / "migrations" / "0001_initial.sql"
OUTPUT = Path(__file__).resolve().parent / "appdb-v1.sqlite"

T0 = 1767225600.0  # 2026-01-01 00:00:00 UTC


def j(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


DESTINATIONS = [
    # id, name, location, env, secret_env, options, removable, low_space_mib, up, down, created, updated
    (
        "d0usbdisk001",
        "USB disk",
        "/media/office/USB-BACKUP/safekeep",
        j({}),
        j([]),
        j({}),
        1,
        2048,
        None,
        None,
        T0,
        T0,
    ),
    (
        "d0wasabi0002",
        "Wasabi (off-site)",
        "s3:s3.eu-central-1.wasabisys.com/st-marys-backup/office",
        j({"AWS_ACCESS_KEY_ID": "WASABIKEY123", "AWS_DEFAULT_REGION": "eu-central-1"}),
        j(["AWS_SECRET_ACCESS_KEY"]),
        j({"s3.storage-class": "STANDARD"}),
        0,
        None,
        4096,
        None,
        T0 + 60,
        T0 + 120,
    ),
    (
        "d0nas0000003",
        "Office NAS",
        "sftp:backup@nas.office.lan:/volume1/safekeep",
        j({}),
        j(["sftp-password"]),
        j({"sftp.known-hosts": "/home/office/.ssh/known_hosts"}),
        0,
        None,
        None,
        8192,
        T0 + 180,
        T0 + 180,
    ),
]

PLANS = [
    # id, name, sources, excludes, triggers, retention, retry, enabled, created, updated
    (
        "p0documents1",
        "Office documents",
        j(["/home/office/Documents", "/home/office/Église – Gemeinde"]),
        j(["*.tmp", "~$*", "/home/office/Documents/Scratch"]),
        j(
            [
                {"kind": "daily", "params": {"times": ["12:30", "18:00"]}},
                {"kind": "file-change", "params": {"max_delay_seconds": 3600, "quiet_seconds": 120}},
                {"kind": "disk-connected", "params": {}},
            ]
        ),
        j(
            {
                "keep_daily": 7,
                "keep_hourly": 0,
                "keep_last": 3,
                "keep_monthly": 12,
                "keep_weekly": 4,
                "keep_yearly": 2,
            }
        ),
        j({"delays": [300, 900, 3600]}),
        1,
        T0 + 200,
        T0 + 400,
    ),
    (
        "p0accounts02",
        "Accounts database",
        j(["/srv/accounts/ledger.sqlite"]),
        j([]),
        j([{"kind": "weekly", "params": {"times": ["23:00"], "weekdays": [4]}}]),
        j({}),
        j({}),
        0,
        T0 + 500,
        T0 + 500,
    ),
]

PLAN_DESTINATIONS = [
    ("p0documents1", "d0wasabi0002", 0),
    ("p0documents1", "d0usbdisk001", 1),
    ("p0accounts02", "d0nas0000003", 0),
]

DAY = 86400.0
RUNS = [
    # id, plan_id, kind, reason, started, finished, outcome, worker_pid, worker_host
    (
        "r00000000001",
        "p0documents1",
        "backup",
        "schedule",
        T0 + DAY,
        T0 + DAY + 95.5,
        "success",
        4242,
        "office-pc",
    ),
    (
        "r00000000002",
        "p0documents1",
        "backup",
        "change",
        T0 + 2 * DAY,
        T0 + 2 * DAY + 61.25,
        "warning",
        4300,
        "office-pc",
    ),
    (
        "r00000000003",
        "p0documents1",
        "backup",
        "manual",
        T0 + 3 * DAY,
        T0 + 3 * DAY + 300.0,
        "failed",
        4400,
        "office-pc",
    ),
    (
        "r00000000004",
        "p0accounts02",
        "check",
        "manual",
        T0 + 3 * DAY + 600,
        T0 + 3 * DAY + 660,
        "success",
        4500,
        "office-pc",
    ),
    (
        "r00000000005",
        "p0documents1",
        "backup",
        "retry",
        T0 + 3 * DAY + 900,
        None,
        "running",
        4600,
        "office-pc",
    ),
]

RESULTS = [
    # run_id, destination_id, outcome, snapshot_id, files, bytes, bytes_added, error, skipped_omitted,
    # started, finished
    (
        "r00000000001",
        "d0wasabi0002",
        "success",
        "a1" * 32,
        1200,
        734003200,
        734003200,
        "",
        0,
        T0 + DAY,
        T0 + DAY + 90,
    ),
    (
        "r00000000001",
        "d0usbdisk001",
        "success",
        "b2" * 32,
        1200,
        734003200,
        734003200,
        "",
        0,
        T0 + DAY,
        T0 + DAY + 95.5,
    ),
    (
        "r00000000002",
        "d0wasabi0002",
        "warning",
        "c3" * 32,
        1203,
        734100000,
        96800,
        "",
        0,
        T0 + 2 * DAY,
        T0 + 2 * DAY + 61.25,
    ),
    (
        "r00000000002",
        "d0usbdisk001",
        "warning",
        "d4" * 32,
        1203,
        734100000,
        96800,
        "",
        12500,
        T0 + 2 * DAY,
        T0 + 2 * DAY + 58,
    ),
    (
        "r00000000003",
        "d0wasabi0002",
        "failed",
        "",
        0,
        0,
        0,
        "Could not connect to s3.eu-central-1.wasabisys.com: timed out",
        0,
        T0 + 3 * DAY,
        T0 + 3 * DAY + 300,
    ),
    (
        "r00000000003",
        "d0usbdisk001",
        "success",
        "e5" * 32,
        1204,
        734200000,
        100000,
        "",
        0,
        T0 + 3 * DAY,
        T0 + 3 * DAY + 40,
    ),
    ("r00000000004", "d0nas0000003", "success", "", 0, 0, 0, "", 0, T0 + 3 * DAY + 600, T0 + 3 * DAY + 660),
    ("r00000000005", "d0wasabi0002", "running", "", 10, 4096, 4096, "", 0, T0 + 3 * DAY + 900, None),
]

SKIPPED = [
    # run_id, destination_id, seq, path, reason
    (
        "r00000000002",
        "d0wasabi0002",
        0,
        "/home/office/Documents/Budget 2026.xlsx",
        "file is locked by another program",
    ),
    ("r00000000002", "d0wasabi0002", 1, "/home/office/Église – Gemeinde/Grüße.docx", "permission denied"),
    (
        "r00000000002",
        "d0usbdisk001",
        0,
        "/home/office/Documents/Budget 2026.xlsx",
        "file is locked by another program",
    ),
]

SETTINGS = [
    ("ui.language", j("de")),
    ("notify.desktop", j(True)),
    ("network.metered", j({"pause_on_metered": True, "upload_limit_kib": 512})),
    ("first_run_done", j(True)),
]


def build(path: Path) -> None:
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA page_size = 1024")  # a small file in the repository
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN")  # the schema goes through execute() to stay in this transaction
        buf = ""
        for line in SCHEMA_V1.read_text("utf-8").splitlines(keepends=True):
            buf += line
            if line.rstrip().endswith(";") and sqlite3.complete_statement(buf):
                conn.execute(buf)
                buf = ""
        conn.executemany("INSERT INTO destinations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", DESTINATIONS)
        conn.executemany("INSERT INTO plans VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", PLANS)
        conn.executemany("INSERT INTO plan_destinations VALUES (?, ?, ?)", PLAN_DESTINATIONS)
        conn.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", RUNS)
        conn.executemany("INSERT INTO run_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", RESULTS)
        conn.executemany("INSERT INTO skipped_files VALUES (?, ?, ?, ?, ?)", SKIPPED)
        conn.executemany("INSERT INTO settings VALUES (?, ?)", SETTINGS)
        conn.execute("PRAGMA user_version = 1")
        conn.execute("COMMIT")
        problems = conn.execute("PRAGMA foreign_key_check").fetchall()
        if problems:
            raise SystemExit(f"foreign key problems: {problems}")
        conn.execute("VACUUM")
    finally:
        conn.close()


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT
    build(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
