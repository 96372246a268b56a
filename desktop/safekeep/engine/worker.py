"""The job worker: runs one :class:`~safekeep.engine.jobs.Job` and reports as JSON lines.

It runs as ``safekeep run-job`` in a child process of the app, the daemon or
``safekeep backup --plan``. Protocol on its pipes:

* stdin: the job as one JSON line, then control lines; ``{"cancel": true}`` cancels. A closed
  stdin (the parent died) cancels too, and so does SIGTERM.
* stdout: events (:mod:`safekeep.engine.events`), one per line, the last one ``finished`` or
  ``failed``.
* stderr: log messages, which the parent keeps for a crash report.

A cancelled backup writes no snapshot and leaves the repository valid (packs are written before
the index, the index before the snapshot; restic calls such unreferenced packs harmless). Before
working the worker removes stale locks left by dead processes on this computer, so a job after a
crash recovers by itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import IO, Any

from safekeep.common.cancel import CancelToken
from safekeep.common.errors import Cancelled, SafekeepError
from safekeep.common.progress import Progress
from safekeep.core.archiver import Archiver, BackupOptions
from safekeep.core.checker import Checker, CheckOptions
from safekeep.core.format.keys import KDFParams
from safekeep.core.locks import Lock, remove_stale_locks
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.core.restorer import ConflictPolicy, RestoreOptions, Restorer, RestoreReport, RestoreSummary
from safekeep.engine import allocator
from safekeep.engine.events import JobEvent
from safekeep.engine.jobs import Job, storage_options
from safekeep.engine.restore_reports import write_report
from safekeep.engine.retention import AuditEntry, after_backup, apply_retention, keep_rules
from safekeep.state.audit import Action, AuditLog, upload_copy
from safekeep.state.model import DestinationResult, Outcome, SkippedFile
from safekeep.storage.compose import open_backend
from safekeep.storage.registry import parse_location
from safekeep.storage.validate import free_space
from safekeep.triggers.space import SpaceReading, SpaceThreshold, check_space, local_space

log = logging.getLogger(__name__)

MAX_SKIPPED_REPORTED = 10_000


class Emitter:
    """Writes events to the parent, one line each, from any thread."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._lock = threading.Lock()
        self.audited = False  # the job wrote its own audit entry
        self.audit_problems: list[str] = []

    def __call__(self, kind: str, **data: Any) -> None:
        line = JobEvent(kind, data=data).to_line()
        with self._lock:
            self._out.write(line)
            self._out.flush()


class _ProgressEvents:
    def __init__(self, emit: Emitter) -> None:
        self._emit = emit

    def progress(self, p: Progress) -> None:
        self._emit(
            "progress",
            phase=p.phase,
            files_done=p.files_done,
            files_total=p.files_total,
            bytes_done=p.bytes_done,
            bytes_total=p.bytes_total,
            errors=p.errors,
            current_path=p.current_path,
            elapsed=round(p.elapsed, 3),
        )


class _RetentionProgress(_ProgressEvents):
    """Prune's progress after a backup, as the phase ``retention`` (the app shows "removing old
    backups"); prune's own step is in ``current_path``."""

    def progress(self, p: Progress) -> None:
        super().progress(replace(p, phase="retention", current_path=p.phase))


class _ReportingStore:
    """The destination's secrets as the provider sees them; changes go back to the parent."""

    def __init__(self, initial: dict[str, str], emit: Emitter) -> None:
        self._items = dict(initial)
        self._emit = emit
        self._lock = threading.Lock()

    def get(self, name: str) -> str | None:
        with self._lock:
            return self._items.get(name)

    def set(self, name: str, value: str) -> None:
        with self._lock:
            self._items[name] = value
        self._emit("secret", name=name, value=value)

    def delete(self, name: str) -> None:
        with self._lock:
            self._items.pop(name, None)
        self._emit("secret", name=name, value=None)

    def __repr__(self) -> str:
        return "_ReportingStore(***)"


