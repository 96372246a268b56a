"""restic's lock protocol: conflicts, stale locks, refresh, and locks shared with real restic."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from safekeep.cli.context import CliContext, GlobalOptions
from safekeep.cli.output import Output
from safekeep.common.cancel import CancelToken
from safekeep.common.clock import FakeClock
from safekeep.core.errors import RepositoryLocked
from safekeep.core.format.keys import KDFParams
from safekeep.core.format.pack import BlobType
from safekeep.core.format.times import local_now
from safekeep.core.locks import Lock, LockInfo, is_stale, list_locks, remove_stale_locks
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.storage.base import FileType
from safekeep.storage.providers.memory import MemoryBackend

CHEAP = KDFParams(16, 1, 1)


@pytest.fixture()
def repo() -> Any:
    r = Repository.init(MemoryBackend(), "pw", options=RepositoryOptions(kdf=CHEAP))
    yield r
    r.close()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _plant(
    repo: Repository, clock: FakeClock, *, exclusive: bool, host: str, pid: int, age: float = 0
) -> str:
    info = LockInfo(
        id="",
        time=local_now(clock.now() - timedelta(seconds=age)),
        exclusive=exclusive,
        hostname=host,
        username="someone",
        pid=pid,
    )
    return repo.save_unpacked(FileType.LOCK, info.to_json())


def test_exclusive_and_shared_conflicts(repo: Repository) -> None:
    clock = FakeClock()
    with (
        Lock(repo, exclusive=False, clock=clock).acquire(),
        Lock(repo, exclusive=False, clock=clock).acquire(),
    ):
        assert len(list_locks(repo)) == 2  # shared locks coexist
        with pytest.raises(RepositoryLocked) as info:
            Lock(repo, exclusive=True, clock=clock).acquire()
        assert f"process {os.getpid()}" in str(info.value)
        assert len(list_locks(repo)) == 2  # the refused lock left nothing behind
    assert list_locks(repo) == []
    with Lock(repo, exclusive=True, clock=clock).acquire():
        with pytest.raises(RepositoryLocked) as info:
            Lock(repo, exclusive=False, clock=clock).acquire()
        assert "an exclusive lock" in str(info.value)
    assert clock.sleeps and clock.sleeps[0] == pytest.approx(0.2)  # waits before re-checking


def test_conflict_appearing_during_the_wait_is_detected(repo: Repository) -> None:
    clock = FakeClock()

    class Racing(FakeClock):
        def sleep(self, seconds: float) -> None:  # another client writes its lock meanwhile
            _plant(repo, clock, exclusive=True, host="other", pid=1)

    lock = Lock(repo, exclusive=False, clock=Racing(clock.now()))
    with pytest.raises(RepositoryLocked):
        lock.acquire()
    assert [lk.hostname for lk in list_locks(repo)] == ["other"]  # ours was withdrawn


def test_stale_by_dead_pid_on_this_host(repo: Repository) -> None:
    clock = FakeClock()
    host = socket.gethostname()
    _plant(repo, clock, exclusive=True, host=host, pid=_dead_pid())
    alive = _plant(repo, clock, exclusive=False, host="elsewhere", pid=_dead_pid())  # not our host: not stale
    with pytest.raises(RepositoryLocked):
        Lock(repo, exclusive=True, clock=clock).acquire()  # the other-host lock still counts
    with Lock(repo, exclusive=False, clock=clock).acquire():  # the dead exclusive one is ignored
        pass
    assert remove_stale_locks(repo, clock=clock) == 1
    assert [lk.id for lk in list_locks(repo)] == [alive]


def test_stale_by_age(repo: Repository) -> None:
    clock = FakeClock()
    old = _plant(repo, clock, exclusive=True, host="elsewhere", pid=1, age=31 * 60)
    recent = _plant(repo, clock, exclusive=True, host="elsewhere", pid=1, age=29 * 60)
    now = clock.now()
    by_id = {lk.id: lk for lk in list_locks(repo)}
    assert is_stale(by_id[old], now, "here") and not is_stale(by_id[recent], now, "here")
    with pytest.raises(RepositoryLocked) as info:
        Lock(repo, exclusive=False, clock=clock).acquire()
    assert "29 min ago" in str(info.value)
    clock.advance(2 * 60)  # now both are older than 30 minutes
    with Lock(repo, exclusive=True, clock=clock) as lock:  # the context manager takes the lock
        assert [lk.id for lk in list_locks(repo) if lk.id == lock.lock_id]
    assert remove_stale_locks(repo, clock=clock) == 2
    assert list_locks(repo) == []


def test_refresh_replaces_the_lock_file(repo: Repository) -> None:
    clock = FakeClock()
    lock = Lock(repo, exclusive=False, clock=clock, refresh_interval=3600).acquire()
    first = lock.lock_id
    (before,) = list_locks(repo)
    clock.advance(300)
    lock.refresh()
    (after,) = list_locks(repo)
    assert lock.lock_id != first and after.id == lock.lock_id
    assert after.time - before.time == timedelta(seconds=300.2)  # 0.2 s: the wait in acquire
    assert after.pid == os.getpid() and after.uid == os.getuid()
    lock.release()
    assert list_locks(repo) == []
    lock.refresh()  # after release: nothing is written again
    assert list_locks(repo) == []


def test_confirm_later_returns_before_the_wait_and_confirm_waits_out_the_rest(repo: Repository) -> None:
    clock = FakeClock()
    lock = Lock(repo, exclusive=False, clock=clock).acquire(confirm_later=True)
    assert clock.sleeps == [] and [lk.id for lk in list_locks(repo)] == [lock.lock_id]
    clock.advance(0.05)  # reading meanwhile
    lock.confirm()
    assert clock.sleeps == [pytest.approx(0.15)] and lock.confirmed
    lock.confirm()  # once confirmed, no second look
    assert len(clock.sleeps) == 1
    lock.release()
    slow = Lock(repo, exclusive=False, clock=clock).acquire(confirm_later=True)
    clock.advance(1.0)  # the reads took longer than the wait: nothing left to wait for
    slow.confirm()
    assert len(clock.sleeps) == 1
    slow.release()


def test_the_write_guard_refuses_every_write_after_a_conflict_in_the_wait(repo: Repository) -> None:
    clock = FakeClock()
    lock = Lock(repo, exclusive=False, clock=clock).acquire(confirm_later=True)
    repo.set_write_guard(lock.confirm)
    other = _plant(repo, clock, exclusive=True, host="other", pid=1)  # written at the same moment
    before = {t: sorted(i.name for i in repo.backend.list(t)) for t in (FileType.PACK, FileType.INDEX)}
    repo.save_blob(BlobType.DATA, b"read while the lock settled")  # buffered, not written yet
    with pytest.raises(RepositoryLocked):
        repo.flush()  # the pack upload asks the guard first
    with pytest.raises(RepositoryLocked):
        repo.save_unpacked(FileType.SNAPSHOT, b"{}")
    with pytest.raises(RepositoryLocked):
        lock.confirm()  # the refusal sticks
    after = {t: sorted(i.name for i in repo.backend.list(t)) for t in (FileType.PACK, FileType.INDEX)}
    assert after == before and list(repo.backend.list(FileType.SNAPSHOT)) == []
    assert [lk.id for lk in list_locks(repo)] == [other]  # ours was withdrawn
    lock.release()
    repo.set_write_guard(None)
    repo.abandon()


def test_writes_pass_the_guard_once_the_lock_is_confirmed(repo: Repository) -> None:
    clock = FakeClock()
    lock = Lock(repo, exclusive=False, clock=clock).acquire(confirm_later=True)
    repo.set_write_guard(lock.confirm)
    repo.save_blob(BlobType.DATA, b"some data")
    repo.flush()
    assert lock.confirmed and clock.sleeps == [pytest.approx(0.2)]
    assert len(list(repo.backend.list(FileType.PACK))) == 1
    lock.release()


def _context(clock: FakeClock) -> CliContext:
    return CliContext(GlobalOptions(), Output(), CancelToken(), env={}, clock=clock)


def test_cli_lock_conflict_found_in_the_background_stops_a_reading_command(repo: Repository) -> None:
    clock = FakeClock()
    planted = threading.Event()

    class Racing(FakeClock):
        def sleep(self, seconds: float) -> None:  # another client writes its lock during our wait
            _plant(repo, clock, exclusive=True, host="other", pid=1)
            planted.set()

    ctx = _context(Racing(clock.now()))
    with pytest.raises(RepositoryLocked), ctx.locked(repo, exclusive=False, read_only=False):
        assert planted.wait(10)
        while not ctx.cancel.cancelled:  # the background check stops the command ...
            ctx.cancel.wait(0.01)
        ctx.cancel.raise_if_cancelled()  # ... which reports the conflict, not a cancel
    assert [lk.hostname for lk in list_locks(repo)] == ["other"]


def test_cli_lock_lets_the_block_write_once_confirmed(repo: Repository) -> None:
    clock = FakeClock()
    ctx = _context(clock)
    with ctx.locked(repo, exclusive=False, read_only=False):
        assert len(list_locks(repo)) == 1
        name = repo.save_unpacked(FileType.SNAPSHOT, b"{}")
    assert [i.name for i in repo.backend.list(FileType.SNAPSHOT)] == [name]
    assert list_locks(repo) == [] and not ctx.cancel.cancelled


# ------------------------------------------------------------------ with the real restic


@pytest.mark.restic
def test_our_locks_stop_restic(tmp_path: Path, sk_repo: Any, restic: Any) -> None:
    repo_dir = tmp_path / "repo"
    repo = sk_repo(repo_dir)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("f")
    with Lock(repo, exclusive=True):
        pass
    lock = Lock(repo, exclusive=True).acquire()
    locks = restic(repo_dir, "list", "locks", "--no-lock").stdout.decode().split()
    assert locks == [lock.lock_id]  # restic reads our lock file
    proc = restic(repo_dir, "backup", str(tmp_path / "src"), check=False)
    assert proc.returncode != 0 and b"locked exclusively" in proc.stderr
    lock.release()

    # restic 0.14's check takes an exclusive lock, so our shared (backup) lock blocks it too
    with Lock(repo, exclusive=False):
        proc = restic(repo_dir, "check", check=False)
        assert proc.returncode != 0 and b"already locked" in proc.stderr
    restic(repo_dir, "backup", str(tmp_path / "src"))
    restic(repo_dir, "check")


@pytest.mark.restic
def test_we_read_and_respect_restics_lock(tmp_path: Path, sk_repo: Any, restic: Any) -> None:
    repo_dir = tmp_path / "repo"
    repo = sk_repo(repo_dir)
    proc = subprocess.Popen(
        [restic.binary, "-r", str(repo_dir), "backup", "--stdin", "--stdin-filename", "stream"],
        env=restic.env("pw"),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        proc.stdin.write(b"some data")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while not list_locks(repo):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        (info,) = list_locks(repo)
        raw = repo.load_unpacked(FileType.LOCK, info.id)
        assert raw.startswith(b"{")
        assert info.pid == proc.pid and not info.exclusive
        assert info.hostname == socket.gethostname()
        assert not is_stale(info, local_now(repo.clock.now()), socket.gethostname())
        with Lock(repo, exclusive=False):  # shared with restic's backup
            pass
        with pytest.raises(RepositoryLocked) as exc:
            Lock(repo, exclusive=True).acquire()
        assert f"process {proc.pid}" in str(exc.value)
    finally:
        proc.kill()
        proc.wait()
    # restic died without removing its lock: it is stale now (same host, dead pid)
    assert len(list_locks(repo)) == 1
    with Lock(repo, exclusive=True):
        pass
    assert remove_stale_locks(repo) == 1
