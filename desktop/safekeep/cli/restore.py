"""``safekeep restore SNAPSHOT --target DIR``: bring a snapshot, or parts of it, back.

Files are restored under ``DIR`` with their full path in the snapshot (restic's layout:
``DIR/home/anna/Documents/...``). ``--include PATH`` (repeatable) restores only those snapshot
paths and what is below them. Takes a non-exclusive lock; the repository is opened read-only.

A file that cannot be restored is reported and skipped; the exit status is then 3. Nothing
half-written is left under a real name (files are written under a temporary name and renamed).
``--json``: ``status`` lines, ``error`` lines, then restic's restore ``summary``.
"""

from __future__ import annotations

import argparse
from typing import Any

from safekeep.cli.context import CliContext
from safekeep.cli.output import format_bytes, format_duration, format_local_time
from safekeep.cli.progress import item_error_printer, make_progress
from safekeep.core.restorer import RestoreOptions, Restorer

EXIT_PARTIAL = 3


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "restore", help="restore a snapshot", description="Restore a snapshot (or parts of it) into a folder."
    )
    p.add_argument("snapshot", metavar="SNAPSHOT", help="snapshot ID (or prefix) or 'latest'")
    p.add_argument("-t", "--target", required=True, metavar="DIR", help="folder to restore into")
    p.add_argument(
        "-i",
        "--include",
        action="append",
        default=[],
        metavar="PATH",
        help="restore only PATH (a path in the snapshot) and what is below it (repeatable)",
    )
    p.set_defaults(run=run)


def run(ctx: CliContext, args: argparse.Namespace) -> int:
    out = ctx.out
    with ctx.repository(read_only=True) as repo, ctx.locked(repo, exclusive=False, read_only=True):
        repo.load_index(cancel=ctx.cancel)
        snap = repo.find_snapshot(args.snapshot, cancel=ctx.cancel)
        out.info(
            f"restoring snapshot {snap.id[:8]} of [{' '.join(snap.paths)}] "
            f"at {format_local_time(snap.time)} to {args.target}"
        )
        restorer = Restorer(
            repo,
            RestoreOptions(include=tuple(args.include)),
            progress=make_progress(out, "restore"),
            cancel=ctx.cancel,
        )
        restorer.recorder.on_record = item_error_printer(out, "restore")
        start = restorer.clock.monotonic()
        s = restorer.restore(snap, args.target)
        elapsed = restorer.clock.monotonic() - start
    restored = s.files_restored + s.dirs_restored + s.other_restored
    if out.json_mode:
        out.json(
            {
                "message_type": "summary",
                "seconds_elapsed": int(elapsed),
                "total_files": s.files_total,
                "files_restored": s.files_restored,
                "dirs_restored": s.dirs_restored,
                "other_restored": s.other_restored,
                "total_bytes": s.bytes_total,
                "bytes_restored": s.bytes_written,
                "error_count": len(s.errors),
                "snapshot_id": snap.id,
            }
        )
    else:
        out.info(
            f"Summary: Restored {restored} files/dirs ({format_bytes(s.bytes_written)}) "
            f"in {format_duration(elapsed)}"
        )
    if s.errors:
        if not out.json_mode:
            out.warn(f"Warning: {len(s.errors)} item(s) could not be restored")
        return EXIT_PARTIAL
    return 0
