"""restic's lock protocol, so Safekeep, restic and other clients can share a repository.

A lock is an encrypted JSON file in ``locks/``: ``time``, ``exclusive``, ``hostname``,
``username``, ``pid``, ``uid``, ``gid``. Backups take non-exclusive locks; operations that remove
data take exclusive ones. A lock is **stale** when its time is more than 30 minutes old, or when
it was made on this host by a process that no longer runs.

Taking a lock: look for conflicting locks, write ours, wait 200 ms, look again (another client
may have written at the same moment), and give up with a clear message naming the holder if there
is a conflict. A held lock is refreshed every 5 minutes (a new lock file replaces the old one).

The 200 ms wait need not be idle: ``acquire(confirm_later=True)`` returns as soon as our lock file
is written, so the caller can read (load the index, walk the files to back up) meanwhile, and
:meth:`Lock.confirm` waits out the rest of the 200 ms and looks again. ``confirm`` must pass
before anything is written to the repository: :meth:`Repository.set_write_guard` makes the
repository call it before its first write. A command that only reads calls it before it reports
anything.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.clock import SYSTEM_CLOCK, Clock
from safekeep.core.errors import IntegrityError, RepositoryLocked
from safekeep.core.format.times import format_time, local_now, parse_time
from safekeep.core.repository import Repository, _username
from safekeep.storage.base import FileType, Handle
from safekeep.storage.errors import NotFound

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(minutes=30)
WAIT_BEFORE_CHECK = 0.2
REFRESH_INTERVAL = 5 * 60.0


@dataclass(frozen=True, slots=True)
class LockInfo:
    id: str
    time: datetime
    exclusive: bool
    hostname: str
    username: str
    pid: int
    uid: int = 0
    gid: int = 0

    def to_json(self) -> bytes:
        obj: dict[str, Any] = {
            "time": format_time(self.time),
            "exclusive": self.exclusive,
            "hostname": self.hostname,
            "username": self.username,
            "pid": self.pid,
        }
        if self.uid:
            obj["uid"] = self.uid
        if self.gid:
            obj["gid"] = self.gid
        return json.dumps(obj, separators=(",", ":")).encode()

    @staticmethod
    def from_json(raw: bytes, lock_id: str) -> LockInfo:
        obj = json.loads(raw)
        return LockInfo(
            id=lock_id,
            time=parse_time(obj["time"]),
            exclusive=bool(obj.get("exclusive")),
            hostname=str(obj.get("hostname") or ""),
            username=str(obj.get("username") or ""),
            pid=int(obj.get("pid") or 0),
            uid=int(obj.get("uid") or 0),
            gid=int(obj.get("gid") or 0),
        )

    def describe(self, now: datetime) -> str:
        kind = "an exclusive" if self.exclusive else "a"
        age = now - self.time
        minutes = max(0, int(age.total_seconds() // 60))
        return (
            f"{kind} lock held by {self.username or 'an unknown user'} "
            f"on {self.hostname or 'an unknown host'} "
            f"(process {self.pid}) since {self.time.astimezone():%Y-%m-%d %H:%M:%S} ({minutes} min ago)"
        )


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def is_stale(lock: LockInfo, now: datetime, hostname: str) -> bool:
    if now - lock.time > STALE_AFTER:
        return True
    return lock.hostname == hostname and not pid_alive(lock.pid)


def list_locks(repo: Repository, *, cancel: CancelToken = NEVER) -> list[LockInfo]:
    out = []
    for info in repo.backend.list(FileType.LOCK, cancel=cancel):
        try:
            raw = repo.load_unpacked(FileType.LOCK, info.name, cancel=cancel)
            out.append(LockInfo.from_json(raw, info.name))
        except NotFound:
            continue  # removed while we looked
        except (IntegrityError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable lock %s: %s", info.name[:8], exc)
    return out


def remove_stale_locks(repo: Repository, *, clock: Clock = SYSTEM_CLOCK, remove_all: bool = False) -> int:
    """Remove stale locks (or every lock with ``remove_all``); returns how many were removed."""
    now = clock.now()
    host = socket.gethostname()
    removed = 0
    for lock in list_locks(repo):
        if remove_all or is_stale(lock, now, host):
            try:
                repo.backend.remove(_handle(lock.id))
                removed += 1
            except NotFound:
                pass
    return removed


def _handle(lock_id: str) -> Handle:
    return Handle(FileType.LOCK, lock_id)


class Lock:
    """A held lock. Use as a context manager; refreshed in the background until released."""

    def __init__(
        self,
        repo: Repository,
        *,
        exclusive: bool,
        clock: Clock = SYSTEM_CLOCK,
        refresh_interval: float = REFRESH_INTERVAL,
    ) -> None:
        self.repo = repo
        self.exclusive = exclusive
        self.clock = clock
        self.refresh_interval = refresh_interval
        self.hostname = socket.gethostname()
        self.lock_id = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()
        self._confirm_mutex = threading.Lock()
        self._written_at = 0.0
        self._confirmed = False
        self._refused: LockInfo | None = None

    def _new_info(self) -> LockInfo:
        return LockInfo(
            id="",
            time=local_now(self.clock.now()),
            exclusive=self.exclusive,
            hostname=self.hostname,
            username=_username(),
            pid=os.getpid(),
            uid=os.getuid() if hasattr(os, "getuid") else 0,
            gid=os.getgid() if hasattr(os, "getgid") else 0,
        )

    def _conflict(self) -> LockInfo | None:
        now = self.clock.now()
        for other in list_locks(self.repo):
            if other.id == self.lock_id or is_stale(other, now, self.hostname):
                continue
            if self.exclusive or other.exclusive:
                return other
        return None

    def acquire(self, *, cancel: CancelToken = NEVER, confirm_later: bool = False) -> Lock:
        """Take the lock: raises :class:`RepositoryLocked` when another client holds a conflicting one.

        ``confirm_later``: return once our lock file is written, without the 200 ms wait and the
        second look; :meth:`confirm` must then be called (and pass) before the first write.
        """
        other = self._conflict()
        if other is not None:
            raise RepositoryLocked(f"The repository is in use: {other.describe(self.clock.now())}.")
        self.lock_id = self.repo.save_unpacked(FileType.LOCK, self._new_info().to_json(), cancel=cancel)
        self._written_at = self.clock.monotonic()
        if not confirm_later:
            self.confirm()
        self._thread = threading.Thread(target=self._refresh_loop, name="safekeep-lock", daemon=True)
        self._thread.start()
        return self

    @property
    def confirmed(self) -> bool:
        return self._confirmed

    def confirm(self) -> None:
        """Wait until 200 ms have passed since our lock file was written, then look for conflicting
        locks again (another client may have written one at the same moment). On a conflict our
        lock file is withdrawn and :class:`RepositoryLocked` is raised, now and on every later call.
        Thread-safe; after the first success it returns at once."""
        if self._confirmed:
            return
        with self._confirm_mutex:
            if self._confirmed:
                return
            if self._refused is None:
                if not self.lock_id:
                    raise RepositoryLocked("The repository lock was released before it was confirmed.")
                remaining = WAIT_BEFORE_CHECK - (self.clock.monotonic() - self._written_at)
                if remaining > 0:
                    self.clock.sleep(remaining)
                other = self._conflict()
                if other is None:
                    self._confirmed = True
                    return
                self._refused = other
                self._stop.set()
                with self._mutex:
                    self._remove_own()
            raise RepositoryLocked(f"The repository is in use: {self._refused.describe(self.clock.now())}.")

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_interval):
            try:
                self.refresh()
            except Exception as exc:  # keep the holder running; the next refresh tries again
                log.warning("could not refresh the repository lock: %s", exc)

    def refresh(self) -> None:
        with self._mutex:
            if self._stop.is_set():
                return
            old = self.lock_id
            self.lock_id = self.repo.save_unpacked(FileType.LOCK, self._new_info().to_json())
            if old:
                try:
                    self.repo.backend.remove(_handle(old))
                except NotFound:
                    pass

    def _remove_own(self) -> None:
        if self.lock_id:
            try:
                self.repo.backend.remove(_handle(self.lock_id))
            except NotFound:
                pass
            self.lock_id = ""

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._mutex:
            self._remove_own()

    def __enter__(self) -> Lock:
        if self._thread is None:  # ``with Lock(...)`` takes the lock; ``with lock.acquire()`` keeps it
            self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
