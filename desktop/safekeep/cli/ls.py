"""``safekeep ls SNAPSHOT [PATH]``: list the files and folders in a snapshot.

``SNAPSHOT`` is an ID (or a unique prefix of one) or ``latest``. Without ``PATH`` everything is
listed; with ``PATH`` (an absolute path inside the snapshot) that entry and the entries directly
in it, or everything below it with ``--recursive`` — restic's rules. ``-l`` adds mode, owner
IDs, size and modification time (restic's long format); symlinks show `` -> target``.

``--json`` prints restic's messages: the snapshot first (``"message_type":"snapshot"``), then one
``"message_type":"node"`` line per entry.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from safekeep.cli.context import CliContext
from safekeep.cli.output import format_local_time
from safekeep.cli.snapshots import snapshot_json
from safekeep.cli.treewalk import clean_path, find_node, walk
from safekeep.core.format.tree import GoTime, Node

_MODE_LETTERS = "dalTLDpSugct?"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("ls", help="list files in a snapshot", description="List files in a snapshot.")
    p.add_argument("snapshot", metavar="SNAPSHOT", help="snapshot ID (or prefix) or 'latest'")
    p.add_argument("path", nargs="?", metavar="PATH", help="only list this folder (a path in the snapshot)")
    p.add_argument("-l", "--long", action="store_true", help="long format: mode, owner, size, time")
    p.add_argument("-R", "--recursive", action="store_true", help="with PATH: list everything below it")
    p.set_defaults(run=run)


def go_mode_string(mode: int) -> str:
    """Go's ``fs.FileMode.String()``, which restic prints: ``drwxr-xr-x``, ``Lrwxrwxrwx``."""
    out = [c for i, c in enumerate(_MODE_LETTERS) if mode & (1 << (31 - i))]
    if not out:
        out.append("-")
    out += [c if mode & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx")]
    return "".join(out)


def go_time_to_datetime(t: GoTime) -> datetime:
    sec, nanos = divmod(t.ns, 1_000_000_000)
    tz = timezone(timedelta(seconds=t.offset)) if t.offset else UTC
    try:
        return datetime.fromtimestamp(sec, tz) + timedelta(microseconds=nanos // 1000)
    except (OverflowError, OSError, ValueError):
        return datetime(1970, 1, 1, tzinfo=UTC)


def long_line(path: str, node: Node) -> str:
    target = f" -> {os.fsdecode(node.linktarget)}" if node.type == "symlink" else ""
    when = format_local_time(go_time_to_datetime(node.mtime))
    return f"{go_mode_string(node.mode)} {node.uid:5d} {node.gid:5d} {node.size:6d} {when} {path}{target}"


def node_json(path: str, node: Node) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "name": os.fsdecode(node.name),
        "type": node.type,
        "path": path,
        "uid": node.uid,
        "gid": node.gid,
    }
    if node.type == "file":
        obj["size"] = node.size
    obj["mode"] = node.mode
    obj["permissions"] = go_mode_string(node.mode)
    for field in ("mtime", "atime", "ctime"):
        obj[field] = getattr(node, field).fixed().rfc3339nano()
    if node.type == "symlink":
        obj["linktarget"] = os.fsdecode(node.linktarget)
    obj["struct_type"] = "node"
    obj["message_type"] = "node"
    return obj


def run(ctx: CliContext, args: argparse.Namespace) -> int:
    out = ctx.out
    with ctx.repository(read_only=True) as repo:
        repo.load_index(cancel=ctx.cancel)
        snap = repo.find_snapshot(args.snapshot, cancel=ctx.cancel)
        if out.json_mode:
            head = snapshot_json(snap)
            head["struct_type"] = "snapshot"
            head["message_type"] = "snapshot"
            out.json(head)
        else:
            who = f"{snap.username}@{snap.hostname}" if snap.username else snap.hostname
            when = format_local_time(snap.time)
            out.info(f"snapshot {snap.id[:8]} of [{' '.join(snap.paths)}] at {when} by {who}:")

        def show(path: str, node: Node) -> None:
            if out.json_mode:
                out.json(node_json(path, node))
            elif args.long:
                out.result(long_line(path, node))
            else:
                out.result(path)

        if args.path is None:
            for path, node in walk(repo, snap.tree, cancel=ctx.cancel):
                show(path, node)
            return 0
        base, entry, tree = find_node(repo, snap.tree, args.path, cancel=ctx.cancel)
        if entry is not None:
            show(base, entry)
        if tree is None:
            return 0
        base = clean_path(base)

        def descend(path: str, n: Node) -> bool:
            return bool(args.recursive)

        for path, child in walk(repo, tree, base, descend=descend, cancel=ctx.cancel):
            show(path, child)
    return 0
