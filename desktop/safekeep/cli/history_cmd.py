"""``safekeep history [--plan NAME] [--limit N]``: what ran, why, and how it went.

One line per run (newest first) with its reason, and one per destination with its outcome,
snapshot and what was skipped; ``--json`` gives the full records.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from safekeep.cli.context import CliContext
from safekeep.cli.output import format_bytes
from safekeep.state.model import Run


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("history", help="show past and running backups", description=__doc__)
    p.add_argument("--plan", metavar="NAME", help="only this plan")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="at most N runs (default 20)")
    p.add_argument("--skipped", action="store_true", help="list the skipped files too")
    p.set_defaults(run=run)


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def reason_text(r: Run) -> str:
    return r.reason.value + (f": {r.reason_text}" if r.reason_text else "")


def run(ctx: CliContext, args: argparse.Namespace) -> int:
    service = ctx.service()
    runs = service.history(args.plan, limit=args.limit)
    plans = {p.id: p.name for p in service.plans()}
    dests = {d.id: d.name for d in service.destinations()}
    for r in runs:
        ctx.out.json({"message_type": "run", "plan": plans.get(r.plan_id, r.plan_id), **r.to_dict()})
    if not runs:
        ctx.out.result("no runs yet")
        return 0
    for r in runs:
        plan = plans.get(r.plan_id, f"(removed plan {r.plan_id})")
        ctx.out.result(
            f"{_when(r.started)}  {plan}  {r.kind}  {r.outcome.value}  ({reason_text(r)})  [{r.id}]"
        )
        for res in r.results:
            line = f"    {dests.get(res.destination_id, res.destination_id)}: {res.outcome.value}"
            if res.snapshot_id:
                line += f", snapshot {res.snapshot_id[:8]}"
            if res.files or res.bytes:
                line += f", {res.files} files, {format_bytes(res.bytes)}"
            if res.skipped_count:
                line += f", {res.skipped_count} skipped"
            if res.error:
                line += f" - {res.error}"
            ctx.out.result(line)
            if args.skipped:
                for s in res.skipped:
                    ctx.out.result(f"        skipped {s.path}: {s.reason}")
    return 0
