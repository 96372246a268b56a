"""``safekeep key list|add|remove ID|passwd``: manage the passwords that open a repository.

Each password is a key file holding the master key encrypted under it; all keys open the same
data. ``add`` adds a password, ``remove ID`` removes one (never the one in use), ``passwd``
replaces the password in use (a new key is added, then the old one removed). The new password
comes from ``--new-password-file`` or is asked twice in a terminal. ``list`` marks the key in use
with ``*``; ``--json`` prints restic's list (``current``, ``id``, ``userName``, ``hostName``,
``created``). Changes take an exclusive lock and are recorded in the app's audit log (key IDs,
never a password).
"""

from __future__ import annotations

import argparse
from typing import Any

from safekeep.cli.context import CliContext
from safekeep.cli.output import format_local_time, format_table
from safekeep.common.errors import UsageError
from safekeep.state.audit import Action
from safekeep.storage.base import FileType


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("key", help="manage passwords (keys)", description="Manage the repository's keys.")
    p.add_argument("action", choices=("list", "add", "remove", "passwd"), help="list, add, remove or passwd")
    p.add_argument("id", nargs="?", metavar="ID", help="the key to remove (ID or unique prefix)")
    p.add_argument(
        "--new-password-file", metavar="FILE", help="read the new password from FILE (add, passwd)"
    )
    p.set_defaults(run=run)


def run(ctx: CliContext, args: argparse.Namespace) -> int:
    action: str = args.action
    if action == "remove" and not args.id:
        raise UsageError("'key remove' needs the ID of the key to remove.", hint="See 'safekeep key list'.")
    if action != "remove" and args.id:
        raise UsageError(f"'key {action}' takes no ID.")
    if action == "list":
        return _list(ctx)
    out = ctx.out
    with (
        ctx.repository(read_only=False, new_keys=True) as repo,
        ctx.locked(repo, exclusive=True, read_only=False),
    ):
        if action == "remove":
            key_id = repo.resolve_id(FileType.KEY, args.id, cancel=ctx.cancel)
            repo.remove_key(key_id, cancel=ctx.cancel)
            ctx.audit(Action.KEY_REMOVE, repo, "success", key=key_id)
            out.json({"message_type": "key_removed", "id": key_id})
            out.info(f"removed key {key_id[:8]}")
            return 0
        password = ctx.new_password(args.new_password_file)
        if not password.reveal():
            raise UsageError("An empty password is not allowed.")
        old = repo.key_id
        new_id = repo.add_key(password.reveal(), cancel=ctx.cancel)
        if action == "add":
            ctx.audit(Action.KEY_ADD, repo, "success", key=new_id)
            out.json({"message_type": "key_added", "id": new_id})
            out.info(f"saved new key as {new_id[:8]}")
            return 0
        repo.key_id = new_id  # the repository is now open with the new key; the old one may go
        repo.remove_key(old, cancel=ctx.cancel)
        ctx.audit(Action.PASSWORD_CHANGE, repo, "success", key=new_id, removed=old)
        out.json({"message_type": "key_changed", "id": new_id, "removed": old})
        out.info(f"saved new password as key {new_id[:8]}, removed the old key {old[:8]}")
    return 0


def _list(ctx: CliContext) -> int:
    out = ctx.out
    with ctx.repository(read_only=True) as repo:
        keys = repo.list_keys(cancel=ctx.cancel)
        current = repo.key_id
    keys.sort(key=lambda k: (k[1].created, k[0]))
    if out.json_mode:
        out.json(
            [
                {
                    "current": key_id == current,
                    "id": key_id,
                    "userName": kf.username,
                    "hostName": kf.hostname,
                    "created": format_local_time(kf.created),
                }
                for key_id, kf in keys
            ]
        )
        return 0
    rows = [
        [
            ("*" if key_id == current else " ") + key_id[:8],
            kf.username,
            kf.hostname,
            format_local_time(kf.created),
        ]
        for key_id, kf in keys
    ]
    for line in format_table([" ID", "User", "Host", "Created"], rows):
        out.result(line)
    return 0
