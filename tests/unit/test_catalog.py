"""The snapshot catalog: the pure tree functions on trees built in memory, and the SQLite index
on a real repository in memory (trees and snapshots written with the core API)."""

from __future__ import annotations

import copy
import hashlib
import os
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.clock import FakeClock
from safekeep.common.errors import Cancelled
from safekeep.core.format.keys import KDFParams
from safekeep.core.format.pack import BlobType
from safekeep.core.format.snapshot import Snapshot
from safekeep.core.format.tree import GoTime, Node, decode_tree, encode_tree
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.state import catalog as cat
from safekeep.state.catalog import (
    Catalog,
    CatalogError,
    Entry,
    Listing,
    NotAFolder,
    NotInSnapshot,
    RepositoryTrees,
    SnapshotRef,
    content_key,
    decode_entries,
    deleted_entries,
    diff_trees,
    list_dir,
    resolve,
    versions_of,
    walk_entries,
)
from safekeep.storage.base import FileType
from safekeep.storage.providers.memory import MemoryBackend

CHEAP = KDFParams(16, 1, 1)
T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)

# A tree spec: name -> bytes (a file), (bytes, mtime seconds) (a file with its mtime), dict (a folder),
# or ("->", target) (a symlink).
Spec = Mapping[str, Any]


def _node(name: str, value: Any, save: Any) -> Node:
    if isinstance(value, dict):
        return Node(name=os.fsencode(name), type="dir", mode=0o755 | (1 << 31), subtree=save(value))
    if isinstance(value, tuple) and value[0] == "->":
        return Node(name=os.fsencode(name), type="symlink", mode=0o777 | (1 << 27), linktarget=value[1])
    data, mtime = value if isinstance(value, tuple) else (value, 1_700_000_000)
    return Node(
        name=os.fsencode(name),
        type="file",
        mode=0o644,
        mtime=GoTime(mtime * 1_000_000_000 + 123, 3600),
        size=len(data),
        content=[hashlib.sha256(data).digest()] if data else [],
    )


class BlobTrees:
    """Tree blobs in a dict, read with the catalog's reader; counts loads."""

    def __init__(self) -> None:
        self.blobs: dict[bytes, bytes] = {}
        self.loads: list[bytes] = []

    def add(self, spec: Spec) -> bytes:
        nodes = sorted((_node(n, v, self.add) for n, v in spec.items()), key=lambda n: n.name)
        data = encode_tree(nodes)
        tid = hashlib.sha256(data).digest()
        self.blobs[tid] = data
        return tid

    def load_tree(self, tree_id: bytes, *, cancel: CancelToken = NEVER) -> Sequence[Entry]:
        cancel.raise_if_cancelled()
        self.loads.append(tree_id)
        return decode_entries(self.blobs[tree_id])

    def lookup(self, tree_id: bytes, name: str, *, cancel: CancelToken = NEVER) -> Entry | None:
        return next((e for e in self.load_tree(tree_id, cancel=cancel) if e.name == name), None)


def _snap(i: int, tree: bytes, *, host: str = "pc", paths: tuple[str, ...] = ("/data",)) -> SnapshotRef:
    return SnapshotRef(f"{i:02d}" + "ab" * 31, T0 + timedelta(days=i), tree, host, paths)


BASE: dict[str, Any] = {
    "docs": {
        "budget-2025.xlsx": b"budget 2025",
        "Budget-2026.XLSX": b"budget 2026",
        "letter.odt": b"dear all",
        "old": {"notes.txt": b"old notes", "deep": {"a.txt": b"a"}},
    },
    "photos": {"cat.jpg": b"\xff\xd8 cat"},
    "readme.txt": b"hello",
    "link": ("->", b"readme.txt"),
}


