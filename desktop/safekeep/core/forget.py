"""Which snapshots a retention policy keeps, and removing the others (restic's ``forget``).

A :class:`KeepRules` says how many snapshots to keep: the last N, and the newest one of each of
the last N hours, days, ISO weeks, months and years that have snapshots (``-1``: every such
period). :func:`apply_policy` decides for one group of snapshots exactly as restic 0.14's
``forget`` does — newest first, a snapshot is kept when any rule still has a count left and the
snapshot is the first (newest) of a period that rule has not seen — so a policy gives the same
answer in Safekeep and in restic. Periods are read in the time zone each snapshot was taken in
(the offset stored in its time), as restic does.

Snapshots are grouped before a policy applies (restic's ``--group-by``: host, paths, tags), so
the policy keeps N of each group rather than N overall. :func:`forget` removes the snapshot
files; the data only they referenced stays in the repository until :mod:`safekeep.core.prune`
runs. Removing snapshots needs the repository's exclusive lock, which the caller holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.core.format.snapshot import Snapshot
from safekeep.core.repository import Repository
from safekeep.storage.base import FileType, Handle
from safekeep.storage.errors import NotFound, PermissionDenied

GROUP_FIELDS = ("host", "paths", "tags")
DEFAULT_GROUP_BY = frozenset({"host", "paths"})


@dataclass(frozen=True, slots=True)
class KeepRules:
    """How many snapshots each rule keeps; 0 = the rule is off, -1 = no limit."""

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < -1:
                raise ValueError(f"keep-{f.name} must be -1 (no limit), 0 (off) or a positive count")

    def empty(self) -> bool:
        """No rule is on: such a policy would remove everything, so it is never applied."""
        return not any(getattr(self, f.name) for f in fields(self))

    def describe(self) -> str:
        """restic's wording: ``keep 24 hourly, 7 daily snapshots``."""
        parts = []
        for f in fields(self):
            n = getattr(self, f.name)
            name = "latest" if f.name == "last" else f.name
            if n > 0:
                parts.append(f"{n} {name}")
            elif n == -1:
                parts.append(f"all {name}")
        return f"keep {', '.join(parts)} snapshots" if parts else "keep nothing"


def _always(_: datetime, nr: int) -> int:
    return nr


def _hour(t: datetime, _: int) -> int:
    return t.year * 1_000_000 + t.month * 10_000 + t.day * 100 + t.hour


def _day(t: datetime, _: int) -> int:
    return t.year * 10_000 + t.month * 100 + t.day


def _week(t: datetime, _: int) -> int:
    year, week, _weekday = t.isocalendar()
    return year * 100 + week


def _month(t: datetime, _: int) -> int:
    return t.year * 100 + t.month


def _year(t: datetime, _: int) -> int:
    return t.year


_RULES: tuple[tuple[str, str, Callable[[datetime, int], int]], ...] = (
    ("last", "last snapshot", _always),
    ("hourly", "hourly snapshot", _hour),
    ("daily", "daily snapshot", _day),
    ("weekly", "weekly snapshot", _week),
    ("monthly", "monthly snapshot", _month),
    ("yearly", "yearly snapshot", _year),
)


@dataclass(frozen=True, slots=True)
class Decision:
    """One group's outcome: ``keep`` and ``remove`` newest first; ``reasons[id]`` says which rules
    kept a snapshot."""

    keep: tuple[Snapshot, ...]
    remove: tuple[Snapshot, ...]
    reasons: dict[str, tuple[str, ...]] = field(default_factory=dict)


