"""The snapshot catalog: browse, search, version history, deleted files and diff across snapshots.

Concepts
--------
Entry
    One directory entry as the catalog sees it: name, type, size, modification time, a *content
    key* and, for a folder, its subtree ID. The content key is a 16-byte BLAKE2b digest of a
    file's data blob IDs (of the target, for a symlink): two entries with the same key hold the
    same bytes. Entries are read from tree blobs by :func:`decode_entries`, a reader that keeps
    only these fields (several times faster than a full :func:`~safekeep.core.format.tree.decode_tree`),
    or from the index.

TreeSource
    Anything that gives a tree's entries by tree ID: the repository (:class:`RepositoryTrees`),
    the catalog's index, or a dict of tree blobs in tests. :func:`list_dir`, :func:`diff_trees`,
    :func:`deleted_entries`, :func:`versions_of` and :func:`walk_entries` are pure functions over
    one, so they work the same before and after the index is built.

Version
    One distinct state of a path: the same (content key, size, mtime) — for a folder, the same
    subtree ID — with every snapshot that holds it, hence when it was first and last seen.

The index
    A disposable SQLite file per repository (:func:`catalog_path`: ``<cache>/catalog/<repository
    ID>.sqlite``), rebuilt from the repository whenever it is missing, unreadable, of another
    format version or of another repository. Trees are content-addressed, so the index stores
    entries per *tree* (``trees``, ``entries``) plus each snapshot's root tree, and paths are
    derived by joining names upwards from a tree to the snapshots' roots. Indexing a snapshot
    decodes only the trees not indexed before: 30 snapshots of a large, slowly changing folder
    cost about one snapshot. A tree row is written only after its whole subtree, and a snapshot
    row last, in one transaction per snapshot, so an interrupted update leaves a usable index.
    Snapshots that disappear from the repository disappear from the catalog, and the trees only
    they used are dropped.

    Trees of at least :data:`LISTING_MIN_ENTRIES` entries also keep them packed in one value, so
    a folder of 100,000 entries lists in about 150 ms instead of 250 ms.

    Names live once each in ``names`` with a case-folded copy. A name pattern (``budget*.xlsx``)
    is a GLOB over that column: a pattern with a literal prefix is a range scan of its index,
    anything else a scan of the distinct names, which are far fewer than the entries (about
    0.1 s for a million names). An FTS5 trigram table was measured as an alternative: it answers
    ``*x*`` patterns in milliseconds, but tripled the index's size and its build time for a
    million names, for a gain a person typing in a search box does not notice.

Queries (:meth:`Catalog.search`, :meth:`Catalog.versions`, :meth:`Catalog.deleted`) answer from
what is indexed: call :meth:`Catalog.update` first. :meth:`Catalog.list_dir` and
:meth:`Catalog.diff` read tree blobs from the repository for snapshots not indexed yet.

Paths inside a snapshot are absolute and ``/``-separated, as restic shows them; names are raw
bytes in trees and decoded with the file-system encoding (``os.fsdecode``), which round-trips.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import marshal
import os
import re
import sqlite3
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import zstandard

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.clock import SYSTEM_CLOCK, Clock
from safekeep.common.errors import SafekeepError
from safekeep.common.progress import Throttle
from safekeep.core.errors import IntegrityError
from safekeep.core.format.pack import BlobType
from safekeep.core.format.snapshot import Snapshot
from safekeep.core.format.tree import GO_ZERO_TIME, GoTime, go_unquote
from safekeep.core.repository import Repository

log = logging.getLogger(__name__)

#: Bumped whenever the schema or the meaning of a column changes; an index of another version is
#: deleted and rebuilt.
FORMAT_VERSION = 1
DEFAULT_SEARCH_LIMIT = 1000

__all__ = [
    "DEFAULT_SEARCH_LIMIT",
    "FORMAT_VERSION",
    "Catalog",
    "CatalogError",
    "Change",
    "DeletedFile",
    "Diff",
    "Entry",
    "FileVersions",
    "IndexProgress",
    "NotAFolder",
    "NotInSnapshot",
    "RepositoryTrees",
    "SnapshotRef",
    "TreeSource",
    "UpdateResult",
    "Version",
    "catalog_path",
    "clean_path",
    "decode_entries",
    "deleted_entries",
    "diff_trees",
    "list_dir",
    "resolve",
    "versions_of",
    "walk_entries",
]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class CatalogError(SafekeepError):
    """The catalog cannot answer (a damaged tree, an unknown snapshot, a damaged index)."""


class NotInSnapshot(CatalogError):
    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path} is not in the snapshot.",
            hint="Use 'safekeep ls SNAPSHOT' to see the paths it contains.",
        )
        self.path = path


class NotAFolder(CatalogError):
    def __init__(self, path: str) -> None:
        super().__init__(f"{path} is not a folder.", hint="Give the path of a folder to list.")
        self.path = path


# --------------------------------------------------------------------------------------------
# Entries and the fast tree reader
# --------------------------------------------------------------------------------------------


class Entry(NamedTuple):
    """One directory entry (a tuple: a folder of 100,000 entries is built quickly)."""

    name: str
    type: str  # "file", "dir", "symlink", "dev", "chardev", "fifo", "socket"
    size: int
    mtime_ns: int  # Unix nanoseconds
    content: bytes | None  # 16-byte content key (files, symlinks); None otherwise
    subtree: bytes | None  # tree ID of a folder

    @property
    def is_dir(self) -> bool:
        return self.type == "dir"

    @property
    def mtime(self) -> datetime:
        return ns_to_datetime(self.mtime_ns)

    @property
    def version_key(self) -> tuple[str, bytes | None, int, int]:
        """What makes two entries of one path the same version."""
        if self.type == "dir":
            return (self.type, self.subtree, 0, self.mtime_ns)
        return (self.type, self.content, self.size, self.mtime_ns)


def ns_to_datetime(ns: int) -> datetime:
    try:
        return datetime.fromtimestamp(ns / 1e9, UTC)
    except (OverflowError, OSError, ValueError):
        return datetime(1970, 1, 1, tzinfo=UTC)


def content_key(parts: Iterable[str | bytes]) -> bytes:
    """The 16-byte content key of a file's data blob IDs (hex strings or raw bytes)."""
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(bytes.fromhex(p) if isinstance(p, str) else p)
    return h.digest()


