"""``safekeep forget`` and ``safekeep prune``: remove old snapshots, free the space they used.

``forget`` follows restic's command: ``--keep-last/-hourly/-daily/-weekly/-monthly/-yearly N``
(``-1``: no limit) decide per group of snapshots (``--group-by``, default ``host,paths``), exactly
as restic 0.14 does; snapshot IDs given as arguments are removed as they are. ``--host``,
``--tag`` and ``--path`` narrow the snapshots considered. ``--prune`` prunes afterwards;
``--dry-run`` shows what would go and changes nothing. ``prune`` on its own removes the data no
snapshot needs (``--max-unused``: how much unused space may stay to avoid rewriting packs,
default 5 %). Both take the exclusive lock. Removals are recorded in the app's audit log.

Text output lists, per group, the snapshots kept (with the rules that kept them) and removed;
``--json`` prints restic's ``forget --json`` form (a list of groups with ``keep``, ``remove``
and ``reasons``), then a ``prune`` summary object when pruning.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import Any

from safekeep.cli.context import CliContext
from safekeep.cli.output import Output, format_bytes, format_local_time, format_table
from safekeep.cli.progress import make_progress
from safekeep.cli.snapshots import add_filters, matches, snapshot_json
from safekeep.common.errors import UsageError
from safekeep.core.forget import GROUP_FIELDS, Decision, KeepRules, forget, plan_forget
from safekeep.core.format.snapshot import Snapshot
from safekeep.core.prune import DEFAULT_MAX_UNUSED, PruneOptions, PruneSummary, prune
from safekeep.core.repository import Repository
from safekeep.state.audit import Action
from safekeep.storage.base import FileType

RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
UNLIMITED = 1e9  # --max-unused unlimited: never rewrite packs, only remove wholly unused ones


def register(sub: argparse._SubParsersAction[Any]) -> None:
    f = sub.add_parser(
        "forget",
        help="remove snapshots by a retention policy (and prune)",
        description="Remove snapshots: those given by ID, or those a retention policy does not keep.",
    )
    f.add_argument("snapshots", nargs="*", metavar="ID", help="snapshots to remove (an ID or its prefix)")
    for rule in RULES:
        what = "the last N snapshots" if rule == "last" else f"the newest snapshot of N {rule} periods"
        f.add_argument(f"--keep-{rule}", type=int, default=0, metavar="N", help=f"keep {what} (-1: no limit)")
    f.add_argument(
        "--group-by",
        default="host,paths",
        metavar="FIELDS",
        help="apply the policy to each group of snapshots with the same host, paths and/or tags "
        "(default host,paths; '' for one group)",
    )
    add_filters(f)
    f.add_argument("--prune", action="store_true", help="prune after forgetting")
    f.add_argument("-n", "--dry-run", action="store_true", help="only show what would be removed")
    _add_max_unused(f)
    f.set_defaults(run=run_forget)

    p = sub.add_parser(
        "prune",
        help="remove data no snapshot needs any more",
        description="Remove the data no snapshot needs, rewriting partly used packs when worthwhile.",
    )
    p.add_argument("-n", "--dry-run", action="store_true", help="only show what would be removed")
    _add_max_unused(p)
    p.set_defaults(run=run_prune)


def _add_max_unused(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-unused",
        default=f"{DEFAULT_MAX_UNUSED * 100:g}%",
        metavar="PERCENT",
        help="unused space tolerated, as a percentage of the used space, before packs are rewritten "
        "(default %(default)s; 0%% rewrites every partly used pack)",
    )


def _max_unused(text: str) -> float:
    t = text.strip()
    if t == "unlimited":
        return UNLIMITED
    try:
        share = float(t.removesuffix("%")) / 100 if t.endswith("%") else -1.0
    except ValueError:
        share = -1.0
    if share < 0:
        raise UsageError(
            f"--max-unused {text!r} is not a percentage.", hint="Write it like 5% or 0%, or 'unlimited'."
        )
    return share


def _rules(args: argparse.Namespace) -> KeepRules:
    try:
        return KeepRules(**{rule: getattr(args, f"keep_{rule}") for rule in RULES})
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _group_by(text: str) -> frozenset[str]:
    aliases = {"hosts": "host", "path": "paths", "tag": "tags"}
    fields = frozenset(aliases.get(f, f) for f in text.split(",") if f)
    unknown = fields - set(GROUP_FIELDS)
    if unknown:
        names = ", ".join(sorted(unknown))
        raise UsageError(f"Cannot group by {names}.", hint="Use host, paths and/or tags.")
    return fields


def run_forget(ctx: CliContext, args: argparse.Namespace) -> int:
    rules = _rules(args)
    group_by = _group_by(args.group_by)
    options = PruneOptions(max_unused=_max_unused(args.max_unused), dry_run=args.dry_run)
    if rules.empty() and not args.snapshots:
        raise UsageError(
            "No snapshots and no policy given: nothing would be removed.",
            hint="Give snapshot IDs, or --keep-last/--keep-daily/... rules.",
        )
    out = ctx.out
    with (
        ctx.repository(read_only=args.dry_run) as repo,
        ctx.locked(repo, exclusive=True, read_only=args.dry_run),
    ):
        snaps = [
            s for s in repo.list_snapshots(cancel=ctx.cancel) if matches(s, args.host, args.tag, args.path)
        ]
        chosen: list[Snapshot] = []
        if args.snapshots:
            by_id = {s.id: s for s in repo.list_snapshots(cancel=ctx.cancel)}
            for ref in args.snapshots:
                chosen.append(by_id[repo.resolve_id(FileType.SNAPSHOT, ref, cancel=ctx.cancel)])
        groups: list[tuple[str, Decision]] = []
        if not rules.empty():
            decided = plan_forget(snaps, rules, group_by)
            groups = list(decided.groups)
            chosen += [s for s in decided.remove if s not in chosen]
        _print_groups(out, rules, groups, explicit=[s for s in chosen if args.snapshots])
        if args.dry_run:
            out.info(f"would remove {len(chosen)} snapshots")
            if args.prune:  # as if the snapshots were gone
                options = replace(options, ignore_snapshots=frozenset(s.id for s in chosen))
                progress = make_progress(out, "prune")
                _print_prune(out, prune(repo, options, progress=progress, cancel=ctx.cancel))
            return 0
        result = forget(repo, chosen, cancel=ctx.cancel)
        policy = "" if rules.empty() else rules.describe()
        outcome = "warning" if result.failed else "success"
        ctx.audit(Action.FORGET, repo, outcome, removed=list(result.removed), policy=policy)
        for sid, why in result.failed:
            out.warn(f"snapshot {sid[:8]} was not removed: {why}")
        out.info(f"removed {len(result.removed)} snapshots")
        if args.prune:
            summary = prune(repo, options, progress=make_progress(out, "prune"), cancel=ctx.cancel)
            _audit_prune(ctx, repo, summary)
            _print_prune(out, summary)
    return 1 if result.failed else 0


def run_prune(ctx: CliContext, args: argparse.Namespace) -> int:
    options = PruneOptions(max_unused=_max_unused(args.max_unused), dry_run=args.dry_run)
    with (
        ctx.repository(read_only=args.dry_run) as repo,
        ctx.locked(repo, exclusive=True, read_only=args.dry_run),
    ):
        summary = prune(repo, options, progress=make_progress(ctx.out, "prune"), cancel=ctx.cancel)
        if not args.dry_run:
            _audit_prune(ctx, repo, summary)
    _print_prune(ctx.out, summary)
    return 1 if summary.failed else 0


def _audit_prune(ctx: CliContext, repo: Repository, s: PruneSummary) -> None:
    outcome = "warning" if s.failed else "success"
    ctx.audit(
        Action.PRUNE,
        repo,
        outcome,
        packs_removed=s.packs_removed,
        packs_repacked=s.packs_repacked,
        bytes_freed=s.bytes_freed,
    )


def _print_groups(
    out: Output, rules: KeepRules, groups: list[tuple[str, Decision]], explicit: list[Snapshot]
) -> None:
    if out.json_mode:
        listing = []
        for key, d in groups:
            k = json.loads(key)
            listing.append(
                {
                    "host": k["hostname"],
                    "paths": k["paths"],
                    "tags": k["tags"],
                    "keep": [snapshot_json(s) for s in d.keep],
                    "remove": [snapshot_json(s) for s in d.remove] or None,
                    "reasons": [
                        {"snapshot": snapshot_json(s), "matches": list(d.reasons[s.id])} for s in d.keep
                    ],
                }
            )
        if explicit:
            removed = [snapshot_json(s) for s in explicit]
            listing.append({"host": "", "paths": None, "tags": None, "keep": [], "remove": removed})
        out.json(listing)
        return
    if groups:
        out.result(f"Applying policy: {rules.describe()}")
    for key, d in groups:
        k = json.loads(key)
        named = (("host", k["hostname"]), ("paths", k["paths"]), ("tags", k["tags"]))
        what = [f"{name} [{', '.join(v) if isinstance(v, list) else v}]" for name, v in named if v]
        out.result(f"snapshots for ({', '.join(what) or 'all'}):")
        out.result(f"keep {len(d.keep)} snapshots:")
        for line in _table(d.keep, d.reasons):
            out.result(line)
        if d.remove:
            out.result(f"remove {len(d.remove)} snapshots:")
            for line in _table(d.remove, {}):
                out.result(line)
        out.result()
    if explicit:
        out.result(f"remove {len(explicit)} snapshots given by ID:")
        for line in _table(explicit, {}):
            out.result(line)


def _table(snaps: tuple[Snapshot, ...] | list[Snapshot], reasons: dict[str, tuple[str, ...]]) -> list[str]:
    headers = ["ID", "Time", "Host", "Tags", "Paths"] + (["Reasons"] if reasons else [])
    rows = []
    for s in snaps:
        row = [s.id[:8], format_local_time(s.time), s.hostname, ", ".join(s.tags), ", ".join(s.paths)]
        rows.append(row + ([", ".join(reasons.get(s.id, ()))] if reasons else []))
    return format_table(headers, rows)


def _print_prune(out: Output, s: PruneSummary) -> None:
    if out.json_mode:
        out.json({"message_type": "prune", **s.to_dict()})
        return
    would = "would " if s.dry_run else ""
    out.result(
        f"{s.snapshots} snapshots use {s.used_blobs} blobs ({format_bytes(s.used_bytes)}); "
        f"{format_bytes(s.unused_bytes)} unused"
    )
    out.result(
        f"{would}remove {s.packs_removed} packs"
        + (f" ({s.unreferenced_packs} left by interrupted backups)" if s.unreferenced_packs else "")
        + f", {would}rewrite {s.packs_repacked} packs ({s.blobs_repacked} blobs), "
        f"{would}free {format_bytes(s.bytes_freed)}"
    )
    after = format_bytes(s.unused_bytes_after)
    out.result(f"unused space {'would be' if s.dry_run else 'is'} {after} after the prune")
    for path, why in s.failed:
        out.warn(f"{path} was not removed: {why}")
