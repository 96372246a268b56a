"""The app database: destinations, plans, run history, settings, notification channels and the
scheduler's memory, in one SQLite file in the platform's data folder (:mod:`safekeep.state.paths`).

Several processes open it at once — the GUI, the daemon, CLI commands and job workers — so it runs
in WAL mode (readers never wait for the writer) with a busy timeout, and every write is one short
``BEGIN IMMEDIATE`` transaction. Inside a process one connection is shared by all threads under a
lock. Foreign keys are on.

**Schema versions.** ``PRAGMA user_version`` is the schema version; the numbered SQL files in
:mod:`safekeep.state.migrations` move a database up one version each. Opening an older database
first copies it, with SQLite's backup API (so WAL content is included), to
``<db>.before-v<N>.bak`` and then applies migration ``N`` in one transaction; a failed migration
leaves the database as it was. A database written by a newer Safekeep is refused with
:class:`DatabaseTooNew` rather than touched.

**What is stored how.** Things that are looked up or sorted (ids, names, times, outcomes) are
columns; opaque values (triggers, retention, provider env and options, channel config) are JSON.
No secret is ever stored here: destinations name their secrets, the keyring
(:mod:`safekeep.state.secrets`) holds them. Times are Unix seconds (floats) from the injected
:class:`~safekeep.common.clock.Clock`.

**History outlives set-up.** Runs keep their plan and destination ids after the plan or
destination is removed; a destination that a plan still uses cannot be removed
(:class:`DestinationInUse`).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import logging
import os
import re
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from safekeep.common.clock import SYSTEM_CLOCK, Clock
from safekeep.common.errors import SafekeepError
from safekeep.core.locks import pid_alive
from safekeep.state import paths
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

log = logging.getLogger(__name__)

SKIPPED_FILES_CAP = 10_000
"""At most this many skipped files are stored per destination result; the rest are counted."""

BUSY_TIMEOUT_SECONDS = 15.0
"""How long a statement waits for another process's write to finish before giving up."""

_UNFINISHED = (Outcome.RUNNING.value, Outcome.QUEUED.value)
_SUCCESSFUL = (Outcome.SUCCESS.value, Outcome.WARNING.value)

_HINT_RETRY = "Try again in a moment. If it keeps happening, close other Safekeep windows and commands."


# ---------------------------------------------------------------------------------------------
# Errors


class StateError(SafekeepError):
    """Something is wrong with the app database or a request to it."""


class DatabaseError(StateError):
    """The app database could not be read or written."""


class DatabaseBusy(DatabaseError):
    """Another Safekeep process held the database for longer than the busy timeout."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"The app database {path} is busy (another Safekeep process is using it).", hint=_HINT_RETRY
        )


class DatabaseUnreadable(DatabaseError):
    """The file is not a SQLite database, or it is damaged."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            f"The app database {path} cannot be read ({detail}).",
            hint="Move the file away and start Safekeep again to begin a new one; your backups are "
            "safe in their repositories and can be connected again. Earlier copies of the database "
            "may be next to it (*.before-v*.bak).",
        )


class DatabaseTooNew(DatabaseError):
    """The database was written by a newer Safekeep than this one."""

    def __init__(self, path: Path, version: int, supported: int) -> None:
        super().__init__(
            f"The app database {path} is from a newer version of Safekeep (schema version {version}; "
            f"this Safekeep understands up to {supported}).",
            hint="Update Safekeep to the newest version. The database was left untouched.",
        )
        self.version = version
        self.supported = supported


class MigrationFailed(DatabaseError):
    """Upgrading the database's schema failed; the database was left as it was."""

    def __init__(self, path: Path, version: int, detail: str, backup: Path | None) -> None:
        where = f" A copy taken before the upgrade is at {backup}." if backup else ""
        super().__init__(
            f"Upgrading the app database {path} to schema version {version} failed: {detail}.",
            hint="The database was left as it was." + where + " Please report this problem.",
        )


class NotFoundError(StateError):
    """A record asked for by id or name does not exist."""


class PlanNotFound(NotFoundError):
    def __init__(self, name_or_id: str, known: Sequence[str] = ()) -> None:
        hint = (
            "Known plans: " + ", ".join(known) + "."
            if known
            else "There are no plans yet: create one in the Safekeep window."
        )
        super().__init__(f"There is no plan called {name_or_id!r}.", hint=hint)
        self.name_or_id = name_or_id


