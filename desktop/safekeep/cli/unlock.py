"""``safekeep unlock``: remove stale locks (``--remove-all``: every lock).

A lock is stale when it is older than 30 minutes or was made on this computer by a process that
no longer runs. ``--remove-all`` also removes locks of running processes: use it only when you
are sure nothing else is using the repository. Takes no lock itself.
"""

from __future__ import annotations

import argparse
from typing import Any

from safekeep.cli.context import CliContext
from safekeep.core.locks import remove_stale_locks


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("unlock", help="remove stale locks", description="Remove stale repository locks.")
    p.add_argument("--remove-all", action="store_true", help="remove every lock, even of running processes")
    p.set_defaults(run=run)


def run(ctx: CliContext, args: argparse.Namespace) -> int:
    with ctx.repository(read_only=False) as repo:
        removed = remove_stale_locks(repo, remove_all=args.remove_all)
    ctx.out.json({"message_type": "unlocked", "removed": removed})
    ctx.out.info(f"successfully removed {removed} locks")
    return 0
