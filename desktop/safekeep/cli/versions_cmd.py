"""``safekeep versions PATH``: every distinct version of a file or folder across all snapshots.

``PATH`` is an absolute path inside the snapshots (``/home/anna/Documents/budget.xlsx``). A
version is one state of the path — the same content, size and modification time (for a folder,
the same contents) — shown once with the first and last snapshot that hold it; restore any of
them with ``safekeep restore SNAPSHOT --include PATH``. A folder's size is the total size of the
files in it.

Uses the repository's catalog, brought up to date first (see :mod:`safekeep.state.catalog`).
``--json`` prints one ``{"message_type":"version", ...}`` line per version, oldest first.
"""

from __future__ import annotations

import argparse
from typing import Any

from safekeep.cli.context import CliContext
from safekeep.cli.find_cmd import open_catalog, version_json
from safekeep.cli.output import format_bytes, format_local_time, format_table
from safekeep.state.catalog import CatalogError, clean_path


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "versions",
        help="list the versions of a file or folder",
        description="List every distinct version of a file or folder across all snapshots.",
    )
    p.add_argument("path", metavar="PATH", help="absolute path inside the snapshots")
    p.set_defaults(run=run)


def run(ctx: CliContext, args: argparse.Namespace) -> int:
    out = ctx.out
    path = clean_path(args.path)
    with open_catalog(ctx) as catalog:
        versions = catalog.versions(path, cancel=ctx.cancel)
    if not versions:
        raise CatalogError(
            f"{path} is in none of the snapshots.",
            hint="Give the full path as 'safekeep ls' shows it, or search with 'safekeep find NAME'.",
        )
    if out.json_mode:
        for i, v in enumerate(versions, 1):
            out.json({"message_type": "version", "path": path, "version": i, **version_json(v)})
        return 0
    rows = [
        [
            str(i),
            format_local_time(v.mtime),
            format_bytes(v.size),
            f"{v.first.short_id} {format_local_time(v.first.time)}",
            f"{v.last.short_id} {format_local_time(v.last.time)}",
            str(len(v.snapshots)),
        ]
        for i, v in enumerate(versions, 1)
    ]
    kind = "folder" if versions[-1].type == "dir" else "file"
    out.info(f"{kind} {path}:")
    for line in format_table(["Version", "Modified", "Size", "First seen", "Last seen", "Snapshots"], rows):
        out.result(line)
    out.info(f"{len(versions)} version{'s' if len(versions) != 1 else ''}")
    return 0
