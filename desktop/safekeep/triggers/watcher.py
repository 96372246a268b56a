"""The file-change trigger: watch a plan's source folders and run it when files change.

Events come from watchdog (inotify, FSEvents, ReadDirectoryChangesW). Each plan has a
:class:`Debouncer`: after the first change of a *burst* it waits until the folder has been quiet
for ``quiet_seconds`` (default 60 s), but never longer than ``max_delay_seconds`` (default 15 min)
after that first change, so a folder that never goes quiet is still backed up. A burst of any
size gives one run. Changes that arrive while the plan is running are collected and give exactly
one follow-up run when it ends (the engine reports runs with :meth:`ChangeWatcher.run_started`
and :meth:`ChangeWatcher.run_finished`).

Ignored: paths the plan excludes (the same patterns as the backup, via
:class:`~safekeep.core.fs.exclude.Excluder`, applied to every folder on the way down), temporary
and lock files (:data:`TEMPORARY_PATTERNS`: ``~$*``, ``*.tmp``, ``.~lock.*#``, ``*.swp`` ...),
folders given in ``ignore_paths`` (a local repository inside a source, Safekeep's own cache and
database), reads (open/close without writing) and a folder's own "modified" events.

Network shares (NFS, SMB/CIFS, sshfs and other FUSE file systems; found through ``/proc/mounts`` on
Linux, ``mount`` on macOS and the drive type on Windows) do not report changes made by other
computers, so they are watched with watchdog's polling observer instead; the same happens when the
system refuses more native watches. :attr:`ChangeWatcher.polled` says which folders are polled and
why, for the window to show, and a warning is logged.

Time comes from the injected :class:`~safekeep.common.clock.Clock` (monotonic readings). A
background thread fires due batches; tests drive :meth:`ChangeWatcher.handle_event` and
:meth:`ChangeWatcher.process_due` with a fake clock instead.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from safekeep.common.clock import SYSTEM_CLOCK, Clock
from safekeep.core.fs.exclude import Excluder
from safekeep.triggers.rules import InvalidSchedule

log = logging.getLogger(__name__)

DEFAULT_QUIET_SECONDS = 60.0
DEFAULT_MAX_DELAY_SECONDS = 15 * 60.0

TEMPORARY_PATTERNS = (
    "~$*",  # Microsoft Office owner files
    ".~lock.*#",  # LibreOffice locks
    "*.tmp",
    "*.temp",
    "*.swp",
    "*.swo",
    "*.swx",
    "*~",
    ".#*",  # Emacs locks
    "4913",  # Vim's write test
    "*.part",
    "*.partial",
    "*.crdownload",
    ".goutputstream-*",  # GNOME's atomic saves
    "*.kate-swp",
    ".DS_Store",
    "Thumbs.db",
)
"""File names whose changes never trigger a run (temporary files, locks, desktop noise)."""

NETWORK_FILE_SYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ncpfs",
        "afs",
        "9p",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "davfs",
        "webdav",
        "afpfs",
        "sshfs",
    }
)
"""File system types that do not report other computers' changes (``fuse.*`` counts too)."""

_COUNTED_EVENTS = (
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileClosedEvent,
    FileAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
)
_SAMPLE = 20


def parse_watch_params(params: Mapping[str, Any]) -> tuple[float, float]:
    """``(quiet_seconds, max_delay_seconds)`` of a ``file-change`` trigger, with the defaults."""

    def number(key: str, default: float) -> float:
        value = params.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InvalidSchedule(
                f"'{key}' of a file-change trigger must be a number of seconds, not {value!r}."
            )
        try:
            return float(value)
        except ValueError:
            raise InvalidSchedule(
                f"'{key}' of a file-change trigger must be a number of seconds, not {value!r}."
            ) from None

    quiet = number("quiet_seconds", DEFAULT_QUIET_SECONDS)
    max_delay = number("max_delay_seconds", DEFAULT_MAX_DELAY_SECONDS)
    if quiet <= 0 or max_delay <= 0:
        raise InvalidSchedule("The waiting times of a file-change trigger must be more than zero seconds.")
    if max_delay < quiet:
        raise InvalidSchedule(
            f"The longest wait ({max_delay:g} s) is shorter than the quiet period ({quiet:g} s).",
            hint="Make the longest wait at least as long as the quiet period.",
        )
    return quiet, max_delay


@dataclass(frozen=True, slots=True)
class WatchSpec:
    """What to watch for one plan.

    ``sources``: the plan's folders (watched recursively); ``excludes``: its exclusion patterns;
    ``ignore_paths``: folders whose changes never count (a local repository inside a source,
    Safekeep's cache and database folders); ``force_polling`` polls even on a local disk.
    """

    plan_id: str
    sources: tuple[str, ...]
    excludes: tuple[str, ...] = ()
    ignore_paths: tuple[str, ...] = ()
    quiet_seconds: float = DEFAULT_QUIET_SECONDS
    max_delay_seconds: float = DEFAULT_MAX_DELAY_SECONDS
    force_polling: bool = False