class RunNotFound(NotFoundError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"There is no run {run_id!r} in the history.", hint="Check the run's id.")
        self.run_id = run_id


class DestinationNotFound(NotFoundError):
    def __init__(self, destination_ids: Sequence[str]) -> None:
        ids = ", ".join(destination_ids)
        super().__init__(
            f"Unknown destination{'s' if len(destination_ids) > 1 else ''}: {ids}.",
            hint="Add the destination first, or choose one of the existing destinations.",
        )
        self.destination_ids = tuple(destination_ids)


class DuplicatePlanName(StateError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"There is already a plan called {name!r}.",
            hint="Choose another name (names are compared without regard to upper/lower case).",
        )
        self.name = name


class DestinationInUse(StateError):
    def __init__(self, destination: str, plan_names: Sequence[str]) -> None:
        super().__init__(
            f"The destination {destination!r} is still used by: {', '.join(plan_names)}.",
            hint="Remove it from those plans first, or remove the plans.",
        )
        self.plan_names = tuple(plan_names)


# ---------------------------------------------------------------------------------------------
# Migrations


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def split_statements(script: str) -> list[str]:
    """Split an SQL script into statements (each ends with ``;`` at the end of a line)."""
    statements: list[str] = []
    buf: list[str] = []
    for line in script.splitlines(keepends=True):
        buf.append(line)
        text = "".join(buf)
        if line.rstrip().endswith(";") and sqlite3.complete_statement(text):
            statements.append(text.strip())
            buf = []
    rest = "\n".join(ln for ln in "".join(buf).splitlines() if not ln.strip().startswith("--")).strip()
    if rest:
        raise ValueError(f"unterminated SQL statement: {rest[:80]!r}")
    return statements


@functools.cache
def migrations() -> tuple[Migration, ...]:
    """The schema migrations shipped with this Safekeep, in order (version 1 is the first)."""
    found: list[Migration] = []
    folder = importlib.resources.files("safekeep.state.migrations")
    for entry in folder.iterdir():
        m = _MIGRATION_FILE.match(entry.name)
        if m is None:
            continue
        found.append(
            Migration(int(m.group(1)), m.group(2), tuple(split_statements(entry.read_text("utf-8"))))
        )
    found.sort(key=lambda mig: mig.version)
    if [mig.version for mig in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"schema migrations are not numbered 1..N: {[m.version for m in found]}")
    return tuple(found)


def latest_version() -> int:
    """The schema version this Safekeep writes."""
    return len(migrations())


def backup_path(db_path: Path, version: int) -> Path:
    """Where the copy taken before migrating ``db_path`` to ``version`` is kept."""
    return db_path.with_name(f"{db_path.name}.before-v{version}.bak")


# ---------------------------------------------------------------------------------------------
# JSON columns


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _loads(text: str | None, default: Any) -> Any:
    if text is None or text == "":
        return default
    return json.loads(text)


# ---------------------------------------------------------------------------------------------
# The database


