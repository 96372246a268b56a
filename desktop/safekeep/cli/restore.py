"""``safekeep restore SNAPSHOT --target DIR``: bring a snapshot, or parts of it, back.

Files are restored under ``DIR`` with their full path in the snapshot (restic's layout:
``DIR/home/anna/Documents/...``). ``--include PATH`` (repeatable) restores only those snapshot
paths and what is below them. Takes a non-exclusive lock; the repository is opened read-only.

``--into`` restores each ``--include`` path into ``DIR`` by its name instead
(``--include /home/anna/Documents --into -t /media/usb`` gives ``/media/usb/Documents``).

A file or symlink already in the way is overwritten (restic's behaviour), or with
``--conflict skip`` left alone, or with ``--conflict keep-both`` kept while the restored copy is
named ``report (restored 2026-11-22).xlsx``. Folders that exist are merged; a folder is never
replaced by a file nor a file by a folder (reported as an error). Every restored file is re-read
and checked against the backup before it takes its name (``--no-verify`` skips that).

A file that cannot be restored is reported and skipped; the exit status is then 3. Nothing
half-written is left under a real name (files are written under a temporary name and renamed).
The summary says what went where; with ``-v`` each item is listed. ``--json``: ``status`` lines,
``error`` lines, with ``-v`` one ``verbose_status`` line per item, then restic's restore
``summary`` with Safekeep's counts added.
"""

from __future__ import annotations

import argparse
from typing import Any

from safekeep.cli.context import CliContext
from safekeep.cli.output import format_bytes, format_duration, format_local_time
from safekeep.cli.progress import item_error_printer, make_progress
from safekeep.core.restorer import ConflictPolicy, RestoredItem, RestoreOptions, Restorer, RestoreSummary

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
    p.add_argument(
        "--conflict",
        choices=[c.value for c in ConflictPolicy],
        default=ConflictPolicy.OVERWRITE.value,
        help="what to do with a file already in the way: overwrite it (default), skip the restored "
        "one, or keep both (the restored copy is named 'NAME (restored DATE).EXT')",
    )
    p.add_argument(
        "--into",
        action="store_true",
        help="restore each --include PATH into DIR by its name (DIR/NAME), not with its full path",
    )
    p.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="do not re-read each restored file to check it against the backup",
    )
    p.set_defaults(run=run)


def run(ctx: CliContext, args: argparse.Namespace) -> int:
    out = ctx.out
    options = RestoreOptions(
        include=tuple(args.include),
        conflict=ConflictPolicy(args.conflict),
        flatten=args.into,
        verify=args.verify,
    )
    with ctx.repository(read_only=True) as repo, ctx.locked(repo, exclusive=False, read_only=True):
        repo.load_index(cancel=ctx.cancel)
        snap = repo.find_snapshot(args.snapshot, cancel=ctx.cancel)
        out.info(
            f"restoring snapshot {snap.id[:8]} of [{' '.join(snap.paths)}] "
            f"at {format_local_time(snap.time)} {'into' if args.into else 'to'} {args.target}"
        )
        restorer = Restorer(repo, options, progress=make_progress(out, "restore"), cancel=ctx.cancel)
        restorer.recorder.on_record = item_error_printer(out, "restore")
        start = restorer.clock.monotonic()
        s = restorer.restore(snap, args.target)
        elapsed = restorer.clock.monotonic() - start
    if ctx.options.verbose:
        for item in s.items:
            _show_item(ctx, item)
        if s.items_omitted:
            out.info(f"(and {s.items_omitted} more items)")
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
                "files_skipped": s.skipped,
                "files_overwritten": s.overwritten,
                "files_kept_both": s.kept_both,
                "files_verified": s.verified,
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
        out.info(_conflict_line(s))
    if s.errors:
        if not out.json_mode:
            out.warn(f"Warning: {len(s.errors)} item(s) could not be restored")
        return EXIT_PARTIAL
    return 0


def _conflict_line(s: RestoreSummary) -> str:
    """``Already there: 2 overwritten, 1 kept both, 0 skipped; 12 files verified``."""
    verified = f"{s.verified} files verified" if s.verified else "not verified"
    return (
        f"Already there: {s.overwritten} overwritten, {s.kept_both} kept both, {s.skipped} skipped; "
        f"{verified}"
    )


def _show_item(ctx: CliContext, item: RestoredItem) -> None:
    out = ctx.out
    if out.json_mode:
        out.json(
            {
                "message_type": "verbose_status",
                "action": item.action,
                "item": item.snapshot_path,
                "target": item.target_path,
                "size": item.size,
                "verified": item.verified,
                **({"error": item.error} if item.error else {}),
            }
        )
        return
    where = item.target_path
    if item.action == "failed":
        out.info(f"failed      {item.snapshot_path}: {item.error}")
    else:
        out.info(f"{item.action:<11} {item.snapshot_path} -> {where}")
