"""``safekeep version``: print the program's version (and Python's and the platform's)."""

from __future__ import annotations

import argparse
import platform
import sys
from typing import Any

from safekeep import __version__
from safekeep.cli.context import CliContext


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("version", help="print version information", description="Print version information.")
    p.set_defaults(run=run)


def run(ctx: CliContext, args: argparse.Namespace) -> int:
    py = platform.python_version()
    plat = f"{sys.platform}/{platform.machine().lower()}"
    ctx.out.json({"message_type": "version", "version": __version__, "python": py, "platform": plat})
    ctx.out.result(f"safekeep {__version__} running on Python {py} on {plat}")
    return 0
