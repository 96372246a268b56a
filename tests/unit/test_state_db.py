"""The app database: records round-trip, the rules it enforces, history, migrations' safety nets
and sharing between connections. Real SQLite files in a temp dir; time is a FakeClock."""

from __future__ import annotations

import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from safekeep.common.clock import FakeClock
from safekeep.state import db as dbmod
from safekeep.state import paths
from safekeep.state.db import (
    AppDatabase,
    DatabaseBusy,
    DatabaseTooNew,
    DatabaseUnreadable,
    DestinationInUse,
    DestinationNotFound,
    DuplicatePlanName,
    Migration,
    MigrationFailed,
    PlanNotFound,
    RunNotFound,
    backup_path,
    latest_version,
    split_statements,
)
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


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def db(tmp_path: Path, clock: FakeClock) -> Iterator[AppDatabase]:
    with AppDatabase.open(tmp_path / "app.sqlite3", clock=clock) as d:
        yield d


def dest(i: int = 1, **kw: object) -> Destination:
    base: dict[str, object] = {"id": f"d{i}", "name": f"Destination {i}", "location": f"/backup/{i}"}
    base.update(kw)
    return Destination(**base)  # type: ignore[arg-type]


def plan(i: int = 1, dests: tuple[str, ...] = ("d1",), **kw: object) -> Plan:
    base: dict[str, object] = {
        "id": f"p{i}",
        "name": f"Plan {i}",
        "sources": (f"/home/office/{i}",),
        "destination_ids": dests,
    }
    base.update(kw)
    return Plan(**base)  # type: ignore[arg-type]


def run(i: int, plan_id: str = "p1", started: float = 1000.0, **kw: object) -> Run:
    base: dict[str, object] = {
        "id": f"r{i}",
        "plan_id": plan_id,
        "kind": "backup",
        "reason": Reason.SCHEDULE,
        "reason_text": "",
        "started": started,
        "outcome": Outcome.RUNNING,
    }
    base.update(kw)
    return Run(**base)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Opening


