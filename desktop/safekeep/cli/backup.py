"""``safekeep backup PATH...``: back up files and folders into a new snapshot.

Takes a non-exclusive lock (several backups may run at once; prune may not). The parent snapshot
— whose unchanged files are not read again — is the latest one with the same host and paths,
``--parent ID`` chooses another, ``--force`` uses none (every file is read).

Files that cannot be read are reported one by one and skipped; the snapshot is still written and
the exit status is 3. With ``--json`` the output is restic's: ``status`` lines while running,
one ``error`` line per skipped item, then a ``summary`` line.
"""

from __future__ import annotations

import argparse
from typing import Any

from safekeep.cli.context import CliContext
from safekeep.cli.output import format_bytes, format_duration
from safekeep.cli.progress import item_error_printer, make_progress
from safekeep.common.errors import SafekeepError, UsageError
from safekeep.core.archiver import Archiver, BackupOptions, BackupSummary, start_scan
from safekeep.engine.events import JobEvent
from safekeep.state.model import Outcome, Reason

EXIT_PARTIAL = 3


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "backup", help="back up files and folders", description="Create a new snapshot of PATH..."
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="files and folders to back up")
    p.add_argument(
        "--plan",
        metavar="NAME",
        help="run the backup plan NAME to all its destinations instead (waits; the exit status is "
        "the worst destination's)",
    )
    p.add_argument(
        "--reason", default="", metavar="TEXT", help="with --plan: why it runs (kept in the history)"
    )
    p.add_argument(
        "-e", "--exclude", action="append", default=[], metavar="PATTERN", help="exclude PATTERN (repeatable)"
    )
    p.add_argument(
        "--exclude-file",
        action="append",
        default=[],
        metavar="FILE",
        help="read exclude patterns from FILE, one per line ('#' starts a comment)",
    )
    p.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="TAG",
        help="add a tag to the snapshot (repeatable; 'a,b' adds two)",
    )
    p.add_argument("-H", "--host", default="", help="record HOST instead of this computer's name")
    p.add_argument("--parent", metavar="SNAPSHOT", help="use this snapshot as the parent")
    p.add_argument("-f", "--force", action="store_true", help="read every file again (no parent snapshot)")
    p.set_defaults(run=run)