class AppDatabase:
    """The app database. Open it with :meth:`open`; close it (or use ``with``) when done.

    Safe to use from several threads. Each method that changes something is one transaction.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, clock: Clock) -> None:
        self._conn: sqlite3.Connection | None = conn
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()
        self._host = socket.gethostname()

    # -- opening and closing ------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        busy_timeout: float = BUSY_TIMEOUT_SECONDS,
    ) -> AppDatabase:
        """Open (creating or upgrading as needed) the database at ``path``, by default
        :func:`safekeep.state.paths.database_path`.

        Raises :class:`DatabaseTooNew`, :class:`DatabaseUnreadable`, :class:`MigrationFailed` or
        :class:`DatabaseBusy`.
        """
        db_path = Path(path) if path is not None else paths.database_path()
        db_path = db_path.expanduser().absolute()
        try:
            db_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(
                f"Cannot create the folder {db_path.parent} for the app database: {exc.strerror or exc}.",
                hint="Check that the folder can be written, or set SAFEKEEP_HOME to a folder that can.",
            ) from exc
        created = not db_path.exists()
        try:
            conn = sqlite3.connect(
                db_path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise DatabaseUnreadable(db_path, str(exc)) from exc
        if created and os.name == "posix":
            # Plans and history name the organisation's folders and servers: this user's only.
            os.chmod(db_path, 0o600)
        db = cls(conn, db_path, clock)
        try:
            db._configure(busy_timeout)
            db._migrate()
        except BaseException:
            conn.close()
            raise
        return db

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> AppDatabase:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AppDatabase({str(self.path)!r})"

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._user_version(self._connection())

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise DatabaseError(
                "The app database is closed.", hint="This is a bug in Safekeep; please report it."
            )
        return self._conn

    def _configure(self, busy_timeout: float) -> None:
        conn = self._connection()
        conn.row_factory = sqlite3.Row
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            version = self._user_version(conn)
            if version > latest_version():  # refuse before changing anything in the file
                raise DatabaseTooNew(self.path, version, latest_version())
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("the app database %s could not use WAL mode (journal mode %s)", self.path, mode)
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: sqlite3.Error) -> DatabaseError:
        text = str(exc)
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(exc, sqlite3.OperationalError) and (
            code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in text or "busy" in text
        ):
            return DatabaseBusy(self.path)
        if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT) or "not a database" in text:
            return DatabaseUnreadable(self.path, text)
        return DatabaseError(
            f"The app database {self.path} could not be used: {text}.",
            hint="Check that the disk is not full and the file can be written.",
        )

    @staticmethod
    def _user_version(conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])

    # -- migrations ---------------------------------------------------------------------------

    def _migrate(self) -> None:
        latest = latest_version()
        conn = self._connection()
        try:
            current = self._user_version(conn)
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        if current > latest:
            raise DatabaseTooNew(self.path, current, latest)
        # A database created just now has nothing worth a copy before its later migrations.
        keep_copies = current > 0
        while current < latest:
            current = self._migrate_one(latest, keep_copies=keep_copies)

    def _migrate_one(self, latest: int, *, keep_copies: bool) -> int:
        """Apply the next migration in its own transaction; returns the version now in the file."""
        conn = self._connection()
        with self._lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc
            copy: Path | None = None
            target = 0
            try:
                # Another process may have migrated while this one waited for the write lock.
                current = self._user_version(conn)
                if current > latest:
                    raise DatabaseTooNew(self.path, current, latest)
                if current == latest:
                    conn.execute("COMMIT")
                    return current
                if current == 0:
                    tables = conn.execute(
                        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                    ).fetchone()[0]
                    if tables:
                        raise DatabaseUnreadable(self.path, "it holds tables but is not a Safekeep database")
                mig = migrations()[current]
                target = mig.version
                if current > 0 and keep_copies:
                    copy = backup_path(self.path, target)
                    self._backup_to(copy)
                    log.info("app database copied to %s before upgrading it to version %d", copy, target)
                for statement in mig.statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target}")
                if conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
                    raise sqlite3.IntegrityError("foreign key check failed after the migration")
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error) and isinstance(self._translate(exc), DatabaseBusy):
                    raise DatabaseBusy(self.path) from exc
                if isinstance(exc, sqlite3.Error | OSError):
                    raise MigrationFailed(self.path, target, str(exc), copy) from exc
                raise
            if current == 0:
                log.info("created the app database %s (schema version %d)", self.path, target)
            else:
                log.info("upgraded the app database %s to schema version %d", self.path, target)
            return target

    def _backup_to(self, dest: Path) -> None:
        """Copy the committed database, WAL content included, to ``dest`` (atomically).

        The copy is read through a second connection: this one holds the write lock, and in WAL
        mode readers are not blocked by it.
        """
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.unlink(missing_ok=True)
        src = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS)
        try:
            dst = sqlite3.connect(tmp)
            if os.name == "posix":
                os.chmod(tmp, self.path.stat().st_mode & 0o777)
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode = DELETE")
            finally:
                dst.close()
        finally:
            src.close()
        os.replace(tmp, dest)

    # -- transactions -------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``): committed on success, else rolled back."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise self._translate(exc) from exc
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: a consistent view across several queries."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    def _now(self) -> float:
        return self._clock.now().timestamp()

    # -- destinations -------------------------------------------------------------------------

    def destinations(self) -> list[Destination]:
        """All destinations, by name."""
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM destinations ORDER BY name COLLATE NOCASE, id").fetchall()
        return [_destination(r) for r in rows]

    def destination(self, destination_id: str) -> Destination | None:
        with self._read() as conn:
            row = conn.execute("SELECT * FROM destinations WHERE id = ?", (destination_id,)).fetchone()
        return None if row is None else _destination(row)

    def save_destination(self, d: Destination) -> Destination:
        """Add ``d``, or replace the stored destination with the same id."""
        now = self._now()
        with self._write() as conn:
            conn.execute(
                """INSERT INTO destinations (id, name, location, env, secret_env, options, removable,
                       low_space_mib, upload_limit_kib, download_limit_kib, created, updated)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (id) DO UPDATE SET name = excluded.name, location = excluded.location,
                       env = excluded.env, secret_env = excluded.secret_env, options = excluded.options,
                       removable = excluded.removable, low_space_mib = excluded.low_space_mib,
                       upload_limit_kib = excluded.upload_limit_kib,
                       download_limit_kib = excluded.download_limit_kib, updated = excluded.updated""",
                (
                    d.id,
                    d.name,
                    d.location,
                    _dumps(dict(d.env)),
                    _dumps(list(d.secret_env)),
                    _dumps(dict(d.options)),
                    int(d.removable),
                    d.low_space_mib,
                    d.upload_limit_kib,
                    d.download_limit_kib,
                    now,
                    now,
                ),
            )
        return d

    def remove_destination(self, destination_id: str) -> bool:
        """Remove a destination (its run history stays); ``False`` if there was none.

        Raises :class:`DestinationInUse` naming the plans that still use it.
        """
        with self._write() as conn:
            row = conn.execute("SELECT name FROM destinations WHERE id = ?", (destination_id,)).fetchone()
            if row is None:
                return False
            users = [
                r["name"]
                for r in conn.execute(
                    """SELECT p.name FROM plan_destinations pd JOIN plans p ON p.id = pd.plan_id
                       WHERE pd.destination_id = ? ORDER BY p.name COLLATE NOCASE""",
                    (destination_id,),
                )
            ]
            if users:
                raise DestinationInUse(row["name"], users)
            conn.execute("DELETE FROM destinations WHERE id = ?", (destination_id,))
        return True

    # -- plans --------------------------------------------------------------------------------

    def plans(self) -> list[Plan]:
        """All plans, by name."""
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM plans ORDER BY name COLLATE NOCASE, id").fetchall()
            dests = self._plan_destinations(conn, None)
        return [_plan(r, dests.get(r["id"], ())) for r in rows]

    def plan(self, plan_id: str) -> Plan | None:
        with self._read() as conn:
            row = conn.execute("SELECT * FROM plans WHERE id = ?", (plan_id,)).fetchone()
            if row is None:
                return None
            return _plan(row, self._plan_destinations(conn, plan_id).get(plan_id, ()))

    def plan_by_name(self, name: str) -> Plan | None:
        """The plan called ``name``, ignoring upper/lower case."""
        with self._read() as conn:
            row = conn.execute("SELECT * FROM plans WHERE name = ? COLLATE NOCASE", (name,)).fetchone()
            if row is None:
                return None
            return _plan(row, self._plan_destinations(conn, row["id"]).get(row["id"], ()))

    def find_plan(self, name_or_id: str) -> Plan | None:
        """The plan with this id, else the plan with this name (ignoring case), else ``None``."""
        return self.plan(name_or_id) or self.plan_by_name(name_or_id.strip())

    def save_plan(self, p: Plan) -> Plan:
        """Add ``p``, or replace the stored plan with the same id; returns the plan as stored.

        Raises :class:`DuplicatePlanName` if another plan has the same name (ignoring case) and
        :class:`DestinationNotFound` if a destination id is unknown. A destination listed twice
        is kept once, at its first place.
        """
        dest_ids = tuple(dict.fromkeys(p.destination_ids))
        now = self._now()
        with self._write() as conn:
            clash = conn.execute(
                "SELECT id FROM plans WHERE name = ? COLLATE NOCASE AND id != ?", (p.name, p.id)
            ).fetchone()
            if clash is not None:
                raise DuplicatePlanName(p.name)
            known = {r[0] for r in conn.execute("SELECT id FROM destinations")}
            missing = [d for d in dest_ids if d not in known]
            if missing:
                raise DestinationNotFound(missing)
            conn.execute(
                """INSERT INTO plans (id, name, sources, excludes, triggers, retention, retry, enabled,
                       created, updated)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (id) DO UPDATE SET name = excluded.name, sources = excluded.sources,
                       excludes = excluded.excludes, triggers = excluded.triggers,
                       retention = excluded.retention, retry = excluded.retry, enabled = excluded.enabled,
                       updated = excluded.updated""",
                (
                    p.id,
                    p.name,
                    _dumps(list(p.sources)),
                    _dumps(list(p.excludes)),
                    _dumps([t.to_dict() for t in p.triggers]),
                    _dumps(p.retention.to_dict()),
                    _dumps(p.retry.to_dict()),
                    int(p.enabled),
                    now,
                    now,
                ),
            )
            conn.execute("DELETE FROM plan_destinations WHERE plan_id = ?", (p.id,))
            conn.executemany(
                "INSERT INTO plan_destinations (plan_id, destination_id, position) VALUES (?, ?, ?)",
                [(p.id, d, i) for i, d in enumerate(dest_ids)],
            )
        return p.with_changes(destination_ids=dest_ids) if dest_ids != p.destination_ids else p

    def remove_plan(self, plan_id: str) -> bool:
        """Remove a plan (its run history stays); ``False`` if there was none."""
        with self._write() as conn:
            cur = conn.execute("DELETE FROM plans WHERE id = ?", (plan_id,))
            return cur.rowcount > 0

    @staticmethod
    def _plan_destinations(conn: sqlite3.Connection, plan_id: str | None) -> dict[str, tuple[str, ...]]:
        sql = "SELECT plan_id, destination_id FROM plan_destinations"
        args: tuple[str, ...] = ()
        if plan_id is not None:
            sql += " WHERE plan_id = ?"
            args = (plan_id,)
        out: dict[str, list[str]] = {}
        for r in conn.execute(sql + " ORDER BY plan_id, position", args):
            out.setdefault(r["plan_id"], []).append(r["destination_id"])
        return {k: tuple(v) for k, v in out.items()}

    # -- runs ---------------------------------------------------------------------------------

    def add_run(self, run: Run, *, worker_pid: int | None = None) -> None:
        """Record a new run (normally QUEUED or RUNNING), with any results it already has.

        The worker is the calling process unless ``worker_pid`` says otherwise (see
        :meth:`set_worker` and :meth:`interrupt_unfinished`).
        """
        with self._write() as conn:
            conn.execute(
                """INSERT INTO runs (id, plan_id, kind, reason, reason_text, started, finished, outcome,
                       worker_pid, worker_host)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    run.id,
                    run.plan_id,
                    run.kind,
                    run.reason.value,
                    run.reason_text,
                    run.started,
                    run.finished,
                    run.outcome.value,
                    os.getpid() if worker_pid is None else worker_pid,
                    self._host,
                ),
            )
            for result in run.results:
                self._put_result(conn, run.id, result)

    def set_worker(self, run_id: str, pid: int, host: str | None = None) -> None:
        """Record which process (on which computer) is doing the run."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE runs SET worker_pid = ?, worker_host = ? WHERE id = ?",
                (pid, host or self._host, run_id),
            )
            if cur.rowcount == 0:
                raise RunNotFound(run_id)

    def update_run_outcome(self, run_id: str, outcome: Outcome) -> None:
        """Change a run's outcome without finishing it (QUEUED -> RUNNING when its work starts)."""
        with self._write() as conn:
            cur = conn.execute("UPDATE runs SET outcome = ? WHERE id = ?", (outcome.value, run_id))
            if cur.rowcount == 0:
                raise RunNotFound(run_id)

    def set_result(self, run_id: str, result: DestinationResult) -> None:
        """Store (or replace) one destination's result of a run.

        At most :data:`SKIPPED_FILES_CAP` skipped files are stored; the rest are counted in the
        stored result's ``skipped_omitted``.
        """
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise RunNotFound(run_id)
            self._put_result(conn, run_id, result)

    @staticmethod
    def _put_result(conn: sqlite3.Connection, run_id: str, r: DestinationResult) -> None:
        kept = r.skipped[:SKIPPED_FILES_CAP]
        omitted = r.skipped_omitted + len(r.skipped) - len(kept)
        conn.execute(
            "DELETE FROM skipped_files WHERE run_id = ? AND destination_id = ?", (run_id, r.destination_id)
        )
        conn.execute(
            """INSERT INTO run_results (run_id, destination_id, outcome, snapshot_id, files, bytes,
                   bytes_added, error, skipped_omitted, started, finished)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (run_id, destination_id) DO UPDATE SET outcome = excluded.outcome,
                   snapshot_id = excluded.snapshot_id, files = excluded.files, bytes = excluded.bytes,
                   bytes_added = excluded.bytes_added, error = excluded.error,
                   skipped_omitted = excluded.skipped_omitted, started = excluded.started,
                   finished = excluded.finished""",
            (
                run_id,
                r.destination_id,
                r.outcome.value,
                r.snapshot_id,
                r.files,
                r.bytes,
                r.bytes_added,
                r.error,
                omitted,
                r.started,
                r.finished,
            ),
        )
        conn.executemany(
            "INSERT INTO skipped_files (run_id, destination_id, seq, path, reason) VALUES (?, ?, ?, ?, ?)",
            [(run_id, r.destination_id, i, s.path, s.reason) for i, s in enumerate(kept)],
        )

    def finish_run(self, run_id: str, outcome: Outcome, finished: float | None = None) -> None:
        """Record how a run ended (``finished`` defaults to now).

        Destination results still marked running or queued take the run's outcome when it is
        cancelled, interrupted or failed.
        """
        when = self._now() if finished is None else finished
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE runs SET outcome = ?, finished = ? WHERE id = ?", (outcome.value, when, run_id)
            )
            if cur.rowcount == 0:
                raise RunNotFound(run_id)
            if outcome in (Outcome.CANCELLED, Outcome.INTERRUPTED, Outcome.FAILED):
                conn.execute(
                    "UPDATE run_results SET outcome = ?, finished = coalesce(finished, ?) "
                    "WHERE run_id = ? AND outcome IN (?, ?)",
                    (outcome.value, when, run_id, *_UNFINISHED),
                )

    def run(self, run_id: str) -> Run | None:
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchall()
            found = self._load_runs(conn, rows, with_skipped=True)
        return found[0] if found else None

    def runs(
        self,
        plan_id: str | None = None,
        limit: int = 50,
        kind: str | None = None,
        *,
        with_skipped: bool = True,
    ) -> list[Run]:
        """The newest ``limit`` runs, newest first, optionally of one plan and/or one kind.

        ``with_skipped=False`` leaves the skipped-file lists out (each result's
        ``skipped_omitted`` then counts them all), for history views that show only counts.
        """
        where: list[str] = []
        args: list[Any] = []
        if plan_id is not None:
            where.append("plan_id = ?")
            args.append(plan_id)
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        sql = "SELECT * FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started DESC, rowid DESC LIMIT ?"
        args.append(max(0, limit))
        with self._read() as conn:
            rows = conn.execute(sql, args).fetchall()
            return self._load_runs(conn, rows, with_skipped=with_skipped)

    def last_success(self, plan_id: str, destination_id: str | None = None) -> float | None:
        """When the newest successful backup of a plan finished (a warning counts: a snapshot was
        made), or ``None``; with ``destination_id``, the newest that succeeded at that destination."""
        with self._read() as conn:
            if destination_id is None:
                row = conn.execute(
                    """SELECT coalesce(finished, started) AS t FROM runs
                       WHERE plan_id = ? AND kind = 'backup' AND outcome IN (?, ?)
                       ORDER BY started DESC, rowid DESC LIMIT 1""",
                    (plan_id, *_SUCCESSFUL),
                ).fetchone()
            else:
                row = conn.execute(
                    """SELECT coalesce(rr.finished, runs.finished, runs.started) AS t
                       FROM runs JOIN run_results rr ON rr.run_id = runs.id
                       WHERE runs.plan_id = ? AND runs.kind = 'backup' AND rr.destination_id = ?
                         AND rr.outcome IN (?, ?)
                       ORDER BY runs.started DESC, runs.rowid DESC LIMIT 1""",
                    (plan_id, destination_id, *_SUCCESSFUL),
                ).fetchone()
        return None if row is None else float(row["t"])

    def interrupt_unfinished(self, pids_alive: Callable[[int], bool] | None = None) -> list[str]:
        """Mark runs still running or queued whose worker process on this computer is gone as
        INTERRUPTED (with their unfinished destination results); returns their ids.

        ``pids_alive(pid)`` says whether a process exists (default: ask the operating system).
        Runs recorded by another computer sharing this database are left alone.
        """
        alive = pids_alive or pid_alive
        now = self._now()
        with self._write() as conn:
            rows = conn.execute(
                "SELECT id, worker_pid, worker_host FROM runs WHERE outcome IN (?, ?) "
                "ORDER BY started, rowid",
                _UNFINISHED,
            ).fetchall()
            dead = [
                r["id"]
                for r in rows
                if (r["worker_host"] in (None, "", self._host))
                and (r["worker_pid"] is None or not alive(int(r["worker_pid"])))
            ]
            for run_id in dead:
                conn.execute(
                    "UPDATE runs SET outcome = ?, finished = ? WHERE id = ?",
                    (Outcome.INTERRUPTED.value, now, run_id),
                )
                conn.execute(
                    "UPDATE run_results SET outcome = ?, finished = coalesce(finished, ?) "
                    "WHERE run_id = ? AND outcome IN (?, ?)",
                    (Outcome.INTERRUPTED.value, now, run_id, *_UNFINISHED),
                )
        if dead:
            log.info("marked %d unfinished run(s) as interrupted: %s", len(dead), ", ".join(dead))
        return dead

    @staticmethod
    def _load_runs(conn: sqlite3.Connection, rows: Sequence[sqlite3.Row], *, with_skipped: bool) -> list[Run]:
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        marks = ",".join("?" * len(ids))
        results: dict[str, list[sqlite3.Row]] = {}
        for rr in conn.execute(
            f"SELECT * FROM run_results WHERE run_id IN ({marks}) ORDER BY run_id, rowid",  # noqa: S608
            ids,
        ):
            results.setdefault(rr["run_id"], []).append(rr)
        skipped: dict[tuple[str, str], list[SkippedFile]] = {}
        counts: dict[tuple[str, str], int] = {}
        if with_skipped:
            for s in conn.execute(
                f"SELECT run_id, destination_id, path, reason FROM skipped_files "  # noqa: S608
                f"WHERE run_id IN ({marks}) ORDER BY run_id, destination_id, seq",
                ids,
            ):
                skipped.setdefault((s["run_id"], s["destination_id"]), []).append(
                    SkippedFile(s["path"], s["reason"])
                )
        else:
            for s in conn.execute(
                f"SELECT run_id, destination_id, count(*) AS n FROM skipped_files "  # noqa: S608
                f"WHERE run_id IN ({marks}) GROUP BY run_id, destination_id",
                ids,
            ):
                counts[(s["run_id"], s["destination_id"])] = int(s["n"])
        out: list[Run] = []
        for r in rows:
            res = tuple(
                DestinationResult(
                    destination_id=rr["destination_id"],
                    outcome=Outcome(rr["outcome"]),
                    snapshot_id=rr["snapshot_id"],
                    files=int(rr["files"]),
                    bytes=int(rr["bytes"]),
                    bytes_added=int(rr["bytes_added"]),
                    error=rr["error"],
                    skipped=tuple(skipped.get((r["id"], rr["destination_id"]), ())),
                    started=rr["started"],
                    finished=rr["finished"],
                    skipped_omitted=int(rr["skipped_omitted"])
                    + counts.get((r["id"], rr["destination_id"]), 0),
                )
                for rr in results.get(r["id"], ())
            )
            out.append(
                Run(
                    id=r["id"],
                    plan_id=r["plan_id"],
                    kind=r["kind"],
                    reason=Reason(r["reason"]),
                    reason_text=r["reason_text"],
                    started=float(r["started"]),
                    outcome=Outcome(r["outcome"]),
                    finished=None if r["finished"] is None else float(r["finished"]),
                    results=res,
                )
            )
        return out

    # -- settings -----------------------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default``."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    def set_setting(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value under ``key``."""
        text = _dumps(value)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, text),
            )

    def delete_setting(self, key: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM settings WHERE key = ?", (key,))

    def settings(self) -> dict[str, Any]:
        """Every stored setting."""
        with self._read() as conn:
            return {r["key"]: json.loads(r["value"]) for r in conn.execute("SELECT key, value FROM settings")}

    # -- notification channels ----------------------------------------------------------------

    def notification_channels(self) -> list[NotificationChannel]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT * FROM notification_channels ORDER BY name COLLATE NOCASE, id"
            ).fetchall()
        return [_channel(r) for r in rows]

    def notification_channel(self, channel_id: str) -> NotificationChannel | None:
        with self._read() as conn:
            row = conn.execute("SELECT * FROM notification_channels WHERE id = ?", (channel_id,)).fetchone()
        return None if row is None else _channel(row)

    def save_notification_channel(self, c: NotificationChannel) -> NotificationChannel:
        """Add ``c``, or replace the stored channel with the same id."""
        now = self._now()
        with self._write() as conn:
            conn.execute(
                """INSERT INTO notification_channels (id, name, kind, config, events, enabled, created,
                       updated)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind,
                       config = excluded.config, events = excluded.events, enabled = excluded.enabled,
                       updated = excluded.updated""",
                (
                    c.id,
                    c.name,
                    c.kind.value,
                    _dumps(dict(c.config)),
                    _dumps(list(c.events)),
                    int(c.enabled),
                    now,
                    now,
                ),
            )
        return c

    def remove_notification_channel(self, channel_id: str) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM notification_channels WHERE id = ?", (channel_id,)).rowcount > 0

    # -- scheduler state ----------------------------------------------------------------------

    def scheduler_state(self, plan_id: str) -> SchedulerState:
        """What the scheduler remembers about a plan (a blank state if nothing yet)."""
        with self._read() as conn:
            row = conn.execute("SELECT * FROM scheduler_state WHERE plan_id = ?", (plan_id,)).fetchone()
        return SchedulerState(plan_id) if row is None else _scheduler_state(row)

    def scheduler_states(self) -> list[SchedulerState]:
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM scheduler_state ORDER BY plan_id").fetchall()
        return [_scheduler_state(r) for r in rows]

    def set_scheduler_state(self, state: SchedulerState) -> None:
        """Store a plan's scheduler state; raises :class:`PlanNotFound` for an unknown plan."""
        now = self._now()
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM plans WHERE id = ?", (state.plan_id,)).fetchone() is None:
                raise PlanNotFound(state.plan_id)
            conn.execute(
                """INSERT INTO scheduler_state (plan_id, last_scheduled, paused_until, retry_attempt,
                       next_retry, updated)
                   VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT (plan_id) DO UPDATE SET last_scheduled = excluded.last_scheduled,
                       paused_until = excluded.paused_until, retry_attempt = excluded.retry_attempt,
                       next_retry = excluded.next_retry, updated = excluded.updated""",
                (
                    state.plan_id,
                    state.last_scheduled,
                    state.paused_until,
                    state.retry_attempt,
                    state.next_retry,
                    now,
                ),
            )


