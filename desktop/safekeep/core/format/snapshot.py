"""Snapshots: the root tree of one backup plus its time, host, paths and tags.

Field order follows restic's Go struct. Unknown fields from newer restic versions are kept in
``extra`` and written back, so rewriting never drops them. Safekeep's own metadata goes in
``tags`` (e.g. ``plan:<id>``) so restic users see it too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from safekeep.core.format.times import format_time, parse_time

_KNOWN = [
    "time",
    "parent",
    "tree",
    "paths",
    "hostname",
    "username",
    "uid",
    "gid",
    "excludes",
    "tags",
    "original",
    "program_version",
    "summary",
]


class SnapshotFormatError(ValueError):
    """A snapshot file is malformed."""


@dataclass(slots=True)
class Snapshot:
    time: datetime
    tree: bytes
    paths: list[str]
    hostname: str = ""
    username: str = ""
    uid: int = 0
    gid: int = 0
    excludes: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    parent: str | None = None
    original: str | None = None
    program_version: str = ""
    summary: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    id: str = ""  # set when loaded or saved: the file name

    def to_json(self) -> bytes:
        obj: dict[str, Any] = {"time": format_time(self.time)}
        if self.parent:
            obj["parent"] = self.parent
        obj["tree"] = self.tree.hex()
        obj["paths"] = self.paths
        if self.hostname:
            obj["hostname"] = self.hostname
        if self.username:
            obj["username"] = self.username
        if self.uid:
            obj["uid"] = self.uid
        if self.gid:
            obj["gid"] = self.gid
        if self.excludes:
            obj["excludes"] = self.excludes
        if self.tags:
            obj["tags"] = self.tags
        if self.original:
            obj["original"] = self.original
        if self.program_version:
            obj["program_version"] = self.program_version
        if self.summary:
            obj["summary"] = self.summary
        obj.update(self.extra)
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    @staticmethod
    def from_json(raw: bytes, snapshot_id: str = "") -> Snapshot:
        try:
            obj = json.loads(raw)
            tree = obj.get("tree")
            if not isinstance(tree, str) or len(tree) != 64:
                raise SnapshotFormatError("snapshot has no valid tree")
            return Snapshot(
                time=parse_time(obj["time"]),
                tree=bytes.fromhex(tree),
                paths=[str(p) for p in obj.get("paths") or []],
                hostname=str(obj.get("hostname") or ""),
                username=str(obj.get("username") or ""),
                uid=int(obj.get("uid") or 0),
                gid=int(obj.get("gid") or 0),
                excludes=[str(e) for e in obj.get("excludes") or []],
                tags=[str(t) for t in obj.get("tags") or []],
                parent=obj.get("parent") or None,
                original=obj.get("original") or None,
                program_version=str(obj.get("program_version") or ""),
                summary=obj.get("summary") or None,
                extra={k: v for k, v in obj.items() if k not in _KNOWN},
                id=snapshot_id,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if isinstance(exc, SnapshotFormatError):
                raise
            raise SnapshotFormatError(f"malformed snapshot: {exc}") from exc
