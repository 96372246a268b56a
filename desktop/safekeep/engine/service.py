"""The service: what the GUI and the CLI ask of Safekeep.

:class:`Service` ties the app database, the keyring, the audit log and the job workers together.
Its calls may block (disk, network, keyring), so the GUI calls them from a background thread.

Running a plan (:meth:`Service.run_plan`) returns a run id at once; a thread then runs the
plan's destinations one after another, each in its own worker process, waiting its turn when
another job holds the same repository (one job per repository at a time, others queue). Each
destination's result is recorded as it ends; the run's outcome is the worst of them, and a
failure on one destination never stops the others. Events from the workers reach the callback
given to ``run_plan`` and every subscriber (:meth:`Service.subscribe`).

If the process running a plan dies, its run stays "running" in the database until the next
:class:`Service` opens and finds the process gone: the run is then marked "interrupted". The
worker of the next run removes the stale repository locks the dead one left behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.clock import SYSTEM_CLOCK, Clock
from safekeep.common.errors import Cancelled, SafekeepError, UsageError
from safekeep.core.format.keys import KDFParams
from safekeep.core.format.snapshot import Snapshot
from safekeep.core.locks import pid_alive, remove_stale_locks
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.core.restorer import (
    ConflictPolicy,
    ConflictScan,
    RestoreOptions,
    Restorer,
    RestoreReport,
    find_conflicts,
)
from safekeep.engine.events import JobEvent
from safekeep.engine.jobs import Job, storage_options
from safekeep.engine.restore_reports import read_report
from safekeep.engine.runner import WorkerRun
from safekeep.state import paths
from safekeep.state.audit import Action, AuditLog, describe
from safekeep.state.catalog import (
    NULL_INDEX_PROGRESS,
    Catalog,
    CatalogError,
    Entry,
    IndexProgress,
    RepositoryTrees,
    list_dir,
    resolve,
)
from safekeep.state.db import AppDatabase, DestinationNotFound, PlanNotFound
from safekeep.state.model import (
    PASSWORD_SECRET,
    Destination,
    DestinationResult,
    Outcome,
    Plan,
    Reason,
    Run,
    new_id,
)
from safekeep.state.secrets import Secrets
from safekeep.storage.base import Handle
from safekeep.storage.compose import StorageOptions, open_backend
from safekeep.storage.errors import NotFound
from safekeep.storage.registry import ProviderSettings
from safekeep.storage.secrets import MemorySecretStore, SecretStore
from safekeep.storage.validate import ProbeResult, ProbeStep, probe

log = logging.getLogger(__name__)

PLAN_TAG_PREFIX = "plan:"
NOT_STARTED = "Cancelled before it started."
OPENED_COPY_LIFETIME = 24 * 3600  # seconds an opened copy of an old version is kept
MAX_AUDIT_PATHS = 20  # selected paths named in a restore's audit entry (the rest are counted)
MAX_AUDIT_PATH = 400  # characters of each
RESTORE_COUNTS = ("restored", "overwritten", "kept_both", "skipped", "failed", "verified")


@dataclass(frozen=True, slots=True)
class RunProgress:
    """The latest numbers of a running run (for the tray and the dashboard)."""

    destination_id: str = ""
    phase: str = ""
    files_done: int = 0
    files_total: int = -1
    bytes_done: int = 0
    bytes_total: int = -1
    current_path: str = ""


@dataclass(frozen=True, slots=True)
class PlanStatus:
    """A plan as the dashboard shows it."""

    plan: Plan
    state: Outcome  # RUNNING / QUEUED while a run is going on, else the last run's outcome
    last_run: Run | None
    last_success: float | None
    running_id: str = ""
    progress: RunProgress | None = None
    destinations: Mapping[str, Outcome] = field(default_factory=dict)


def plan_tag(plan: Plan) -> str:
    return PLAN_TAG_PREFIX + plan.id


@dataclass
class _Active:
    run: Run
    done: threading.Event = field(default_factory=threading.Event)
    cancel: CancelToken = field(default_factory=CancelToken)
    worker: WorkerRun | None = None
    progress: RunProgress | None = None


class Service:
    """The engine's API. Create with :meth:`open`; safe to call from several threads."""

    def __init__(
        self,
        db: AppDatabase,
        secrets: Secrets,
        audit: AuditLog,
        *,
        clock: Clock = SYSTEM_CLOCK,
        cache_dir: Path | None = None,
        worker_command: Sequence[str] | None = None,
        worker_env: Mapping[str, str] | None = None,
        kdf: KDFParams | None = None,
    ) -> None:
        self.db = db
        self.secrets = secrets
        self.audit = audit
        self.clock = clock
        self.cache_dir = cache_dir
        self._worker_command = list(worker_command) if worker_command else None
        self._worker_env = dict(worker_env) if worker_env is not None else None
        self._kdf = kdf
        self._lock = threading.Lock()
        self._active: dict[str, _Active] = {}
        self._repo_locks: dict[str, threading.Lock] = {}
        self._subscribers: list[Callable[[JobEvent], None]] = []
        interrupted = self.db.interrupt_unfinished(pid_alive)
        for run_id in interrupted:
            log.warning("run %s was interrupted (its process is gone)", run_id)

    @classmethod
    def open(cls, home: Path | None = None, *, clock: Clock = SYSTEM_CLOCK) -> Service:
        """The service over this user's app database, keyring and audit log.

        ``home`` overrides ``SAFEKEEP_HOME`` (everything under one folder).
        """
        env: Mapping[str, str] = dict(os.environ, SAFEKEEP_HOME=str(home)) if home else os.environ
        db = AppDatabase.open(paths.database_path(env), clock=clock)
        secrets = Secrets.open(env=env)
        audit = AuditLog.default(clock=clock, env=env)
        kdf = None
        raw = env.get("SAFEKEEP_TEST_KDF", "")
        if raw:
            n, r, p = (int(x) for x in raw.split(","))
            kdf = KDFParams(n, r, p)
        return cls(db, secrets, audit, clock=clock, cache_dir=paths.cache_dir(env), kdf=kdf)

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ destinations

    def destinations(self) -> list[Destination]:
        return self.db.destinations()

    def destination(self, name_or_id: str) -> Destination:
        for d in self.db.destinations():
            if d.id == name_or_id or d.name.casefold() == name_or_id.casefold():
                return d
        raise DestinationNotFound([name_or_id])

    def storage_options(
        self, dest: Destination, store: SecretStore | None = None, *, read_only: bool = False
    ) -> StorageOptions:
        """How to open ``dest``'s storage, with its secrets from the keyring (or ``store``)."""
        scope = store if store is not None else self.secrets.scope(dest.id)
        return storage_options(dest, _secret_env(dest, scope), scope, read_only=read_only)

    def test_location(
        self,
        location: str,
        *,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        options: Mapping[str, str] | None = None,
        store: SecretStore | None = None,
        on_step: Callable[[ProbeStep], None] | None = None,
        cancel: CancelToken = NEVER,
    ) -> ProbeResult:
        """Run the "Test connection" probe against a location before it is saved."""
        settings = ProviderSettings(
            env={**(env or {}), **(secrets or {})}, options=dict(options or {}), store=store
        )
        backend = open_backend(location, options=StorageOptions(provider=settings, retry_attempts=2))
        try:
            return probe(backend, report=on_step or (lambda _step: None), clock=self.clock, cancel=cancel)
        finally:
            backend.close()

    def add_destination(
        self,
        name: str,
        location: str,
        *,
        password: str,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        options: Mapping[str, str] | None = None,
        create: bool = True,
        removable: bool = False,
        store: SecretStore | None = None,
        cancel: CancelToken = NEVER,
    ) -> Destination:
        """Save a destination: create its repository (``create``) or open an existing one.

        The password and ``secrets`` go to the keyring; ``store`` holds what a sign-in already
        obtained (its values are copied to the keyring). Nothing is saved if the repository
        cannot be created or opened.
        """
        if not password:
            raise UsageError("A destination needs a repository password.")
        if any(d.name.casefold() == name.casefold() for d in self.db.destinations()):
            raise UsageError(f"A destination called {name!r} exists already.", hint="Choose another name.")
        dest = Destination(
            id=new_id(),
            name=name,
            location=location,
            env=dict(env or {}),
            secret_env=tuple(sorted((secrets or {}).keys())),
            options=dict(options or {}),
            removable=removable,
        )
        scope = self.secrets.scope(dest.id)
        try:
            scope.set(PASSWORD_SECRET, password)
            for k, v in (secrets or {}).items():
                scope.set(k, v)
            if isinstance(store, MemorySecretStore):
                for k in store.names():
                    value = store.get(k)
                    if value is not None:
                        scope.set(k, value)
            backend = open_backend(location, options=self.storage_options(dest, scope))
            try:
                repo_options = RepositoryOptions(kdf=self._kdf)
                if create:
                    try:
                        backend.stat(Handle.config(), cancel=cancel)
                        exists = True
                    except NotFound:
                        exists = False
                    repo = (
                        Repository.open(backend, password, cancel=cancel)
                        if exists
                        else Repository.init(backend, password, options=repo_options, cancel=cancel)
                    )
                else:
                    repo = Repository.open(backend, password, cancel=cancel)
                repo.close()
            finally:
                backend.close()
        except BaseException:
            with contextlib.suppress(Exception):
                self.secrets.delete_scope(dest.id)
            raise
        self.db.save_destination(dest)
        self.audit_event("destination-add", f"destination {name} ({location})", "success")
        return dest

    def remove_destination(self, name_or_id: str) -> None:
        dest = self.destination(name_or_id)
        self.db.remove_destination(dest.id)
        with contextlib.suppress(SafekeepError):
            self.secrets.delete_scope(dest.id)
        self.audit_event("destination-remove", f"destination {dest.name} ({dest.location})", "success")

    def destination_password(self, dest: Destination) -> str:
        value = self.secrets.scope(dest.id).get(PASSWORD_SECRET)
        if value is None:
            raise SafekeepError(
                f"The password of the destination {dest.name!r} is not in the keyring.",
                hint="Connect the destination again (it asks for the password), or restore the "
                "keyring from the recovery kit.",
            )
        return value

    # ------------------------------------------------------------------ plans

    def plans(self) -> list[Plan]:
        return self.db.plans()

    def plan(self, name_or_id: str) -> Plan:
        found = self.db.find_plan(name_or_id)
        if found is None:
            raise PlanNotFound(name_or_id, [p.name for p in self.db.plans()])
        return found

    def save_plan(self, plan: Plan) -> Plan:
        if not plan.sources:
            raise UsageError(f"The plan {plan.name!r} has nothing to back up.", hint="Add a folder.")
        if not plan.destination_ids:
            raise UsageError(f"The plan {plan.name!r} has no destination.", hint="Add a destination.")
        existed = self.db.plan(plan.id) is not None
        self.db.save_plan(plan)
        self.audit_event("plan-change" if existed else "plan-add", f"plan {plan.name}", "success")
        return plan

    def remove_plan(self, name_or_id: str) -> None:
        plan = self.plan(name_or_id)
        self.db.remove_plan(plan.id)
        self.audit_event("plan-remove", f"plan {plan.name}", "success")

    # ------------------------------------------------------------------ runs

    def subscribe(self, callback: Callable[[JobEvent], None]) -> Callable[[], None]:
        """Receive every job event (on a background thread); returns an unsubscribe function."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def run_plan(
        self,
        name_or_id: str,
        reason: Reason = Reason.MANUAL,
        reason_text: str = "",
        *,
        on_event: Callable[[JobEvent], None] | None = None,
    ) -> str:
        """Start a backup of the plan to all its destinations; returns the run's id at once."""
        plan = self.plan(name_or_id)
        with self._lock:
            for active in self._active.values():
                if active.run.plan_id == plan.id and active.run.kind == "backup":
                    log.info("plan %s is already running (run %s)", plan.name, active.run.id)
                    return active.run.id
        dests = [self._dest_by_id(i) for i in plan.destination_ids]
        run = Run(
            id=new_id(),
            plan_id=plan.id,
            kind="backup",
            reason=reason,
            reason_text=reason_text,
            started=self.clock.now().timestamp(),
            outcome=Outcome.QUEUED,
        )
        self.db.add_run(run)
        self.db.set_worker(run.id, os.getpid())
        active = _Active(run)
        with self._lock:
            self._active[run.id] = active
        thread = threading.Thread(
            target=self._run_backup, args=(plan, dests, active, on_event), name=f"run-{run.id}", daemon=True
        )
        thread.start()
        return run.id

    def check(
        self,
        destination: str,
        *,
        read_data: bool = False,
        on_event: Callable[[JobEvent], None] | None = None,
    ) -> str:
        """Check a destination's repository in a worker (``read_data``: every byte); a run id."""
        dest = self.destination(destination)
        job = Job(kind="check", run_id="", destination=dest, password="", read_data=read_data)
        return self._start_single(job, on_event, Action.CHECK)

    def restore(
        self,
        destination: str,
        snapshot_id: str,
        target: str,
        *,
        paths: Sequence[str] = (),
        conflict: str = "overwrite",
        decisions: Mapping[str, str] | None = None,
        flatten: bool = False,
        verify: bool = True,
        on_event: Callable[[JobEvent], None] | None = None,
    ) -> str:
        """Restore ``paths`` (all when empty) of a snapshot into ``target``, in a worker; a run id.

        ``conflict`` (a :class:`ConflictPolicy` value) is what happens to each existing file in
        the way, ``decisions`` overrides it per snapshot path (a folder's covers what is below
        it); ``flatten`` puts each path at ``target/basename`` instead of ``target + path``;
        ``verify`` re-reads every restored file. When the run ends, a ``restore_summary`` event
        carries the counts, and :meth:`restore_report` the items.
        """
        dest = self.destination(destination)
        if not target:
            raise UsageError("Choose a folder to restore into.")
        policy = _conflict_policy(conflict)
        chosen = {"/" + p.strip("/"): _conflict_policy(v).value for p, v in (decisions or {}).items()}
        reports = self._reports_dir()
        job = Job(
            kind="restore",
            run_id="",
            destination=dest,
            password="",
            snapshot_id=snapshot_id,
            paths=tuple(paths),
            target=os.path.abspath(target),
            conflict=policy.value,
            decisions=chosen,
            flatten=flatten,
            verify=verify,
            report_dir=str(reports) if reports is not None else "",
        )
        return self._start_single(job, on_event, Action.RESTORE)

    def restore_conflicts(
        self,
        destination: str,
        snapshot_id: str,
        target: str,
        *,
        paths: Sequence[str],
        flatten: bool = False,
        cancel: CancelToken = NEVER,
    ) -> ConflictScan:
        """What is already in the way of restoring ``paths`` into ``target`` (nothing is written).

        Each selected file whose place is taken, each clash of a file with a folder, and each
        selected folder that exists (its contents are merged); at most
        :data:`~safekeep.core.restorer.CONFLICTS_LIMIT`, with ``more`` set when there are more.
        """
        with self.open_repository(destination, cancel=cancel) as repo:
            repo.load_index(cancel=cancel)
            snap = repo.find_snapshot(snapshot_id, cancel=cancel)
            return find_conflicts(
                repo, snap, os.path.abspath(target), include=tuple(paths), flatten=flatten, cancel=cancel
            )

    def restore_report(self, run_id: str) -> RestoreReport | None:
        """What the restore ``run_id`` did, item by item; None for an unknown run or no report.

        Only the newest :data:`~safekeep.engine.restore_reports.KEEP` reports are kept."""
        folder = self._reports_dir()
        return read_report(folder, run_id) if folder is not None else None

    def _reports_dir(self) -> Path | None:
        return self.cache_dir / "restore-reports" if self.cache_dir is not None else None

    @contextlib.contextmanager
    def catalog(
        self,
        destination: str,
        *,
        update: bool = True,
        progress: IndexProgress = NULL_INDEX_PROGRESS,
        cancel: CancelToken = NEVER,
    ) -> Iterator[Catalog]:
        """The destination's catalog (the search index), brought up to date when ``update``.

        It lives in the cache folder the CLI's ``safekeep find`` uses (in memory when it cannot
        be opened there) and stays open, with the repository, for the ``with`` block. It may be
        used from any thread (each thread gets its own database connection); run one
        :meth:`Catalog.update` at a time — reads in other threads go on meanwhile and see the
        index as of the last finished snapshot.
        """
        with self.open_repository(destination, cancel=cancel) as repo:
            repo.load_index(cancel=cancel)
            root = self.cache_dir / "repositories" if self.cache_dir is not None else None
            try:
                found = Catalog.for_repository(root, repo)
            except (OSError, CatalogError) as exc:
                log.warning("cannot use the catalog in %s (%s): using a temporary one", root, exc)
                found = Catalog(None, repo)
            with found:
                if update:
                    found.update(progress=progress, cancel=cancel)
                yield found

    def open_version(
        self, destination: str, snapshot_id: str, path: str, *, cancel: CancelToken = NEVER
    ) -> Path:
        """Restore one file of a snapshot into a new private folder; the path of the read-only copy.

        The copy is checked against the backup; the original file is never touched. Copies are
        kept in ``<cache>/opened`` and removed a day later (on a later call). The audit log
        records it as a restore.
        """
        dest = self.destination(destination)
        clean = "/" + path.strip("/")
        if clean == "/":
            raise UsageError("Choose a file to open.")
        root = self._opened_dir()
        self._remove_old_copies(root)
        target = describe("destination", dest.name, dest.id) + f"; snapshot {snapshot_id[:8]}; {clean}"
        details: dict[str, object] = {
            "destination_id": dest.id,
            "snapshot": snapshot_id,
            "paths": [clean[:MAX_AUDIT_PATH]],
            "paths_count": 1,
            "note": "opened a copy",
        }
        outcome = Outcome.FAILED
        try:
            with self.open_repository(destination, cancel=cancel) as repo:
                repo.load_index(cancel=cancel)
                snap = repo.find_snapshot(snapshot_id, cancel=cancel)
                details["snapshot"] = snap.id
                entry = resolve(RepositoryTrees(repo), snap.tree, clean, cancel=cancel)
                if entry.type != "file":
                    raise UsageError(
                        f"{clean} is not a file; only a file can be opened.",
                        hint="Restore a folder to a folder of your choice instead.",
                    )
                copy = self._make_copy(repo, snap, clean, root, cancel)
            outcome = Outcome.SUCCESS
            details.update(restored=1, verified=1)
            return copy
        except Cancelled:
            outcome = Outcome.CANCELLED
            raise
        except SafekeepError as exc:
            details["error"] = exc.message
            raise
        finally:
            self.audit_event(Action.RESTORE, target, outcome.value, **details)

    def _make_copy(
        self, repo: Repository, snap: Snapshot, path: str, root: Path, cancel: CancelToken
    ) -> Path:
        folder = Path(tempfile.mkdtemp(prefix="copy-", dir=root))  # mode 0700
        try:
            options = RestoreOptions(include=(path,), flatten=True, verify=True)
            s = Restorer(repo, options, cancel=cancel, clock=self.clock).restore(snap, str(folder))
            if s.errors:
                raise SafekeepError(
                    f"A copy of {path} could not be made: {s.errors[0][1]}",
                    hint="Check the destination (Check backups), or restore another version.",
                )
            copy = folder / posixpath.basename(path)
            os.chmod(copy, stat.S_IMODE(os.lstat(copy).st_mode) & ~0o222)
            return copy
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def _opened_dir(self) -> Path:
        base = (
            self.cache_dir
            if self.cache_dir is not None
            else Path(tempfile.gettempdir()) / f"safekeep-{os.getuid()}"
        )
        root = base / "opened"
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return root

    def _remove_old_copies(self, root: Path) -> None:
        """Remove the copies opened more than a day ago."""
        limit = self.clock.now().timestamp() - OPENED_COPY_LIFETIME
        try:
            entries = [e for e in os.scandir(root) if e.name.startswith("copy-")]
        except OSError as exc:
            log.info("cannot list %s: %s", root, exc)
            return
        for e in entries:
            try:
                if e.stat(follow_symlinks=False).st_mtime < limit:
                    shutil.rmtree(e.path)
            except OSError as exc:
                log.info("cannot remove the old copy %s: %s", e.path, exc)

    def _start_single(self, job: Job, on_event: Callable[[JobEvent], None] | None, action: Action) -> str:
        dest = job.destination
        plan_id = next((p.id for p in self.db.plans() if dest.id in p.destination_ids), "")
        run = Run(
            id=new_id(),
            plan_id=plan_id,
            kind=job.kind,
            reason=Reason.MANUAL,
            reason_text="",
            started=self.clock.now().timestamp(),
            outcome=Outcome.QUEUED,
        )
        self.db.add_run(run)
        self.db.set_worker(run.id, os.getpid())
        active = _Active(run)
        with self._lock:
            self._active[run.id] = active
        job = replace(job, run_id=run.id)
        target = describe("destination", dest.name, dest.id)
        if job.kind == "restore":
            target += f"; snapshot {job.snapshot_id[:8]} to {job.target}"
        counts: dict[str, object] = {}

        def watch(event: JobEvent) -> None:
            if event.kind == "restore_summary":
                counts.update(event.data)
            if on_event is not None:
                on_event(event)

        def work() -> None:
            result = DestinationResult(dest.id, Outcome.FAILED, error="The job did not start.")
            try:
                result, _ = self._run_job(job, active, watch)
                self.db.set_result(run.id, result)
                extra = _restore_details(job, counts) if job.kind == "restore" else None
                self._audit_result(action, target, result, extra)
            finally:
                self.db.finish_run(run.id, result.outcome, self.clock.now().timestamp())
                with self._lock:
                    self._active.pop(run.id, None)
                active.done.set()

        threading.Thread(target=work, name=f"{job.kind}-{run.id}", daemon=True).start()
        return run.id

    @contextlib.contextmanager
    def open_repository(self, destination: str, *, cancel: CancelToken = NEVER) -> Iterator[Repository]:
        """A destination's repository opened here, read-only (browsing; jobs use a worker)."""
        dest = self.destination(destination)
        password = self.destination_password(dest)
        backend = open_backend(dest.location, options=self.storage_options(dest, read_only=True))
        try:
            cache = str(self.cache_dir / "repositories") if self.cache_dir else None
            repo = Repository.open(
                backend, password, options=RepositoryOptions(cache_dir=cache), cancel=cancel
            )
            try:
                yield repo
            finally:
                repo.close()
        finally:
            backend.close()

    def snapshots(self, destination: str, *, cancel: CancelToken = NEVER) -> list[Snapshot]:
        """The destination's snapshots, oldest first."""
        with self.open_repository(destination, cancel=cancel) as repo:
            return sorted(repo.list_snapshots(cancel=cancel), key=lambda s: s.time)

    def list_dir(
        self, destination: str, snapshot_id: str, path: str = "/", *, cancel: CancelToken = NEVER
    ) -> list[Entry]:
        """One folder of a snapshot (read from the repository's trees)."""
        with self.open_repository(destination, cancel=cancel) as repo:
            repo.load_index(cancel=cancel)
            snap = repo.find_snapshot(snapshot_id, cancel=cancel)
            return list_dir(RepositoryTrees(repo), snap.tree, path, cancel=cancel)

    def _dest_by_id(self, dest_id: str) -> Destination:
        dest = self.db.destination(dest_id)
        if dest is None:
            raise DestinationNotFound([dest_id])
        return dest

    def _repo_lock(self, location: str) -> threading.Lock:
        with self._lock:
            return self._repo_locks.setdefault(location, threading.Lock())

    def _emit(self, event: JobEvent, on_event: Callable[[JobEvent], None] | None) -> None:
        with self._lock:
            targets = list(self._subscribers)
        if on_event is not None:
            targets.insert(0, on_event)
        for callback in targets:
            try:
                callback(event)
            except Exception:
                log.exception("an event subscriber failed")

    def _run_backup(
        self,
        plan: Plan,
        dests: list[Destination],
        active: _Active,
        on_event: Callable[[JobEvent], None] | None,
    ) -> None:
        results: list[DestinationResult] = []
        try:
            for dest in dests:
                target = (
                    describe("plan", plan.name, plan.id) + "; " + describe("destination", dest.name, dest.id)
                )
                audited = False
                if active.cancel.cancelled:
                    result = DestinationResult(
                        dest.id, Outcome.CANCELLED, error="Cancelled before it started."
                    )
                else:
                    job = Job(
                        kind="backup",
                        run_id=active.run.id,
                        destination=dest,
                        password="",
                        sources=plan.sources,
                        excludes=plan.excludes,
                        tags=(plan_tag(plan),),
                        retention=plan.retention.to_dict(),
                        audit_log=str(self.audit.path),
                        audit_target=target,
                    )
                    result, audited = self._run_job(job, active, on_event)
                results.append(result)
                self.db.set_result(active.run.id, result)
                if not audited:  # the worker did not get to write the entry itself
                    self._audit_result(Action.BACKUP, target, result)
        finally:
            outcome = Outcome.worst([r.outcome for r in results]) if results else Outcome.CANCELLED
            self.db.finish_run(active.run.id, outcome, self.clock.now().timestamp())
            with self._lock:
                self._active.pop(active.run.id, None)
            active.done.set()

    def _run_job(
        self, job: Job, active: _Active, on_event: Callable[[JobEvent], None] | None
    ) -> tuple[DestinationResult, bool]:
        dest = job.destination
        try:
            password = self.destination_password(dest)
            scope = self.secrets.scope(dest.id)
            secret_env = _secret_env(dest, scope)
            # everything else in the destination's scope (sign-in tokens) goes to the provider
            skip = {PASSWORD_SECRET, *dest.secret_env}
            store = {n: v for n in scope.names() if n not in skip and (v := scope.get(n)) is not None}
        except SafekeepError as exc:
            return DestinationResult(dest.id, Outcome.FAILED, error=exc.user_text()), False
        job = replace(
            job,
            password=password,
            secret_env=secret_env,
            store=store,
            cache_dir=str(self.cache_dir / "repositories") if self.cache_dir else None,
            kdf=(self._kdf.n, self._kdf.r, self._kdf.p) if self._kdf else None,
        )

        def relay(event: JobEvent) -> None:
            if event.kind == "secret":  # a provider rotated a token: keep the new one
                name = str(event.data.get("name", ""))
                value = event.data.get("value")
                if value is None:
                    scope.delete(name)
                else:
                    scope.set(name, str(value))
                return
            if event.kind == "progress":
                d = event.data
                active.progress = RunProgress(
                    destination_id=dest.id,
                    phase=str(d.get("phase", "")),
                    files_done=int(d.get("files_done", 0)),
                    files_total=int(d.get("files_total", -1)),
                    bytes_done=int(d.get("bytes_done", 0)),
                    bytes_total=int(d.get("bytes_total", -1)),
                    current_path=str(d.get("current_path", "")),
                )
            self._emit(event, on_event)

        with self._repo_lock(dest.location):
            if active.cancel.cancelled:
                return DestinationResult(
                    dest.id, Outcome.CANCELLED, error="Cancelled before it started."
                ), False
            self.db.update_run_outcome(active.run.id, Outcome.RUNNING)
            try:
                worker = WorkerRun(job, on_event=relay, command=self._worker_command, env=self._worker_env)
            except OSError as exc:
                error = f"The backup process could not be started: {exc}."
                return DestinationResult(dest.id, Outcome.FAILED, error=error), False
            active.worker = worker
            if active.cancel.cancelled:
                worker.cancel()
            try:
                result = worker.wait()
            finally:
                active.worker = None
            for problem in worker.audit_problems:
                log.warning("audit log copy on %s: %s", dest.name, problem)
            if result.outcome in (Outcome.INTERRUPTED, Outcome.CANCELLED) and worker.exit_code != 0:
                self._remove_dead_worker_locks(dest, password)
            return result, worker.audited

    def _remove_dead_worker_locks(self, dest: Destination, password: str) -> None:
        """After a worker died, remove the lock it left, so restic and the next run are not held up.

        Only locks of processes that no longer run on this computer are removed (restic's rule
        for stale locks); a failure here is logged, and the next worker tries again.
        """
        try:
            backend = open_backend(dest.location, options=self.storage_options(dest))
            try:
                repo = Repository.open(backend, password)
                try:
                    removed = remove_stale_locks(repo, clock=self.clock)
                finally:
                    repo.close()
            finally:
                backend.close()
        except (SafekeepError, OSError) as exc:
            log.warning("could not remove the lock left by the stopped backup of %s: %s", dest.name, exc)
            return
        if removed:
            log.info("removed %d lock(s) left by the stopped backup of %s", removed, dest.name)

    def cancel(self, run_id: str) -> bool:
        """Stop a run (queued destinations do not start); False if it is not running."""
        with self._lock:
            active = self._active.get(run_id)
        if active is None:
            return False
        active.cancel.cancel()
        if active.worker is not None:
            active.worker.cancel()
        return True

    def wait(self, run_id: str, timeout: float | None = None) -> Run:
        """Block until the run ends (or ``timeout``); the run as recorded."""
        with self._lock:
            active = self._active.get(run_id)
        if active is not None:
            active.done.wait(timeout)
        run = self.db.run(run_id)
        if run is None:
            raise SafekeepError(f"There is no run {run_id!r}.")
        return run

    def running(self) -> list[Run]:
        with self._lock:
            return [a.run for a in self._active.values()]

    def history(self, plan: str | None = None, limit: int = 50) -> list[Run]:
        plan_id = self.plan(plan).id if plan else None
        return self.db.runs(plan_id=plan_id, limit=limit)

    def status(self) -> list[PlanStatus]:
        out: list[PlanStatus] = []
        with self._lock:
            active_by_plan = {a.run.plan_id: a for a in self._active.values()}
        for plan in self.db.plans():
            runs = self.db.runs(plan_id=plan.id, limit=1, kind="backup")
            last = runs[0] if runs else None
            active = active_by_plan.get(plan.id)
            last_ok = self.db.last_success(plan.id)
            dest_states = {r.destination_id: r.outcome for r in (last.results if last else ())}
            if active is not None:
                state = Outcome.RUNNING if active.worker is not None else Outcome.QUEUED
                out.append(
                    PlanStatus(plan, state, last, last_ok, active.run.id, active.progress, dest_states)
                )
            else:
                state = last.outcome if last is not None else Outcome.QUEUED
                out.append(PlanStatus(plan, state, last, last_ok, destinations=dest_states))
        return out

    # ------------------------------------------------------------------ audit

    def audit_event(self, action: str, target: str, outcome: str, **details: object) -> None:
        try:
            self.audit.append(action=action, target=target, outcome=outcome, details=dict(details))
        except (OSError, SafekeepError) as exc:
            log.error("could not write to the audit log: %s", exc)

    def _audit_result(
        self,
        action: Action,
        target: str,
        result: DestinationResult,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        details: dict[str, object] = {"destination_id": result.destination_id, **(extra or {})}
        if result.snapshot_id:
            details["snapshot"] = result.snapshot_id
        if result.skipped_count:
            details["skipped"] = result.skipped_count
        if result.error:
            details["error"] = result.error
        self.audit_event(action, target, result.outcome.value, **details)


def _conflict_policy(value: str) -> ConflictPolicy:
    try:
        return ConflictPolicy(value)
    except ValueError:
        raise UsageError(
            f"Unknown conflict policy {value!r}.",
            hint="Use " + ", ".join(p.value for p in ConflictPolicy) + ".",
        ) from None


def _restore_details(job: Job, counts: Mapping[str, object]) -> dict[str, object]:
    """A restore's audit details: where to, what (the first paths), how, and what it did."""
    details: dict[str, object] = {
        "into": job.target,
        "paths": [p[:MAX_AUDIT_PATH] for p in job.paths[:MAX_AUDIT_PATHS]],
        "paths_count": len(job.paths),
        "conflict": job.conflict,
        "flatten": job.flatten,
        "verify": job.verify,
    }
    if job.decisions:
        details["decisions"] = len(job.decisions)
    for key in RESTORE_COUNTS:
        value = counts.get(key)
        if isinstance(value, int):
            details[key] = value
    return details


def _secret_env(dest: Destination, scope: SecretStore) -> dict[str, str]:
    """The values of the destination's secret variables, from its keyring scope."""
    return {n: v for n in dest.secret_env if (v := scope.get(n)) is not None}