@dataclass(frozen=True, slots=True)
class ChangeBatch:
    """A burst of changes that asks for one run. Times are the clock's monotonic readings."""

    plan_id: str
    events: int
    first_event: float
    last_event: float
    fired_at: float
    sample: tuple[str, ...]
    by_max_delay: bool
    """True when the folder never went quiet and the maximum delay fired the run."""

    def describe(self) -> str:
        """The run's reason text: how many changes, and an example."""
        what = "1 change" if self.events == 1 else f"{self.events:,} changes"
        text = f"{what} in the watched folders"
        if self.sample:
            text += f", e.g. {self.sample[-1]}"
        if self.by_max_delay:
            text += " (the folders kept changing; not waiting any longer)"
        return text


class Debouncer:
    """Turns change events into batches: quiet period, maximum delay, one follow-up per run."""

    def __init__(self, quiet_seconds: float, max_delay_seconds: float) -> None:
        self.quiet = quiet_seconds
        self.max_delay = max_delay_seconds
        self.running = False
        self._first: float | None = None
        self._last = 0.0
        self._count = 0
        self._sample: list[str] = []

    @property
    def pending(self) -> bool:
        return self._first is not None

    def event(self, now: float, path: str = "") -> None:
        if self._first is None:
            self._first = now
        self._last = max(self._last, now)
        self._count += 1
        if path:
            if path in self._sample:
                self._sample.remove(path)
            self._sample.append(path)
            del self._sample[:-_SAMPLE]

    def due_at(self) -> float | None:
        """When the pending batch should fire; None if nothing is pending or a run is going on."""
        if self._first is None or self.running:
            return None
        return min(self._last + self.quiet, self._first + self.max_delay)

    def take(self, now: float, plan_id: str) -> ChangeBatch | None:
        """The pending batch if it is due at ``now``; the plan then counts as running."""
        due = self.due_at()
        if due is None or now < due or self._first is None:
            return None
        batch = ChangeBatch(
            plan_id=plan_id,
            events=self._count,
            first_event=self._first,
            last_event=self._last,
            fired_at=now,
            sample=tuple(self._sample),
            by_max_delay=self._first + self.max_delay < self._last + self.quiet,
        )
        self._clear()
        self.running = True
        return batch

    def run_started(self) -> None:
        """A run started (for any reason): changes so far are part of it."""
        self._clear()
        self.running = True

    def run_finished(self) -> None:
        """The run ended: changes during it (if any) now wait for their own run."""
        self.running = False

    def give_back(self, batch: ChangeBatch, now: float) -> None:
        """A batch could not start a run: keep its changes pending and try after a quiet period."""
        self.running = False
        self._first = batch.first_event if self._first is None else min(self._first, batch.first_event)
        self._count += batch.events
        self._last = max(self._last, now)
        self._sample = [*batch.sample, *self._sample][-_SAMPLE:]

    def _clear(self) -> None:
        self._first = None
        self._last = 0.0
        self._count = 0
        self._sample = []


# ---------------------------------------------------------------------------------------------
# Filtering


def _norm(path: str) -> str:
    return os.path.normpath(os.path.abspath(path))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class PathFilter:
    """Decides whether a change at a path counts for a plan."""

    def __init__(self, spec: WatchSpec) -> None:
        self._roots = tuple(_norm(s) for s in spec.sources)
        self._ignored = tuple(_norm(p) for p in spec.ignore_paths)
        self._excluder = Excluder(list(spec.excludes))
        self._temporary = Excluder(list(TEMPORARY_PATTERNS))

    def counts(self, path: str) -> bool:
        path = _norm(path)
        if any(_under(path, p) for p in self._ignored):
            return False
        if self._temporary.excluded(path):
            return False
        root = next((r for r in self._roots if _under(path, r)), None)
        if root is None:
            return False
        if self._excluder:
            p = path
            while True:
                if self._excluder.excluded(p.replace(os.sep, "/")):
                    return False
                if p == root:
                    break
                parent = os.path.dirname(p)
                if parent == p:
                    break
                p = parent
        return True


# ---------------------------------------------------------------------------------------------
# Network shares


@dataclass(frozen=True, slots=True)
class Mount:
    point: str
    fstype: str
    source: str = ""


def parse_proc_mounts(text: str) -> list[Mount]:
    """The entries of Linux's ``/proc/mounts`` (octal escapes such as ``\\040`` decoded)."""

    def unescape(s: str) -> str:
        return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), s)

    mounts = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            mounts.append(Mount(unescape(parts[1]), parts[2], unescape(parts[0])))
    return mounts


