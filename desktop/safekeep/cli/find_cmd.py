"""``safekeep find PATTERN``: search every snapshot for files and folders by name.

``PATTERN`` is a case-insensitive glob on the name (``budget*.xlsx``, ``*minutes*``), or, with a
``/``, on the whole path (``/home/*/Documents/*.pdf``; without a leading ``/`` it matches at any
depth, and ``**`` crosses folders). ``--snapshot ID`` (repeatable) limits the search to those
snapshots. Results are grouped by path; each distinct version (same content, size and
modification time) is shown once with the snapshots that hold it.

The search runs on the repository's catalog, a local index in the cache folder that is brought
up to date first (only new snapshots are read) — see :mod:`safekeep.state.catalog`.

``--json`` prints one ``{"message_type":"match", ...}`` line per path and a final
``{"message_type":"summary", ...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from safekeep.cli.context import CliContext
from safekeep.cli.output import Output, format_bytes, format_local_time
from safekeep.core.format.tree import GoTime
from safekeep.state.catalog import (
    DEFAULT_SEARCH_LIMIT,
    Catalog,
    CatalogError,
    FileVersions,
    SnapshotRef,
    Version,
)

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "find",
        help="search all snapshots for files by name",
        description="Search all snapshots for files and folders whose name matches PATTERN.",
    )
    p.add_argument(
        "pattern", metavar="PATTERN", help="name or glob, e.g. 'budget*.xlsx' or 'Documents/*.pdf'"
    )
    p.add_argument(
        "--snapshot", action="append", default=None, metavar="ID", help="only this snapshot (repeatable)"
    )
    p.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_SEARCH_LIMIT,
        metavar="N",
        help=f"show at most N paths (default {DEFAULT_SEARCH_LIMIT}; 0 = all)",
    )
    p.set_defaults(run=run)


class _IndexingLine:
    """The catalog's indexing progress as a status line (terminals only)."""

    def __init__(self, out: Output) -> None:
        self.out = out

    def indexing(self, snapshots_done: int, snapshots_total: int, entries: int) -> None:
        if self.out.json_mode or self.out.quiet or not self.out.stderr_is_tty:
            return
        if snapshots_done >= snapshots_total:
            self.out.clear_progress()
            return
        self.out.show_progress(
            f"indexing snapshot {snapshots_done + 1} of {snapshots_total}: {entries} entries"
        )


@contextlib.contextmanager
def open_catalog(ctx: CliContext, *, update: bool = True) -> Iterator[Catalog]:
    """The repository's catalog (in the cache folder; in memory with ``--no-cache``), updated."""
    with ctx.repository(read_only=True) as repo:
        repo.load_index(cancel=ctx.cancel)
        root = ctx.cache_dir()
        try:
            catalog = Catalog.for_repository(root, repo)
        except (OSError, CatalogError) as exc:
            log.warning("cannot use the catalog in %s (%s): using a temporary one", root, exc)
            catalog = Catalog(None, repo)
        with catalog:
            if update:
                catalog.update(progress=_IndexingLine(ctx.out), cancel=ctx.cancel)
            yield catalog


def time_text(ns: int) -> str:
    return GoTime(ns).rfc3339nano()


def snapshot_ref_json(s: SnapshotRef) -> dict[str, Any]:
    return {"id": s.id, "short_id": s.short_id, "time": s.time.isoformat(), "hostname": s.hostname}


def version_json(v: Version) -> dict[str, Any]:
    return {
        "type": v.type,
        "size": v.size,
        "mtime": time_text(v.mtime_ns),
        "content": v.content.hex() if v.content is not None else None,
        "first_snapshot": snapshot_ref_json(v.first),
        "last_snapshot": snapshot_ref_json(v.last),
        "snapshots": [s.id for s in v.snapshots],
    }


def version_line(v: Version) -> str:
    """``2026-01-05 10:00:00  12.345 KiB  1a2b3c4d .. 9f8e7d6c (12 snapshots)``."""
    n = len(v.snapshots)
    seen = v.first.short_id if n == 1 else f"{v.first.short_id} .. {v.last.short_id}"
    count = "1 snapshot" if n == 1 else f"{n} snapshots"
    return f"{format_local_time(v.mtime)}  {format_bytes(v.size):>12}  {seen} ({count})"


def show_match(out: Output, fv: FileVersions) -> None:
    if out.json_mode:
        out.json(
            {
                "message_type": "match",
                "path": fv.path,
                "type": fv.type,
                "versions": [version_json(v) for v in fv.versions],
            }
        )
        return
    out.result(fv.path + ("/" if fv.type == "dir" else ""))
    for v in fv.versions:
        out.result("    " + version_line(v))


def run(ctx: CliContext, args: argparse.Namespace) -> int:
    out = ctx.out
    limit = args.limit if args.limit > 0 else None
    with open_catalog(ctx) as catalog:
        found = catalog.search(
            args.pattern,
            snapshot_ids=args.snapshot,
            limit=None if limit is None else limit + 1,
            cancel=ctx.cancel,
        )
        searched = len(args.snapshot) if args.snapshot else len(catalog.snapshots())
    truncated = limit is not None and len(found) > limit
    found = found[:limit] if limit is not None else found
    for fv in found:
        show_match(out, fv)
    out.json(
        {"message_type": "summary", "matches": len(found), "truncated": truncated, "snapshots": searched}
    )
    if not out.json_mode:
        what = "path" if len(found) == 1 else "paths"
        out.info(f"{len(found)} matching {what} in {searched} snapshots")
        if truncated:
            out.info(f"(only the first {limit} are shown; use --limit N to see more)")
    return 0
