"""A plan's retention, applied after each of its backups: forget old snapshots, then prune.

Which snapshots are the plan's: those with the plan's tag taken on this computer (its host
name, as the backup records it). They form one group whatever folders they covered, so adding a
folder to a plan does not leave the older snapshots outside the policy (restic's default grouping
by host and paths would). The newest snapshot always survives: every rule keeps the newest one.

Runs under the repository's exclusive lock, taken after the backup's own lock is released. If
another program holds a lock, or anything else goes wrong, the backup still counts and its
result becomes a warning that says old backups were not removed this time; the next backup tries
again. Every removal is recorded in the audit log (``forget`` with the snapshot IDs, ``prune``
with the space freed), then the log's off-site copy is refreshed.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from safekeep.common.cancel import CancelToken
from safekeep.common.errors import Cancelled, SafekeepError
from safekeep.common.progress import ProgressSink
from safekeep.core.forget import KeepRules, forget, plan_forget
from safekeep.core.locks import Lock
from safekeep.core.prune import PruneSummary, prune
from safekeep.core.repository import Repository
from safekeep.state.audit import Action
from safekeep.state.model import DestinationResult, Outcome, Retention

log = logging.getLogger(__name__)

_GROUP_BY = frozenset({"host"})


def keep_rules(retention: Retention | Mapping[str, int]) -> KeepRules:
    """A plan's retention in the engine's terms (``keep_daily`` -> ``daily``)."""
    values = retention.to_dict() if isinstance(retention, Retention) else dict(retention)
    return KeepRules(**{k.removeprefix("keep_"): int(v) for k, v in values.items()})


AuditEntry = tuple[Action, str, dict[str, Any]]
"""(action, outcome, details) of an audit log entry."""


@dataclass(frozen=True, slots=True)
class RetentionOutcome:
    """What applying the retention did: the snapshots removed and kept, the prune summary (None
    when nothing was removed), and the audit entries recorded."""

    removed: tuple[str, ...] = ()
    kept: int = 0
    pruned: PruneSummary | None = None
    audit: tuple[AuditEntry, ...] = ()


def apply_retention(
    repo: Repository,
    rules: KeepRules,
    tags: tuple[str, ...],
    destination_id: str,
    *,
    progress: ProgressSink,
    cancel: CancelToken,
    record: Callable[[AuditEntry], None],
    hostname: str = "",
) -> RetentionOutcome:
    """Forget the snapshots with all of ``tags`` from this host that ``rules`` do not keep, and
    prune if any went. Takes the exclusive lock; raises what locking, forget and prune raise.

    ``record`` is called with each audit entry as soon as its step is done, still under the
    lock (so it may write the log's off-site copy): a prune that fails after forget removed
    snapshots still leaves the removal on record."""
    host = hostname or socket.gethostname()
    with Lock(repo, exclusive=True).acquire(cancel=cancel):
        snaps = [
            s for s in repo.list_snapshots(cancel=cancel) if s.hostname == host and set(tags) <= set(s.tags)
        ]
        decided = plan_forget(snaps, rules, _GROUP_BY)
        if not decided.remove:
            return RetentionOutcome(kept=len(decided.keep))
        result = forget(repo, decided.remove, cancel=cancel)
        entries: list[AuditEntry] = []
        forget_details: dict[str, Any] = {
            "destination_id": destination_id,
            "policy": rules.describe(),
            "removed": list(result.removed),
            "kept": len(decided.keep),
        }
        if result.failed:
            forget_details["not_removed"] = [{"snapshot": s, "reason": why} for s, why in result.failed]
        entries.append((Action.FORGET, "warning" if result.failed else "success", forget_details))
        record(entries[-1])
        summary: PruneSummary | None = None
        if result.removed:
            summary = prune(repo, progress=progress, cancel=cancel)
            prune_details: dict[str, Any] = {
                "destination_id": destination_id,
                "packs_removed": summary.packs_removed,
                "packs_repacked": summary.packs_repacked,
                "bytes_freed": summary.bytes_freed,
            }
            if summary.failed:
                prune_details["not_removed"] = [{"file": f, "reason": why} for f, why in summary.failed]
            entries.append((Action.PRUNE, "warning" if summary.failed else "success", prune_details))
            record(entries[-1])
        return RetentionOutcome(result.removed, len(decided.keep), summary, tuple(entries))


def after_backup(
    result: DestinationResult,
    run: Callable[[], RetentionOutcome],
) -> tuple[DestinationResult, RetentionOutcome | None]:
    """Run ``run`` (:func:`apply_retention` bound to the job) for a backup that made a snapshot;
    a failure turns the result into a warning that says so, never into a failed backup."""
    if not result.snapshot_id or result.outcome not in (Outcome.SUCCESS, Outcome.WARNING):
        return result, None
    try:
        outcome = run()
    except Cancelled:
        note = "Removing old backups was cancelled; it continues after the next backup."
    except SafekeepError as exc:
        log.warning("retention not applied: %s", exc)
        note = f"The backup is complete, but old backups were not removed this time: {exc.user_text()}"
    else:
        problems = [d for _, o, d in outcome.audit if o != "success"]
        if not problems:
            return result, outcome
        note = (
            "The backup is complete, but the storage refused to remove some old files "
            "(a retention lock or missing delete permission); they are removed by a later backup."
        )
        return _warn(result, note), outcome
    return _warn(result, note), None


def _warn(result: DestinationResult, note: str) -> DestinationResult:
    error = f"{result.error}\n{note}" if result.error else note
    return replace(result, outcome=Outcome.worst([result.outcome, Outcome.WARNING]), error=error)
