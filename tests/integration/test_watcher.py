"""The file-change watcher with the real watchdog (inotify here) and the polling fallback.

Times below are recorded with the same monotonic clock the watcher uses, so the tests can say that
the run was asked for after the last write (a backup started then contains every file)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from safekeep.triggers.watcher import ChangeBatch, ChangeWatcher, Mount, WatchSpec

P = "plan1"


class Runs:
    """Collects batches from the watcher's thread."""

    def __init__(self) -> None:
        self.batches: list[ChangeBatch] = []
        self.event = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, batch: ChangeBatch) -> None:
        with self._lock:
            self.batches.append(batch)
        self.event.set()

    def wait(self, count: int, timeout: float = 60.0) -> list[ChangeBatch]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.batches) >= count:
                    return list(self.batches)
            self.event.wait(0.05)
            self.event.clear()
        with self._lock:
            return list(self.batches)


@pytest.fixture()
def runs() -> Runs:
    return Runs()


@pytest.fixture()
def watcher(runs: Runs) -> Iterator[ChangeWatcher]:
    w = ChangeWatcher(runs, mounts=list, polling_interval=0.2, observer_timeout=0.1)
    w.start()
    yield w
    w.stop()


def test_a_burst_of_1000_writes_gives_one_run_after_the_last_write(
    tmp_path: Path, watcher: ChangeWatcher, runs: Runs
) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    quiet = 1.0
    watcher.set_plans([WatchSpec(P, (str(src),), quiet_seconds=quiet, max_delay_seconds=120)])
    for i in range(1000):
        folder = src / "sub" if i % 2 else src
        (folder / f"file{i:04d}.txt").write_text(f"content {i}\n")
    last_write = time.monotonic()
    batches = runs.wait(1)
    assert len(batches) == 1
    batch = batches[0]
    assert batch.fired_at > last_write  # the backup it starts sees all 1,000 files
    assert batch.last_event <= batch.fired_at
    assert batch.events >= 1000
    assert not batch.by_max_delay
    # nothing else arrives: wait a few quiet periods past the batch for a stray second run
    assert runs.wait(2, timeout=4 * quiet) == batches
    assert len(list(src.rglob("file*.txt"))) == 1000


def test_a_folder_changed_every_200_ms_still_runs_within_the_maximum_delay(
    tmp_path: Path, watcher: ChangeWatcher, runs: Runs
) -> None:
    quiet, max_delay, slack = 1.0, 3.0, 5.0
    watcher.set_plans([WatchSpec(P, (str(tmp_path),), quiet_seconds=quiet, max_delay_seconds=max_delay)])
    busy = tmp_path / "busy.db"
    stop = time.monotonic() + 30
    writes = 0
    while not runs.batches and time.monotonic() < stop:
        busy.write_text(f"write {writes}\n")
        writes += 1
        time.sleep(0.2)
    assert runs.batches, "no run although the folder kept changing"
    first = runs.batches[0]
    assert first.by_max_delay  # never quiet for a whole second, so the maximum delay fired it
    assert first.fired_at - first.first_event <= max_delay + slack
    # changes during the run give exactly one follow-up once the engine reports the run's end
    for i in range(5):
        busy.write_text(f"during the run {i}\n")
        time.sleep(0.2)
    assert runs.wait(2, timeout=2 * quiet) == [first]
    watcher.run_finished(P)
    batches = runs.wait(2)
    assert len(batches) == 2 and batches[1].events >= 5
    watcher.run_finished(P)
    assert runs.wait(3, timeout=3 * quiet) == batches


def test_temporary_files_excluded_paths_and_reads_do_not_count(
    tmp_path: Path, watcher: ChangeWatcher, runs: Runs
) -> None:
    src = tmp_path / "src"
    repo = src / "repo"
    (src / "node_modules").mkdir(parents=True)
    repo.mkdir()
    existing = src / "existing.txt"
    existing.write_text("old\n")
    watcher.set_plans(
        [
            WatchSpec(
                P,
                (str(src),),
                excludes=("node_modules", "*.log"),
                ignore_paths=(str(repo),),
                quiet_seconds=0.5,
                max_delay_seconds=60,
            )
        ]
    )
    for name in ("~$report.docx", ".~lock.report.odt#", "draft.tmp", ".notes.swp", "app.log"):
        (src / name).write_text("x")
    (src / "node_modules" / "lib.js").write_text("x")
    (repo / "config").write_text("x")
    assert existing.read_text() == "old\n"  # a backup reading files must not trigger another
    time.sleep(1.0)  # let the ignored events arrive (inotify delivers them in order anyway)
    assert runs.batches == []
    assert watcher.ignored_events >= 7
    (src / "report.docx").write_text("the real document")
    (batch,) = runs.wait(1)
    assert set(batch.sample) == {str(src / "report.docx")}


def test_network_share_falls_back_to_polling_and_says_so(
    tmp_path: Path, runs: Runs, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "share"
    src.mkdir()

    def mounts() -> list[Mount]:
        return [Mount("/", "ext4"), Mount(str(src), "cifs", "//nas/office")]

    w = ChangeWatcher(runs, mounts=mounts, polling_interval=0.2, observer_timeout=0.1)
    with caplog.at_level(logging.WARNING, logger="safekeep.triggers.watcher"):
        w.start()
        try:
            w.set_plans([WatchSpec(P, (str(src),), quiet_seconds=0.5, max_delay_seconds=60)])
            assert w.is_polled(P)
            assert "network or FUSE file system (cifs" in w.polled[str(src)]
            (src / "letter.odt").write_text("hello")
            (batch,) = runs.wait(1)
            assert batch.sample == (str(src / "letter.odt"),)
        finally:
            w.stop()
    assert "changes there are found by checking every 0.2 s" in caplog.text


def test_forced_polling_and_a_missing_folder(tmp_path: Path, watcher: ChangeWatcher, runs: Runs) -> None:
    src = tmp_path / "src"
    src.mkdir()
    missing = tmp_path / "not-there"
    watcher.set_plans(
        [WatchSpec(P, (str(src), str(missing)), quiet_seconds=0.5, max_delay_seconds=60, force_polling=True)]
    )
    assert watcher.is_polled(P)
    assert str(missing) in watcher.problems
    (src / "a.txt").write_text("a")
    (batch,) = runs.wait(1)
    assert batch.sample == (str(src / "a.txt"),)
