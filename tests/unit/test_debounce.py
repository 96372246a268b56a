"""The file-change trigger's logic on a fake clock: debounce, maximum delay, follow-up runs,
ignored paths, trigger params and network-share detection (the real watchdog is tested in
tests/integration/test_watcher.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from safekeep.common.clock import FakeClock
from safekeep.triggers.rules import InvalidSchedule
from safekeep.triggers.watcher import (
    ChangeBatch,
    ChangeWatcher,
    Debouncer,
    Mount,
    PathFilter,
    WatchSpec,
    parse_bsd_mount_output,
    parse_proc_mounts,
    parse_watch_params,
    polling_reason,
)

P = "plan1"


def make(
    tmp_path: Path, quiet: float = 60, max_delay: float = 900, **spec: object
) -> tuple[ChangeWatcher, FakeClock, list[ChangeBatch]]:
    clock = FakeClock()
    fired: list[ChangeBatch] = []
    watcher = ChangeWatcher(fired.append, clock=clock, mounts=list)
    watcher.set_plans(
        [WatchSpec(P, (str(tmp_path),), quiet_seconds=quiet, max_delay_seconds=max_delay, **spec)]  # type: ignore[arg-type]
    )
    return watcher, clock, fired


def test_quiet_period_coalesces_a_burst(tmp_path: Path) -> None:
    watcher, clock, fired = make(tmp_path, quiet=60)
    for i in range(1000):
        assert watcher.handle_event(P, str(tmp_path / f"f{i}.txt"))
        clock.advance(0.01)
    assert watcher.next_due() == pytest.approx(clock.monotonic() - 0.01 + 60)
    clock.advance(59)
    assert watcher.process_due() == []
    clock.advance(1)
    batches = watcher.process_due()
    assert len(batches) == 1 and fired == batches
    assert batches[0].events == 1000
    assert batches[0].sample[-1] == str(tmp_path / "f999.txt")
    assert not batches[0].by_max_delay
    assert "1,000 changes" in batches[0].describe()
    clock.advance(3600)
    assert watcher.process_due() == []


def test_a_folder_that_never_goes_quiet_fires_at_the_maximum_delay(tmp_path: Path) -> None:
    watcher, clock, fired = make(tmp_path, quiet=60, max_delay=900)
    start = clock.monotonic()
    while not fired:
        watcher.handle_event(P, str(tmp_path / "busy.db"))
        clock.advance(1)
        watcher.process_due()
    assert fired[0].fired_at - start == 900
    assert fired[0].by_max_delay
    assert "kept changing" in fired[0].describe()


def test_changes_during_a_run_give_exactly_one_follow_up(tmp_path: Path) -> None:
    watcher, clock, fired = make(tmp_path, quiet=10, max_delay=100)
    watcher.handle_event(P, str(tmp_path / "a"))
    clock.advance(10)
    assert len(watcher.process_due()) == 1
    for i in range(50):  # the run takes 500 s; the folder keeps changing
        watcher.handle_event(P, str(tmp_path / f"b{i}"))
        clock.advance(10)
        assert watcher.process_due() == []
    watcher.run_finished(P)
    follow_up = watcher.process_due()  # the first change during the run is long past the maximum delay
    assert len(follow_up) == 1 and follow_up[0].events == 50
    clock.advance(1000)
    assert watcher.process_due() == []
    watcher.run_finished(P)
    clock.advance(1000)
    assert watcher.process_due() == []
    assert len(fired) == 2


def test_a_run_started_elsewhere_covers_earlier_changes(tmp_path: Path) -> None:
    watcher, clock, fired = make(tmp_path, quiet=10)
    watcher.handle_event(P, str(tmp_path / "a"))
    watcher.run_started(P)  # e.g. the schedule started it
    clock.advance(100)
    assert watcher.process_due() == []
    watcher.run_finished(P)
    clock.advance(100)
    assert watcher.process_due() == []


def test_a_batch_that_cannot_start_is_kept_and_retried(tmp_path: Path) -> None:
    clock = FakeClock()
    attempts: list[ChangeBatch] = []

    def on_change(batch: ChangeBatch) -> None:
        attempts.append(batch)
        if len(attempts) == 1:
            raise RuntimeError("engine busy")

    watcher = ChangeWatcher(on_change, clock=clock, mounts=list)
    watcher.set_plans([WatchSpec(P, (str(tmp_path),), quiet_seconds=5, max_delay_seconds=50)])
    watcher.handle_event(P, str(tmp_path / "a"))
    clock.advance(5)
    watcher.process_due()
    assert len(attempts) == 1
    clock.advance(5)
    watcher.process_due()
    assert len(attempts) == 2 and attempts[1].events == 1


def test_ignored_paths(tmp_path: Path) -> None:
    src = tmp_path / "src"
    repo = src / "backup-repo"
    cache = tmp_path / "cache"
    watcher, clock, fired = make(
        src, excludes=("node_modules", "*.log", f"{src}/private"), ignore_paths=(str(repo), str(cache))
    )
    ignored = [
        src / "~$report.docx",
        src / ".~lock.report.odt#",
        src / "draft.tmp",
        src / ".notes.txt.swp",
        src / "notes.txt~",
        src / "4913",
        src / "sub" / "Thumbs.db",
        src / "app.log",
        src / "web" / "node_modules" / "lib" / "x.js",
        src / "private" / "diary.txt",
        repo / "data" / "ab" / "abcd",
        cache / "x",
        tmp_path / "elsewhere.txt",
    ]
    for path in ignored:
        assert not watcher.handle_event(P, str(path)), path
    assert watcher.ignored_events == len(ignored)
    assert watcher.next_due() is None
    assert watcher.handle_event(P, str(src / "web" / "index.html"))
    # a save through a temporary file counts by its destination
    assert watcher.handle_event(P, str(src / "report.docx.tmp"), str(src / "report.docx"))
    clock.advance(60)
    (batch,) = watcher.process_due()
    assert batch.events == 2 and batch.sample == (str(src / "web" / "index.html"), str(src / "report.docx"))
    assert not watcher.handle_event("other-plan", str(src / "a"))


def test_path_filter_on_the_source_root_itself(tmp_path: Path) -> None:
    flt = PathFilter(WatchSpec(P, (str(tmp_path),), excludes=("*.bak",)))
    assert flt.counts(str(tmp_path))
    assert flt.counts(str(tmp_path / "a" / "b.txt"))
    assert not flt.counts(str(tmp_path / "a.bak" / "b.txt"))


def test_set_plans_keeps_pending_changes(tmp_path: Path) -> None:
    watcher, clock, fired = make(tmp_path, quiet=10)
    watcher.handle_event(P, str(tmp_path / "a"))
    watcher.set_plans([WatchSpec(P, (str(tmp_path),), quiet_seconds=20, max_delay_seconds=100)])
    clock.advance(10)
    assert watcher.process_due() == []
    clock.advance(10)
    assert len(watcher.process_due()) == 1
    watcher.set_plans([])
    assert not watcher.handle_event(P, str(tmp_path / "a"))


def test_debouncer_alone() -> None:
    d = Debouncer(quiet_seconds=5, max_delay_seconds=20)
    assert d.due_at() is None and d.take(100, P) is None
    d.event(100, "a")
    d.event(103, "b")
    assert d.due_at() == 108
    assert d.take(107, P) is None
    batch = d.take(108, P)
    assert batch is not None and (batch.first_event, batch.last_event, batch.events) == (100, 103, 2)
    assert d.running and d.due_at() is None


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, (60.0, 900.0)),
        ({"quiet_seconds": 5, "max_delay_seconds": "30"}, (5.0, 30.0)),
        ({"quiet_seconds": None, "max_delay_seconds": None}, (60.0, 900.0)),
    ],
)
def test_watch_params(params: dict[str, object], expected: tuple[float, float]) -> None:
    assert parse_watch_params(params) == expected


@pytest.mark.parametrize(
    "params",
    [
        {"quiet_seconds": 0},
        {"quiet_seconds": -1},
        {"quiet_seconds": "soon"},
        {"quiet_seconds": True},
        {"quiet_seconds": 120, "max_delay_seconds": 60},
    ],
)
def test_bad_watch_params(params: dict[str, object]) -> None:
    with pytest.raises(InvalidSchedule):
        parse_watch_params(params)


PROC_MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
proc /proc proc rw 0 0
server:/export /mnt/nfs nfs4 rw,vers=4.2 0 0
//nas/office /mnt/office\\040files cifs rw,vers=3.0 0 0
user@host:/srv /home/me/remote fuse.sshfs rw,nosuid 0 0
/dev/sdb1 /media/me/USB\\040DISK fuseblk rw 0 0
/dev/sdc1 /mnt/nfs/local-inside ext4 rw 0 0
"""


