"""The snapshot catalog: browse, search, version history, deleted files and diff across snapshots.

Concepts
--------
Entry
    One directory entry as the catalog sees it: name, type, size, modification time, a *content
    key* and, for a folder, its subtree ID. The content key is a 16-byte BLAKE2b digest of a
    file's data blob IDs (of the target, for a symlink): two entries with the same key hold the
    same bytes. Entries are read from tree blobs by :func:`decode_listing`, a reader that keeps
    only these fields (several times faster than a full :func:`~safekeep.core.format.tree.decode_tree`),
    or from the index.

Listing
    The entries of one folder kept as columns — the names, and flat arrays of types, sizes, times,
    content keys — with an :class:`Entry` made only when one is asked for (``listing[i]``,
    ``listing.page(offset, limit)``, or all at once with ``entries()``). A folder of 100,000
    entries loads from the index in ~15 ms and every part of it can be shown at once;
    :meth:`Catalog.listing` and :meth:`Catalog.list_dir_page` are for views, :meth:`Catalog.list_dir`
    keeps returning a list. Big bulk steps pause Python's cyclic garbage collector (which would
    otherwise walk the new objects over and over) and are cut into slices, so that a window
    whose worker thread lists a large folder does not freeze.

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

    Trees of at least :data:`LISTING_MIN_ENTRIES` entries also keep their listing packed in one
    value (:meth:`Listing.pack`: the columns, zstd-compressed with a checksum): a folder of
    100,000 entries loads in ~15 ms instead of ~130 ms from its rows.

    Names live once each in ``names`` with a case-folded copy. A name pattern (``budget*.xlsx``)
    is a GLOB over that column: a pattern with a literal prefix is a range scan of its index,
    anything else a scan of the distinct names, which are far fewer than the entries (about
    0.1 s for a million names). An FTS5 trigram table was measured as an alternative: it answers
    ``*x*`` patterns in milliseconds, but tripled the index's size and its build time for a
    million names, for a gain a person typing in a search box does not notice.

Queries (:meth:`Catalog.search`, :meth:`Catalog.versions`, :meth:`Catalog.deleted`) answer from
what is indexed: call :meth:`Catalog.update` first. :meth:`Catalog.listing`, :meth:`Catalog.list_dir`
and :meth:`Catalog.diff` read tree blobs from the repository for snapshots not indexed yet.

Threads: one :class:`Catalog` may serve several threads at once, queries while :meth:`Catalog.update`
runs; see the class for how.

Paths inside a snapshot are absolute and ``/``-separated, as restic shows them; names are raw
bytes in trees and decoded with the file-system encoding (``os.fsdecode``), which round-trips.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import itertools
import json
import json.scanner
import logging
import os
import re
import sqlite3
import struct
import sys
import threading
import uuid
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeAlias, cast, overload

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
FORMAT_VERSION = 2
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
    "Listing",
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
    "decode_listing",
    "deleted_entries",
    "diff_trees",
    "folder_listing",
    "list_dir",
    "load_listing",
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


def _node_fields(obj: Any) -> tuple[str, str, int, Any, bytes | None, bytes | None]:
    """(name, type, size, mtime as written, content key, subtree) of a tree node: an
    :class:`Entry`'s fields with the modification time not yet parsed."""
    raw_name = obj["name"]
    if not isinstance(raw_name, str):
        raise ValueError(f"node name must be a string, got {raw_name!r}")
    if raw_name.isascii() and "\\" not in raw_name and '"' not in raw_name:
        name = raw_name
    else:
        name = os.fsdecode(go_unquote(raw_name))
    typ = obj.get("type") or ""
    if not isinstance(typ, str):
        raise ValueError(f"node type must be a string, got {typ!r}")
    content: bytes | None = None
    subtree: bytes | None = None
    if typ == "dir":
        sub = obj.get("subtree")
        subtree = bytes.fromhex(sub) if sub else None
    elif typ == "file":  # content_key() of the blob IDs, in one call
        ids = obj.get("content") or ()
        content = hashlib.blake2b(bytes.fromhex("".join(ids)), digest_size=16).digest()
    elif typ == "symlink":
        raw_target = obj.get("linktarget_raw")
        target = str(raw_target if raw_target is not None else obj.get("linktarget") or "")
        content = hashlib.blake2b(target.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    size = obj.get("size") or 0
    if type(size) is not int:
        raise ValueError(f"size must be an integer, got {size!r}")
    return name, typ, size, obj.get("mtime"), content, subtree


def _entry_from_obj(obj: Any) -> Entry:
    name, typ, size, mtime, content, subtree = _node_fields(obj)
    return Entry(name, typ, size, _mtime_ns(mtime), content, subtree)


def decode_entries(data: bytes) -> list[Entry]:
    """The entries of a tree blob, in tree order (ascending name bytes); ``CatalogError`` if damaged."""
    return decode_listing(data).entries()


def _tree_error(exc: BaseException | str) -> CatalogError:
    return CatalogError(
        f"A tree of the snapshot is damaged: {exc}",
        hint="Run 'safekeep check' to see what is affected.",
    )


_HAS_CONTENT, _HAS_SUBTREE, _TYPE_BITS = 0x40, 0x80, 0x3F
_WITHOUT_CONTENT = bytes(0 if k & _HAS_CONTENT else 1 for k in range(256))
_SLICE = 16384  # entries made in one go (a few milliseconds)


class _GcPause:
    """Pauses Python's cyclic garbage collector while many objects are made that it would
    otherwise walk over and over (a folder of 100,000 entries is made twice as fast); nested and
    concurrent pauses end together, and the collector is re-enabled only if it was enabled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._was_enabled = False

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._count == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._count += 1
        try:
            yield
        finally:
            with self._lock:
                self._count -= 1
                if self._count == 0 and self._was_enabled:
                    gc.enable()


_gc_paused = _GcPause()
_NO_KEY = bytes(16)
_new_entry = functools.partial(tuple.__new__, Entry)
_LISTING_MAGIC = b"SKL2"
_LE = sys.byteorder == "little"


#: A column of integers: a compact array when they fit in 64 bits (they always do but in a damaged tree)
_IntColumn: TypeAlias = "array[int] | list[int]"


def _int_column(values: list[int]) -> _IntColumn:
    try:
        return array("q", values)
    except OverflowError:
        return values


def _as_list(column: _IntColumn) -> list[int]:
    return column.tolist() if isinstance(column, array) else column


def _le(a: array[int]) -> bytes:
    if not _LE:
        a = array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


def _from_le(typecode: str, data: bytes | memoryview) -> array[int]:
    a = array(typecode)
    a.frombytes(data)
    if not _LE:
        a.byteswap()
    return a


class Listing(Sequence[Entry]):
    """The entries of one folder in tree order, kept as columns; an :class:`Entry` is made when asked for.

    A folder of 100,000 entries is a list of names and a few flat arrays — no Python object per
    entry but its name — so it loads in a few milliseconds from the index, a view shows any part
    of it at once (``listing[i]``, ``listing[a:b]``), and :meth:`entries` makes all the entries in
    bulk. Read from a tree blob, the modification times are parsed when first needed. A listing
    never changes once made and may be shared between threads.
    """

    __slots__ = ("_contents", "_kinds", "_mtime_text", "_mtimes", "_sizes", "_subtrees", "_types", "names")

    def __init__(
        self,
        *,
        names: list[str],
        types: Sequence[str],
        kinds: bytes,
        sizes: _IntColumn,
        mtimes: _IntColumn | None,
        contents: bytes,
        subtrees: dict[int, bytes],
        mtime_text: list[object] | None = None,
    ) -> None:
        n = len(names)
        if (
            len(kinds) != n
            or len(sizes) != n
            or len(contents) != 16 * n
            or (mtimes is None and (mtime_text is None or len(mtime_text) != n))
            or (mtimes is not None and len(mtimes) != n)
        ):
            raise ValueError("the columns of a listing differ in length")
        #: the entries' names, in tree order
        self.names = names
        self._types = tuple(types)
        self._kinds = kinds
        self._sizes = sizes
        self._mtimes = mtimes
        self._mtime_text = mtime_text
        self._contents = contents
        self._subtrees = subtrees

    # ------------------------------------------------------------ making one

    @staticmethod
    def of(entries: Iterable[Entry]) -> Listing:
        """The listing of these entries."""
        return _columns(entries, times_parsed=True)

    # ------------------------------------------------------------ reading it

    def __len__(self) -> int:
        return len(self.names)

    @overload
    def __getitem__(self, index: int) -> Entry: ...

    @overload
    def __getitem__(self, index: slice) -> list[Entry]: ...

    def __getitem__(self, index: int | slice) -> Entry | list[Entry]:
        if isinstance(index, slice):
            return [self._entry(i) for i in range(*index.indices(len(self.names)))]
        n = len(self.names)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("listing index out of range")
        return self._entry(index)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries())

    def __repr__(self) -> str:
        return f"<Listing of {len(self.names)} entries>"

    def page(self, offset: int, limit: int) -> list[Entry]:
        """At most ``limit`` entries from position ``offset``."""
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must not be negative")
        return self[offset : offset + limit]

    def find(self, name: str) -> Entry | None:
        """The entry called ``name``, or None."""
        try:
            return self._entry(self.names.index(name))
        except ValueError:
            return None

    def _type(self, kind: int) -> str:
        t = kind & _TYPE_BITS
        return self._types[t] if t < len(self._types) else ""

    # A listing read from a tree blob keeps the times' text until they are all parsed; another
    # thread may do that meanwhile: ``_mtimes`` is set before ``_mtime_text`` is dropped.

    def _mtime(self, i: int) -> int:
        mtimes = self._mtimes
        if mtimes is None:
            text = self._mtime_text
            if text is not None:
                try:
                    return _mtime_ns(text[i])
                except ValueError as exc:
                    raise _tree_error(exc) from exc
            mtimes = self._mtimes
            assert mtimes is not None
        return mtimes[i]

    def mtimes(self) -> _IntColumn:
        """The modification times (Unix nanoseconds), all parsed."""
        mtimes = self._mtimes
        if mtimes is None:
            text = self._mtime_text
            if text is None:
                mtimes = self._mtimes
                assert mtimes is not None
                return mtimes
            try:
                mtimes = array("q", map(_mtime_ns, text))  # clamped: they fit
            except ValueError as exc:
                raise _tree_error(exc) from exc
            self._mtimes = mtimes
            self._mtime_text = None
        return mtimes

    def _entry(self, i: int) -> Entry:
        kind = self._kinds[i]
        return _new_entry(
            (
                self.names[i],
                self._type(kind),
                self._sizes[i],
                self._mtime(i),
                self._contents[16 * i : 16 * i + 16] if kind & _HAS_CONTENT else None,
                self._subtrees.get(i) if kind & _HAS_SUBTREE else None,
            )
        )

    def entries(self) -> list[Entry]:
        """All the entries, made in bulk (about 30 ms for 100,000), a slice at a time so that other
        threads run in between."""
        n = len(self.names)
        table = [self._type(k) for k in range(256)]
        c = self._contents
        with _gc_paused():
            contents: list[bytes | None] = [c[i : i + 16] for i in range(0, 16 * n, 16)]
            without = self._kinds.translate(_WITHOUT_CONTENT)  # b"\1" where an entry has no content key
            i = without.find(1)
            while i >= 0:
                contents[i] = None
                i = without.find(1, i + 1)
            subtrees: list[bytes | None] = [None] * n
            for i, tree in self._subtrees.items():
                subtrees[i] = tree
            columns = zip(
                self.names,
                map(table.__getitem__, self._kinds),
                _as_list(self._sizes),
                _as_list(self.mtimes()),
                contents,
                subtrees,
                strict=True,
            )
            made = map(_new_entry, columns)
            out: list[Entry] = []
            while len(out) < n:
                out.extend(itertools.islice(made, _SLICE))
            return out

    # ------------------------------------------------------------ the packed form in the index

    def pack(self) -> bytes | None:
        """The listing as one compressed value for the index; None if it cannot be packed (a name
        with a NUL character, which no file system allows, or the like in a damaged tree)."""
        if (
            any("\0" in t for t in self._types)
            or any("\0" in name for name in self.names)
            or any(len(tree) != 32 for tree in self._subtrees.values())
        ):
            return None
        try:
            sizes, mtimes = _le(array("q", self._sizes)), _le(array("q", self.mtimes()))
        except OverflowError:
            return None
        positions = array("I", sorted(self._subtrees))
        parts = [
            "\0".join(self._types).encode("utf-8", "surrogatepass"),
            "\0".join(self.names).encode("utf-8", "surrogatepass"),
            self._kinds,
            sizes,
            mtimes,
            self._contents,
            _le(positions),
            b"".join(self._subtrees[i] for i in positions),
        ]
        head = struct.pack(f"<4sI{len(parts)}Q", _LISTING_MAGIC, len(self.names), *map(len, parts))
        return zstandard.ZstdCompressor(level=1, write_checksum=True).compress(head + b"".join(parts))

    @staticmethod
    def unpack(blob: bytes) -> Listing:
        """The listing packed by :meth:`pack`; ``ValueError`` if it is damaged."""
        try:
            data = memoryview(zstandard.ZstdDecompressor().decompress(blob))
        except zstandard.ZstdError as exc:
            raise ValueError(str(exc)) from exc
        fmt = "<4sI8Q"
        if len(data) < struct.calcsize(fmt):
            raise ValueError("too short")
        magic, n, *lengths = struct.unpack_from(fmt, data)
        if magic != _LISTING_MAGIC:
            raise ValueError("not a packed listing")
        parts, pos = [], struct.calcsize(fmt)
        for length in lengths:
            parts.append(data[pos : pos + length])
            pos += length
        if pos != len(data):
            raise ValueError("bad lengths")
        types_raw, names_raw, kinds, sizes, mtimes, contents, positions_raw, trees = parts
        names = bytes(names_raw).decode("utf-8", "surrogatepass").split("\0") if n else []
        positions = _from_le("I", positions_raw)
        if len(trees) != 32 * len(positions) or (positions and positions[-1] >= n):
            raise ValueError("bad subtrees")
        tree_bytes = bytes(trees)
        subtrees = {p: tree_bytes[32 * i : 32 * i + 32] for i, p in enumerate(positions)}
        if len(names) != n:
            raise ValueError("bad names")
        return Listing(
            names=names,
            types=bytes(types_raw).decode("utf-8", "surrogatepass").split("\0") if types_raw else [],
            kinds=bytes(kinds),
            sizes=_from_le("q", sizes),
            mtimes=_from_le("q", mtimes),
            contents=bytes(contents),
            subtrees=subtrees,
        )


# A tree blob is ``{"nodes":[...]}``: its nodes are decoded one at a time, and each node's dict is
# freed at once, so a folder of 100,000 entries leaves nothing for the garbage collector to walk
# and other threads (the window) run in between. Any other layout is read whole with json.loads.
_TREE_HEAD = re.compile(r'\s*\{\s*"nodes"\s*:\s*\[\s*')
_NODE_SEP = re.compile(r"\s*([,\]])\s*")
_TREE_TAIL = re.compile(r"\s*\}\s*")
_scan_node = cast(
    Callable[[str, int], tuple[Any, int]], json.scanner.make_scanner(cast(Any, json.JSONDecoder()))
)


class _OtherLayout(Exception):
    """The tree blob is valid JSON of another layout than the one streamed."""


def _streamed_nodes(text: str) -> Iterator[Any]:
    head = _TREE_HEAD.match(text)
    if head is None:
        raise _OtherLayout
    pos = head.end()
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            try:
                node, pos = _scan_node(text, pos)
            except StopIteration as exc:
                raise ValueError(f"not valid JSON at offset {exc.value}") from None
            yield node
            sep = _NODE_SEP.match(text, pos)
            if sep is None:
                raise ValueError(f"not valid JSON at offset {pos}")
            pos = sep.end()
            if sep.group(1) == "]":
                break
    if _TREE_TAIL.fullmatch(text, pos) is None:
        raise _OtherLayout


def _all_nodes(text: str) -> list[Any]:
    obj = json.loads(text)
    nodes = obj.get("nodes") or []
    if not isinstance(nodes, list):
        raise ValueError("nodes is not a list")
    return nodes


def _listing_of_nodes(nodes: Iterable[Any]) -> Listing:
    return _columns(map(_node_fields, nodes), times_parsed=False)


def _columns(
    rows: Iterable[tuple[str, str, int, Any, bytes | None, bytes | None]], *, times_parsed: bool
) -> Listing:
    """A listing of rows in :class:`Entry`'s order; their modification times are Unix
    nanoseconds when ``times_parsed``, else as a tree node writes them (parsed when needed)."""
    names: list[str] = []
    types: dict[str, int] = {}
    kinds = bytearray()
    sizes: list[int] = []
    times: list[Any] = []
    contents = bytearray()
    subtrees: dict[int, bytes] = {}
    for i, (name, typ, size, mtime, content, subtree) in enumerate(rows):
        names.append(name)
        kind = types.setdefault(typ, len(types))
        if content is not None:
            if len(content) != len(_NO_KEY):
                raise ValueError(f"a content key of {len(content)} bytes")
            kind |= _HAS_CONTENT
            contents += content
        else:
            contents += _NO_KEY
        if subtree is not None:
            kind |= _HAS_SUBTREE
            subtrees[i] = subtree
        kinds.append(kind)
        sizes.append(size)
        times.append(mtime)
    if len(types) > _TYPE_BITS + 1:
        raise ValueError("too many kinds of entries in one folder")
    return Listing(
        names=names,
        types=list(types),
        kinds=bytes(kinds),
        sizes=_int_column(sizes),
        mtimes=_int_column(times) if times_parsed else None,
        contents=bytes(contents),
        subtrees=subtrees,
        mtime_text=None if times_parsed else times,
    )


def decode_listing(data: bytes) -> Listing:
    """The entries of a tree blob as a :class:`Listing` (modification times parsed when first
    needed); ``CatalogError`` if the tree is damaged."""
    try:
        text = data.decode("utf-8")
        try:
            with _gc_paused():
                return _listing_of_nodes(_streamed_nodes(text))
        except _OtherLayout:
            return _listing_of_nodes(_all_nodes(text))
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError, OverflowError) as exc:
        raise _tree_error(exc) from exc


# --------------------------------------------------------------------------------------------
# Tree sources
# --------------------------------------------------------------------------------------------


class TreeSource(Protocol):
    def load_tree(self, tree_id: bytes, *, cancel: CancelToken = NEVER) -> Sequence[Entry]: ...

    def lookup(self, tree_id: bytes, name: str, *, cancel: CancelToken = NEVER) -> Entry | None: ...


class _ListingCache:
    """Recently read listings by tree ID, up to a number of entries in all; thread-safe. Trees are
    content-addressed, so a cached listing is never out of date."""

    def __init__(self, budget: int) -> None:
        self._items: OrderedDict[bytes, Listing] = OrderedDict()
        self._held = 0
        self._budget = budget
        self._lock = threading.Lock()

    def get(self, tree_id: bytes) -> Listing | None:
        with self._lock:
            hit = self._items.get(tree_id)
            if hit is not None:
                self._items.move_to_end(tree_id)
            return hit

    def put(self, tree_id: bytes, listing: Listing) -> None:
        if len(listing) > self._budget:
            return
        with self._lock:
            if tree_id in self._items:
                return
            self._items[tree_id] = listing
            self._held += len(listing)
            while self._held > self._budget:
                _, old = self._items.popitem(last=False)
                self._held -= len(old)


class RepositoryTrees:
    """Trees read from the repository (index loaded on first use), with a small cache; thread-safe.

    ``loads`` counts the tree blobs read and decoded.
    """

    def __init__(self, repo: Repository, *, cache_entries: int = 200_000) -> None:
        self.repo = repo
        self.loads = 0
        self._cache = _ListingCache(cache_entries)
        self._lock = threading.Lock()

    def load_listing(self, tree_id: bytes, *, cancel: CancelToken = NEVER) -> Listing:
        """The tree's entries as a :class:`Listing` (for a large folder, faster than :meth:`load_tree`)."""
        hit = self._cache.get(tree_id)
        if hit is not None:
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
        listing = decode_listing(data)
        with self._lock:
            self.loads += 1
        self._cache.put(tree_id, listing)
        return listing

    def load_tree(self, tree_id: bytes, *, cancel: CancelToken = NEVER) -> list[Entry]:
        return self.load_listing(tree_id, cancel=cancel).entries()

    def lookup(self, tree_id: bytes, name: str, *, cancel: CancelToken = NEVER) -> Entry | None:
        return self.load_listing(tree_id, cancel=cancel).find(name)


def load_listing(source: TreeSource, tree_id: bytes, *, cancel: CancelToken = NEVER) -> Listing:
    """The tree's entries as a :class:`Listing`, from any :class:`TreeSource`."""
    own = getattr(source, "load_listing", None)
    if own is not None:
        result = own(tree_id, cancel=cancel)
        if isinstance(result, Listing):
            return result
    loaded = source.load_tree(tree_id, cancel=cancel)
    return loaded if isinstance(loaded, Listing) else Listing.of(loaded)


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


def folder_listing(
    source: TreeSource, root: bytes, path: str = "/", *, cancel: CancelToken = NEVER
) -> Listing:
    """The entries of the folder ``path`` as a :class:`Listing`."""
    entry = resolve(source, root, path, cancel=cancel)
    if entry.type != "dir":
        raise NotAFolder(clean_path(path))
    if entry.subtree is None:
        return Listing.of(())
    return load_listing(source, entry.subtree, cancel=cancel)


def list_dir(source: TreeSource, root: bytes, path: str = "/", *, cancel: CancelToken = NEVER) -> list[Entry]:
    """The entries of the folder ``path`` in tree order."""
    return folder_listing(source, root, path, cancel=cancel).entries()


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
    listing BLOB             -- large trees: all entries packed, for fast listing (Listing.pack)
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


#: Trees with at least this many entries also keep a packed copy of them (``trees.listing``, a
#: :meth:`Listing.pack`): a folder of 100,000 entries loads from it in ~15 ms, against ~130 ms
#: from its rows.
LISTING_MIN_ENTRIES = 500


def _packed(entries: Sequence[Entry]) -> bytes | None:
    try:
        return (entries if isinstance(entries, Listing) else Listing.of(entries)).pack()
    except ValueError:  # too many kinds of entries: listed from the rows
        return None


class _IndexTrees:
    """A :class:`TreeSource` answering from the index (every tree below an indexed root is there)."""

    def __init__(self, conn: sqlite3.Connection, cache: _ListingCache | None = None) -> None:
        self.conn = conn
        self.cache = cache

    def load_listing(self, tree_id: bytes, *, cancel: CancelToken = NEVER) -> Listing:
        cancel.raise_if_cancelled()
        if self.cache is not None:
            hit = self.cache.get(tree_id)
            if hit is not None:
                return hit
        listing = self._read(tree_id)
        if self.cache is not None:
            self.cache.put(tree_id, listing)
        return listing

    def _read(self, tree_id: bytes) -> Listing:
        packed = self.conn.execute("SELECT listing FROM trees WHERE tree_id = ?", (tree_id,)).fetchone()
        if packed is not None and packed[0] is not None:
            try:
                return Listing.unpack(packed[0])
            except (ValueError, struct.error) as exc:
                log.warning("a packed listing in the catalog is unreadable (%s): reading its rows", exc)
        rows = self.conn.execute(_TREE_ENTRIES, (tree_id,)).fetchall()
        try:
            return Listing.of(Entry(os.fsdecode(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows)
        except (ValueError, TypeError) as exc:  # a damaged index: the caller rebuilds it
            raise sqlite3.DatabaseError(f"a damaged folder in the index: {exc}") from exc

    def load_tree(self, tree_id: bytes, *, cancel: CancelToken = NEVER) -> list[Entry]:
        return self.load_listing(tree_id, cancel=cancel).entries()

    def lookup(self, tree_id: bytes, name: str, *, cancel: CancelToken = NEVER) -> Entry | None:
        if self.cache is not None:
            hit = self.cache.get(tree_id)
            if hit is not None:
                return hit.find(name)
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

    Threads: one catalog may be used from several threads at once — say, the restore window's
    worker listing folders and searching while :meth:`update` indexes new snapshots in another.

    - Each thread has its own SQLite connection (made on its first call).
    - Every query method reads inside one read transaction, so it sees the index as it was when
      the method started, never half of an update. With the index in a file (write-ahead log),
      readers and the writer do not wait for each other: a new snapshot becomes visible to reads
      that start after its transaction commits.
    - Writes (each snapshot's transaction, dropping removed snapshots, rebuilding a damaged
      index) take the catalog's lock, so concurrent :meth:`update` calls take turns and a rebuild
      waits for the write in progress. An in-memory catalog cannot read while it writes: there,
      reads take the lock too and wait for the snapshot being indexed.
    - A connection is only ever closed by its own thread (after a rebuild, on its next use) or
      by :meth:`close`, which must be called when no other call is in progress.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str] | None,
        repo: Repository,
        *,
        trees: TreeSource | None = None,
        clock: Clock = SYSTEM_CLOCK,
        cache_entries: int = 300_000,
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
        self._lock = threading.RLock()  # writes; and reads of an in-memory index
        self._keepalive: sqlite3.Connection | None = None
        self._generation = 0
        self._listings = _ListingCache(cache_entries)  # listings read from the index
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
        """This thread's connection (a new one after a rebuild; the old one is closed here)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "generation", -1) != self._generation:
            if conn is not None:
                self._forget(conn)
            conn = self._connect()
            self._local.conn = conn
            self._local.generation = self._generation
            self._local.depth = 0
        return conn

    def _forget(self, conn: sqlite3.Connection) -> None:
        with self._conns_lock:
            if conn in self._conns:
                self._conns.remove(conn)
        if conn is not self._keepalive:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def close(self) -> None:
        """Close every connection (call it when no other call on the catalog is in progress)."""
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

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection inside one read transaction (nested calls share it)."""
        memory = self.path is None
        if memory:
            self._lock.acquire()
        try:
            conn = self._conn()
            depth: int = self._local.depth
            if depth == 0 and not conn.in_transaction:
                conn.execute("BEGIN")
            self._local.depth = depth + 1
            try:
                yield conn
            finally:
                self._local.depth = depth
                if depth == 0 and getattr(self._local, "conn", None) is conn and conn.in_transaction:
                    try:
                        conn.execute("COMMIT")
                    except sqlite3.Error:
                        pass
        finally:
            if memory:
                self._lock.release()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection inside a write transaction, holding the catalog's lock."""
        with self._lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")  # other processes: one writer at a time
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

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
        """Delete the index and start an empty one (after the write in progress, if any).

        This thread's connection is closed now; other threads' connections on their next use.
        """
        with self._lock:
            own: sqlite3.Connection | None = getattr(self._local, "conn", None)
            if own is not None:
                if own.in_transaction:
                    try:
                        own.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                self._forget(own)
                self._local.conn = None
            old_keepalive, self._keepalive = self._keepalive, None
            if old_keepalive is not None and old_keepalive is not own:
                self._forget(old_keepalive)
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
        """Index the repository's new snapshots and forget the removed ones.

        Each snapshot is indexed in its own transaction: queries in other threads go on meanwhile
        and see it once it is complete. Concurrent calls take turns.
        """
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
        with self._reading() as conn:
            indexed = {r[0] for r in conn.execute("SELECT id FROM snapshots")}
        current = {s.id for s in snaps}
        gone = indexed - current
        if gone:
            with self._writing() as conn:
                conn.executemany("DELETE FROM snapshots WHERE id = ?", ((i,) for i in gone))
                self._collect_garbage(conn)
        todo = [s for s in snaps if s.id not in indexed]
        throttle = Throttle(0.2, self.clock)
        counts = [0, 0]  # trees read, entries written
        added = 0
        progress.indexing(0, len(todo), 0)
        for i, snap in enumerate(todo):
            cancel.raise_if_cancelled()
            tick = functools.partial(self._report, progress, throttle, i, len(todo), counts)
            with self._writing() as conn:
                # another thread or program may have indexed it meanwhile
                if conn.execute("SELECT 1 FROM snapshots WHERE id = ?", (snap.id,)).fetchone():
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
                added += 1
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
        listing = _packed(entries) if len(entries) >= LISTING_MIN_ENTRIES else None
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

    @contextlib.contextmanager
    def _query(self) -> Iterator[sqlite3.Connection]:
        """A read transaction for one query method; a damaged index becomes a CatalogError."""
        try:
            with self._reading() as conn:
                yield conn
        except sqlite3.DatabaseError as exc:
            raise self._guard(exc) from exc

    def snapshots(self) -> list[SnapshotRef]:
        """The indexed snapshots, oldest first."""
        with self._query() as conn:
            rows = conn.execute(
                "SELECT s.id, s.time, t.tree_id, s.hostname, s.paths, s.tags FROM snapshots s "
                "JOIN trees t ON t.id = s.tree"
            ).fetchall()
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
        with self._query() as conn:
            row = conn.execute("SELECT 1 FROM snapshots WHERE id = ?", (snapshot_id,)).fetchone()
        return row is not None

    def _index_trees(self) -> _IndexTrees:
        return _IndexTrees(self._conn(), self._listings)

    def _source_for(self, *snaps: SnapshotRef) -> TreeSource:
        """The index if it holds all these snapshots, else the repository's trees (call it inside
        :meth:`_query`, and use the source there)."""
        if all(self.is_indexed(s.id) for s in snaps):
            return self._index_trees()
        return self.trees

    def listing(self, snapshot_id: str, path: str = "/", *, cancel: CancelToken = NEVER) -> Listing:
        """The folder ``path`` of a snapshot as a :class:`Listing`: for a view that shows part of a
        large folder; from the index, or from the tree blob if not indexed."""
        with self._query():
            snap = self.snapshot(snapshot_id)
            return folder_listing(self._source_for(snap), snap.tree, path, cancel=cancel)

    def list_dir(self, snapshot_id: str, path: str = "/", *, cancel: CancelToken = NEVER) -> list[Entry]:
        """The folder ``path`` of a snapshot: from the index, or from the tree blob if not indexed."""
        return self.listing(snapshot_id, path, cancel=cancel).entries()

    def list_dir_page(
        self, snapshot_id: str, path: str, offset: int, limit: int, *, cancel: CancelToken = NEVER
    ) -> list[Entry]:
        """At most ``limit`` entries of the folder ``path`` from position ``offset`` (name order);
        the folder is read once and kept for the next pages."""
        return self.listing(snapshot_id, path, cancel=cancel).page(offset, limit)

    def diff(self, snap_a: str, snap_b: str, *, cancel: CancelToken = NEVER) -> Diff:
        """What changed from the snapshot ``snap_a`` to ``snap_b`` (IDs, prefixes or ``latest``)."""
        with self._query():
            a, b = self.snapshot(snap_a), self.snapshot(snap_b)
            return diff_trees(self._source_for(a, b), a.tree, b.tree, cancel=cancel)

    def tree_totals(self, tree_id: bytes) -> tuple[int, int] | None:
        """(files, total size) below an indexed tree, or None."""
        with self._query() as conn:
            row = conn.execute("SELECT files, size FROM trees WHERE tree_id = ?", (tree_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    def versions(self, path: str, *, cancel: CancelToken = NEVER) -> list[Version]:
        """Every distinct version of the file or folder ``path`` across the indexed snapshots."""
        with self._query():
            found = versions_of(self._index_trees(), self.snapshots(), path, cancel=cancel)
            out = []
            for v in found:
                if v.type == "dir" and v.content is not None:
                    totals = self.tree_totals(v.content)
                    if totals is not None:
                        v = Version(v.type, totals[1], v.mtime_ns, v.content, v.snapshots)
                out.append(v)
            return out

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
        with self._query():
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
            return deleted_entries(self._source_for(chosen, *older), older, chosen, under, cancel=cancel)

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
        pat = _Pattern.parse(pattern)
        with self._query():
            return self._search(pat, snapshot_ids, limit, cancel)

    def _search(
        self, pat: _Pattern, snapshot_ids: Iterable[str] | None, limit: int | None, cancel: CancelToken
    ) -> list[FileVersions]:
        conn = self._conn()  # inside search's read transaction
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
        # the folders a tree is at, each with the chosen snapshots holding it there: a folder that
        # did not change is at the same path in every snapshot, and is matched once for all
        held_in: dict[int, list[tuple[str, list[SnapshotRef]]]] = {}
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
                places = held_in.get(tree)
                if places is None:
                    places = held_in[tree] = _holders_by_folder(paths.of(tree), roots)
                for folder, holders in places:
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


def _holders_by_folder(
    places: list[tuple[int, str]], roots: dict[int, list[SnapshotRef]]
) -> list[tuple[str, list[SnapshotRef]]]:
    """(root tree, folder) pairs grouped by folder, with the snapshots of those roots (none: left out)."""
    grouped: dict[str, list[SnapshotRef]] = {}
    for root, folder in places:
        holders = roots.get(root)
        if holders:
            grouped.setdefault(folder, []).extend(holders)
    return list(grouped.items())


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
