"""``safekeep``: the command-line entry point (``main(argv) -> exit status``).

Global options come before the command: ``safekeep -r /mnt/usb/backup --json backup ~/Documents``.
Without a command the help is printed (``safekeep`` itself, :mod:`safekeep.launcher`, opens the
desktop app then).

Exit status (restic's conventions where they exist):

====  =====================================================================================
0     success
1     failure (the error is printed as ``safekeep: <message>`` plus a hint on stderr)
2     usage error (unknown option, missing argument, ...)
3     the command finished, but some files could not be read (backup) or restored (restore);
      the snapshot or restore is otherwise complete
10    there is no repository at the location
11    the repository is locked by another process
12    wrong password
130   cancelled (Ctrl-C); nothing half-written was left under a real name
====  =====================================================================================

Every :class:`~safekeep.common.errors.SafekeepError` is reported without a traceback; its class
decides the status (``exit_code``). Unexpected exceptions print a one-line message, and their
traceback only with ``-v``. With ``--json`` a fatal error is also reported on stdout as
``{"message_type":"exit_error","code":N,"message":...}`` (restic's form).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from safekeep import __version__
from safekeep.cli import early_key
from safekeep.cli.interrupt import EXIT_CANCELLED, cancel_on_interrupt
from safekeep.cli.output import Output
from safekeep.common.cancel import CancelToken
from safekeep.common.errors import Cancelled, SafekeepError, UsageError
from safekeep.core.errors import RepositoryNotFound

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_NO_REPOSITORY = 10
EXIT_LOCKED = 11
EXIT_WRONG_PASSWORD = 12

# command name -> the module that registers and runs it, in the order the help lists them. A
# command's module (and everything it imports) is loaded only when that command runs, or for the
# full help: start-up time is paid by every command, so each pays only for its own imports.
COMMANDS: dict[str, str] = {
    "init": "init",
    "backup": "backup",
    "snapshots": "snapshots",
    "ls": "ls",
    "restore": "restore",
    "check": "check",
    "forget": "forget_cmd",
    "prune": "forget_cmd",
    "cat": "cat",
    "key": "key",
    "unlock": "unlock",
    "storage": "storage_cmd",
    "plan": "plan_cmd",
    "history": "history_cmd",
    "find": "find_cmd",
    "versions": "versions_cmd",
    "diff": "diff_cmd",
    "trigger": "trigger_cmd",
    "daemon": "daemon_cmd",
    "audit": "audit_cmd",
    "login": "login_cmd",
    "logout": "login_cmd",
    "run-job": "run_job",
    "version": "version",
}


EPILOG = """\
exit status:
  0    success
  1    failure
  2    usage error
  3    completed, but some files could not be read (backup) or restored (restore)
  10   the repository does not exist
  11   the repository is locked by another process
  12   wrong password
  130  cancelled (Ctrl-C)

environment:
  SAFEKEEP_REPOSITORY (or RESTIC_REPOSITORY)        repository location, like -r
  SAFEKEEP_PASSWORD_FILE (or RESTIC_PASSWORD_FILE)  file holding the password
  SAFEKEEP_PASSWORD (or RESTIC_PASSWORD)            the password itself
"""


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors raised as :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}", hint=f"See '{self.prog} --help'.")


def _global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-r", "--repo", metavar="LOCATION", help="repository location (folder or URL)")
    parser.add_argument("--password-file", metavar="FILE", help="read the repository password from FILE")
    parser.add_argument("--json", action="store_true", help="print JSON (one object per line) on stdout")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only results and errors")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug; tracebacks)"
    )
    parser.add_argument("--no-lock", action="store_true", help="do not lock the repository (use with care)")
    parser.add_argument(
        "--cache-dir", metavar="DIR", help="local cache for remote repositories (also SAFEKEEP_CACHE_DIR)"
    )
    parser.add_argument("--no-cache", action="store_true", help="do not use the local cache")
    parser.add_argument("-V", "--version", action="version", version=f"safekeep {__version__}")


def _leading_options(argv: Sequence[str]) -> argparse.Namespace | None:
    """The global options before the command, and the rest in ``rest``; None when they are
    wrong (the full parser then reports it)."""
    parser = _Parser(prog="safekeep", add_help=False)
    _global_options(parser)
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    try:
        known, _ = parser.parse_known_args(list(argv))
    except (UsageError, SystemExit):
        return None
    return known


def command_name(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names (after the global options), or None when there is none or the
    global options themselves are wrong (the full parser then reports it)."""
    return _command_of(_leading_options(argv))


