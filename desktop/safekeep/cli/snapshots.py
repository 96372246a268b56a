"""``safekeep snapshots``: list the repository's snapshots, oldest first.

Filters work like restic's: ``--host`` and ``--tag`` may be repeated (a snapshot matches any of
them; ``--tag a,b`` needs both tags), ``--path`` may be repeated (a snapshot must contain every
path given). Text output is restic's table; ``--json`` prints one JSON list of snapshot objects
(the stored fields plus ``id`` and ``short_id``), as ``restic snapshots --json`` does.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from safekeep.cli.context import CliContext
from safekeep.cli.output import format_local_time, format_table
from safekeep.core.format.snapshot import Snapshot


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("snapshots", help="list snapshots", description="List the repository's snapshots.")
    add_filters(p)
    p.set_defaults(run=run)


def add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("-H", "--host", action="append", default=[], help="only snapshots of HOST (repeatable)")
    p.add_argument(
        "--tag", action="append", default=[], metavar="TAG[,TAG]", help="only snapshots with these tags"
    )
    p.add_argument("--path", action="append", default=[], help="only snapshots containing PATH (repeatable)")


def matches(snap: Snapshot, hosts: list[str], tags: list[str], paths: list[str]) -> bool:
    if hosts and snap.hostname not in hosts:
        return False
    if tags:
        groups = [{t for t in group.split(",") if t} for group in tags]
        if not any(group <= set(snap.tags) for group in groups):
            return False
    if paths:
        wanted = {os.path.normpath(os.path.abspath(p)) for p in paths}
        if not wanted <= set(snap.paths):
            return False
    return True


def snapshot_json(snap: Snapshot) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(snap.to_json())
    obj["id"] = snap.id
    obj["short_id"] = snap.id[:8]
    return obj


def run(ctx: CliContext, args: argparse.Namespace) -> int:
    with ctx.repository(read_only=True) as repo:
        snaps = [
            s for s in repo.list_snapshots(cancel=ctx.cancel) if matches(s, args.host, args.tag, args.path)
        ]
    out = ctx.out
    if out.json_mode:
        out.json([snapshot_json(s) for s in snaps])
        return 0
    rows: list[list[str]] = []
    for s in snaps:
        paths = s.paths or [""]
        tags = s.tags or [""]
        for i in range(max(len(paths), len(tags))):
            first = i == 0
            rows.append(
                [
                    s.id[:8] if first else "",
                    format_local_time(s.time) if first else "",
                    s.hostname if first else "",
                    tags[i] if i < len(tags) else "",
                    paths[i] if i < len(paths) else "",
                ]
            )
    for line in format_table(["ID", "Time", "Host", "Tags", "Paths"], rows):
        out.result(line)
    out.result(f"{len(snaps)} snapshots")
    return 0