def parse_bsd_mount_output(text: str) -> list[Mount]:
    """The entries of macOS's ``mount`` output: ``SOURCE on POINT (TYPE, options...)``."""
    mounts = []
    for line in text.splitlines():
        m = re.match(r"^(.*) on (.*) \(([^,)]+)", line)
        if m:
            mounts.append(Mount(m[2], m[3].strip(), m[1]))
    return mounts


def system_mounts() -> list[Mount]:
    """The computer's mounted file systems (empty where they cannot be read)."""
    try:
        if sys.platform.startswith("linux"):
            with open("/proc/mounts", encoding="utf-8", errors="replace") as f:
                return parse_proc_mounts(f.read())
        if sys.platform == "darwin":
            out = subprocess.run(["/sbin/mount"], capture_output=True, text=True, timeout=10, check=False)
            return parse_bsd_mount_output(out.stdout)
    except (OSError, subprocess.SubprocessError):
        log.warning("the list of mounted file systems could not be read", exc_info=True)
    return []


def _windows_remote(path: str) -> bool:
    if path.startswith(("\\\\", "//")):
        return True
    if sys.platform == "win32":
        drive = os.path.splitdrive(path)[0]
        if drive:
            return bool(ctypes.windll.kernel32.GetDriveTypeW(drive + "\\") == 4)  # DRIVE_REMOTE
    return False


def polling_reason(path: str, mounts: Iterable[Mount]) -> str | None:
    """Why ``path`` must be polled (it is on a network share), or None for native events."""
    real = os.path.realpath(path)
    if _windows_remote(real):
        return f"{path} is on a network drive"
    best: Mount | None = None
    for m in mounts:
        if _under(real, m.point) and (best is None or len(m.point) > len(best.point)):
            best = m
    if best is None:
        return None
    fstype = best.fstype.lower()
    if fstype in NETWORK_FILE_SYSTEMS or fstype.startswith(("fuse.", "nfs")) or fstype == "fuse":
        return f"{path} is on a network or FUSE file system ({best.fstype} at {best.point})"
    return None


# ---------------------------------------------------------------------------------------------
# The watcher


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: ChangeWatcher, plan_id: str) -> None:
        self._watcher = watcher
        self._plan_id = plan_id

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._watcher._on_fs_event(self._plan_id, event)


