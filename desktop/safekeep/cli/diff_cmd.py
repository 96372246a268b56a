"""``safekeep diff SNAP1 SNAP2``: what was added, removed and changed between two snapshots.

Snapshots are IDs (or unique prefixes) or ``latest``. Output follows ``restic diff``: one line
per path with a modifier — ``+`` added, ``-`` removed, ``M`` content changed, ``U`` only the
metadata (modification time) changed — folders end in ``/``, and an added or removed folder is
listed with everything in it; a file replaced by a folder (or the reverse) is removed and added.
A summary of counts and sizes follows.

Folders whose contents are identical in both snapshots are skipped without being read, so the
comparison costs about as much as what changed. ``--json`` prints one
``{"message_type":"change","path":...,"modifier":...}`` line per path (folders end in ``/``, as
restic writes them) and a final
``{"message_type":"statistics", ...}``.
"""

from __future__ import annotations

import argparse
from typing import Any

from safekeep.cli.context import CliContext
from safekeep.cli.find_cmd import open_catalog, snapshot_ref_json
from safekeep.cli.output import format_bytes
from safekeep.state.catalog import Change, Entry


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "diff",
        help="show the differences between two snapshots",
        description="Show the files added, removed and changed between two snapshots.",
    )
    p.add_argument("snap1", metavar="SNAP1", help="the older snapshot (ID, prefix or 'latest')")
    p.add_argument("snap2", metavar="SNAP2", help="the newer snapshot (ID, prefix or 'latest')")
    p.set_defaults(run=run)


def _shown(path: str, e: Entry | None) -> str:
    return path + "/" if e is not None and e.type == "dir" else path


def _totals(changes: tuple[Change, ...], *, after: bool) -> dict[str, int]:
    files = dirs = size = 0
    for c in changes:
        e = c.after if after else c.before
        if e is None:
            continue
        if e.type == "dir":
            dirs += 1
        else:
            files += 1
            size += e.size if e.type == "file" else 0
    return {"files": files, "dirs": dirs, "bytes": size}


def run(ctx: CliContext, args: argparse.Namespace) -> int:
    out = ctx.out
    with open_catalog(ctx, update=False) as catalog:
        a, b = catalog.snapshot(args.snap1), catalog.snapshot(args.snap2)
        diff = catalog.diff(a.id, b.id, cancel=ctx.cancel)
    lines: list[tuple[str, str, str]] = []  # (path, modifier, shown path)
    lines += [(c.path, "-", _shown(c.path, c.before)) for c in diff.removed]
    lines += [(c.path, "+", _shown(c.path, c.after)) for c in diff.added]
    lines += [(c.path, "M" if c.content_changed else "U", c.path) for c in diff.changed]
    lines.sort(key=lambda t: (t[0], t[1] != "-"))
    added, removed = _totals(diff.added, after=True), _totals(diff.removed, after=False)
    content_changed = sum(1 for c in diff.changed if c.content_changed)
    if out.json_mode:
        for _, mod, shown in lines:
            out.json({"message_type": "change", "path": shown, "modifier": mod})
        out.json(
            {
                "message_type": "statistics",
                "source_snapshot": snapshot_ref_json(a),
                "target_snapshot": snapshot_ref_json(b),
                "added": added,
                "removed": removed,
                "changed_files": content_changed,
                "metadata_only": len(diff.changed) - content_changed,
            }
        )
        return 0
    out.info(f"comparing snapshot {a.short_id} to {b.short_id}:")
    out.info()
    for _, mod, shown in lines:
        out.result(f"{mod:<5}{shown}")
    out.info()
    out.info(f"Files:       {added['files']} new, {removed['files']} removed, {content_changed} changed")
    out.info(f"Dirs:        {added['dirs']} new, {removed['dirs']} removed")
    out.info(f"Added:   {format_bytes(added['bytes'])}")
    out.info(f"Removed: {format_bytes(removed['bytes'])}")
    return 0
