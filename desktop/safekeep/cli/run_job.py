"""``safekeep run-job``: the job worker (started by the app, never by people).

Reads one job as JSON on stdin and reports events as JSON lines on stdout; see
:mod:`safekeep.engine.worker`.
"""

from __future__ import annotations

import argparse
from typing import Any

from safekeep.cli.context import CliContext
from safekeep.engine import worker


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("run-job", description="Run one job from stdin (used by Safekeep itself).")
    p.set_defaults(run=run)


def run(ctx: CliContext, args: argparse.Namespace) -> int:
    return worker.main()