# ---------------------------------------------------------------------------------------------
# Rows to records


def _destination(r: sqlite3.Row) -> Destination:
    return Destination(
        id=r["id"],
        name=r["name"],
        location=r["location"],
        env=_loads(r["env"], {}),
        secret_env=tuple(_loads(r["secret_env"], [])),
        options=_loads(r["options"], {}),
        removable=bool(r["removable"]),
        low_space_mib=r["low_space_mib"],
        upload_limit_kib=r["upload_limit_kib"],
        download_limit_kib=r["download_limit_kib"],
    )


def _plan(r: sqlite3.Row, destination_ids: Iterable[str]) -> Plan:
    return Plan(
        id=r["id"],
        name=r["name"],
        sources=tuple(_loads(r["sources"], [])),
        destination_ids=tuple(destination_ids),
        excludes=tuple(_loads(r["excludes"], [])),
        triggers=tuple(Trigger.from_dict(t) for t in _loads(r["triggers"], [])),
        retention=Retention.from_dict(_loads(r["retention"], {})),
        retry=RetryPolicy.from_dict(_loads(r["retry"], {})),
        enabled=bool(r["enabled"]),
    )


def _channel(r: sqlite3.Row) -> NotificationChannel:
    return NotificationChannel(
        id=r["id"],
        name=r["name"],
        kind=ChannelKind(r["kind"]),
        config=_loads(r["config"], {}),
        events=tuple(_loads(r["events"], [])),
        enabled=bool(r["enabled"]),
    )


def _scheduler_state(r: sqlite3.Row) -> SchedulerState:
    return SchedulerState(
        plan_id=r["plan_id"],
        last_scheduled=r["last_scheduled"],
        paused_until=r["paused_until"],
        retry_attempt=int(r["retry_attempt"]),
        next_retry=r["next_retry"],
    )
