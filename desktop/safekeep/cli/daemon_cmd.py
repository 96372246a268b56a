"""``safekeep daemon``: run plans on their schedules and on file changes, without a window.

For servers and for computers where nobody is logged in to a desktop. It hosts the same
triggers as the app (schedules with catch-up, file changes, retries, removable disks, and
``safekeep trigger`` from other programs) and runs until stopped (Ctrl-C or SIGTERM). Only one
trigger host runs per user: the app or the daemon.
"""

from __future__ import annotations

import argparse
import signal
from typing import Any

from safekeep.cli.context import CliContext
from safekeep.engine.daemon import TriggerHost

RELOAD_SECONDS = 60.0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "daemon", help="run plans on schedule and on file changes (no window)", description=__doc__
    )
    p.set_defaults(run=run)


def run(ctx: CliContext, args: argparse.Namespace) -> int:
    service = ctx.service()
    host = TriggerHost(service)
    host.start()
    signal.signal(signal.SIGTERM, lambda *_: ctx.cancel.cancel("stopped"))
    ctx.out.info(f"safekeep daemon running with {len(service.plans())} plan(s); stop it with Ctrl-C")
    try:
        while not ctx.cancel.wait(RELOAD_SECONDS):
            host.reload()  # plans changed by the app or the command line
    finally:
        host.stop()
    ctx.out.info("safekeep daemon stopped")
    return 0
