"""``safekeep storage test LOCATION``: the connection probe the setup wizard uses, from the CLI.

Runs :func:`safekeep.storage.validate.probe` against the location (credentials from restic's
environment variables; provider options with ``-o name=value``) and prints each step as it
finishes: ``[ok]``, ``[warning]``, ``[failed]`` or ``[skipped]`` with a message and a hint.
``--json`` prints one JSON object per step and a summary. Exit status 0 when no step failed,
1 otherwise (warnings are fine).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from safekeep.cli.context import CliContext
from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.errors import SafekeepError, UsageError
from safekeep.storage.compose import StorageOptions, open_backend
from safekeep.storage.registry import ProviderSettings
from safekeep.storage.validate import ProbeStep, probe


def add_parser(sub: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    """Add ``storage`` (with its ``test`` sub-command) to the CLI's sub-parsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "storage", help="storage locations: test a connection", description="Storage locations."
    )
    storage_sub = p.add_subparsers(dest="storage_command", metavar="COMMAND")
    t = storage_sub.add_parser(
        "test",
        help="test whether a storage location works for backups",
        description="Write, read back, range-read, list and delete a test file; check the clock "
        "and free space where the storage reports them.",
    )
    t.add_argument(
        "location", help="the storage location, e.g. webdav:https://host/path or azure:container:/path"
    )
    t.add_argument(
        "-o", "--option", action="append", default=[], metavar="NAME=VALUE", help="provider option"
    )
    t.add_argument("--json", dest="storage_json", action="store_true", help="print JSON lines")
    pol = storage_sub.add_parser(
        "policy",
        help="print a least-privilege access policy for an S3 bucket",
        description="Print the IAM policy JSON that gives a key exactly what Safekeep needs for one "
        "S3 location, for pasting into the provider's console.",
    )
    pol.add_argument("location", help="an S3 location, e.g. s3:https://s3.amazonaws.com/bucket/folder")
    pol.add_argument("--no-delete", action="store_true", help="a key that may not delete (append-only)")
    pol.add_argument("--object-lock", action="store_true", help="include the Object Lock permissions")
    p.set_defaults(run=_run_with_context)
    return p


register = add_parser
"""The name the other command modules use."""


def _run_with_context(ctx: CliContext, args: argparse.Namespace) -> int:
    json_mode = bool(getattr(args, "storage_json", False) or ctx.options.json)
    return run(args, cancel=ctx.cancel, json_mode=json_mode)


def _options(items: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"option {item!r} must be written NAME=VALUE")
        options[name.strip()] = value
    return options


def _policy(args: argparse.Namespace) -> int:
    from safekeep.storage.providers.s3_policy import policy_json  # noqa: PLC0415 - S3 only

    try:
        print(policy_json(args.location, allow_delete=not args.no_delete, object_lock=args.object_lock))
    except SafekeepError as exc:
        print(f"safekeep: {exc.user_text()}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace, *, cancel: CancelToken = NEVER, json_mode: bool | None = None) -> int:
    """Run ``storage test`` or ``storage policy``; returns the exit status."""
    command = getattr(args, "storage_command", None)
    if command == "policy":
        return _policy(args)
    if command != "test":
        print("usage: safekeep storage test|policy LOCATION", file=sys.stderr)
        return 2
    as_json = bool(args.storage_json) if json_mode is None else json_mode
    settings = ProviderSettings(options=_options(args.option))

    def show(step: ProbeStep) -> None:
        if as_json:
            print(
                json.dumps(
                    {
                        "message_type": "probe_step",
                        "step": step.name,
                        "status": step.status.value,
                        "message": step.message,
                        "hint": step.hint,
                    }
                ),
                flush=True,
            )
        else:
            print(f"[{step.status.value}] {step.name}: {step.message}", flush=True)
            if step.hint:
                print(f"    {step.hint}", flush=True)

    try:
        backend = open_backend(args.location, options=StorageOptions(retry_attempts=3, provider=settings))
    except SafekeepError as exc:
        print(f"safekeep: {exc.user_text()}", file=sys.stderr)
        return 1
    try:
        result = probe(backend, cancel=cancel, report=show)
    finally:
        backend.close()
    if as_json:
        print(json.dumps({"message_type": "summary", "ok": result.ok}))
    else:
        print(
            "The location works for backups." if result.ok else "The location cannot be used for backups yet."
        )
    return 0 if result.ok else 1
