"""``safekeep check``: verify the repository's structure and, optionally, its data.

Always: every index, snapshot and tree loads and every blob a snapshot needs is indexed in an
existing pack. ``--read-data`` also reads every pack and checks every blob; ``--read-data-subset``
reads a part (``10%`` at random, or ``n/t``: the n-th of t groups, to spread a full read over t
runs). Takes a non-exclusive lock; the repository is opened read-only. Exit status 1 when errors
are found. ``--json``: ``status`` lines, one ``error`` line per problem, then a ``summary``.
"""

from __future__ import annotations

import argparse
from typing import Any

from safekeep.cli.context import CliContext
from safekeep.cli.progress import make_progress
from safekeep.core.checker import CheckOptions, check, select_subset

EXIT_ERRORS = 1


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "check", help="check the repository for errors", description="Check the repository for errors."
    )
    p.add_argument("--read-data", action="store_true", help="read all data packs and verify every blob")
    p.add_argument(
        "--read-data-subset",
        metavar="N%|n/t",
        help="read only a subset of the packs: a percentage, or group n of t",
    )
    p.set_defaults(run=run)


def run(ctx: CliContext, args: argparse.Namespace) -> int:
    if args.read_data_subset:
        select_subset([], args.read_data_subset)  # a usage error before anything is opened
    options = CheckOptions(read_data=args.read_data, read_data_subset=args.read_data_subset)
    out = ctx.out
    with ctx.repository(read_only=True) as repo, ctx.locked(repo, exclusive=False, read_only=True):
        out.info(f"checking repository {repo.config.id[:10]} at {repo.location}")
        result = check(repo, options, progress=make_progress(out, "check"), cancel=ctx.cancel)
    for warning in result.warnings:
        if out.json_mode:
            out.json({"message_type": "warning", "message": warning})
        elif not out.quiet:
            out.warn(f"warning: {warning}")
    for problem in result.errors:
        if out.json_mode:
            out.json(
                {
                    "message_type": "error",
                    "kind": problem.kind,
                    "message": problem.message,
                    "pack": problem.pack,
                    "snapshot": problem.snapshot,
                    "paths": problem.paths,
                }
            )
        else:
            out.warn(f"error: {problem.message}")
            for path in problem.paths:
                out.warn(
                    f"  affects {path}" + (f" in snapshot {problem.snapshot[:8]}" if problem.snapshot else "")
                )
    counts = (
        f"{result.snapshots} snapshots, {result.trees} trees, {result.blobs} blobs, "
        f"{result.packs_read} packs read"
    )
    if out.json_mode:
        out.json(
            {
                "message_type": "summary",
                "num_errors": len(result.errors),
                "num_warnings": len(result.warnings),
                "snapshots": result.snapshots,
                "trees": result.trees,
                "blobs": result.blobs,
                "packs_read": result.packs_read,
            }
        )
    else:
        out.info(f"checked {counts}")
    if not result.ok:
        if not out.json_mode:
            out.warn(f"safekeep: the repository contains {len(result.errors)} error(s)")
            out.warn("Restore what you can and run 'safekeep backup' again; keep the damaged repository.")
        return EXIT_ERRORS
    out.info("no errors were found")
    return 0