class ChangeWatcher:
    """Watches plans' source folders and calls ``on_change(batch)`` when a plan should run.

    ``on_change`` must return quickly (start the run in the background). The engine then reports
    the run's end with :meth:`run_finished`, and any run it starts for other reasons with
    :meth:`run_started`, so changes during a run lead to exactly one follow-up run.
    """

    def __init__(
        self,
        on_change: Callable[[ChangeBatch], None],
        *,
        clock: Clock = SYSTEM_CLOCK,
        mounts: Callable[[], list[Mount]] = system_mounts,
        polling_interval: float = 60.0,
        observer_timeout: float = 1.0,
    ) -> None:
        self._on_change = on_change
        self._clock = clock
        self._mounts = mounts
        self.polling_interval = polling_interval
        self._observer_timeout = observer_timeout
        self._specs: dict[str, WatchSpec] = {}
        self._filters: dict[str, PathFilter] = {}
        self._debouncers: dict[str, Debouncer] = {}
        self._polled: dict[str, str] = {}
        self._problems: dict[str, str] = {}
        self._cond = threading.Condition()
        self._native: BaseObserver | None = None
        self._polling: BaseObserver | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.ignored_events = 0

    # -- configuration --------------------------------------------------------------------------

    def set_plans(self, specs: Iterable[WatchSpec]) -> None:
        """Watch exactly these plans (replacing the previous set)."""
        new = {s.plan_id: s for s in specs}
        with self._cond:
            if new == self._specs:
                return
            self._specs = new
            self._filters = {pid: PathFilter(s) for pid, s in new.items()}
            old = self._debouncers
            self._debouncers = {}
            for pid, s in new.items():
                d = old.get(pid)  # keeps pending changes and the running flag
                if d is None:
                    d = Debouncer(s.quiet_seconds, s.max_delay_seconds)
                d.quiet, d.max_delay = s.quiet_seconds, s.max_delay_seconds
                self._debouncers[pid] = d
            running = self._thread is not None
        if running:
            self._schedule_all()
        self._notify()

    @property
    def polled(self) -> Mapping[str, str]:
        """Folders watched by polling rather than native events, with the reason."""
        with self._cond:
            return dict(self._polled)

    @property
    def problems(self) -> Mapping[str, str]:
        """Folders that cannot be watched at all, with the reason."""
        with self._cond:
            return dict(self._problems)

    def is_polled(self, plan_id: str) -> bool:
        with self._cond:
            spec = self._specs.get(plan_id)
            return spec is not None and any(_norm(s) in self._polled for s in spec.sources)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the observers and the thread that fires due batches."""
        with self._cond:
            if self._thread is not None:
                return
            self._stopping = False
            self._native = Observer(timeout=self._observer_timeout)
            self._polling = PollingObserver(timeout=self.polling_interval)
            self._native.start()
            self._polling.start()
            self._thread = threading.Thread(target=self._loop, name="safekeep-change-watcher", daemon=True)
            self._thread.start()
        self._schedule_all()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            thread, self._thread = self._thread, None
            observers = [o for o in (self._native, self._polling) if o is not None]
            self._native = self._polling = None
            self._cond.notify_all()
        for o in observers:
            o.stop()
        for o in observers:
            o.join(timeout=10)
        if thread is not None:
            thread.join(timeout=10)

    def __enter__(self) -> ChangeWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _schedule_all(self) -> None:
        with self._cond:
            native, polling = self._native, self._polling
            specs = list(self._specs.values())
        if native is None or polling is None:
            return
        native.unschedule_all()
        polling.unschedule_all()
        mounts = self._mounts()
        polled: dict[str, str] = {}
        problems: dict[str, str] = {}
        for spec in specs:
            handler = _Handler(self, spec.plan_id)
            for source in spec.sources:
                path = _norm(source)
                reason = (
                    "polling was chosen for this plan" if spec.force_polling else polling_reason(path, mounts)
                )
                if reason is None:
                    try:
                        native.schedule(handler, path, recursive=True, event_filter=list(_COUNTED_EVENTS))
                        continue
                    except OSError as exc:
                        if not os.path.isdir(path):
                            problems[path] = f"the folder cannot be watched: {exc.strerror or exc}"
                            log.warning("cannot watch %s for changes: %s", path, exc)
                            continue
                        reason = f"the system refused to watch {path} for changes ({exc.strerror or exc})"
                try:
                    polling.schedule(handler, path, recursive=True)
                except OSError as exc:
                    problems[path] = f"the folder cannot be watched: {exc.strerror or exc}"
                    log.warning("cannot watch %s for changes: %s", path, exc)
                    continue
                polled[path] = reason
                log.warning(
                    "%s; changes there are found by checking every %g s instead of being reported",
                    reason,
                    self.polling_interval,
                )
        with self._cond:
            self._polled = polled
            self._problems = problems

    # -- events ---------------------------------------------------------------------------------

    def _on_fs_event(self, plan_id: str, event: FileSystemEvent) -> None:
        if not isinstance(event, _COUNTED_EVENTS):
            return
        paths = [os.fsdecode(event.src_path)]
        if event.dest_path:
            paths.append(os.fsdecode(event.dest_path))
        self.handle_event(plan_id, *paths)

    def handle_event(self, plan_id: str, *paths: str) -> bool:
        """A change at ``paths`` (one, or a move's source and destination). True if it counts."""
        with self._cond:
            flt = self._filters.get(plan_id)
            debouncer = self._debouncers.get(plan_id)
            if flt is None or debouncer is None:
                return False
            counted = [p for p in paths if flt.counts(p)]
            if not counted:
                self.ignored_events += 1
                return False
            debouncer.event(self._clock.monotonic(), counted[-1])
            self._cond.notify_all()
            return True

    def run_started(self, plan_id: str) -> None:
        """The engine started a run of the plan (for any reason)."""
        with self._cond:
            d = self._debouncers.get(plan_id)
            if d is not None:
                d.run_started()

    def run_finished(self, plan_id: str) -> None:
        """The plan's run ended; changes made during it get one follow-up run."""
        with self._cond:
            d = self._debouncers.get(plan_id)
            if d is not None:
                d.run_finished()
            self._cond.notify_all()

    def process_due(self) -> list[ChangeBatch]:
        """Fire every batch that is due now; return them."""
        with self._cond:
            now = self._clock.monotonic()
            batches = [b for pid, d in self._debouncers.items() if (b := d.take(now, pid)) is not None]
        for batch in batches:
            log.info("plan %s: %s", batch.plan_id, batch.describe())
            try:
                self._on_change(batch)
            except Exception:
                log.exception("the run for changes in plan %s could not be started", batch.plan_id)
                with self._cond:
                    d = self._debouncers.get(batch.plan_id)
                    if d is not None:
                        d.give_back(batch, self._clock.monotonic())
        return batches

    def next_due(self) -> float | None:
        """The monotonic time at which the next batch is due, if any."""
        with self._cond:
            dues = [t for d in self._debouncers.values() if (t := d.due_at()) is not None]
            return min(dues) if dues else None

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                due = self.next_due()
                now = self._clock.monotonic()
                if due is None or due > now:
                    self._cond.wait(timeout=1.0 if due is None else min(due - now, 1.0))
                    continue
            self.process_due()
