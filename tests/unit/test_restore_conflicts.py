"""Restoring onto what is already there: overwrite / skip / keep both, per-path decisions, folder
merges, type clashes, restoring into a folder (flatten), verification of the restored copy,
cancel, and the conflict preview — on a real repository in memory and real files on disk."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from safekeep.common.cancel import CancelToken
from safekeep.common.clock import FakeClock
from safekeep.common.errors import Cancelled
from safekeep.core import restorer as restorer_mod
from safekeep.core.archiver import BackupOptions, backup
from safekeep.core.format.keys import KDFParams
from safekeep.core.format.snapshot import Snapshot
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.core.restorer import (
    ConflictPolicy,
    RestoreOptions,
    RestoreReport,
    RestoreSummary,
    find_conflicts,
    keep_both_name,
    restore,
)
from safekeep.engine.jobs import Job
from safekeep.state.model import Destination
from safekeep.storage.providers.memory import MemoryBackend

CHEAP = KDFParams(16, 1, 1)
DAY = date(2026, 11, 22)
CLOCK = FakeClock(datetime(2026, 11, 22, 12, 0, tzinfo=UTC))

FILES = {
    "a.txt": b"alpha from the backup",
    "docs/b.txt": b"bravo from the backup",
    "docs/deep/c.bin": random.Random(3).randbytes(300_000),
    "docs/.bashrc": b"export X=1\n",
    "Makefile": b"all:\n",
    "photos/d.tar.gz": b"tarball",
    "empty": b"",
}


@dataclass
class Backed:
    repo: Repository
    snap: Snapshot
    src: Path

    def snap_path(self, rel: str) -> str:
        return f"{self.src}/{rel}"

    def base(self, out: Path) -> Path:
        """Where the source folder lands when restored into ``out`` without flatten."""
        return out / str(self.src).lstrip("/")


@pytest.fixture()
def backed(tmp_path: Path) -> Iterator[Backed]:
    src = tmp_path / "src"
    for rel, data in FILES.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    os.symlink("a.txt", src / "link")
    repo = Repository.init(MemoryBackend(), "pw", options=RepositoryOptions(kdf=CHEAP))
    snap, _ = backup(repo, [str(src)], BackupOptions())
    yield Backed(repo, snap, src)
    repo.close()


def _run(b: Backed, out: Path, **options: Any) -> RestoreSummary:
    options.setdefault("restored_on", DAY)
    return restore(b.repo, b.snap, str(out), RestoreOptions(**options), clock=CLOCK)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".safekeep-")]


def _actions(s: RestoreSummary, b: Backed) -> dict[str, str]:
    return {os.path.relpath(i.snapshot_path, str(b.src)): i.action for i in s.items}


def _existing(b: Backed, out: Path) -> Path:
    """Put older copies of a.txt and docs/b.txt, and an extra file, where the restore goes."""
    base = b.base(out)
    (base / "docs").mkdir(parents=True)
    (base / "a.txt").write_bytes(b"my newer a")
    (base / "docs" / "b.txt").write_bytes(b"my newer b")
    (base / "docs" / "mine.txt").write_bytes(b"only here")
    return base


def test_nothing_in_the_way_every_item_is_restored_and_verified(tmp_path: Path, backed: Backed) -> None:
    out = tmp_path / "out"
    s = _run(backed, out)
    assert s.errors == []
    assert _files(backed.base(out)) == FILES
    assert os.readlink(backed.base(out) / "link") == "a.txt"
    assert set(_actions(s, backed).values()) == {"restored"}
    assert len(s.items) == len(FILES) + 1  # the symlink too; folders are not listed
    assert s.verified == len(FILES) and all(
        i.verified for i in s.items if i.snapshot_path != backed.snap_path("link")
    )
    assert (s.overwritten, s.kept_both, s.skipped) == (0, 0, 0)
    assert _leftovers(out) == []


def test_overwrite_is_the_default_and_keeps_extra_files(tmp_path: Path, backed: Backed) -> None:
    out = tmp_path / "out"
    base = _existing(backed, out)
    os.symlink("elsewhere", base / "link")
    s = _run(backed, out)
    assert s.errors == []
    assert _files(base) == {**FILES, "docs/mine.txt": b"only here"}  # the folder was merged
    assert os.readlink(base / "link") == "a.txt"
    acts = _actions(s, backed)
    assert acts["a.txt"] == acts["docs/b.txt"] == acts["link"] == "overwritten"
    assert acts["docs/deep/c.bin"] == "restored"
    assert s.overwritten == 3


def test_skip_leaves_existing_items_alone(tmp_path: Path, backed: Backed) -> None:
    out = tmp_path / "out"
    base = _existing(backed, out)
    s = _run(backed, out, conflict=ConflictPolicy.SKIP)
    assert s.errors == []
    assert (base / "a.txt").read_bytes() == b"my newer a"
    assert (base / "docs" / "b.txt").read_bytes() == b"my newer b"
    assert (base / "docs" / "deep" / "c.bin").read_bytes() == FILES["docs/deep/c.bin"]
    acts = _actions(s, backed)
    assert acts["a.txt"] == acts["docs/b.txt"] == "skipped"
    assert s.skipped == 2 and s.files_restored == len(FILES) - 2
    skipped = next(i for i in s.items if i.action == "skipped")
    assert not skipped.verified and skipped.size == len(
        FILES[os.path.relpath(skipped.snapshot_path, backed.src)]
    )


def test_keep_both_names_the_restored_copy_and_numbers_further_copies(tmp_path: Path, backed: Backed) -> None:
    out = tmp_path / "out"
    base = _existing(backed, out)
    (base / "a (restored 2026-11-22).txt").write_bytes(b"kept from an earlier restore")
    (base / "Makefile").write_bytes(b"mine")
    s = _run(backed, out, conflict=ConflictPolicy.KEEP_BOTH)
    assert s.errors == []
    assert (base / "a.txt").read_bytes() == b"my newer a"
    assert (base / "a (restored 2026-11-22).txt").read_bytes() == b"kept from an earlier restore"
    assert (base / "a (restored 2026-11-22 2).txt").read_bytes() == FILES["a.txt"]
    assert (base / "docs" / "b (restored 2026-11-22).txt").read_bytes() == FILES["docs/b.txt"]
    assert (base / "Makefile").read_bytes() == b"mine"
    assert (base / "Makefile (restored 2026-11-22)").read_bytes() == FILES["Makefile"]
    assert not (base / "docs (restored 2026-11-22)").exists()  # folders are merged, never renamed
    assert s.kept_both == 3
    where = {i.snapshot_path: i.target_path for i in s.items if i.action == "kept-both"}
    assert where[backed.snap_path("a.txt")] == str(base / "a (restored 2026-11-22 2).txt")


def test_keep_both_date_comes_from_the_clock(tmp_path: Path, backed: Backed) -> None:
    out = tmp_path / "out"
    base = _existing(backed, out)
    clock = FakeClock(datetime(2027, 3, 4, 12, 0, tzinfo=UTC))
    opts = RestoreOptions(include=(backed.snap_path("a.txt"),), conflict=ConflictPolicy.KEEP_BOTH)
    restore(backed.repo, backed.snap, str(out), opts, clock=clock)
    assert (base / "a (restored 2027-03-04).txt").read_bytes() == FILES["a.txt"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (b"report.xlsx", b"report (restored 2026-11-22).xlsx"),
        (b".bashrc", b".bashrc (restored 2026-11-22)"),
        (b"Makefile", b"Makefile (restored 2026-11-22)"),
        (b"a.tar.gz", b"a.tar (restored 2026-11-22).gz"),
    ],
)
def test_keep_both_name(name: bytes, expected: bytes) -> None:
    assert keep_both_name(name, DAY) == expected
    assert keep_both_name(name, DAY, 3) == expected.replace(b"22)", b"22 3)")


def test_keep_both_name_fits_a_long_name() -> None:
    name = ("é" * 126).encode() + b".txt"  # 256 bytes... of two-byte characters
    new = keep_both_name(name, DAY)
    assert len(new) <= 255 and new.endswith(b" (restored 2026-11-22).txt")
    new.decode()  # no character cut in half


def test_decisions_override_the_policy_and_deepest_wins(tmp_path: Path, backed: Backed) -> None:
    out = tmp_path / "out"
    base = _existing(backed, out)
    (base / "docs" / "deep").mkdir()
    (base / "docs" / "deep" / "c.bin").write_bytes(b"mine c")
    (base / "docs" / ".bashrc").write_bytes(b"mine rc")
    decisions = {
        backed.snap_path("docs"): ConflictPolicy.SKIP,
        backed.snap_path("docs/deep/c.bin") + "/": ConflictPolicy.KEEP_BOTH,  # paths are normalised
    }
    s = _run(backed, out, conflict=ConflictPolicy.OVERWRITE, decisions=decisions)
    assert s.errors == []
    assert (base / "a.txt").read_bytes() == FILES["a.txt"]  # the general policy
    assert (base / "docs" / "b.txt").read_bytes() == b"my newer b"  # the folder's decision
    assert (base / "docs" / ".bashrc").read_bytes() == b"mine rc"
    assert (base / "docs" / "deep" / "c.bin").read_bytes() == b"mine c"  # the deeper decision
    assert (base / "docs" / "deep" / "c (restored 2026-11-22).bin").read_bytes() == FILES["docs/deep/c.bin"]
    acts = _actions(s, backed)
    assert (acts["a.txt"], acts["docs/b.txt"], acts["docs/.bashrc"], acts["docs/deep/c.bin"]) == (
        "overwritten",
        "skipped",
        "skipped",
        "kept-both",
    )
    assert (s.overwritten, s.skipped, s.kept_both) == (1, 2, 1)


def test_a_folder_never_replaces_a_file_nor_a_file_a_folder(tmp_path: Path, backed: Backed) -> None:
    out = tmp_path / "out"
    base = backed.base(out)
    (base / "a.txt").mkdir(parents=True)  # a folder where the backup has a file
    (base / "a.txt" / "inside").write_bytes(b"keep me")
    (base / "photos").write_bytes(b"a file where the backup has a folder")
    s = _run(backed, out)
    assert (base / "a.txt" / "inside").read_bytes() == b"keep me"
    assert (base / "photos").read_bytes() == b"a file where the backup has a folder"
    failed = {p for p, _ in s.errors}
    assert backed.snap_path("a.txt") in failed and backed.snap_path("photos") in failed
    assert all("left alone" in m for _, m in s.errors)
    assert _actions(s, backed)["a.txt"] == "failed"
    assert (base / "docs" / "b.txt").read_bytes() == FILES["docs/b.txt"]  # the rest is restored
    assert _leftovers(out) == []


def test_flatten_restores_selected_paths_into_the_folder(tmp_path: Path, backed: Backed) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_bytes(b"mine")
    s = _run(
        backed,
        out,
        include=(backed.snap_path("docs"), backed.snap_path("docs/deep"), backed.snap_path("a.txt")),
        flatten=True,
        conflict=ConflictPolicy.KEEP_BOTH,
    )
    assert s.errors == []
    assert _files(out) == {
        "a.txt": b"mine",
        "a (restored 2026-11-22).txt": FILES["a.txt"],
        "docs/b.txt": FILES["docs/b.txt"],
        "docs/.bashrc": FILES["docs/.bashrc"],
        "docs/deep/c.bin": FILES["docs/deep/c.bin"],
    }
    assert {i.target_path for i in s.items} >= {str(out / "docs" / "deep" / "c.bin")}


def test_flatten_reports_a_path_not_in_the_snapshot(tmp_path: Path, backed: Backed) -> None:
    out = tmp_path / "out"
    s = _run(backed, out, include=(backed.snap_path("nope"), backed.snap_path("a.txt")), flatten=True)
    assert [p for p, _ in s.errors] == [backed.snap_path("nope")]
    assert _files(out) == {"a.txt": FILES["a.txt"]}


def _corrupt_writes_of(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    """Flip one byte of every write of ``size`` bytes (the decrypted data was fine)."""
    real = os.pwrite

    def pwrite(fd: int, data: Any, offset: int) -> int:
        if len(data) == size:
            data = bytearray(data)
            data[len(data) // 2] ^= 0xFF
        return real(fd, data, offset)

    monkeypatch.setattr(restorer_mod.os, "pwrite", pwrite)


def test_verify_catches_a_bad_write_and_keeps_the_original(
    tmp_path: Path, backed: Backed, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    base = backed.base(out)
    (base / "docs" / "deep").mkdir(parents=True)
    (base / "docs" / "deep" / "c.bin").write_bytes(b"the original")
    _corrupt_writes_of(monkeypatch, len(FILES["docs/deep/c.bin"]))
    s = _run(backed, out)
    monkeypatch.undo()
    assert [p for p, _ in s.errors] == [str(base / "docs" / "deep" / "c.bin")]
    assert "does not match the backup" in s.errors[0][1]
    assert (base / "docs" / "deep" / "c.bin").read_bytes() == b"the original"
    item = next(i for i in s.items if i.snapshot_path == backed.snap_path("docs/deep/c.bin"))
    assert item.action == "failed" and not item.verified and "does not match" in item.error
    assert s.verified == len(FILES) - 1
    assert _leftovers(out) == []


def test_without_verify_a_bad_write_goes_unnoticed(
    tmp_path: Path, backed: Backed, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    _corrupt_writes_of(monkeypatch, len(FILES["docs/deep/c.bin"]))
    s = _run(backed, out, verify=False)
    monkeypatch.undo()
    assert s.errors == [] and s.verified == 0
    assert (backed.base(out) / "docs" / "deep" / "c.bin").read_bytes() != FILES["docs/deep/c.bin"]


def test_cancel_mid_restore_leaves_only_complete_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "big"
    src.mkdir()
    rng = random.Random(11)
    data = {f"f{i}.bin": rng.randbytes(2_500_000) for i in range(5)}
    for name, content in data.items():
        (src / name).write_bytes(content)
    repo = Repository.init(MemoryBackend(), "pw", options=RepositoryOptions(kdf=CHEAP))
    snap, _ = backup(repo, [str(src)], BackupOptions())
    out = tmp_path / "out"
    base = out / str(src).lstrip("/")
    base.mkdir(parents=True)
    (base / "f4.bin").write_bytes(b"the original f4")
    cancel = CancelToken()
    real = os.pwrite
    writes = {"n": 0}

    def pwrite(fd: int, chunk: Any, offset: int) -> int:
        writes["n"] += 1
        if writes["n"] == 6:
            cancel.cancel()
        return real(fd, chunk, offset)

    monkeypatch.setattr(restorer_mod.os, "pwrite", pwrite)
    with pytest.raises(Cancelled):
        restore(repo, snap, str(out), RestoreOptions(workers=1), cancel=cancel, clock=CLOCK)
    monkeypatch.undo()
    repo.close()
    assert _leftovers(out) == []
    got = _files(base)
    assert got.get("f4.bin", b"the original f4") in (b"the original f4", data["f4.bin"])
    restored = {n: c for n, c in got.items() if c != b"the original f4"}
    assert all(restored[n] == data[n] for n in restored), "a partial file was left under its name"
    assert len(restored) < len(data), "the restore was not cancelled before its end"


def test_items_are_capped(tmp_path: Path, backed: Backed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restorer_mod, "ITEMS_LIMIT", 3)
    s = _run(backed, tmp_path / "out")
    assert len(s.items) == 3 and s.items_omitted == len(FILES) + 1 - 3
    assert s.files_restored == len(FILES)


def test_report_round_trips(tmp_path: Path, backed: Backed) -> None:
    out = tmp_path / "out"
    _existing(backed, out)
    s = _run(backed, out, conflict=ConflictPolicy.KEEP_BOTH)
    report = RestoreReport.of(s, run_id="r1", snapshot_id=backed.snap.id, target=str(out))
    assert report.kept_both == 2 and report.restored == len(FILES) + 1 and report.failed == 0
    assert RestoreReport.from_dict(report.to_dict()) == report


# ---------------------------------------------------------------------------- preview


def test_find_conflicts_lists_files_type_clashes_and_picked_folders(tmp_path: Path, backed: Backed) -> None:
    out = tmp_path / "out"
    base = _existing(backed, out)
    (base / "photos").write_bytes(b"a file where the backup has a folder")
    scan = find_conflicts(
        backed.repo,
        backed.snap,
        str(out),
        include=(backed.snap_path("docs"), backed.snap_path("a.txt"), backed.snap_path("photos")),
    )
    got = {(os.path.relpath(c.snapshot_path, backed.src), c.kind) for c in scan.conflicts}
    assert got == {("a.txt", "file"), ("docs/b.txt", "file"), ("docs", "folder"), ("photos", "type")}
    assert not scan.more
    a = next(c for c in scan.conflicts if c.snapshot_path.endswith("/a.txt"))
    assert a.target_path == str(base / "a.txt")
    assert (a.existing_size, a.backup_size) == (len(b"my newer a"), len(FILES["a.txt"]))
    assert a.existing_mtime == pytest.approx((base / "a.txt").stat().st_mtime)
    assert a.backup_mtime == pytest.approx((backed.src / "a.txt").stat().st_mtime)


def test_find_conflicts_whole_snapshot_flatten_and_limit(tmp_path: Path, backed: Backed) -> None:
    assert find_conflicts(backed.repo, backed.snap, str(tmp_path / "new")).conflicts == ()
    out = tmp_path / "out"
    _existing(backed, out)
    whole = find_conflicts(backed.repo, backed.snap, str(out))
    assert {os.path.basename(c.target_path) for c in whole.conflicts} == {"a.txt", "b.txt"}
    flat = tmp_path / "flat"
    (flat / "docs").mkdir(parents=True)
    (flat / "docs" / "b.txt").write_bytes(b"x")
    scan = find_conflicts(
        backed.repo, backed.snap, str(flat), include=(backed.snap_path("docs"),), flatten=True
    )
    assert [(c.kind, c.target_path) for c in scan.conflicts] == [
        ("folder", str(flat / "docs")),
        ("file", str(flat / "docs" / "b.txt")),
    ]
    limited = find_conflicts(backed.repo, backed.snap, str(out), limit=1)
    assert len(limited.conflicts) == 1 and limited.more


def test_a_restore_job_carries_its_options_to_the_worker() -> None:
    job = Job(
        kind="restore",
        run_id="r1",
        destination=Destination(id="d1", name="USB", location="/media/usb"),
        password="pw",
        paths=("/home/anna/Documents",),
        target="/tmp/x",
        conflict="keep-both",
        decisions={"/home/anna/Documents/a.txt": "skip"},
        flatten=True,
        verify=False,
        report_dir="/cache/restore-reports",
    )
    assert Job.from_json(job.to_json()) == job
    old = Job.from_json(
        job.to_json().replace('"verify": false', '"x": 0').replace('"conflict": "keep-both"', '"y": 1')
    )
    assert old.verify is True and old.conflict == "overwrite"  # a job from an older app