def _changed(base: dict[str, Any], changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A deep copy of ``base`` with changes ``{"a/b.txt": value}``; a value of None deletes."""
    out = copy.deepcopy(base)
    for path, value in (changes or {}).items():
        parts = path.split("/")
        d = out
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        if value is None:
            d.pop(parts[-1], None)
        else:
            d[parts[-1]] = value
    return out


# ------------------------------------------------------------------------------------ reader


def test_decode_entries_agrees_with_the_full_tree_decoder() -> None:
    nodes = [
        Node(
            name=b"bad\xffname",
            type="file",
            mtime=GoTime(5_000_000_001, -7200),
            size=3,
            content=[b"\x01" * 32],
        ),
        Node(name=b'quote"and\\slash', type="file", mtime=GoTime(0, 0), size=0, content=[]),
        Node(name=b"sub", type="dir", mtime=GoTime(1_700_000_000_000_000_000, 0), subtree=b"\x02" * 32),
        Node(name=b"tab\tname", type="symlink", linktarget=b"target\xfe"),
        Node(name="ünïcødé".encode(), type="fifo", mtime=GoTime(-62135596800 * 10**9, 0)),
    ]
    data = encode_tree(sorted(nodes, key=lambda n: n.name))
    full = decode_tree(data)
    fast = decode_entries(data)
    assert [e.name for e in fast] == [os.fsdecode(n.name) for n in full]
    assert [e.mtime_ns for e in fast] == [max(n.mtime.ns, -(2**63)) for n in full]
    assert [e.type for e in fast] == [n.type for n in full]
    assert [e.size for e in fast] == [n.size for n in full]
    assert [e.subtree for e in fast] == [n.subtree for n in full]
    by_name = {e.name: e for e in fast}
    assert by_name[os.fsdecode(b"bad\xffname")].content == content_key([b"\x01" * 32])
    assert by_name['quote"and\\slash'].content == content_key([])  # an empty file has a key
    assert by_name["sub"].content is None
    assert by_name["tab\tname"].content is not None


def test_decode_entries_reports_a_damaged_tree() -> None:
    with pytest.raises(CatalogError, match="damaged"):
        decode_entries(b'{"nodes":[{"name":1}]}')
    with pytest.raises(CatalogError):
        decode_entries(b"not json")


# ------------------------------------------------------------------------------------ pure functions


def test_resolve_and_list_dir() -> None:
    trees = BlobTrees()
    root = trees.add(BASE)
    assert [e.name for e in list_dir(trees, root, "/")] == ["docs", "link", "photos", "readme.txt"]
    assert [e.name for e in list_dir(trees, root, "docs/")] == [
        "Budget-2026.XLSX",
        "budget-2025.xlsx",
        "letter.odt",
        "old",
    ]
    e = resolve(trees, root, "/docs/old/deep/a.txt")
    assert (e.type, e.size) == ("file", 1)
    assert resolve(trees, root, "/").subtree == root
    with pytest.raises(NotInSnapshot):
        resolve(trees, root, "/docs/missing.txt")
    with pytest.raises(NotInSnapshot):
        resolve(trees, root, "/readme.txt/below")
    with pytest.raises(NotAFolder):
        list_dir(trees, root, "/readme.txt")
    paths = [p for p, _ in walk_entries(trees, root)]
    assert paths[:3] == ["/docs", "/docs/Budget-2026.XLSX", "/docs/budget-2025.xlsx"]
    assert "/docs/old/deep/a.txt" in paths and len(paths) == 12


def test_diff_trees_reports_added_removed_changed_and_skips_identical_subtrees() -> None:
    trees = BlobTrees()
    a = trees.add(BASE)
    after = _changed(BASE)
    after["docs"]["letter.odt"] = b"dear all, again"  # content changed
    after["docs"]["budget-2025.xlsx"] = (b"budget 2025", 1_800_000_000)  # only touched
    del after["docs"]["old"]  # a folder removed with its contents
    after["new"] = {"x.txt": b"x", "y": {"z.txt": b"z"}}  # a folder added with its contents
    after["readme.txt"] = {"inside.txt": b"now a folder"}  # a file replaced by a folder
    b = trees.add(after)
    trees.loads.clear()
    d = diff_trees(trees, a, b)
    assert [c.path for c in d.added] == [
        "/new",
        "/new/x.txt",
        "/new/y",
        "/new/y/z.txt",
        "/readme.txt",
        "/readme.txt/inside.txt",
    ]
    assert [c.path for c in d.removed] == [
        "/docs/old",
        "/docs/old/deep",
        "/docs/old/deep/a.txt",
        "/docs/old/notes.txt",
        "/readme.txt",
    ]
    assert [c.path for c in d.changed] == ["/docs/budget-2025.xlsx", "/docs/letter.odt"]
    changed = {c.path: c for c in d.changed}
    assert changed["/docs/letter.odt"].content_changed
    assert not changed["/docs/budget-2025.xlsx"].content_changed
    assert all(c.before is None and c.after is not None for c in d.added)
    photos = resolve(trees, a, "/photos").subtree
    assert photos not in trees.loads  # the same subtree in both: never read
    assert diff_trees(trees, a, a) == cat.Diff((), (), ())


def test_versions_of_groups_identical_states() -> None:
    trees = BlobTrees()
    s1 = trees.add(BASE)
    s2 = trees.add(_changed(BASE, {"photos/dog.jpg": b"dog"}))  # the letter unchanged
    v3 = _changed(BASE)
    v3["docs"]["letter.odt"] = b"dear all, v2"
    s3 = trees.add(v3)
    s4 = trees.add(_changed(v3, {"docs/letter.odt": None}))  # gone
    s5 = trees.add(BASE)  # back to the first version
    snaps = [_snap(i, t) for i, t in enumerate([s1, s2, s3, s4, s5])]
    vs = versions_of(trees, list(reversed(snaps)), "/docs/letter.odt")
    assert [[s.id for s in v.snapshots] for v in vs] == [
        [snaps[0].id, snaps[1].id, snaps[4].id],
        [snaps[2].id],
    ]
    assert vs[0].first == snaps[0] and vs[0].last == snaps[4]
    assert [v.size for v in vs] == [8, 12]
    folder = versions_of(trees, snaps, "/docs")
    assert [len(v.snapshots) for v in folder] == [3, 1, 1]
    assert versions_of(trees, snaps, "/nowhere") == []


def test_deleted_entries_names_the_newest_snapshot_that_had_each_path() -> None:
    trees = BlobTrees()
    s1 = trees.add(_changed(BASE, {"docs/draft.txt": b"draft"}))
    s2 = trees.add(_changed(BASE, {"docs/draft.txt": b"draft v2"}))
    s3 = trees.add(_changed(BASE, {"docs/old": None, "photos/cat.jpg": None}))
    snaps = [_snap(i, t) for i, t in enumerate([s1, s2, s3])]
    found = deleted_entries(trees, snaps[:2], snaps[2])
    assert {d.path: d.last_snapshot.id for d in found} == {
        "/docs/draft.txt": snaps[1].id,
        "/docs/old": snaps[1].id,
        "/docs/old/deep": snaps[1].id,
        "/docs/old/deep/a.txt": snaps[1].id,
        "/docs/old/notes.txt": snaps[1].id,
        "/photos/cat.jpg": snaps[1].id,
    }
    draft = next(d for d in found if d.path == "/docs/draft.txt")
    assert draft.entry.size == len(b"draft v2")  # as last seen
    under = deleted_entries(trees, snaps[:2], snaps[2], "/photos")
    assert [d.path for d in under] == ["/photos/cat.jpg"]
    assert deleted_entries(trees, snaps[:2], snaps[2], "/nowhere") == []
    # a whole folder gone below "under"
    assert [d.path for d in deleted_entries(trees, snaps[:2], snaps[2], "/docs/old/deep")] == [
        "/docs/old/deep",
        "/docs/old/deep/a.txt",
    ]


def test_deleted_entries_does_not_compare_the_same_subtrees_twice() -> None:
    trees = BlobTrees()
    gone = {f"f{i}.txt": b"%d" % i for i in range(5)}
    older = [trees.add(_changed(BASE, {"archive": gone})) for _ in range(4)]  # identical trees
    latest = trees.add(BASE)
    snaps = [_snap(i, t) for i, t in enumerate([*older, latest])]
    trees.loads.clear()
    found = deleted_entries(trees, snaps[:4], snaps[4])
    assert len(found) == 6 and {d.last_snapshot.id for d in found} == {snaps[3].id}
    archive = resolve(trees, older[0], "/archive").subtree
    assert trees.loads.count(archive) == 1


def test_pattern_parsing() -> None:
    p = cat._Pattern.parse("Budget*.XLSX")
    assert p.name_glob == "budget*.xlsx" and p.path_regex is None
    p = cat._Pattern.parse("/data/*/budget*.xlsx")
    assert p.path_regex is not None and p.name_glob == "budget*.xlsx"
    assert p.path_regex.match("/data/docs/budget-1.xlsx")
    assert not p.path_regex.match("/data/docs/sub/budget-1.xlsx")
    p = cat._Pattern.parse("docs/**/a.txt")
    assert p.path_regex is not None
    assert p.path_regex.match("/x/docs/a.txt") and p.path_regex.match("/docs/old/deep/a.txt")
    assert not p.path_regex.match("/xdocs/a.txt")
    with pytest.raises(CatalogError):
        cat._Pattern.parse("  ")


# ------------------------------------------------------------------------------------ the index


class RepoBuilder:
    """Writes trees and snapshots into a real (in-memory) repository."""

    def __init__(self) -> None:
        self.repo = Repository.init(MemoryBackend(), "pw", options=RepositoryOptions(kdf=CHEAP))

    def tree(self, spec: Spec) -> bytes:
        def save(sub: Spec) -> bytes:
            nodes = sorted((_node(n, v, save) for n, v in sub.items()), key=lambda n: n.name)
            for v in sub.values():
                if isinstance(v, bytes) or (isinstance(v, tuple) and v[0] != "->"):
                    data = v if isinstance(v, bytes) else v[0]
                    if data:
                        self.repo.save_blob(BlobType.DATA, data)
            return self.repo.save_blob(BlobType.TREE, encode_tree(nodes)).id

        return save(spec)

    def snapshot(self, spec: Spec, day: int, *, host: str = "pc") -> str:
        tree = self.tree(spec)
        self.repo.flush()
        snap = Snapshot(time=T0 + timedelta(days=day), tree=tree, paths=["/data"], hostname=host)
        return self.repo.save_snapshot(snap)


class CountingTrees(RepositoryTrees):
    def __init__(self, repo: Repository) -> None:
        super().__init__(repo, cache_entries=0)
        self.read: list[bytes] = []

    def load_listing(self, tree_id: bytes, *, cancel: CancelToken = NEVER) -> Listing:
        self.read.append(tree_id)
        return super().load_listing(tree_id, cancel=cancel)


@pytest.fixture
def built() -> RepoBuilder:
    b = RepoBuilder()
    yield b
    b.repo.close()


def test_catalog_search_versions_deleted_and_list_dir(built: RepoBuilder, tmp_path: Path) -> None:
    v2 = _changed(BASE, {"docs/budget-2025.xlsx": None})
    v2["docs"]["budget-2025.xlsx"] = b"budget 2025, revised"
    v3 = _changed(v2, {"photos": None})
    ids = [built.snapshot(BASE, 0), built.snapshot(v2, 1), built.snapshot(v3, 2)]
    with Catalog(tmp_path / "c.sqlite", built.repo) as c:
        r = c.update()
        assert (r.added, r.removed) == (3, 0)
        assert [s.id for s in c.snapshots()] == ids

        hits = c.search("budget*.xlsx")
        assert [h.path for h in hits] == ["/docs/budget-2025.xlsx", "/docs/Budget-2026.XLSX"]
        b25 = hits[0]
        assert [[s.id for s in v.snapshots] for v in b25.versions] == [[ids[0]], [ids[1], ids[2]]]
        assert [v.size for v in b25.versions] == [11, 20]
        assert [len(h.versions[0].snapshots) for h in c.search("*2026*")] == [3]
        assert [h.path for h in c.search("*.JPG")] == ["/photos/cat.jpg"]
        assert [h.path for h in c.search("/docs/*/a.txt")] == []
        assert [h.path for h in c.search("docs/**/a.txt")] == ["/docs/old/deep/a.txt"]
        assert [h.path for h in c.search("old")] == ["/docs/old"]
        assert c.search("old")[0].versions[0].size == len(b"old notes") + 1  # folder: total size
        assert [h.path for h in c.search("*", limit=2)] == ["/docs/old/deep/a.txt", "/docs/budget-2025.xlsx"]
        assert [h.path for h in c.search("cat.jpg", snapshot_ids=[ids[2][:10]])] == []
        only_first = c.search("budget-2025.xlsx", snapshot_ids=[ids[0]])
        assert [len(h.versions) for h in only_first] == [1]
        with pytest.raises(CatalogError, match="no indexed"):
            c.search("x", snapshot_ids=["ffff"])

        vs = c.versions("/docs/budget-2025.xlsx")
        assert [v.first.id for v in vs] == [ids[0], ids[1]] and vs[1].last.id == ids[2]
        assert [len(v.snapshots) for v in c.versions("/docs/letter.odt")] == [3]
        assert [v.size for v in c.versions("/docs/old")] == [10]

        assert [d.path for d in c.deleted()] == ["/photos", "/photos/cat.jpg"]
        assert [d.last_snapshot.id for d in c.deleted()] == [ids[1], ids[1]]
        assert c.deleted(ids[1]) == []

        listed = c.list_dir(ids[0], "/docs")
        assert listed == list_dir(RepositoryTrees(built.repo), built.repo.load_snapshot(ids[0]).tree, "/docs")
        d = c.diff(ids[0], "latest")
        assert [x.path for x in d.removed] == ["/photos", "/photos/cat.jpg"]
        assert [x.path for x in d.changed] == ["/docs/budget-2025.xlsx"]


def test_catalog_is_incremental_and_follows_removed_snapshots(built: RepoBuilder, tmp_path: Path) -> None:
    big = {f"dir{i}": {f"file{j}.txt": b"%d-%d" % (i, j) for j in range(5)} for i in range(20)}
    first = built.snapshot({"data": big}, 0)
    counting = CountingTrees(built.repo)
    progress: list[tuple[int, int, int]] = []

    class Sink:
        def indexing(self, done: int, total: int, entries: int) -> None:
            progress.append((done, total, entries))

    clock = FakeClock()
    with Catalog(tmp_path / "c.sqlite", built.repo, trees=counting, clock=clock) as c:
        r1 = c.update(progress=Sink())
        assert r1.trees_read == len(counting.read) == 22  # root, data, 20 folders
        assert progress[0] == (0, 1, 0) and progress[-1] == (1, 1, 121)
        changed = {**big, "dir7": {**big["dir7"], "file0.txt": b"changed"}}
        second = built.snapshot({"data": changed}, 1)
        counting.read.clear()
        r2 = c.update()
        assert r2.added == 1 and r2.trees_read == 3  # only root, data and dir7 are new
        assert len(counting.read) == 3
        assert c.update().added == 0 and len(counting.read) == 3  # nothing new: nothing read

        assert [len(v.snapshots) for v in c.versions("/data/dir7/file0.txt")] == [1, 1]
        db = sqlite3.connect(tmp_path / "c.sqlite")
        trees_before = db.execute("SELECT count(*) FROM trees").fetchone()[0]
        built.repo.remove_files(FileType.SNAPSHOT, [first])
        r3 = c.update()
        assert (r3.added, r3.removed) == (0, 1)
        assert [s.id for s in c.snapshots()] == [second]
        assert [len(v.snapshots) for v in c.versions("/data/dir7/file0.txt")] == [1]
        assert db.execute("SELECT count(*) FROM trees").fetchone()[0] == trees_before - 3
        names = {r[0] for r in db.execute("SELECT raw FROM names")}
        assert b"file0.txt" in names
        db.close()


def test_catalog_rebuilds_when_deleted_corrupt_or_of_another_format(
    built: RepoBuilder, tmp_path: Path
) -> None:
    built.snapshot(BASE, 0)
    path = tmp_path / "catalog" / "c.sqlite"
    with Catalog(path, built.repo) as c:
        c.update()
        assert len(c.search("*.txt")) == 3
    path.unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    with Catalog(path, built.repo) as c:
        assert c.snapshots() == []
        assert c.update().added == 1
    path.write_bytes(b"this is not a database, " * 1000)
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    with Catalog(path, built.repo) as c:
        assert c.update().added == 1
        assert len(c.search("*.txt")) == 3
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 999")
    db.commit()
    db.close()
    with Catalog(path, built.repo) as c:
        assert c.snapshots() == []
        assert c.update().added == 1
    other = RepoBuilder()
    try:
        with Catalog(path, other.repo) as c:  # another repository's catalog in this file
            assert c.snapshots() == []
    finally:
        other.repo.close()


def test_catalog_in_memory_and_list_before_indexing(built: RepoBuilder) -> None:
    sid = built.snapshot(BASE, 0)
    counting = CountingTrees(built.repo)
    with Catalog(None, built.repo, trees=counting) as c:
        assert [e.name for e in c.list_dir(sid[:8], "/photos")] == ["cat.jpg"]  # from the trees
        assert counting.read
        c.update()
        counting.read.clear()
        assert [e.name for e in c.list_dir(sid, "/photos")] == ["cat.jpg"]  # from the index
        assert counting.read == []
        with pytest.raises(NotInSnapshot):
            c.list_dir(sid, "/nope")


def test_catalog_update_can_be_cancelled_and_resumed(built: RepoBuilder, tmp_path: Path) -> None:
    built.snapshot(BASE, 0)
    built.snapshot(_changed(BASE, {"extra": b"x"}), 1)
    token = CancelToken()

    class CancelAfterFirst:
        def indexing(self, done: int, total: int, entries: int) -> None:
            if done == 1:
                token.cancel()

    with Catalog(tmp_path / "c.sqlite", built.repo) as c:
        with pytest.raises(Cancelled):
            c.update(progress=CancelAfterFirst(), cancel=token)
        assert len(c.snapshots()) == 1
        assert c.update().added == 1


def test_catalog_path_is_keyed_by_repository_id(tmp_path: Path) -> None:
    assert cat.catalog_path(tmp_path, "ab" * 32) == tmp_path / "catalog" / f"{'ab' * 32}.sqlite"
    with pytest.raises(ValueError):
        cat.catalog_path(tmp_path, "../etc")


def test_damaged_tree_blob_is_a_catalog_error(built: RepoBuilder) -> None:
    tree = built.repo.save_blob(BlobType.TREE, b'{"nodes":[{"name":5}]}\n').id
    built.repo.flush()
    sid = built.repo.save_snapshot(Snapshot(time=T0, tree=tree, paths=["/x"]))
    with Catalog(None, built.repo) as c:
        with pytest.raises(CatalogError, match="damaged"):
            c.update()
        with pytest.raises(CatalogError):
            c.list_dir(sid)


def test_large_folders_list_from_their_packed_copy(built: RepoBuilder, tmp_path: Path) -> None:
    many = {f"file{i:04d}.txt": b"%d" % i for i in range(cat.LISTING_MIN_ENTRIES + 10)}
    sid = built.snapshot({"many": many, "few": {"a.txt": b"a"}}, 0)
    tree = built.repo.load_snapshot(sid).tree
    expected = list_dir(RepositoryTrees(built.repo), tree, "/many")
    path = tmp_path / "c.sqlite"
    with Catalog(path, built.repo) as c:
        c.update()
        assert c.list_dir(sid, "/many") == expected
        db = sqlite3.connect(path)
        packed = db.execute("SELECT count(*) FROM trees WHERE listing IS NOT NULL").fetchone()[0]
        assert packed == 1  # only the large folder
        db.execute("UPDATE trees SET listing = x'00' WHERE listing IS NOT NULL")  # damaged: rows are used
        db.commit()
        db.close()
        assert c.list_dir(sid, "/many") == expected
