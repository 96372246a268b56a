"""Retention decides like restic: the same snapshots, the same policy, the same kept set.

restic 0.14's ``forget --dry-run --json`` is the oracle. The snapshots have times chosen to hit
the edges of every rule: several in one hour, around midnight in different time zones (periods
are read in the zone each snapshot was taken in), across ISO-week and year boundaries, and in
several hosts and path sets (groups).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from safekeep.core.archiver import BackupOptions, backup
from safekeep.core.forget import DEFAULT_GROUP_BY, KeepRules, forget, plan_forget
from safekeep.core.format.snapshot import Snapshot
from safekeep.storage.base import FileType

pytestmark = pytest.mark.restic

POLICIES = [
    KeepRules(last=3),
    KeepRules(hourly=5),
    KeepRules(daily=7),
    KeepRules(weekly=4),
    KeepRules(monthly=6),
    KeepRules(yearly=2),
    KeepRules(hourly=24, daily=7, weekly=5, monthly=12, yearly=5),  # the app's recommended policy
    KeepRules(last=2, daily=3, monthly=4),
    KeepRules(last=1, weekly=2, yearly=9),
]
# (-1, "no limit", is newer than restic 0.14, which reads it as 0; tests/unit/test_forget.py)


def _times(rng: random.Random) -> list[datetime]:
    zones = [
        timezone(timedelta(hours=h, minutes=m)) for h, m in ((0, 0), (-8, 0), (5, 30), (10, 0), (-3, -30))
    ]
    base = datetime(2023, 12, 24, 20, 0, tzinfo=UTC)
    out = []
    t = base
    for _ in range(90):  # mostly hourly-ish, then jumps of days and weeks
        t += timedelta(minutes=rng.choice([7, 20, 45, 61, 180, 600, 1440, 3 * 1440, 9 * 1440]))
        out.append(t.astimezone(rng.choice(zones)))
    out += [base.astimezone(zones[1]) + timedelta(minutes=m) for m in (0, 5, 10)]  # one hour, thrice
    return out


@pytest.fixture()
def many_snapshots(tmp_path: Path, sk_repo: Any) -> tuple[Path, list[Snapshot]]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("retention\n")
    repo = sk_repo(tmp_path / "repo")
    template, _ = backup(repo, [str(src)], BackupOptions(hostname="office-pc"))
    rng = random.Random(7)
    made = []
    for i, t in enumerate(_times(rng)):
        host = "office-pc" if i % 5 else "front-desk"
        paths = [str(src)] if i % 7 else [str(src), "/srv/other"]
        snap = Snapshot(
            time=t, tree=template.tree, paths=paths, hostname=host, username="admin", tags=["plan:x"]
        )
        repo.save_snapshot(snap)
        made.append(snap)
    repo.remove_files(FileType.SNAPSHOT, [template.id])
    return tmp_path / "repo", made


def _restic_args(rules: KeepRules) -> list[str]:
    args = []
    for name in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        n = getattr(rules, name)
        if n:
            args += [f"--keep-{name}", str(n)]
    return args


@pytest.mark.parametrize("rules", POLICIES, ids=lambda r: r.describe().replace(" ", "_"))
def test_the_same_snapshots_are_kept_as_restic_keeps(
    rules: KeepRules, many_snapshots: tuple[Path, list[Snapshot]], restic: Any
) -> None:
    repo_path, snaps = many_snapshots
    groups = restic.json(repo_path, "forget", "--dry-run", *_restic_args(rules))
    theirs_keep = {s["id"] for g in groups for s in g["keep"] or []}
    theirs_remove = {s["id"] for g in groups for s in g["remove"] or []}
    assert theirs_keep | theirs_remove == {s.id for s in snaps}
    assert theirs_remove, "the policy should remove something, or it tests nothing"

    ours = plan_forget(snaps, rules, DEFAULT_GROUP_BY)
    assert len(ours.groups) == len(groups) == 4  # two hosts x two path sets
    assert {s.id for s in ours.keep} == theirs_keep
    assert {s.id for s in ours.remove} == theirs_remove


def test_grouping_by_tags_and_nothing_matches_restic(
    many_snapshots: tuple[Path, list[Snapshot]], restic: Any
) -> None:
    repo_path, snaps = many_snapshots
    rules = KeepRules(daily=3)
    for option, group_by in (("tags", frozenset({"tags"})), ("", frozenset())):
        groups = restic.json(repo_path, "forget", "--dry-run", "--group-by", option, "--keep-daily", "3")
        ours = plan_forget(snaps, rules, group_by)
        assert len(ours.groups) == len(groups) == 1
        assert {s.id for s in ours.keep} == {s["id"] for g in groups for s in g["keep"] or []}


def test_restic_lists_exactly_the_snapshots_forget_left(
    many_snapshots: tuple[Path, list[Snapshot]], sk_repo: Any, restic: Any
) -> None:
    repo_path, snaps = many_snapshots
    repo = sk_repo(repo_path, create=False)
    decided = plan_forget(snaps, KeepRules(daily=4, weekly=2))
    result = forget(repo, decided.remove)
    assert set(result.removed) == {s.id for s in decided.remove} and not result.failed
    listed = {s["id"] for s in restic.json(repo_path, "snapshots")}
    assert listed == {s.id for s in decided.keep}
    restic(repo_path, "check")