def _command_of(known: argparse.Namespace | None) -> str | None:
    rest: list[str] = known.rest if known is not None else []
    return rest[0] if rest and rest[0] in COMMANDS else None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, only that command's module is imported and registered."""
    parser = _Parser(
        prog="safekeep",
        description="Safekeep: encrypted, deduplicated backups in restic-compatible repositories.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    modules = [COMMANDS[command]] if command is not None else list(dict.fromkeys(COMMANDS.values()))
    for module_name in modules:
        importlib.import_module(f"safekeep.cli.{module_name}").register(sub)
    return parser


def exit_code_for(exc: SafekeepError) -> int:
    if isinstance(exc, RepositoryNotFound):
        return EXIT_NO_REPOSITORY
    return int(getattr(exc, "exit_code", EXIT_FAILURE))


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    known = _leading_options(args_list)
    command = _command_of(known)
    # the key derivation starts now and runs while the command's modules import
    early = (
        early_key.start(command, known.repo, known.password_file, args_list, os.environ)
        if known is not None and command is not None
        else None
    )
    parser = build_parser(command)
    if not args_list:
        parser.print_help()
        return EXIT_OK
    out = Output(json_mode="--json" in args_list)
    try:
        args = parser.parse_args(args_list)
    except UsageError as exc:
        _report(out, exc, EXIT_USAGE)
        return EXIT_USAGE
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    if args.command == "backup":
        # before any worker thread starts; only backup gains (flat memory, fewer page faults),
        # restore and check read pack-sized buffers whose page faults it would add
        from safekeep.engine import allocator  # noqa: PLC0415 - only backup needs it

        allocator.tune()
    from safekeep.cli.context import CliContext, GlobalOptions  # noqa: PLC0415 - after the early start

    options = GlobalOptions(
        repo=args.repo,
        password_file=args.password_file,
        json=args.json,
        quiet=args.quiet,
        verbose=args.verbose,
        no_lock=args.no_lock,
        cache_dir=args.cache_dir,
        no_cache=args.no_cache,
    )
    _setup_logging(options.verbose)
    out = Output(json_mode=options.json, quiet=options.quiet)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    cancel = CancelToken()
    ctx = CliContext(options, out, cancel, early_key=early)
    try:
        with cancel_on_interrupt(cancel, out.warn):
            code: int = args.run(ctx, args)
        return code
    except Cancelled as exc:
        _report(out, exc, EXIT_CANCELLED)
        return EXIT_CANCELLED
    except SafekeepError as exc:
        code = exit_code_for(exc)
        log.debug("command failed", exc_info=True)
        _report(out, exc, code)
        return code
    except KeyboardInterrupt:
        out.warn("safekeep: interrupted")
        return EXIT_CANCELLED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_FAILURE
    except OSError as exc:
        log.debug("OS error", exc_info=True)
        where = f" ({exc.filename})" if exc.filename else ""
        _report(out, SafekeepError(f"{exc.strerror or exc}{where}"), EXIT_FAILURE)
        return EXIT_FAILURE
    except Exception as exc:
        _report(out, SafekeepError(f"unexpected error: {type(exc).__name__}: {exc}"), EXIT_FAILURE)
        if options.verbose:
            traceback.print_exc(file=sys.stderr)
        else:
            out.warn("(run with -v to see the details)")
        return EXIT_FAILURE
    finally:
        ctx.close()


def _report(out: Output, exc: SafekeepError, code: int) -> None:
    out.warn(f"safekeep: {exc.message}")
    if exc.hint:
        out.warn(exc.hint)
    out.json({"message_type": "exit_error", "code": code, "message": exc.message})


def _silence_stdout() -> None:
    """After a closed pipe (``safekeep ls ... | head``), stop Python complaining at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    raise SystemExit(main())