def test_new_database_is_current_wal_private_and_without_copies(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "app.sqlite3"
    with AppDatabase.open(path) as d:
        assert d.schema_version == latest_version() == 2
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(tmp_path.glob("sub/*.bak"))
    with AppDatabase.open(path) as d:  # reopening changes nothing
        assert d.schema_version == 2
    assert not list(tmp_path.glob("sub/*.bak"))


def test_default_path_follows_safekeep_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(paths.ENV_HOME, str(tmp_path / "portable"))
    with AppDatabase.open() as d:
        assert d.path == tmp_path / "portable" / "data" / paths.DATABASE_NAME
    assert paths.config_dir() == tmp_path / "portable" / "config"
    assert paths.cache_dir() == tmp_path / "portable" / "cache"
    assert paths.log_dir() == tmp_path / "portable" / "logs"


def test_foreign_keys_are_on(db: AppDatabase) -> None:
    conn = db._connection()
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_newer_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.sqlite3"
    AppDatabase.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = DELETE")  # as a future Safekeep might leave it
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(DatabaseTooNew) as err:
        AppDatabase.open(path)
    assert "Update Safekeep" in err.value.hint
    assert err.value.version == 99
    assert path.read_bytes() == before
    assert not Path(str(path) + "-wal").exists()


def test_garbage_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "app.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DatabaseUnreadable) as err:
        AppDatabase.open(path)
    assert "backups are safe" in err.value.hint


def test_someone_elses_database_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(DatabaseUnreadable):
        AppDatabase.open(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("invoices",)]
    conn.close()


def test_split_statements_handles_comments_and_semicolons_in_text() -> None:
    script = (
        "-- a comment; with a semicolon\nCREATE TABLE t (a TEXT DEFAULT ';');\n\n"
        "INSERT INTO t VALUES ('x;\ny');\n-- end\n"
    )
    assert split_statements(script) == [
        "-- a comment; with a semicolon\nCREATE TABLE t (a TEXT DEFAULT ';');",
        "INSERT INTO t VALUES ('x;\ny');",
    ]
    with pytest.raises(ValueError):
        split_statements("CREATE TABLE t (a)\n")


# ---------------------------------------------------------------------------------------------
# Migrations: the copy before, all-or-nothing


def _with_extra_migration(monkeypatch: pytest.MonkeyPatch, *statements: str) -> None:
    shipped = dbmod.migrations()
    extra = Migration(len(shipped) + 1, "test", tuple(statements))
    monkeypatch.setattr(dbmod, "migrations", lambda: (*shipped, extra))


def test_copy_before_migration_includes_wal_content(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "app.sqlite3"
    holder = AppDatabase.open(path, clock=clock)  # keeps the WAL from being checkpointed away
    holder.save_destination(dest(1))
    holder.set_setting("ui.language", "fr")
    assert Path(str(path) + "-wal").stat().st_size > 0
    _with_extra_migration(monkeypatch, "CREATE TABLE extra (x INTEGER);")
    with AppDatabase.open(path, clock=clock) as upgraded:
        assert upgraded.schema_version == 3
        assert upgraded.destination("d1") == dest(1)
    holder.close()
    copy = backup_path(path, 3)
    assert copy.name == "app.sqlite3.before-v3.bak"
    conn = sqlite3.connect(copy)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    assert conn.execute("SELECT name FROM destinations").fetchall() == [("Destination 1",)]
    assert conn.execute("SELECT value FROM settings WHERE key = 'ui.language'").fetchone() == ('"fr"',)
    conn.close()


def test_failed_migration_leaves_database_as_it_was(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "app.sqlite3"
    with AppDatabase.open(path, clock=clock) as d:
        d.save_destination(dest(1))
    _with_extra_migration(
        monkeypatch,
        "CREATE TABLE half_done (x INTEGER);",
        "ALTER TABLE destinations ADD COLUMN name TEXT;",  # fails: the column exists
    )
    with pytest.raises(MigrationFailed) as err:
        AppDatabase.open(path, clock=clock)
    assert "before-v3.bak" in err.value.hint
    monkeypatch.undo()
    with AppDatabase.open(path, clock=clock) as d:
        assert d.schema_version == 2
        assert d.destinations() == [dest(1)]
        tables = {r[0] for r in d._connection().execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "half_done" not in tables


# ---------------------------------------------------------------------------------------------
# Destinations and plans


def test_destination_round_trip_update_and_order(db: AppDatabase) -> None:
    full = Destination(
        id="d1",
        name="Wasabi",
        location="s3:s3.wasabisys.com/bucket/prefix",
        env={"AWS_ACCESS_KEY_ID": "AKIA", "AWS_DEFAULT_REGION": "eu-central-1"},
        secret_env=("AWS_SECRET_ACCESS_KEY",),
        options={"s3.storage-class": "STANDARD_IA"},
        removable=False,
        low_space_mib=512,
        upload_limit_kib=1024,
        download_limit_kib=None,
    )
    assert db.save_destination(full) == full
    assert db.destination("d1") == full
    db.save_destination(dest(2, name="a USB disk", removable=True))
    renamed = Destination(id="d1", name="Zürich S3", location=full.location)
    db.save_destination(renamed)
    assert db.destination("d1") == renamed
    assert [d.name for d in db.destinations()] == ["a USB disk", "Zürich S3"]
    assert db.destination("nope") is None


def test_plan_round_trip(db: AppDatabase) -> None:
    db.save_destination(dest(1))
    db.save_destination(dest(2))
    p = Plan(
        id="p1",
        name="Office documents",
        sources=("/home/office/Documents", "/srv/Église"),
        destination_ids=("d2", "d1"),
        excludes=("*.tmp", "~$*"),
        triggers=(
            Trigger("daily", {"times": ["12:30"]}),
            Trigger("file-change", {"quiet_seconds": 60, "max_delay_seconds": 600}),
        ),
        retention=Retention(keep_last=3, keep_daily=7),
        retry=RetryPolicy(delays=(60, 600)),
        enabled=False,
    )
    assert db.save_plan(p) == p
    assert db.plan("p1") == p
    assert db.plans() == [p]
    assert db.plan_by_name("OFFICE documents") == p
    assert db.find_plan("p1") == p
    assert db.find_plan(" office DOCUMENTS ") == p
    assert db.find_plan("nothing") is None
    changed = p.with_changes(destination_ids=("d1",), name="Documents")
    db.save_plan(changed)
    assert db.plan("p1") == changed


def test_plan_rules(db: AppDatabase) -> None:
    db.save_destination(dest(1))
    db.save_plan(plan(1, name="Documents"))
    with pytest.raises(DuplicatePlanName) as dup:
        db.save_plan(plan(2, name="documents"))
    assert "documents" in dup.value.message
    db.save_plan(plan(1, name="DOCUMENTS"))  # renaming itself is fine
    with pytest.raises(DestinationNotFound) as unknown:
        db.save_plan(plan(3, dests=("d1", "d9")))
    assert unknown.value.destination_ids == ("d9",)
    assert db.plan("p3") is None  # nothing half-saved
    stored = db.save_plan(plan(4, dests=("d1", "d1")))
    assert stored.destination_ids == ("d1",) == db.plan("p4").destination_ids  # type: ignore[union-attr]


def test_destination_in_use_cannot_be_removed(db: AppDatabase) -> None:
    db.save_destination(dest(1, name="USB disk"))
    db.save_destination(dest(2))
    db.save_plan(plan(1, dests=("d1", "d2"), name="Documents"))
    db.save_plan(plan(2, dests=("d1",), name="Accounts"))
    with pytest.raises(DestinationInUse) as err:
        db.remove_destination("d1")
    assert err.value.plan_names == ("Accounts", "Documents")
    assert "USB disk" in err.value.message and "Accounts, Documents" in err.value.message
    assert db.destination("d1") is not None
    assert db.remove_plan("p2") is True
    db.save_plan(plan(1, dests=("d2",), name="Documents"))
    assert db.remove_destination("d1") is True
    assert db.remove_destination("d1") is False


def test_removing_a_plan_keeps_its_history(db: AppDatabase) -> None:
    db.save_destination(dest(1))
    db.save_plan(plan(1))
    db.add_run(run(1))
    db.set_scheduler_state(SchedulerState("p1", last_scheduled=5.0))
    db.remove_plan("p1")
    assert db.run("r1") is not None
    assert db.scheduler_state("p1") == SchedulerState("p1")  # forgotten with the plan
    assert db.remove_plan("p1") is False


# ---------------------------------------------------------------------------------------------
# Runs


def test_run_lifecycle(db: AppDatabase, clock: FakeClock) -> None:
    r = run(1, reason=Reason.CHANGE, reason_text="files changed in Documents", outcome=Outcome.QUEUED)
    db.add_run(r)
    assert db.run("r1") == r
    db.update_run_outcome("r1", Outcome.RUNNING)
    ok = DestinationResult(
        "d1",
        Outcome.SUCCESS,
        snapshot_id="ab" * 32,
        files=10,
        bytes=2048,
        bytes_added=1024,
        started=1.0,
        finished=2.0,
    )
    warn = DestinationResult(
        "d2",
        Outcome.WARNING,
        snapshot_id="cd" * 32,
        files=9,
        skipped=(SkippedFile("/a/locked.xlsx", "locked"), SkippedFile("/a/Grüße.txt", "permission denied")),
    )
    db.set_result("r1", DestinationResult("d1", Outcome.RUNNING))
    db.set_result("r1", ok)  # replaces the running one
    db.set_result("r1", warn)
    db.finish_run("r1", Outcome.WARNING, 1234.5)
    got = db.run("r1")
    assert got is not None
    assert got.outcome is Outcome.WARNING and got.finished == 1234.5
    assert got.results == (ok, warn)
    assert got.reason_text == "files changed in Documents"
    assert db.run("nope") is None
    with pytest.raises(RunNotFound):
        db.set_result("nope", ok)
    with pytest.raises(RunNotFound):
        db.finish_run("nope", Outcome.FAILED)


def test_finishing_failed_marks_unfinished_results(db: AppDatabase, clock: FakeClock) -> None:
    db.add_run(run(1))
    db.set_result("r1", DestinationResult("d1", Outcome.SUCCESS, finished=3.0))
    db.set_result("r1", DestinationResult("d2", Outcome.RUNNING))
    db.finish_run("r1", Outcome.CANCELLED)
    got = db.run("r1")
    assert got is not None
    assert got.finished == clock.now().timestamp()
    assert [(r.outcome, r.finished) for r in got.results] == [
        (Outcome.SUCCESS, 3.0),
        (Outcome.CANCELLED, clock.now().timestamp()),
    ]


def test_skipped_files_are_capped_and_counted(db: AppDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dbmod, "SKIPPED_FILES_CAP", 5)
    skipped = tuple(SkippedFile(f"/f/{i}", "unreadable") for i in range(12))
    db.add_run(run(1))
    db.set_result("r1", DestinationResult("d1", Outcome.WARNING, skipped=skipped, skipped_omitted=100))
    got = db.run("r1")
    assert got is not None
    result = got.results[0]
    assert result.skipped == skipped[:5]
    assert result.skipped_omitted == 107
    assert result.skipped_count == 112
    light = db.runs(with_skipped=False)[0].results[0]
    assert light.skipped == () and light.skipped_count == 112


def test_runs_newest_first_with_filters(db: AppDatabase) -> None:
    db.add_run(run(1, "p1", 100.0))
    db.add_run(run(2, "p2", 300.0))
    db.add_run(run(3, "p1", 200.0, kind="check"))
    db.add_run(run(4, "p1", 400.0))
    assert [r.id for r in db.runs()] == ["r4", "r2", "r3", "r1"]
    assert [r.id for r in db.runs(limit=2)] == ["r4", "r2"]
    assert [r.id for r in db.runs(plan_id="p1")] == ["r4", "r3", "r1"]
    assert [r.id for r in db.runs(plan_id="p1", kind="backup")] == ["r4", "r1"]
    assert db.runs(plan_id="nobody") == []


def test_last_success(db: AppDatabase) -> None:
    assert db.last_success("p1") is None
    db.add_run(run(1, started=100.0))
    db.set_result("r1", DestinationResult("d1", Outcome.SUCCESS, finished=150.0))
    db.set_result("r1", DestinationResult("d2", Outcome.SUCCESS, finished=160.0))
    db.finish_run("r1", Outcome.SUCCESS, 160.0)
    db.add_run(run(2, started=200.0))
    db.set_result("r2", DestinationResult("d1", Outcome.WARNING, finished=250.0))
    db.set_result("r2", DestinationResult("d2", Outcome.FAILED, finished=260.0))
    db.finish_run("r2", Outcome.FAILED, 260.0)
    db.add_run(run(3, started=300.0, kind="check"))
    db.finish_run("r3", Outcome.SUCCESS, 310.0)
    db.add_run(run(4, started=400.0))  # still running
    assert db.last_success("p1") == 160.0
    assert db.last_success("p1", "d1") == 250.0  # a warning still made a snapshot
    assert db.last_success("p1", "d2") == 160.0
    assert db.last_success("p1", "d3") is None


def test_interrupt_unfinished(db: AppDatabase, clock: FakeClock) -> None:
    db.add_run(run(1), worker_pid=111)
    db.set_result("r1", DestinationResult("d1", Outcome.SUCCESS, finished=5.0))
    db.set_result("r1", DestinationResult("d2", Outcome.RUNNING))
    db.add_run(run(2), worker_pid=222)
    db.add_run(run(3, outcome=Outcome.QUEUED), worker_pid=333)
    db.add_run(run(4), worker_pid=444)
    db.set_worker("r4", 444, host="another-computer")
    db.add_run(run(5, outcome=Outcome.SUCCESS, finished=9.0), worker_pid=555)
    db.set_worker("r2", 2222)
    alive = {2222}
    clock.advance(60)
    assert db.interrupt_unfinished(lambda pid: pid in alive) == ["r1", "r3"]
    r1 = db.run("r1")
    assert r1 is not None and r1.outcome is Outcome.INTERRUPTED and r1.finished == clock.now().timestamp()
    assert [r.outcome for r in r1.results] == [Outcome.SUCCESS, Outcome.INTERRUPTED]
    assert db.run("r2").outcome is Outcome.RUNNING  # type: ignore[union-attr]
    assert db.run("r4").outcome is Outcome.RUNNING  # type: ignore[union-attr]
    assert db.run("r5").outcome is Outcome.SUCCESS  # type: ignore[union-attr]
    assert db.interrupt_unfinished(lambda pid: pid in alive) == []
    with pytest.raises(RunNotFound):
        db.set_worker("nope", 1)


def test_interrupt_unfinished_asks_the_system_by_default(db: AppDatabase) -> None:
    db.add_run(run(1))  # this process: alive
    assert db.interrupt_unfinished() == []
    assert db.run("r1").outcome is Outcome.RUNNING  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------
# Settings, channels, scheduler state


def test_settings(db: AppDatabase) -> None:
    assert db.get_setting("missing") is None
    assert db.get_setting("missing", {"a": 1}) == {"a": 1}
    values = {"s": "Grüße", "i": 3, "f": 1.5, "b": False, "l": [1, "x"], "d": {"k": None}, "n": None}
    for k, v in values.items():
        db.set_setting(k, v)
    assert {k: db.get_setting(k, "default") for k in values} == values
    db.set_setting("i", 4)
    assert db.get_setting("i") == 4
    assert db.settings() == {**values, "i": 4}
    db.delete_setting("i")
    assert db.get_setting("i", "gone") == "gone"
    with pytest.raises(TypeError):
        db.set_setting("bad", object())


def test_notification_channels(db: AppDatabase) -> None:
    email = NotificationChannel(
        "c1",
        "Office manager",
        ChannelKind.EMAIL,
        config={"to": ["office@example.org"], "smtp_host": "127.0.0.1", "password_secret": "smtp-password"},
        events=("failure", "missed"),
    )
    hook = NotificationChannel(
        "c2", "Chat", ChannelKind.WEBHOOK, {"url": "http://127.0.0.1/h"}, ("failure",), False
    )
    db.save_notification_channel(email)
    db.save_notification_channel(hook)
    assert db.notification_channels() == [hook, email]
    assert db.notification_channel("c1") == email
    db.save_notification_channel(NotificationChannel("c1", "Desk", ChannelKind.DESKTOP))
    assert db.notification_channel("c1") == NotificationChannel("c1", "Desk", ChannelKind.DESKTOP)
    assert db.remove_notification_channel("c1") is True
    assert db.remove_notification_channel("c1") is False
    assert db.notification_channel("c1") is None


def test_scheduler_state(db: AppDatabase) -> None:
    db.save_destination(dest(1))
    db.save_plan(plan(1))
    assert db.scheduler_state("p1") == SchedulerState("p1")
    s = SchedulerState("p1", last_scheduled=1000.0, paused_until=2000.5, retry_attempt=2, next_retry=1900.0)
    db.set_scheduler_state(s)
    assert db.scheduler_state("p1") == s
    assert db.scheduler_states() == [s]
    with pytest.raises(PlanNotFound):
        db.set_scheduler_state(SchedulerState("nope"))


# ---------------------------------------------------------------------------------------------
# Sharing: threads, other connections, a writer that holds the lock


def test_many_threads_one_database(db: AppDatabase) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(20):
                db.add_run(run(t * 100 + i, started=float(i)))
                db.set_setting(f"t{t}", i)
                db.runs(limit=5)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(db.runs(limit=1000)) == 80
    assert all(db.get_setting(f"t{t}") == 19 for t in range(4))


def test_two_connections_see_each_others_writes(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "app.sqlite3"
    with AppDatabase.open(path, clock=clock) as gui, AppDatabase.open(path, clock=clock) as worker:
        gui.add_run(run(1))
        worker.set_result("r1", DestinationResult("d1", Outcome.SUCCESS))
        worker.finish_run("r1", Outcome.SUCCESS, 5.0)
        got = gui.run("r1")
        assert got is not None and got.outcome is Outcome.SUCCESS and len(got.results) == 1


def test_a_held_write_lock_is_a_busy_error_not_a_hang(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "app.sqlite3"
    with AppDatabase.open(path, clock=clock, busy_timeout=0) as d:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            assert d.get_setting("x", 1) == 1  # readers are not blocked (WAL)
            with pytest.raises(DatabaseBusy) as err:
                d.set_setting("x", 2)
            assert "Try again" in err.value.hint
        finally:
            other.execute("ROLLBACK")
            other.close()
        d.set_setting("x", 2)
        assert d.get_setting("x") == 2