def read_exclude_file(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise SafekeepError(
            f"Cannot read the exclude file {path}: {exc.strerror or exc}.", hint="Check the file name."
        ) from exc
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def split_tags(values: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for v in values:
        out += [t.strip() for t in v.split(",") if t.strip()]
    return tuple(out)


def run(ctx: CliContext, args: argparse.Namespace) -> int:
    if args.plan:
        if args.paths:
            raise UsageError("Give either --plan or paths to back up, not both.")
        return run_plan(ctx, args.plan, Reason.MANUAL if not args.reason else Reason.EXTERNAL, args.reason)
    if not args.paths:
        raise UsageError("Nothing to back up.", hint="Give folders to back up, or --plan NAME.")
    if args.force and args.parent:
        raise UsageError("--force and --parent cannot be used together.")
    excludes = list(args.exclude)
    for f in args.exclude_file:
        excludes += read_exclude_file(f)
    options = BackupOptions(
        excludes=tuple(excludes),
        tags=split_tags(args.tag),
        hostname=args.host,
        parent=args.parent,
        use_parent=not args.force,
    )
    out = ctx.out
    # the folders are read (nothing written) while the key is derived and the index loads
    scan = start_scan(list(args.paths), options)
    try:
        with ctx.repository(read_only=False) as repo, ctx.locked(repo, exclusive=False, read_only=False):
            repo.load_index(cancel=ctx.cancel)
            archiver = Archiver(
                repo, options, progress=make_progress(out, "backup"), cancel=ctx.cancel, scan=scan
            )
            archiver.recorder.on_record = item_error_printer(out, "archival")
            _, summary = archiver.backup(list(args.paths))
    finally:
        scan.close()
    elapsed = (
        (summary.backup_end - summary.backup_start).total_seconds()
        if summary.backup_start and summary.backup_end
        else 0.0
    )
    if out.json_mode:
        out.json(summary_json(summary, elapsed))
    else:
        print_summary(ctx, summary, elapsed)
    if summary.errors:
        if not out.json_mode:
            out.warn("Warning: at least one source file could not be read")
        return EXIT_PARTIAL
    return 0


def run_plan(ctx: CliContext, name: str, reason: Reason, reason_text: str) -> int:
    """Run a plan to all its destinations, wait, print each result; exit status by the worst."""
    service = ctx.service()
    plan = service.plan(name)
    dests = {d.id: d.name for d in service.destinations()}
    out = ctx.out
    current: dict[str, str] = {}

    def on_event(event: JobEvent) -> None:
        if event.kind == "started":
            current["dest"] = dests.get(event.destination_id, event.destination_id)
            out.info(f"backing up {plan.name} to {current['dest']}")
        elif event.kind == "progress" and not out.json_mode and out.stderr_is_tty:
            d = event.data
            out.show_progress(
                f"[{current.get('dest', '')}] {d.get('files_done', 0)} files, "
                f"{format_bytes(int(d.get('bytes_done', 0)))}"
            )
        elif event.kind == "file_error":
            out.warn(f"could not back up {event.data.get('path')}: {event.data.get('message')}")
        if event.kind != "secret":
            out.json({"message_type": event.kind, "destination_id": event.destination_id, **event.data})

    run_id = service.run_plan(plan.id, reason, reason_text, on_event=on_event)
    cancelling = False
    while True:
        result = service.wait(run_id, timeout=0.25)
        if result.finished is not None:
            break
        if ctx.cancel.cancelled and not cancelling:
            cancelling = service.cancel(run_id)
    out.clear_progress()
    for res in result.results:
        line = f"{dests.get(res.destination_id, res.destination_id)}: {res.outcome.value}"
        if res.snapshot_id:
            line += f", snapshot {res.snapshot_id[:8]} saved"
        if res.skipped_count:
            line += f", {res.skipped_count} item(s) skipped"
        if res.error:
            line += f" - {res.error}"
        out.result(line)
    out.json({"message_type": "run", **result.to_dict()})
    return EXIT_BY_OUTCOME.get(result.outcome, 1)


EXIT_BY_OUTCOME = {
    Outcome.SUCCESS: 0,
    Outcome.WARNING: EXIT_PARTIAL,
    Outcome.CANCELLED: 130,
    Outcome.INTERRUPTED: 1,
    Outcome.FAILED: 1,
}


def summary_json(s: BackupSummary, elapsed: float) -> dict[str, Any]:
    """restic's ``backup --json`` summary message, plus ``error_count`` and ``parent``."""
    msg: dict[str, Any] = {"message_type": "summary"}
    msg.update(s.snapshot_summary())
    msg["total_duration"] = round(elapsed, 3)
    msg["snapshot_id"] = s.snapshot_id
    msg["parent"] = s.parent
    msg["error_count"] = len(s.errors)
    return msg


def print_summary(ctx: CliContext, s: BackupSummary, elapsed: float) -> None:
    info = ctx.out.info
    if s.parent:
        info(f"using parent snapshot {s.parent[:8]}")
    else:
        info("no parent snapshot found, all files were read")
    info()
    info(
        f"Files:       {s.files_new:5d} new, {s.files_changed:5d} changed, {s.files_unmodified:5d} unmodified"
    )
    info(f"Dirs:        {s.dirs_new:5d} new, {s.dirs_changed:5d} changed, {s.dirs_unmodified:5d} unmodified")
    info(
        f"Added to the repository: {format_bytes(s.data_added)} ({format_bytes(s.data_added_packed)} stored)"
    )
    info()
    info(
        f"processed {s.total_files_processed} files, {format_bytes(s.total_bytes_processed)} "
        f"in {format_duration(elapsed)}"
    )
    if s.errors:
        info(f"{len(s.errors)} item(s) could not be read and were skipped")
    info(f"snapshot {s.snapshot_id[:8]} saved")