def apply_policy(snapshots: Iterable[Snapshot], rules: KeepRules) -> Decision:
    """restic 0.14's ``ApplyPolicy`` for one group. An empty policy keeps everything."""
    ordered = sorted(snapshots, key=lambda s: s.time, reverse=True)  # stable: equal times keep order
    if rules.empty():
        return Decision(tuple(ordered), (), {s.id: ("no policy",) for s in ordered})
    counts = {name: getattr(rules, name) for name, _, _ in _RULES}
    last_seen = dict.fromkeys(counts, -1)
    keep: list[Snapshot] = []
    remove: list[Snapshot] = []
    reasons: dict[str, tuple[str, ...]] = {}
    for nr, snap in enumerate(ordered):
        why: list[str] = []
        for name, reason, bucket in _RULES:
            if counts[name] > 0 or counts[name] == -1:
                value = bucket(snap.time, nr)
                if value != last_seen[name]:
                    last_seen[name] = value
                    if counts[name] > 0:
                        counts[name] -= 1
                    why.append(reason)
        if why:
            keep.append(snap)
            reasons[snap.id] = tuple(why)
        else:
            remove.append(snap)
    return Decision(tuple(keep), tuple(remove), reasons)


def group_key(snap: Snapshot, group_by: frozenset[str]) -> str:
    """The group a snapshot belongs to, as restic's JSON group key (host, sorted paths, sorted
    tags; the fields not grouped by are empty)."""
    unknown = group_by - set(GROUP_FIELDS)
    if unknown:
        raise ValueError(f"cannot group by {', '.join(sorted(unknown))}; use host, paths and/or tags")
    key = {
        "hostname": snap.hostname if "host" in group_by else "",
        "paths": sorted(snap.paths) if "paths" in group_by else None,
        "tags": sorted(snap.tags) if "tags" in group_by else None,
    }
    return json.dumps(key, separators=(",", ":"), ensure_ascii=False)


def group_snapshots(
    snapshots: Iterable[Snapshot], group_by: frozenset[str] = DEFAULT_GROUP_BY
) -> dict[str, list[Snapshot]]:
    groups: dict[str, list[Snapshot]] = {}
    for s in snapshots:
        groups.setdefault(group_key(s, group_by), []).append(s)
    return groups


@dataclass(frozen=True, slots=True)
class ForgetPlan:
    """The decision for every group, in the order the groups were first seen."""

    groups: tuple[tuple[str, Decision], ...]

    @property
    def remove(self) -> tuple[Snapshot, ...]:
        return tuple(s for _, d in self.groups for s in d.remove)

    @property
    def keep(self) -> tuple[Snapshot, ...]:
        return tuple(s for _, d in self.groups for s in d.keep)


def plan_forget(
    snapshots: Sequence[Snapshot], rules: KeepRules, group_by: frozenset[str] = DEFAULT_GROUP_BY
) -> ForgetPlan:
    """Apply ``rules`` to each group of ``snapshots``."""
    return ForgetPlan(
        tuple((k, apply_policy(g, rules)) for k, g in group_snapshots(snapshots, group_by).items())
    )


@dataclass(frozen=True, slots=True)
class ForgetResult:
    removed: tuple[str, ...]
    failed: tuple[tuple[str, str], ...] = ()  # (snapshot id, why) of snapshots that could not go


def forget(repo: Repository, snapshots: Iterable[Snapshot], *, cancel: CancelToken = NEVER) -> ForgetResult:
    """Remove the snapshot files of ``snapshots``; the caller holds the exclusive lock.

    A snapshot the storage refuses to remove (an S3 Object Lock that has not ended, a key without
    delete permission) is reported in ``failed`` and the others are still removed; other storage
    errors stop the removal and propagate. Cancelling
    stops between snapshots (each removal is whole, so the repository stays consistent)."""
    removed: list[str] = []
    failed: list[tuple[str, str]] = []
    for snap in snapshots:
        cancel.raise_if_cancelled()
        try:
            repo.remove_files(FileType.SNAPSHOT, [snap.id], cancel=cancel)
        except NotFound:
            pass  # removed meanwhile by another program: gone either way
        except PermissionDenied as exc:
            failed.append((snap.id, exc.user_text()))
            continue
        removed.append(snap.id)
    if repo.cache is not None:
        for sid in removed:
            repo.cache.drop(Handle(FileType.SNAPSHOT, sid))
    return ForgetResult(tuple(removed), tuple(failed))
