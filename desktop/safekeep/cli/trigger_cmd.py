"""``safekeep trigger --plan NAME --reason TEXT``: ask for a backup now, from another program.

Other software calls this before an update, after a batch of records was entered, at the end of
the month. The run is queued in the running app or daemon and the reason is kept in the history
(``safekeep history``). When neither runs, the backup runs here and now, and the exit status is
its outcome. ``--wait`` waits for a queued run to end too.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from safekeep.cli.backup import EXIT_BY_OUTCOME, run_plan
from safekeep.cli.context import CliContext
from safekeep.common.errors import SafekeepError
from safekeep.engine import control
from safekeep.state import paths
from safekeep.state.model import Outcome, Reason, Run


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "trigger", help="ask for a backup of a plan now (for other programs)", description=__doc__
    )
    p.add_argument("--plan", required=True, metavar="NAME")
    p.add_argument("--reason", default="", metavar="TEXT", help="why (kept in the history)")
    p.add_argument("--wait", action="store_true", help="wait for the backup to finish")
    p.set_defaults(run=run)


def run(ctx: CliContext, args: argparse.Namespace) -> int:
    reason = args.reason or "requested by another program"
    reply = control.send(paths.data_dir(), {"op": "trigger", "plan": args.plan, "reason": reason})
    if reply is None:
        ctx.out.info("Safekeep is not running here: running the backup now")
        return run_plan(ctx, args.plan, Reason.EXTERNAL, reason)
    if not reply.get("ok"):
        raise SafekeepError(
            str(reply.get("error", "The request was refused.")), hint=str(reply.get("hint", ""))
        )
    run_id = str(reply["run_id"])
    ctx.out.json({"message_type": "queued", "run_id": run_id, "plan": reply.get("plan")})
    ctx.out.result(f"backup of {reply.get('plan')} queued (run {run_id})")
    if not args.wait:
        return 0
    while True:
        done = control.send(paths.data_dir(), {"op": "wait", "run_id": run_id, "timeout": 5}, timeout=30)
        if done is None or not done.get("ok"):
            raise SafekeepError(
                "Safekeep stopped before the backup finished.", hint="See 'safekeep history'."
            )
        result = Run.from_dict(done["run"])
        if result.finished is not None:
            ctx.out.result(f"backup of {reply.get('plan')}: {result.outcome.value}")
            return EXIT_BY_OUTCOME.get(result.outcome, 1)
        if ctx.cancel.cancelled:
            return EXIT_BY_OUTCOME[Outcome.CANCELLED]
        time.sleep(0.1)