_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})")


_NS_MIN, _NS_MAX = -(2**63), 2**63 - 1


def _mtime_ns(text: object) -> int:
    """Unix nanoseconds, clamped to 64 bits (years 1678..2262; Go's zero time is year 1)."""
    return max(_NS_MIN, min(_NS_MAX, _parse_ns(text)))


def _parse_ns(text: object) -> int:
    if not isinstance(text, str):
        return GO_ZERO_TIME.ns
    m = _TIME.fullmatch(text)
    if m is not None:
        base, frac, zone = m.groups()
        try:
            dt = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
        except ValueError:  # year 0 and the like: the exact parser below
            pass
        else:
            return int(dt.timestamp()) * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)
    try:
        return GoTime.parse(text).ns
    except ValueError as exc:
        raise ValueError(f"bad time {text!r}") from exc


def _entry_from_obj(obj: Any) -> Entry:
    raw_name = obj["name"]
    if not isinstance(raw_name, str):
        raise ValueError(f"node name must be a string, got {raw_name!r}")
    if raw_name.isascii() and "\\" not in raw_name and '"' not in raw_name:
        name = raw_name
    else:
        name = os.fsdecode(go_unquote(raw_name))
    typ = obj.get("type") or ""
    content: bytes | None = None
    subtree: bytes | None = None
    if typ == "dir":
        sub = obj.get("subtree")
        subtree = bytes.fromhex(sub) if sub else None
    elif typ == "file":
        content = content_key(obj.get("content") or ())
    elif typ == "symlink":
        raw_target = obj.get("linktarget_raw")
        target = str(raw_target if raw_target is not None else obj.get("linktarget") or "")
        content = hashlib.blake2b(target.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    size = obj.get("size") or 0
    if type(size) is not int:
        raise ValueError(f"size must be an integer, got {size!r}")
    return Entry(name, str(typ), size, _mtime_ns(obj.get("mtime")), content, subtree)


def decode_entries(data: bytes) -> list[Entry]:
    """The entries of a tree blob, in tree order (ascending name bytes); ``CatalogError`` if damaged."""
    try:
        obj = json.loads(data)
        nodes = obj.get("nodes") or []
        return [_entry_from_obj(n) for n in nodes]
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as exc:
        raise CatalogError(
            f"A tree of the snapshot is damaged: {exc}",
            hint="Run 'safekeep check' to see what is affected.",
        ) from exc


# --------------------------------------------------------------------------------------------
# Tree sources
# --------------------------------------------------------------------------------------------


class TreeSource(Protocol):
    def load_tree(self, tree_id: bytes, *, cancel: CancelToken = NEVER) -> Sequence[Entry]: ...

    def lookup(self, tree_id: bytes, name: str, *, cancel: CancelToken = NEVER) -> Entry | None: ...


class RepositoryTrees:
    """Trees read from the repository (index loaded on first use), with a small cache.

    ``loads`` counts the tree blobs read and decoded.
    """

    def __init__(self, repo: Repository, *, cache_entries: int = 200_000) -> None:
        self.repo = repo
        self.loads = 0
        self._cache: OrderedDict[bytes, list[Entry]] = OrderedDict()
        self._cached = 0
        self._budget = cache_entries
        self._lock = threading.Lock()

    def load_tree(self, tree_id: bytes, *, cancel: CancelToken = NEVER) -> list[Entry]:
        with self._lock:
            hit = self._cache.get(tree_id)
            if hit is not None:
                self._cache.move_to_end(tree_id)
                return hit
        self.repo.ensure_index(cancel=cancel)
        cancel.raise_if_cancelled()
        try:
            data = self.repo.load_blob(BlobType.TREE, tree_id, cancel=cancel)
        except IntegrityError as exc:
            raise CatalogError(
                f"The tree {tree_id.hex()[:16]} cannot be read: {exc.message}",
                hint="Run 'safekeep check' to see what is affected.",
            ) from exc
        entries = decode_entries(data)
        with self._lock:
            self.loads += 1
            if len(entries) <= self._budget:
                self._cache[tree_id] = entries
                self._cached += len(entries)
                while self._cached > self._budget:
                    _, old = self._cache.popitem(last=False)
                    self._cached -= len(old)
        return entries

    def lookup(self, tree_id: bytes, name: str, *, cancel: CancelToken = NEVER) -> Entry | None:
        return _find(self.load_tree(tree_id, cancel=cancel), name)


def _find(entries: Sequence[Entry], name: str) -> Entry | None:
    for e in entries:
        if e.name == name:
            return e
    return None


# --------------------------------------------------------------------------------------------
# Snapshots and results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotRef:
    """What the catalog keeps of a snapshot."""

    id: str
    time: datetime
    tree: bytes
    hostname: str = ""
    paths: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    @staticmethod
    def of(snap: Snapshot) -> SnapshotRef:
        return SnapshotRef(snap.id, snap.time, snap.tree, snap.hostname, tuple(snap.paths), tuple(snap.tags))

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def order(self) -> tuple[datetime, str]:
        return (self.time, self.id)


@dataclass(frozen=True, slots=True)
class Version:
    """One distinct state of a path and the snapshots (oldest first) that hold it.

    ``size`` of a folder is the total size of the files below it when the index knows it, else 0.
    """

    type: str
    size: int
    mtime_ns: int
    content: bytes | None  # content key, or the subtree ID of a folder
    snapshots: tuple[SnapshotRef, ...]

    @property
    def first(self) -> SnapshotRef:
        return self.snapshots[0]

    @property
    def last(self) -> SnapshotRef:
        return self.snapshots[-1]

    @property
    def mtime(self) -> datetime:
        return ns_to_datetime(self.mtime_ns)


@dataclass(frozen=True, slots=True)
class FileVersions:
    """A search result: one path and its versions, oldest first."""

    path: str
    versions: tuple[Version, ...]

    @property
    def type(self) -> str:
        return self.versions[-1].type


@dataclass(frozen=True, slots=True)
class DeletedFile:
    """A path an older snapshot holds and the chosen one does not; ``entry`` as last seen."""

    path: str
    entry: Entry
    last_snapshot: SnapshotRef


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between two snapshots: ``before`` is None if added, ``after`` if removed."""

    path: str
    before: Entry | None
    after: Entry | None

    @property
    def content_changed(self) -> bool:
        """The bytes (or the kind of entry) differ, not only the metadata."""
        if self.before is None or self.after is None:
            return True
        return self.before.type != self.after.type or self.before.content != self.after.content


@dataclass(frozen=True, slots=True)
class Diff:
    """``added`` and ``removed`` list every path (a folder and all below it); ``changed`` lists
    entries other than folders whose type, content, size or modification time differ."""

    added: tuple[Change, ...]
    removed: tuple[Change, ...]
    changed: tuple[Change, ...]


# --------------------------------------------------------------------------------------------
# Pure functions over a TreeSource
# --------------------------------------------------------------------------------------------


def clean_path(path: str) -> str:
    """``/a/b`` for any of ``a/b``, ``/a/b/``, ``/a//b``; ``/`` for the root."""
    parts = [p for p in path.split("/") if p and p != "."]
    return "/" + "/".join(parts)


def _join(parent: str, name: str) -> str:
    return ("" if parent == "/" else parent) + "/" + name


def _root_entry(tree: bytes) -> Entry:
    return Entry("/", "dir", 0, _NS_MIN, None, tree)


def resolve(source: TreeSource, root: bytes, path: str, *, cancel: CancelToken = NEVER) -> Entry:
    """The entry at ``path`` below the tree ``root`` (a synthetic folder entry for ``/``)."""
    clean = clean_path(path)
    entry = _root_entry(root)
    for part in clean.split("/")[1:] if clean != "/" else []:
        if entry.type != "dir" or entry.subtree is None:
            raise NotInSnapshot(clean)
        found = source.lookup(entry.subtree, part, cancel=cancel)
        if found is None:
            raise NotInSnapshot(clean)
        entry = found
    return entry


def list_dir(source: TreeSource, root: bytes, path: str = "/", *, cancel: CancelToken = NEVER) -> list[Entry]:
    """The entries of the folder ``path`` in tree order."""
    entry = resolve(source, root, path, cancel=cancel)
    if entry.type != "dir":
        raise NotAFolder(clean_path(path))
    if entry.subtree is None:
        return []
    return list(source.load_tree(entry.subtree, cancel=cancel))


def walk_entries(
    source: TreeSource, tree: bytes, prefix: str = "/", *, cancel: CancelToken = NEVER
) -> Iterator[tuple[str, Entry]]:
    """Every (path, entry) below ``tree``, depth-first in name order."""
    stack: list[tuple[str, Iterator[Entry]]] = [(prefix, iter(source.load_tree(tree, cancel=cancel)))]
    while stack:
        base, it = stack[-1]
        e = next(it, None)
        if e is None:
            stack.pop()
            continue
        cancel.raise_if_cancelled()
        path = _join(base, e.name)
        yield path, e
        if e.type == "dir" and e.subtree is not None:
            stack.append((path, iter(source.load_tree(e.subtree, cancel=cancel))))


def _with_contents(source: TreeSource, path: str, e: Entry, cancel: CancelToken) -> Iterator[Change]:
    """``e`` at ``path`` and, for a folder, everything below it, as added (``after``) changes."""
    yield Change(path, None, e)
    if e.type == "dir" and e.subtree is not None:
        for p, child in walk_entries(source, e.subtree, path, cancel=cancel):
            yield Change(p, None, child)


def _flip(c: Change) -> Change:
    return Change(c.path, c.after, c.before)


def diff_trees(source: TreeSource, tree_a: bytes, tree_b: bytes, *, cancel: CancelToken = NEVER) -> Diff:
    """What changed from the tree ``tree_a`` to ``tree_b``; identical subtrees are not read."""
    added: list[Change] = []
    removed: list[Change] = []
    changed: list[Change] = []
    stack = [("/", tree_a, tree_b)]
    while stack:
        path, a, b = stack.pop()
        if a == b:
            continue
        cancel.raise_if_cancelled()
        ea = {e.name: e for e in source.load_tree(a, cancel=cancel)}
        eb = {e.name: e for e in source.load_tree(b, cancel=cancel)}
        for name in ea.keys() | eb.keys():
            p = _join(path, name)
            x, y = ea.get(name), eb.get(name)
            if y is None:
                assert x is not None
                removed.extend(_flip(c) for c in _with_contents(source, p, x, cancel))
            elif x is None:
                added.extend(_with_contents(source, p, y, cancel))
            elif x.type == "dir" and y.type == "dir":
                if x.subtree != y.subtree:
                    if x.subtree is None or y.subtree is None:
                        if x.subtree is not None:
                            removed.extend(
                                Change(q, e, None)
                                for q, e in walk_entries(source, x.subtree, p, cancel=cancel)
                            )
                        if y.subtree is not None:
                            added.extend(
                                Change(q, None, e)
                                for q, e in walk_entries(source, y.subtree, p, cancel=cancel)
                            )
                    else:
                        stack.append((p, x.subtree, y.subtree))
            elif x.type == "dir" or y.type == "dir":
                removed.extend(_flip(c) for c in _with_contents(source, p, x, cancel))
                added.extend(_with_contents(source, p, y, cancel))
            elif x.version_key != y.version_key:
                changed.append(Change(p, x, y))
    return Diff(
        tuple(sorted(added, key=_by_path)),
        tuple(sorted(removed, key=_by_path)),
        tuple(sorted(changed, key=_by_path)),
    )


def _by_path(c: Change) -> str:
    return c.path


class _MemoLookups:
    """A TreeSource that remembers lookups: snapshots share most of the trees on a path."""

    def __init__(self, source: TreeSource) -> None:
        self.source = source
        self.memo: dict[tuple[bytes, str], Entry | None] = {}

    def load_tree(self, tree_id: bytes, *, cancel: CancelToken = NEVER) -> Sequence[Entry]:
        return self.source.load_tree(tree_id, cancel=cancel)

    def lookup(self, tree_id: bytes, name: str, *, cancel: CancelToken = NEVER) -> Entry | None:
        key = (tree_id, name)
        if key not in self.memo:
            self.memo[key] = self.source.lookup(tree_id, name, cancel=cancel)
        return self.memo[key]


def versions_of(
    source: TreeSource, snapshots: Sequence[SnapshotRef], path: str, *, cancel: CancelToken = NEVER
) -> list[Version]:
    """The distinct versions of ``path`` across ``snapshots``, ordered by when first seen."""
    clean = clean_path(path)
    memo_source = _MemoLookups(source)
    groups: dict[tuple[str, bytes | None, int, int], tuple[Entry, list[SnapshotRef]]] = {}
    for snap in sorted(snapshots, key=lambda s: s.order):
        cancel.raise_if_cancelled()
        try:
            entry = resolve(memo_source, snap.tree, clean, cancel=cancel)
        except NotInSnapshot:
            continue
        if clean == "/":
            entry = entry._replace(name="/")
        groups.setdefault(entry.version_key, (entry, []))[1].append(snap)
    out: list[Version] = []
    for entry, snaps in groups.values():
        content = entry.subtree if entry.type == "dir" else entry.content
        out.append(Version(entry.type, entry.size, entry.mtime_ns, content, tuple(snaps)))
    return out


def deleted_entries(
    source: TreeSource,
    older: Sequence[SnapshotRef],
    chosen: SnapshotRef,
    under: str = "/",
    *,
    cancel: CancelToken = NEVER,
) -> list[DeletedFile]:
    """Paths below ``under`` that a snapshot in ``older`` holds and ``chosen`` does not.

    Each comes with the newest of ``older`` that holds it. Folders that are gone are listed with
    everything below them. Identical subtrees are skipped, and so is a pair of subtrees at the
    same path already compared for a newer snapshot.
    """
    base = clean_path(under)
    found: dict[str, DeletedFile] = {}
    seen: set[tuple[str, bytes | None, bytes | None]] = set()
    now_trees: dict[bytes, dict[str, Entry]] = {}  # the chosen snapshot's folders, read once
    try:
        now: Entry | None = resolve(source, chosen.tree, base, cancel=cancel)
    except NotInSnapshot:
        now = None
    for snap in sorted(older, key=lambda s: s.order, reverse=True):
        cancel.raise_if_cancelled()
        try:
            then = resolve(source, snap.tree, base, cancel=cancel)
        except NotInSnapshot:
            continue
        stack: list[tuple[str, Entry, Entry | None]] = [(base, then, now)]
        while stack:
            path, old, new = stack.pop()
            if new is not None and old.is_dir and new.is_dir:
                key = (path, old.subtree, new.subtree)
                if old.subtree == new.subtree or old.subtree is None or key in seen:
                    continue
                seen.add(key)
                current = now_trees.get(new.subtree) if new.subtree else {}
                if current is None:
                    assert new.subtree is not None
                    current = {e.name: e for e in source.load_tree(new.subtree, cancel=cancel)}
                    now_trees[new.subtree] = current
                for e in source.load_tree(old.subtree, cancel=cancel):
                    stack.append((_join(path, e.name), e, current.get(e.name)))
                continue
            if new is not None and old.is_dir == new.is_dir:
                continue  # present in both (possibly changed): not deleted
            if path not in found and path != "/":
                found[path] = DeletedFile(path, old, snap)
            if old.is_dir and old.subtree is not None:
                key = (path, old.subtree, None)
                if key in seen:
                    continue
                seen.add(key)
                for p, e in walk_entries(source, old.subtree, path, cancel=cancel):
                    if p not in found:
                        found[p] = DeletedFile(p, e, snap)
    return sorted(found.values(), key=lambda d: d.path)


# --------------------------------------------------------------------------------------------
# Name patterns
# --------------------------------------------------------------------------------------------


def _glob_to_regex(pattern: str) -> str:
    """A path glob as a regex: ``*`` and ``?`` stay within one name, ``**`` crosses folders."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):  # "**/" matches zero or more folders
                    i += 1
                    out.append("(?:.*/)?")
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find(
                "]", i + 2 if pattern.startswith("[!", i) or pattern.startswith("[^", i) else i + 1
            )
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j]
                if body.startswith(("!", "^")):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class _Pattern:
    name_glob: str  # GLOB on the case-folded name
    path_regex: re.Pattern[str] | None  # whole-path check for patterns with "/"

    @staticmethod
    def parse(pattern: str) -> _Pattern:
        pat = pattern.strip()
        if not pat:
            raise CatalogError(
                "The search pattern is empty.", hint="Give a name or a pattern like 'budget*.xlsx'."
            )
        if "/" not in pat:
            return _Pattern(pat.casefold(), None)
        last = pat.rstrip("/").rsplit("/", 1)[-1] or "*"
        name_glob = "*" if "**" in last else last.casefold()
        body = _glob_to_regex(pat.rstrip("/").casefold())
        # an absolute pattern is anchored at the root; a relative one may start in any folder
        regex = "^" + body + "$" if pat.startswith("/") else "^(?:.*/)?" + body + "$"
        return _Pattern(name_glob, re.compile(regex, re.DOTALL))


# --------------------------------------------------------------------------------------------
# The index
# --------------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE names (id INTEGER PRIMARY KEY, raw BLOB NOT NULL UNIQUE, lower TEXT NOT NULL);
CREATE INDEX names_lower ON names (lower);
CREATE TABLE trees (
    id INTEGER PRIMARY KEY,
    tree_id BLOB NOT NULL UNIQUE,
    files INTEGER NOT NULL,  -- entries other than folders below this tree
    size INTEGER NOT NULL,   -- total size of the files below this tree
    listing BLOB             -- large trees: all entries packed, for fast listing (see _pack)
);
CREATE TABLE entries (
    tree INTEGER NOT NULL,   -- trees.id of the folder holding the entry
    pos INTEGER NOT NULL,    -- position in the tree (name order)
    name INTEGER NOT NULL,   -- names.id
    type TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime INTEGER NOT NULL,  -- Unix nanoseconds
    content BLOB,            -- content key (files, symlinks)
    subtree INTEGER,         -- trees.id (folders)
    PRIMARY KEY (tree, pos)
) WITHOUT ROWID;
CREATE INDEX entries_name ON entries (name, tree);
CREATE INDEX entries_subtree ON entries (subtree) WHERE subtree IS NOT NULL;
CREATE TABLE snapshots (
    id TEXT PRIMARY KEY,
    time TEXT NOT NULL,
    tree INTEGER NOT NULL,   -- trees.id of the root
    hostname TEXT NOT NULL,
    paths TEXT NOT NULL,     -- JSON list
    tags TEXT NOT NULL       -- JSON list
);
"""

_TREE_ENTRIES = (
    "SELECT n.raw, e.type, e.size, e.mtime, e.content, s.tree_id FROM entries e "
    "JOIN names n ON n.id = e.name LEFT JOIN trees s ON s.id = e.subtree "
    "WHERE e.tree = (SELECT id FROM trees WHERE tree_id = ?) ORDER BY e.pos"
)
_TREE_LOOKUP = (
    "SELECT n.raw, e.type, e.size, e.mtime, e.content, s.tree_id FROM entries e "
    "JOIN names n ON n.id = e.name LEFT JOIN trees s ON s.id = e.subtree "
    "WHERE n.raw = ? AND e.tree = (SELECT id FROM trees WHERE tree_id = ?)"
)


def _entry_row(row: tuple[bytes, str, int, int, bytes | None, bytes | None]) -> Entry:
    return Entry(os.fsdecode(row[0]), row[1], row[2], row[3], row[4], row[5])


def catalog_path(cache_root: str | os.PathLike[str], repository_id: str) -> Path:
    """Where the catalog of the repository ``repository_id`` lives below a cache folder."""
    if not re.fullmatch(r"[0-9a-fA-F]{8,128}", repository_id):
        raise ValueError(f"invalid repository ID {repository_id!r}")
    return Path(cache_root) / "catalog" / f"{repository_id}.sqlite"


class IndexProgress(Protocol):
    def indexing(self, snapshots_done: int, snapshots_total: int, entries: int) -> None:
        """``entries`` written so far in this update; called at most every 0.2 s and at each snapshot."""


class _NoProgress:
    def indexing(self, snapshots_done: int, snapshots_total: int, entries: int) -> None:
        return None


NULL_INDEX_PROGRESS: IndexProgress = _NoProgress()


@dataclass(frozen=True, slots=True)
class UpdateResult:
    added: int  # snapshots indexed
    removed: int  # snapshots dropped
    trees_read: int  # tree blobs read and decoded
    entries: int  # entries written


#: Trees with at least this many entries also keep a packed copy of them (``trees.listing``):
#: reading 100,000 entries row by row costs ~250 ms of Python object creation, unpacking ~150 ms.
LISTING_MIN_ENTRIES = 500


def _pack(entries: Sequence[Entry]) -> bytes:
    """Entries as zstd-compressed ``marshal`` data (plain tuples; the index is a local cache)."""
    return zstandard.ZstdCompressor(level=1).compress(marshal.dumps([tuple(e) for e in entries]))


_new_entry = functools.partial(tuple.__new__, Entry)


def _unpack(blob: bytes) -> list[Entry] | None:
    try:
        # written by _pack into this user's own cache; marshal builds data, it never runs code
        items = marshal.loads(zstandard.ZstdDecompressor().decompress(blob))  # noqa: S302
        if not isinstance(items, list) or (items and len(items[0]) != len(Entry._fields)):
            raise ValueError("not a list of entries")
        return list(map(_new_entry, items))
    except (ValueError, TypeError, EOFError, zstandard.ZstdError) as exc:
        log.warning("a packed listing in the catalog is unreadable (%s): reading its rows", exc)
        return None


class _IndexTrees:
    """A :class:`TreeSource` answering from the index (every tree below an indexed root is there)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def load_tree(self, tree_id: bytes, *, cancel: CancelToken = NEVER) -> list[Entry]:
        cancel.raise_if_cancelled()
        packed = self.conn.execute("SELECT listing FROM trees WHERE tree_id = ?", (tree_id,)).fetchone()
        if packed is not None and packed[0] is not None:
            unpacked = _unpack(packed[0])
            if unpacked is not None:
                return unpacked
        rows = self.conn.execute(
            _TREE_ENTRIES,
            (tree_id,),
        ).fetchall()
        return [Entry(os.fsdecode(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def lookup(self, tree_id: bytes, name: str, *, cancel: CancelToken = NEVER) -> Entry | None:
        row = self.conn.execute(
            _TREE_LOOKUP,
            (os.fsencode(name), tree_id),
        ).fetchone()
        return None if row is None else _entry_row(row)


@dataclass(slots=True)
class _Frame:
    tree_id: bytes
    entries: Sequence[Entry]
    next: int = 0


class Catalog:
    """The catalog of one repository, kept in the SQLite file ``db_path`` (None: in memory).

    Safe to use from several threads: each thread gets its own connection; one thread at a time
    should run :meth:`update`.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str] | None,
        repo: Repository,
        *,
        trees: TreeSource | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.repo = repo
        self.repository_id = repo.config.id
        self.trees: TreeSource = trees if trees is not None else RepositoryTrees(repo)
        self.clock = clock
        self.path: Path | None = Path(db_path) if db_path is not None else None
        if self.path is None:
            self._uri = f"file:safekeep-catalog-{uuid.uuid4().hex}?mode=memory&cache=shared"
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._uri = self.path.resolve().as_uri()
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._keepalive: sqlite3.Connection | None = None
        self._generation = 0
        self._prepare()

    @staticmethod
    def for_repository(cache_root: str | os.PathLike[str] | None, repo: Repository) -> Catalog:
        """The catalog below the cache folder ``cache_root`` (in memory when None)."""
        path = catalog_path(cache_root, repo.config.id) if cache_root is not None else None
        return Catalog(path, repo)

    # ---------------------------------------------------------------- connections

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._uri, uri=True, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            if self.path is not None:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA cache_size=-65536")  # 64 MiB
            conn.execute("PRAGMA temp_store=MEMORY")
        except BaseException:
            conn.close()
            raise
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "generation", -1) != self._generation:
            conn = self._connect()
            self._local.conn = conn
            self._local.generation = self._generation
        return conn

    def close(self) -> None:
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()
        self._keepalive = None

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _prepare(self) -> None:
        """Open the index, or create it, or delete and recreate it if it is not usable."""
        try:
            conn = self._conn()
            if self._keepalive is None and self.path is None:
                self._keepalive = conn
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            if version == 0 and tables == 0:
                self._create(conn)
                return
            row = conn.execute("SELECT value FROM meta WHERE key = 'repository'").fetchone()
            if version == FORMAT_VERSION and row is not None and row[0] == self.repository_id:
                conn.execute("SELECT count(*) FROM snapshots").fetchone()
                return
            log.info("catalog %s is of another version or repository: rebuilding it", self.path)
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise _busy(exc) from exc
            log.warning("catalog %s is unreadable (%s): rebuilding it", self.path, exc)
        self._reset()

    def _create(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN")
        for stmt in _SCHEMA.split(";"):
            if stmt.strip():
                conn.execute(stmt)
        conn.execute("INSERT INTO meta (key, value) VALUES ('repository', ?)", (self.repository_id,))
        conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
        conn.execute("COMMIT")

    def _reset(self) -> None:
        """Delete the index and start an empty one."""
        self.close()
        self._generation += 1
        if self.path is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                try:
                    os.unlink(str(self.path) + suffix)
                except FileNotFoundError:
                    pass
        else:
            self._uri = f"file:safekeep-catalog-{uuid.uuid4().hex}?mode=memory&cache=shared"
        conn = self._conn()
        if self.path is None:
            self._keepalive = conn
        self._create(conn)

    # ---------------------------------------------------------------- updating

    def update(
        self, *, progress: IndexProgress = NULL_INDEX_PROGRESS, cancel: CancelToken = NEVER
    ) -> UpdateResult:
        """Index the repository's new snapshots and forget the removed ones."""
        try:
            return self._update(progress, cancel)
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise _busy(exc) from exc
            log.warning("catalog %s is damaged (%s): rebuilding it", self.path, exc)
            self._reset()
        try:
            return self._update(progress, cancel)
        except sqlite3.DatabaseError as exc:
            raise self._guard(exc) from exc

    def _update(self, progress: IndexProgress, cancel: CancelToken) -> UpdateResult:
        self.repo.ensure_index(cancel=cancel)
        snaps = self.repo.list_snapshots(cancel=cancel)
        conn = self._conn()
        indexed = {r[0] for r in conn.execute("SELECT id FROM snapshots")}
        current = {s.id for s in snaps}
        gone = indexed - current
        if gone:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("DELETE FROM snapshots WHERE id = ?", ((i,) for i in gone))
                self._collect_garbage(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        todo = [s for s in snaps if s.id not in indexed]
        throttle = Throttle(0.2, self.clock)
        counts = [0, 0]  # trees read, entries written
        added = 0
        progress.indexing(0, len(todo), 0)
        for i, snap in enumerate(todo):
            cancel.raise_if_cancelled()
            tick = functools.partial(self._report, progress, throttle, i, len(todo), counts)
            conn.execute("BEGIN IMMEDIATE")  # one writer at a time; it may have indexed this meanwhile
            try:
                if conn.execute("SELECT 1 FROM snapshots WHERE id = ?", (snap.id,)).fetchone():
                    conn.execute("COMMIT")
                    continue
                root = self._index_tree(conn, snap.tree, counts, tick, cancel)
                conn.execute(
                    "INSERT INTO snapshots (id, time, tree, hostname, paths, tags) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        snap.id,
                        snap.time.isoformat(),
                        root,
                        snap.hostname,
                        json.dumps(snap.paths),
                        json.dumps(snap.tags),
                    ),
                )
                conn.execute("COMMIT")
                added += 1
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            progress.indexing(i + 1, len(todo), counts[1])
        if added or gone:
            log.info("catalog: %d snapshots indexed (%d trees read), %d dropped", added, counts[0], len(gone))
        return UpdateResult(added, len(gone), counts[0], counts[1])

    @staticmethod
    def _report(
        progress: IndexProgress, throttle: Throttle, done: int, total: int, counts: list[int]
    ) -> None:
        if throttle.ready():
            progress.indexing(done, total, counts[1])

    def _known_tree(self, conn: sqlite3.Connection, tree_id: bytes) -> tuple[int, int, int] | None:
        row = conn.execute("SELECT id, files, size FROM trees WHERE tree_id = ?", (tree_id,)).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def _index_tree(
        self,
        conn: sqlite3.Connection,
        root: bytes,
        counts: list[int],
        tick: Callable[[], None],
        cancel: CancelToken,
    ) -> int:
        """Index ``root`` and every tree below it not indexed yet (post-order); its ``trees.id``."""
        known = self._known_tree(conn, root)
        if known is not None:
            return known[0]
        done: dict[bytes, tuple[int, int, int]] = {}

        def load(tree_id: bytes) -> _Frame:
            cancel.raise_if_cancelled()
            entries = self.trees.load_tree(tree_id, cancel=cancel)
            counts[0] += 1
            return _Frame(tree_id, entries)

        stack = [load(root)]
        while stack:
            frame = stack[-1]
            pushed = False
            while frame.next < len(frame.entries):
                e = frame.entries[frame.next]
                frame.next += 1
                if e.subtree is not None and e.subtree not in done:
                    info = self._known_tree(conn, e.subtree)
                    if info is None:
                        stack.append(load(e.subtree))
                        pushed = True
                        break
                    done[e.subtree] = info
            if pushed:
                continue
            done[frame.tree_id] = self._write_tree(conn, frame, done)
            counts[1] += len(frame.entries)
            tick()
            stack.pop()
        return done[root][0]

    def _write_tree(
        self, conn: sqlite3.Connection, frame: _Frame, done: dict[bytes, tuple[int, int, int]]
    ) -> tuple[int, int, int]:
        entries = frame.entries
        raws = [os.fsencode(e.name) for e in entries]
        conn.executemany(
            "INSERT OR IGNORE INTO names (raw, lower) VALUES (?, ?)",
            ((r, r.decode("utf-8", "replace").casefold()) for r in raws),
        )
        ids: dict[bytes, int] = {}
        for start in range(0, len(raws), 500):
            chunk = raws[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT raw, id FROM names WHERE raw IN ({marks})"  # noqa: S608 (only "?" marks)
            ids.update(conn.execute(query, chunk).fetchall())
        files = size = 0
        rows = []
        for pos, (e, raw) in enumerate(zip(entries, raws, strict=True)):
            sub: int | None = None
            if e.subtree is not None:
                sub, sub_files, sub_size = done[e.subtree]
                files += sub_files
                size += sub_size
            else:
                files += 1
                if e.type == "file":
                    size += e.size
            rows.append((pos, ids[raw], e.type, e.size, e.mtime_ns, e.content, sub))
        listing = _pack(entries) if len(entries) >= LISTING_MIN_ENTRIES else None
        cur = conn.execute(
            "INSERT INTO trees (tree_id, files, size, listing) VALUES (?, ?, ?, ?)",
            (frame.tree_id, files, size, listing),
        )
        rowid = cur.lastrowid
        assert rowid is not None
        conn.executemany(
            "INSERT INTO entries (tree, pos, name, type, size, mtime, content, subtree) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ((rowid, *r) for r in rows),
        )
        return (rowid, files, size)

    @staticmethod
    def _collect_garbage(conn: sqlite3.Connection) -> None:
        """Drop the trees no remaining snapshot reaches, their entries and unused names."""
        conn.execute("DROP TABLE IF EXISTS temp.live")
        conn.execute("CREATE TEMP TABLE live (id INTEGER PRIMARY KEY)")
        conn.execute(
            "WITH RECURSIVE r(id) AS (SELECT tree FROM snapshots UNION "
            "SELECT e.subtree FROM entries e JOIN r ON e.tree = r.id WHERE e.subtree IS NOT NULL) "
            "INSERT INTO temp.live (id) SELECT id FROM r"
        )
        conn.execute("DELETE FROM entries WHERE tree NOT IN (SELECT id FROM temp.live)")
        conn.execute("DELETE FROM trees WHERE id NOT IN (SELECT id FROM temp.live)")
        conn.execute("DELETE FROM names WHERE id NOT IN (SELECT name FROM entries)")
        conn.execute("DROP TABLE temp.live")

    # ---------------------------------------------------------------- reading

    def _guard(self, exc: sqlite3.DatabaseError) -> CatalogError:
        if not _damaged(exc):
            return _busy(exc)
        log.warning("catalog %s is damaged (%s): it will be rebuilt", self.path, exc)
        self._reset()
        return CatalogError(
            "The search index was damaged and has been reset.",
            hint="Run the command again: the index is rebuilt from the repository.",
        )

    def snapshots(self) -> list[SnapshotRef]:
        """The indexed snapshots, oldest first."""
        try:
            rows = (
                self._conn()
                .execute(
                    "SELECT s.id, s.time, t.tree_id, s.hostname, s.paths, s.tags FROM snapshots s "
                    "JOIN trees t ON t.id = s.tree"
                )
                .fetchall()
            )
        except sqlite3.DatabaseError as exc:
            raise self._guard(exc) from exc
        refs = [
            SnapshotRef(
                r[0],
                datetime.fromisoformat(r[1]),
                r[2],
                r[3],
                tuple(json.loads(r[4])),
                tuple(json.loads(r[5])),
            )
            for r in rows
        ]
        refs.sort(key=lambda s: s.order)
        return refs

    def snapshot(self, ref: str) -> SnapshotRef:
        """An indexed snapshot or, failing that, one from the repository: ``latest`` or an ID prefix."""
        snaps = self.snapshots()
        if ref == "latest":
            if snaps:
                return snaps[-1]
        else:
            matches = [s for s in snaps if s.id.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
        return SnapshotRef.of(self.repo.find_snapshot(ref))

    def is_indexed(self, snapshot_id: str) -> bool:
        try:
            row = self._conn().execute("SELECT 1 FROM snapshots WHERE id = ?", (snapshot_id,)).fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._guard(exc) from exc
        return row is not None

    def _source_for(self, *snaps: SnapshotRef) -> TreeSource:
        if all(self.is_indexed(s.id) for s in snaps):
            return _IndexTrees(self._conn())
        return self.trees

    def list_dir(self, snapshot_id: str, path: str = "/", *, cancel: CancelToken = NEVER) -> list[Entry]:
        """The folder ``path`` of a snapshot: from the index, or from the tree blob if not indexed."""
        snap = self.snapshot(snapshot_id)
        try:
            return list_dir(self._source_for(snap), snap.tree, path, cancel=cancel)
        except sqlite3.DatabaseError as exc:
            raise self._guard(exc) from exc

    def diff(self, snap_a: str, snap_b: str, *, cancel: CancelToken = NEVER) -> Diff:
        """What changed from the snapshot ``snap_a`` to ``snap_b`` (IDs, prefixes or ``latest``)."""
        a, b = self.snapshot(snap_a), self.snapshot(snap_b)
        try:
            return diff_trees(self._source_for(a, b), a.tree, b.tree, cancel=cancel)
        except sqlite3.DatabaseError as exc:
            raise self._guard(exc) from exc

    def tree_totals(self, tree_id: bytes) -> tuple[int, int] | None:
        """(files, total size) below an indexed tree, or None."""
        row = self._conn().execute("SELECT files, size FROM trees WHERE tree_id = ?", (tree_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    def versions(self, path: str, *, cancel: CancelToken = NEVER) -> list[Version]:
        """Every distinct version of the file or folder ``path`` across the indexed snapshots."""
        try:
            found = versions_of(_IndexTrees(self._conn()), self.snapshots(), path, cancel=cancel)
            out = []
            for v in found:
                if v.type == "dir" and v.content is not None:
                    totals = self.tree_totals(v.content)
                    if totals is not None:
                        v = Version(v.type, totals[1], v.mtime_ns, v.content, v.snapshots)
                out.append(v)
            return out
        except sqlite3.DatabaseError as exc:
            raise self._guard(exc) from exc

    def deleted(
        self,
        snapshot_id: str | None = None,
        under: str = "/",
        *,
        same_source: bool = True,
        cancel: CancelToken = NEVER,
    ) -> list[DeletedFile]:
        """What older indexed snapshots hold below ``under`` that the chosen one (default: the
        latest) does not. ``same_source``: compare only with snapshots of the same host and
        paths, as restic picks a parent (another plan's files are not "deleted")."""
        snaps = self.snapshots()
        if not snaps:
            return []
        chosen = self.snapshot(snapshot_id) if snapshot_id else snaps[-1]
        older = [
            s
            for s in snaps
            if s.order < chosen.order
            and (not same_source or (s.hostname == chosen.hostname and set(s.paths) == set(chosen.paths)))
        ]
        try:
            return deleted_entries(self._source_for(chosen, *older), older, chosen, under, cancel=cancel)
        except sqlite3.DatabaseError as exc:
            raise self._guard(exc) from exc

    def search(
        self,
        pattern: str,
        *,
        snapshot_ids: Iterable[str] | None = None,
        limit: int | None = DEFAULT_SEARCH_LIMIT,
        cancel: CancelToken = NEVER,
    ) -> list[FileVersions]:
        """Paths whose name matches ``pattern`` in the indexed snapshots, with their versions.

        ``pattern`` is a case-insensitive glob on the name (``budget*.xlsx``, ``*report*``), or,
        with a ``/``, on the path (``/home/*/Documents/*.pdf``; a pattern not starting with ``/``
        matches at any depth; ``**`` crosses folders). ``snapshot_ids``: only these snapshots (IDs
        or unique prefixes). Results are ordered by name, then path; at most ``limit`` paths.
        """
        try:
            return self._search(_Pattern.parse(pattern), snapshot_ids, limit, cancel)
        except sqlite3.DatabaseError as exc:
            raise self._guard(exc) from exc

    def _search(
        self, pat: _Pattern, snapshot_ids: Iterable[str] | None, limit: int | None, cancel: CancelToken
    ) -> list[FileVersions]:
        conn = self._conn()
        snaps = self.snapshots()
        if snapshot_ids is not None:
            wanted = list(snapshot_ids)
            chosen = []
            for ref in wanted:
                matches = [s for s in snaps if s.id.startswith(ref)]
                if len(matches) != 1:
                    raise CatalogError(
                        f"{ref!r} matches {'no' if not matches else 'several'} indexed snapshots.",
                        hint="Give more characters of the ID, or check it with 'safekeep snapshots'.",
                    )
                chosen.append(matches[0])
            snaps = sorted(set(chosen), key=lambda s: s.order)
        roots: dict[int, list[SnapshotRef]] = {}
        tree_rowid = {
            r[1]: r[0]
            for r in conn.execute("SELECT id, tree_id FROM trees WHERE id IN (SELECT tree FROM snapshots)")
        }
        for s in snaps:
            roots.setdefault(tree_rowid[s.tree], []).append(s)
        names = conn.execute(
            "SELECT id, raw FROM names WHERE lower GLOB ? ORDER BY lower, raw", (pat.name_glob,)
        ).fetchall()
        paths = _UpwardPaths(conn, set(tree_rowid.values()))
        results: dict[str, dict[tuple[str, bytes | None, int, int], tuple[Entry, list[SnapshotRef]]]] = {}
        order: dict[str, int] = {}
        batch = 256
        for start in range(0, len(names), batch):
            cancel.raise_if_cancelled()
            chunk = names[start : start + batch]
            rank = {nid: start + i for i, (nid, _) in enumerate(chunk)}
            text = {nid: os.fsdecode(raw) for nid, raw in chunk}
            marks = ",".join("?" * len(chunk))
            query = (
                "SELECT e.name, e.tree, e.type, e.size, e.mtime, e.content, s.tree_id FROM entries e "  # noqa: S608
                f"LEFT JOIN trees s ON s.id = e.subtree WHERE e.name IN ({marks})"
            )
            rows = conn.execute(query, [nid for nid, _ in chunk]).fetchall()
            for nid, tree, typ, size, mtime, content, sub in rows:
                name = text[nid]
                entry = Entry(name, typ, size, mtime, content, sub)
                for root, folder in paths.of(tree):
                    holders = roots.get(root)
                    if not holders:
                        continue
                    path = _join(folder, name)
                    if pat.path_regex is not None and not pat.path_regex.match(path.casefold()):
                        continue
                    group = results.setdefault(path, {})
                    order.setdefault(path, rank[nid])
                    group.setdefault(entry.version_key, (entry, []))[1].extend(holders)
            if limit is not None and len(results) >= limit:
                break
        ordered = sorted(results, key=lambda p: (order[p], p))
        if limit is not None:
            ordered = ordered[:limit]
        out: list[FileVersions] = []
        for path in ordered:
            versions = []
            for entry, holders in results[path].values():
                held = tuple(sorted(set(holders), key=lambda s: s.order))
                content = entry.subtree if entry.type == "dir" else entry.content
                size = entry.size
                if entry.type == "dir" and entry.subtree is not None:
                    totals = self.tree_totals(entry.subtree)
                    size = totals[1] if totals else 0
                versions.append(Version(entry.type, size, entry.mtime_ns, content, held))
            versions.sort(key=lambda v: v.first.order)
            out.append(FileVersions(path, tuple(versions)))
        return out

    def size_on_disk(self) -> int:
        """Bytes the index takes (file plus write-ahead log); 0 in memory."""
        if self.path is None:
            return 0
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(str(self.path) + suffix)
            except OSError:
                pass
        return total


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """A damaged file (rebuild it), not a busy or locked one (leave it to its other user)."""
    return not isinstance(exc, (sqlite3.OperationalError, sqlite3.IntegrityError))


def _busy(exc: sqlite3.DatabaseError) -> CatalogError:
    return CatalogError(
        f"The search index cannot be used right now ({exc}).",
        hint="Another Safekeep program may be updating it; try again in a moment.",
    )


class _UpwardPaths:
    """The folder paths at which a tree appears, per snapshot root, found by walking up the index."""

    def __init__(self, conn: sqlite3.Connection, roots: set[int]) -> None:
        self.conn = conn
        self.roots = roots
        self.memo: dict[int, list[tuple[int, str]]] = {}

    def _parents(self, tree: int) -> list[tuple[int, str]]:
        return [
            (parent, os.fsdecode(raw))
            for parent, raw in self.conn.execute(
                "SELECT e.tree, n.raw FROM entries e JOIN names n ON n.id = e.name WHERE e.subtree = ?",
                (tree,),
            )
        ]

    def of(self, tree: int) -> list[tuple[int, str]]:
        """(root tree, folder path) pairs for every place ``tree`` is reachable from a root."""
        hit = self.memo.get(tree)
        if hit is not None:
            return hit
        # iterative post-order over the parents graph (deep folders must not exhaust the stack)
        stack: list[tuple[int, list[tuple[int, str]] | None]] = [(tree, None)]
        while stack:
            node, parents = stack[-1]
            if node in self.memo:
                stack.pop()
                continue
            if parents is None:
                parents = self._parents(node)
                stack[-1] = (node, parents)
                missing = [p for p, _ in parents if p not in self.memo]
                if missing:
                    stack.extend((p, None) for p in missing)
                    continue
            result = [(node, "/")] if node in self.roots else []
            for parent, name in parents:
                result.extend((root, _join(folder, name)) for root, folder in self.memo[parent])
            self.memo[node] = result
            stack.pop()
        return self.memo[tree]