@contextlib.contextmanager
def open_repository(job: Job, emit: Emitter, cancel: CancelToken) -> Iterator[Repository]:
    dest = job.destination
    options = storage_options(dest, job.secret_env, _ReportingStore(dict(job.store), emit))
    backend = open_backend(dest.location, options=options)
    try:
        kdf = KDFParams(*job.kdf) if job.kdf else None
        repo = Repository.open(
            backend,
            job.password,
            options=RepositoryOptions(cache_dir=job.cache_dir, kdf=kdf),
            cancel=cancel,
        )
        try:
            yield repo
        finally:
            repo.close()
    finally:
        backend.close()


def _skipped(errors: list[tuple[str, str]]) -> tuple[SkippedFile, ...]:
    return tuple(SkippedFile(p, m) for p, m in errors[:MAX_SKIPPED_REPORTED])


def run_backup(job: Job, emit: Emitter, cancel: CancelToken) -> DestinationResult:
    started = time.time()
    with open_repository(job, emit, cancel) as repo:
        stale = remove_stale_locks(repo)
        if stale:
            log.warning("removed %d stale lock(s) left by processes that no longer run", stale)
        # restic's 200 ms wait before the second look for conflicting locks overlaps with loading
        # the index and walking the files: the repository writes nothing until the look passed
        with Lock(repo, exclusive=False).acquire(cancel=cancel, confirm_later=True) as lock:
            repo.set_write_guard(lock.confirm)
            repo.load_index(cancel=cancel)
            archiver = Archiver(
                repo,
                BackupOptions(excludes=job.excludes, tags=job.tags),
                progress=_ProgressEvents(emit),
                cancel=cancel,
            )
            archiver.recorder.on_record = lambda item: emit(
                "file_error", path=item.path, message=item.message
            )
            _, summary = archiver.backup(list(job.sources))
            lock.confirm()  # a backup that wrote nothing new still reports a conflict it ran into
            repo.set_write_guard(None)
            result = DestinationResult(
                destination_id=job.destination.id,
                outcome=Outcome.WARNING if summary.errors else Outcome.SUCCESS,
                snapshot_id=summary.snapshot_id,
                files=summary.total_files_processed,
                bytes=summary.total_bytes_processed,
                bytes_added=summary.data_added_packed,
                skipped=_skipped(summary.errors),
                started=started,
                finished=time.time(),
            )
            result = with_space_warning(job, repo, result)
            record_and_copy_audit(job, repo, result, emit, cancel)
        if not keep_rules(job.retention).empty():
            result = _apply_retention(job, repo, result, emit, cancel)
    return result


def _apply_retention(
    job: Job, repo: Repository, result: DestinationResult, emit: Emitter, cancel: CancelToken
) -> DestinationResult:
    """The plan's retention after its backup (:mod:`safekeep.engine.retention`); reported as a
    ``retention`` event and in the audit log."""
    rules, progress = keep_rules(job.retention), _RetentionProgress(emit)

    def record(entry: AuditEntry) -> None:  # a removal is recorded even when cancelled later
        record_audit_entries(job, repo, [entry], emit, CancelToken())

    result, done = after_backup(
        result,
        lambda: apply_retention(
            repo, rules, job.tags, job.destination.id, progress=progress, cancel=cancel, record=record
        ),
    )
    if done is not None:
        freed = done.pruned.bytes_freed if done.pruned else 0
        emit("retention", removed=list(done.removed), kept=done.kept, bytes_freed=freed)
    return result


