"""``safekeep audit verify|export|show|download``: read and check the tamper-evident audit log.

- ``verify`` checks the chain of the log on this computer (``--log FILE`` for another file) and,
  with ``-r REPO`` (here or before the command), also the off-site copy in that repository and
  whether the local log lost or changed entries the copy still has. Exit status 0 when everything
  is intact, 1 when problems were found (each is listed). An incomplete last line left by a power
  cut is shown as a warning and does not fail the check.
- ``export --csv [--output FILE]`` writes every entry as CSV (columns seq, time, user, host,
  action, target, outcome, details, hash) and says whether the chain verified; the export itself
  is recorded in the log (``audit-export``). Exit status as for ``verify``.
- ``show [--last N]`` prints the entries as a table (``--json``: one list of entry objects).
- ``download -r REPO --output FILE`` saves the off-site copy as a log file, e.g. after the
  computer was lost; ``--host-id`` chooses which computer's copy when several are stored.

The log is ``audit.jsonl`` in the app's data folder (``SAFEKEEP_HOME`` moves it).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from safekeep.cli.context import CliContext
from safekeep.cli.output import Output, format_table
from safekeep.common.errors import SafekeepError, UsageError
from safekeep.core.repository import Repository
from safekeep.state.audit import (
    Action,
    AuditError,
    AuditLog,
    AuditProblem,
    AuditReport,
    CopyVerification,
    default_log_path,
    download_copy,
    export_csv,
    verify_copies,
)

EXIT_PROBLEMS = 1


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "audit",
        help="verify, export or show the audit log",
        description="The tamper-evident audit log of backups, restores, checks and changes.",
    )
    audit_sub = p.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)

    v = audit_sub.add_parser(
        "verify",
        help="check that no entry was changed, deleted, reordered or added",
        description="Check the audit log's hash chain; with -r also the off-site copy in REPO.",
    )
    _add_log(v)
    _add_repo(v, "also verify the off-site copy in LOCATION and compare it with the local log")
    v.set_defaults(run=_verify)

    e = audit_sub.add_parser(
        "export", help="export the log as CSV", description="Export every entry as CSV, and verify the log."
    )
    _add_log(e)
    e.add_argument("--csv", action="store_true", required=True, help="CSV format (the only one)")
    e.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: standard output)")
    e.set_defaults(run=_export)

    s = audit_sub.add_parser("show", help="list the entries", description="List the audit log's entries.")
    _add_log(s)
    s.add_argument("--last", type=int, metavar="N", help="only the last N entries")
    s.set_defaults(run=_show)

    d = audit_sub.add_parser(
        "download",
        help="save the off-site copy as a log file",
        description="Download the off-site copy of the audit log from a repository into FILE.",
    )
    _add_repo(d, "the repository that holds the copy")
    d.add_argument("-o", "--output", metavar="FILE", required=True, help="the file to create")
    d.set_defaults(run=_download)


def _add_log(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log", metavar="FILE", help="the audit log file (default: the app's own)")


def _add_repo(p: argparse.ArgumentParser, text: str) -> None:
    # its own name: a sub-command default must not overwrite the global -r
    p.add_argument("-r", "--repo", dest="audit_repo", metavar="LOCATION", help=text)
    p.add_argument("--host-id", metavar="ID", help="the computer whose copy to use (default: this one)")


def _log(ctx: CliContext, args: argparse.Namespace) -> AuditLog:
    path = Path(args.log) if args.log else default_log_path(ctx.env)
    return AuditLog(path)


def _repo_location(ctx: CliContext, args: argparse.Namespace) -> str | None:
    return getattr(args, "audit_repo", None) or ctx.options.repo


@contextmanager
def _repository(ctx: CliContext, location: str) -> Iterator[Repository]:
    sub = CliContext(dataclasses.replace(ctx.options, repo=location), ctx.out, ctx.cancel, env=ctx.env)
    with sub.repository(read_only=True) as repo:
        yield repo


# ------------------------------------------------------------------ verify


def _print_report(out: Output, report: AuditReport, *, missing_file: Path | None = None) -> None:
    for w in report.warnings:
        out.json({"message_type": "warning", "source": report.source, **w.to_dict()})
        if not out.json_mode:
            out.warn(f"warning: {w.message}")
    _print_problems(out, report.source, report.problems)
    if missing_file is not None and not report.entries:
        out.info(f"There is no audit log at {missing_file} yet.")
    else:
        out.result(report.summary_text())


def _print_problems(
    out: Output, source: str, problems: tuple[AuditProblem, ...] | list[AuditProblem]
) -> None:
    for p in problems:
        out.json({"message_type": "problem", "source": source, **p.to_dict()})
        out.result(f"problem: {p.message}")


def _print_copy(out: Output, local: AuditReport, c: CopyVerification) -> None:
    if c.report is None:
        _print_problems(out, c.info.where, c.comparison)
        return
    _print_report(out, c.report)
    _print_problems(out, c.report.source, c.comparison)
    if not c.comparison:
        newer = local.last_seq - c.report.last_seq
        if newer > 0:
            out.info(
                f"  the local log matches it; its {newer} newer entr{'y is' if newer == 1 else 'ies are'} "
                "uploaded after the next backup"
            )
        else:
            out.info("  the local log matches it")


def _verify(ctx: CliContext, args: argparse.Namespace) -> int:
    out = ctx.out
    audit_log = _log(ctx, args)
    local = audit_log.verify()
    _print_report(out, local, missing_file=audit_log.path if not audit_log.path.exists() else None)
    ok = local.ok
    copies: list[CopyVerification] = []
    location = _repo_location(ctx, args)
    if location:
        with _repository(ctx, location) as repo:
            copies = verify_copies(repo, local, args.host_id, cancel=ctx.cancel)
        for c in copies:
            _print_copy(out, local, c)
            ok = ok and c.ok
    out.json(
        {
            "message_type": "summary",
            "ok": ok,
            "log": local.to_dict(),
            "copies": [c.to_dict() for c in copies],
        }
    )
    if not ok:
        if not out.json_mode:
            out.warn("safekeep: the audit log shows signs of tampering or loss (see the problems above)")
            out.warn("Keep the log file and the off-site copy unchanged for the investigation.")
        return EXIT_PROBLEMS
    return 0


# ------------------------------------------------------------------ export


def _export(ctx: CliContext, args: argparse.Namespace) -> int:
    out = ctx.out
    if out.json_mode and not args.output:
        raise UsageError("With --json the CSV needs a file.", hint="Add --output FILE.")
    audit_log = _log(ctx, args)
    report = audit_log.verify()
    if args.output:
        target = Path(args.output)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            # a BOM lets spreadsheet programs recognise UTF-8; written whole, then renamed into place
            with open(tmp, "w", encoding="utf-8-sig", newline="") as f:
                export_csv(report, f)
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise SafekeepError(
                f"Cannot write {target}: {exc.strerror or exc}.", hint="Choose a folder you may write to."
            ) from exc
        where = str(target)
    else:
        stream: TextIO = out.stdout
        export_csv(report, stream)
        stream.flush()
        where = "standard output"
    _record_export(out, audit_log, report, where)
    # the status goes to stderr when the CSV is on stdout
    status = out.warn if not args.output else out.result
    for w in report.warnings:
        out.warn(f"warning: {w.message}")
    for p in report.problems:
        out.json({"message_type": "problem", "source": report.source, **p.to_dict()})
        if not out.json_mode:
            status(f"problem: {p.message}")
    out.json({"message_type": "summary", "ok": report.ok, "output": where, "log": report.to_dict()})
    if not out.json_mode:
        status(f"exported {report.count} entries to {where}; " + report.summary_text())
    return 0 if report.ok else EXIT_PROBLEMS


def _record_export(out: Output, audit_log: AuditLog, report: AuditReport, where: str) -> None:
    if not audit_log.path.exists():
        return
    try:
        audit_log.append(
            Action.AUDIT_EXPORT,
            target=f"CSV export to {where}",
            outcome="success" if report.ok else "warning",
            details={"entries": report.count, "intact": report.ok, "problems": len(report.problems)},
        )
    except AuditError as exc:
        out.warn(f"warning: the export was not recorded in the log: {exc.message}")


# ------------------------------------------------------------------ show


def _show(ctx: CliContext, args: argparse.Namespace) -> int:
    out = ctx.out
    if args.last is not None and args.last < 0:
        raise UsageError("--last needs a number of entries (0 or more).")
    audit_log = _log(ctx, args)
    report = audit_log.verify()
    entries = list(report.entries)
    if args.last is not None:
        entries = entries[len(entries) - args.last :] if args.last else []
    if out.json_mode:
        out.json([e.to_dict() for e in entries])
    else:
        rows = [
            [str(e.seq), e.time, e.user, e.host, e.action, e.outcome, e.target.replace("\n", " ")]
            for e in entries
        ]
        for line in format_table(["Seq", "Time (UTC)", "User", "Host", "Action", "Outcome", "Target"], rows):
            out.result(line)
        out.result(f"{len(entries)} of {report.count} entries")
    if not report.ok:
        out.warn(
            f"warning: the log has {len(report.problems)} problem(s); run 'safekeep audit verify' for details"
        )
    return 0


# ------------------------------------------------------------------ download


def _download(ctx: CliContext, args: argparse.Namespace) -> int:
    out = ctx.out
    location = _repo_location(ctx, args)
    if not location:
        raise UsageError("'audit download' needs the repository.", hint="Use -r LOCATION.")
    target = Path(args.output)
    if target.exists():
        raise UsageError(f"{target} already exists.", hint="Choose a new file name.")
    with _repository(ctx, location) as repo:
        copy = download_copy(repo, args.host_id, cancel=ctx.cancel)
    try:
        with open(target, "xb") as f:
            f.write(copy.data)
    except OSError as exc:
        raise SafekeepError(
            f"Cannot write {target}: {exc.strerror or exc}.", hint="Choose a folder you may write to."
        ) from exc
    report = copy.report
    out.json(
        {
            "message_type": "summary",
            "copy": copy.info.where,
            "host_id": copy.info.host_id,
            "output": str(target),
            "ok": report.ok,
            "log": report.to_dict(),
        }
    )
    _print_problems(out, report.source, report.problems)
    out.result(f"saved {copy.info.where} as {target}; " + report.summary_text())
    return 0 if report.ok else EXIT_PROBLEMS