def test_proc_mounts_parsing_and_network_detection() -> None:
    mounts = parse_proc_mounts(PROC_MOUNTS)
    assert Mount("/mnt/office files", "cifs", "//nas/office") in mounts
    assert polling_reason("/mnt/nfs/docs", mounts) == (
        "/mnt/nfs/docs is on a network or FUSE file system (nfs4 at /mnt/nfs)"
    )
    assert polling_reason("/mnt/office files/2026", mounts) is not None
    assert polling_reason("/home/me/remote/x", mounts) is not None
    assert polling_reason("/home/me/documents", mounts) is None
    assert polling_reason("/media/me/USB DISK/photos", mounts) is None  # ntfs-3g on a local disk
    assert polling_reason("/mnt/nfs/local-inside/x", mounts) is None  # the longest mount point wins
    assert polling_reason("/mnt/nfsother", mounts) is None


def test_macos_mount_output_parsing() -> None:
    text = (
        "/dev/disk3s1s1 on / (apfs, sealed, local, read-only, journaled)\n"
        "//me@nas._smb._tcp.local/Office on /Volumes/Office (smbfs, nodev, nosuid, mounted by me)\n"
    )
    mounts = parse_bsd_mount_output(text)
    assert mounts[1] == Mount("/Volumes/Office", "smbfs", "//me@nas._smb._tcp.local/Office")
    assert polling_reason("/Volumes/Office/2026", mounts) is not None
    assert polling_reason("/Users/me", mounts) is None