def with_space_warning(job: Job, repo: Repository, result: DestinationResult) -> DestinationResult:
    """Warn (outcome WARNING, the message in ``error``) when the destination is filling up,
    before backups start failing. Storage that does not report its free space is not judged."""
    try:
        free = free_space(repo.backend)
    except (SafekeepError, OSError) as exc:
        log.info("free space of %s unknown: %s", job.destination.name, exc)
        return result
    if free is None:
        return result
    total = None
    if parse_location(job.destination.location).scheme == "local":
        with contextlib.suppress(OSError):
            reading = local_space(job.destination.location)
            free, total = reading.free_bytes, reading.total_bytes
    warning = check_space(
        job.destination.name,
        SpaceReading(free, total),
        SpaceThreshold.from_mib(job.destination.low_space_mib),
        expected_bytes=result.bytes_added,
    )
    if warning is None:
        return result
    log.warning("%s %s", warning.message, warning.hint)
    outcome = Outcome.worst([result.outcome, Outcome.WARNING])
    return replace(result, outcome=outcome, error=f"{warning.message} {warning.hint}")


def record_and_copy_audit(
    job: Job, repo: Repository, result: DestinationResult, emit: Emitter, cancel: CancelToken
) -> None:
    """Append the job's audit entry, then store the log's off-site copy in the repository.

    A failure here never fails the backup: it is logged, and reported to the parent as an
    ``audit`` field of the ``finished`` event so the app can warn.
    """
    details: dict[str, object] = {"destination_id": job.destination.id, "snapshot": result.snapshot_id}
    if result.skipped_count:
        details["skipped"] = result.skipped_count
    if record_audit_entries(job, repo, [(Action.BACKUP, result.outcome.value, details)], emit, cancel):
        emit.audited = True


def record_audit_entries(
    job: Job,
    repo: Repository,
    entries: Iterable[tuple[Action, str, Mapping[str, object]]],
    emit: Emitter,
    cancel: CancelToken,
) -> bool:
    """Append ``(action, outcome, details)`` entries for the job's target, then refresh the
    log's off-site copy; whether the entries were appended (problems go to ``emit``)."""
    if not job.audit_log:
        return False
    audit = AuditLog(job.audit_log)
    appended = False
    try:
        for action, outcome, details in entries:
            audit.append(action, target=job.audit_target, outcome=outcome, details=details)
            appended = True
        copy = upload_copy(repo, audit, cancel=cancel)
        for problem in copy.problems:
            log.warning("the audit log's off-site copy disagrees with this computer's: %s", problem.message)
            emit.audit_problems.append(problem.message)
    except (SafekeepError, OSError) as exc:
        log.warning("could not update the audit log or its off-site copy: %s", exc)
        emit.audit_problems.append(str(exc))
    return appended


def run_check(job: Job, emit: Emitter, cancel: CancelToken) -> DestinationResult:
    started = time.time()
    with open_repository(job, emit, cancel) as repo:
        with Lock(repo, exclusive=False).acquire(cancel=cancel):
            result = Checker(
                repo, CheckOptions(read_data=job.read_data), progress=_ProgressEvents(emit), cancel=cancel
            ).run()
    problems = [p.message for p in result.errors]
    return DestinationResult(
        destination_id=job.destination.id,
        outcome=Outcome.SUCCESS if result.ok else Outcome.FAILED,
        error="; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""),
        started=started,
        finished=time.time(),
    )


def run_restore(job: Job, emit: Emitter, cancel: CancelToken) -> DestinationResult:
    started = time.time()
    options = RestoreOptions(
        include=job.paths,
        conflict=ConflictPolicy(job.conflict),
        decisions={path: ConflictPolicy(policy) for path, policy in job.decisions.items()},
        flatten=job.flatten,
        verify=job.verify,
    )
    with open_repository(job, emit, cancel) as repo:
        with Lock(repo, exclusive=False).acquire(cancel=cancel):
            repo.load_index(cancel=cancel)
            snap = repo.find_snapshot(job.snapshot_id or "latest", cancel=cancel)
            restorer = Restorer(repo, options, progress=_ProgressEvents(emit), cancel=cancel)
            restorer.recorder.on_record = lambda item: emit(
                "file_error", path=item.path, message=item.message
            )
            try:
                s = restorer.restore(snap, job.target)
            except Cancelled:
                _report_restore(job, snap.id, restorer.summary, emit, complete=False)
                raise
            _report_restore(job, snap.id, s, emit, complete=True)
    return DestinationResult(
        destination_id=job.destination.id,
        outcome=Outcome.WARNING if s.errors else Outcome.SUCCESS,
        snapshot_id=snap.id,
        files=s.files_restored,
        bytes=s.bytes_written,
        skipped=_skipped(s.errors),
        started=started,
        finished=time.time(),
    )


def _report_restore(job: Job, snapshot_id: str, s: RestoreSummary, emit: Emitter, *, complete: bool) -> None:
    """Write the restore's report (``job.report_dir``) and send its counts as ``restore_summary``.

    A report that cannot be written is logged; the restore's outcome does not change."""
    report = RestoreReport.of(
        s, run_id=job.run_id, snapshot_id=snapshot_id, target=job.target, complete=complete
    )
    path = ""
    if job.report_dir and job.run_id:
        try:
            path = str(write_report(job.report_dir, report))
        except (OSError, ValueError) as exc:
            log.warning("could not write the restore report: %s", exc)
    emit("restore_summary", **report.counts(), complete=complete, report=path)


RUNNERS: dict[str, Callable[[Job, Emitter, CancelToken], DestinationResult]] = {
    "backup": run_backup,
    "check": run_check,
    "restore": run_restore,
}


def _watch_stdin(stdin: IO[str], cancel: CancelToken) -> None:
    for line in stdin:
        try:
            msg = json.loads(line)
        except ValueError:
            log.warning("ignoring a control line that is not JSON")
            continue
        if isinstance(msg, dict) and msg.get("cancel"):
            log.info("cancel requested")
            cancel.cancel()
    # the parent closed our stdin (it finished with us, or it died): stop
    cancel.cancel()


def serve(stdin: IO[str], stdout: IO[str], *, tune_memory: bool = False) -> int:
    """Read one job from ``stdin``, run it, report on ``stdout``; returns the exit status.

    ``tune_memory``: this process exists for the job (``safekeep run-job``), so a backup may set
    the allocator up for itself (:mod:`~safekeep.engine.allocator`) before its threads start."""
    emit = Emitter(stdout)
    first = stdin.readline()
    try:
        job = Job.from_json(first)
    except (ValueError, KeyError, TypeError) as exc:
        emit("failed", message=f"The job description could not be read: {exc}.", hint="")
        return 2
    if tune_memory and job.kind == "backup":
        allocator.tune()
    cancel = CancelToken()
    threading.Thread(target=_watch_stdin, args=(stdin, cancel), name="job-control", daemon=True).start()
    with contextlib.suppress(ValueError):  # not the main thread (tests call serve in-process)
        signal.signal(signal.SIGTERM, lambda *_: cancel.cancel())
    runner = RUNNERS.get(job.kind)
    if runner is None:
        emit("failed", message=f"Unknown job kind {job.kind!r}.", hint="")
        return 2
    emit("started", destination_id=job.destination.id, location=job.destination.location)
    try:
        result = runner(job, emit, cancel)
    except Cancelled:
        result = DestinationResult(
            job.destination.id, Outcome.CANCELLED, error="Cancelled; nothing was left half-written."
        )
    except SafekeepError as exc:
        emit("failed", message=exc.message, hint=exc.hint)
        return 1
    except Exception as exc:  # a bug: report it as a failure the person can pass on
        log.exception("the job failed unexpectedly")
        emit("failed", message=f"An unexpected error stopped the job: {exc!r}.", hint="")
        return 1
    emit("finished", result=result.to_dict(), audited=emit.audited, audit_problems=emit.audit_problems)
    return 0


def main() -> int:
    """Entry point of ``safekeep run-job``."""
    sys.stdout.reconfigure(encoding="utf-8")  # type: ignore[union-attr]
    sys.stdin.reconfigure(encoding="utf-8")  # type: ignore[union-attr]
    return serve(sys.stdin, sys.stdout, tune_memory=True)
