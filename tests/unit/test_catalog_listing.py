"""The catalog's folder listings (columns, the packed copy in the index, paging, the streaming tree
reader) and one catalog used from several threads while it is updated."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.core.format.keys import KDFParams
from safekeep.core.format.pack import BlobType
from safekeep.core.format.snapshot import Snapshot
from safekeep.core.format.tree import GoTime, Node, encode_tree
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.state import catalog as cat
from safekeep.state.catalog import (
    Catalog,
    CatalogError,
    Entry,
    Listing,
    RepositoryTrees,
    decode_entries,
    decode_listing,
    list_dir,
)
from safekeep.storage.providers.memory import MemoryBackend

CHEAP = KDFParams(16, 1, 1)
T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)

ODD_ENTRIES = [
    Entry("a.txt", "file", 5, 1_700_000_000_123_456_789, b"\x01" * 16, None),
    Entry("bad\udcffname", "file", 0, -5, b"\x02" * 16, None),
    Entry("dir", "dir", 0, 0, None, b"\x03" * 32),
    Entry("empty-dir", "dir", 0, 7, None, None),
    Entry("link", "symlink", 0, 8, b"\x04" * 16, None),
    Entry("pipe", "fifo", 0, 2**63 - 1, None, None),
    Entry("ünïcødé 名前", "irregular", 2**40, -(2**63), None, None),
    Entry("", "", 0, 0, None, None),
]


def _file_node(name: str, i: int) -> Node:
    t = GoTime(1_700_000_000_000_000_000 + i * 1_000_000_007, 3600)
    return Node(
        name=os.fsencode(name),
        type="file",
        mode=0o644,
        mtime=t,
        size=i,
        content=[hashlib.sha256(b"%d" % i).digest()],
    )


# ------------------------------------------------------------------------------------ Listing


def test_listing_keeps_every_field_and_packs_losslessly() -> None:
    listing = Listing.of(ODD_ENTRIES)
    assert len(listing) == len(ODD_ENTRIES)
    assert listing.entries() == ODD_ENTRIES
    assert list(listing) == ODD_ENTRIES
    assert [listing[i] for i in range(len(ODD_ENTRIES))] == ODD_ENTRIES
    assert listing[-1] == ODD_ENTRIES[-1]
    assert listing[2:5] == ODD_ENTRIES[2:5]
    assert listing[::-3] == ODD_ENTRIES[::-3]
    with pytest.raises(IndexError):
        listing[len(ODD_ENTRIES)]
    assert listing.find("dir") == ODD_ENTRIES[2]
    assert listing.find("nope") is None
    assert listing.names == [e.name for e in ODD_ENTRIES]

    packed = listing.pack()
    assert packed is not None
    again = Listing.unpack(packed)
    assert again.entries() == ODD_ENTRIES
    assert again[6] == ODD_ENTRIES[6]

    empty = Listing.of(())
    assert len(empty) == 0 and empty.entries() == [] and empty.page(0, 10) == []
    packed_empty = empty.pack()
    assert packed_empty is not None and Listing.unpack(packed_empty).entries() == []


def test_listing_pages() -> None:
    entries = [Entry(f"f{i:03d}", "file", i, i, bytes([i % 256]) * 16, None) for i in range(250)]
    listing = Listing.of(entries)
    pages = [listing.page(offset, 100) for offset in range(0, 300, 100)]
    assert [len(p) for p in pages] == [100, 100, 50]
    assert [e for p in pages for e in p] == entries
    assert listing.page(1000, 10) == []
    with pytest.raises(ValueError):
        listing.page(-1, 10)


def test_a_listing_that_cannot_be_packed_or_unpacked() -> None:
    assert Listing.of([Entry("nul\0name", "file", 0, 0, None, None)]).pack() is None
    assert Listing.of([Entry("huge", "file", 2**64, 0, None, None)]).pack() is None
    good = Listing.of(ODD_ENTRIES).pack()
    assert good is not None
    flipped = good[:40] + bytes([good[40] ^ 1]) + good[41:]  # the packed copy carries a checksum
    for damaged in (b"", b"\x00" * 20, good[:-3], flipped):
        with pytest.raises(ValueError):
            Listing.unpack(damaged)
    with pytest.raises(ValueError):
        Listing.of(Entry(f"n{i}", f"type{i}", 0, 0, None, None) for i in range(65))


# ------------------------------------------------------------------------------------ tree blobs


def test_decode_listing_reads_any_layout_of_the_tree_json() -> None:
    nodes = [_file_node(f"file{i}", i) for i in range(5)] + [
        Node(name=b"sub", type="dir", mode=0o755 | (1 << 31), subtree=b"\x09" * 32)
    ]
    data = encode_tree(nodes)
    expected = decode_listing(data).entries()
    assert [e.name for e in expected] == [*(f"file{i}" for i in range(5)), "sub"]
    obj = json.loads(data)
    layouts = [
        json.dumps(obj, indent=2).encode(),  # whitespace everywhere
        json.dumps({"nodes": obj["nodes"], "extra": 1}).encode(),  # another key after the nodes
        json.dumps({"extra": [1], "nodes": obj["nodes"]}).encode(),  # ... and before them
        b" \n" + data + b"\n\n",
    ]
    for layout in layouts:
        assert decode_listing(layout).entries() == expected
        assert decode_entries(layout) == expected
    assert decode_listing(b'{"nodes":[]}').entries() == []
    assert decode_listing(b'{"nodes": null}').entries() == []


@pytest.mark.parametrize(
    "blob",
    [
        b'{"nodes":[{"name":"a","type":"file"},',
        b'{"nodes":[{"name":"a","type":"file"} {"name":"b"}]}',
        b'{"nodes":[{"name":"a","type":"file"}]',
        b'{"nodes":[{"name":"a","type":"file"}]} trailing',
        b'{"nodes":[{"name":"a","type":7}]}',
        b'{"nodes":[{"name":"a","size":"big"}]}',
        b'{"nodes":{"name":"a"}}',
        b"\xff\xfe",
    ],
)
def test_decode_listing_reports_a_damaged_tree(blob: bytes) -> None:
    with pytest.raises(CatalogError, match="damaged"):
        decode_listing(blob)


def test_the_garbage_collector_is_back_on_after_bulk_work_and_errors() -> None:
    assert gc.isenabled()
    Listing.of(ODD_ENTRIES).entries()
    assert gc.isenabled()
    with pytest.raises(CatalogError):
        decode_listing(b'{"nodes":[{"name":"a"},{"name":5}]}')
    assert gc.isenabled()
    gc.disable()
    try:
        Listing.of(ODD_ENTRIES).entries()
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()


def test_a_damaged_modification_time_is_reported_when_it_is_read() -> None:
    listing = decode_listing(b'{"nodes":[{"name":"a","type":"file","mtime":"yesterday"},{"name":"b"}]}')
    assert listing.names == ["a", "b"]  # the names are there at once
    with pytest.raises(CatalogError, match="damaged"):
        listing[0]
    with pytest.raises(CatalogError, match="damaged"):
        listing.entries()


# ------------------------------------------------------------------------------------ the catalog


def _repo() -> Repository:
    return Repository.init(MemoryBackend(), "pw", options=RepositoryOptions(kdf=CHEAP))


def _snapshot(repo: Repository, files: Sequence[str], day: int, *, big: int = 0) -> str:
    big_tree = repo.save_blob(
        BlobType.TREE, encode_tree([_file_node(f"item{i:05d}.dat", i + day) for i in range(big)])
    ).id
    docs = repo.save_blob(
        BlobType.TREE, encode_tree(sorted((_file_node(f, day) for f in files), key=lambda n: n.name))
    ).id
    root = repo.save_blob(
        BlobType.TREE,
        encode_tree(
            [
                Node(name=b"big", type="dir", mode=0o755 | (1 << 31), subtree=big_tree),
                Node(name=b"docs", type="dir", mode=0o755 | (1 << 31), subtree=docs),
            ]
        ),
    ).id
    repo.flush()
    return repo.save_snapshot(Snapshot(time=T0 + timedelta(days=day), tree=root, paths=["/data"]))


@pytest.fixture
def repo() -> Iterator[Repository]:
    r = _repo()
    yield r
    r.close()


@pytest.mark.parametrize("indexed", [False, True])
def test_catalog_listing_and_pages_from_the_trees_and_from_the_index(repo: Repository, indexed: bool) -> None:
    n = cat.LISTING_MIN_ENTRIES + 123
    sid = _snapshot(repo, ["a.txt", "b.txt"], 0, big=n)
    expected = list_dir(RepositoryTrees(repo), repo.load_snapshot(sid).tree, "/big")
    assert len(expected) == n
    with Catalog(None, repo) as c:
        if indexed:
            c.update()
        assert c.is_indexed(sid) is indexed
        listing = c.listing(sid, "/big")
        assert len(listing) == n and listing.entries() == expected
        assert listing[n - 1] == expected[-1]
        assert c.list_dir(sid, "/big") == expected
        got: list[Entry] = []
        for offset in range(0, n + 100, 100):
            got.extend(c.list_dir_page(sid, "/big", offset, 100))
        assert got == expected
        assert c.list_dir_page(sid, "/big", n, 100) == []
        assert [e.name for e in c.list_dir_page(sid[:8], "/docs", 1, 5)] == ["b.txt"]
        assert [e.name for e in c.listing(sid, "/")] == ["big", "docs"]


def test_a_folder_listing_is_read_once_for_all_its_pages(repo: Repository, tmp_path: Path) -> None:
    sid = _snapshot(repo, ["a.txt"], 0, big=cat.LISTING_MIN_ENTRIES)

    class Reads:
        count = 0

    original = cat._IndexTrees._read

    def counting_read(self: cat._IndexTrees, tree_id: bytes) -> Listing:
        Reads.count += 1
        return original(self, tree_id)

    with Catalog(tmp_path / "c.sqlite", repo) as c:
        c.update()
        cat._IndexTrees._read = counting_read  # type: ignore[method-assign]
        try:
            first = c.list_dir_page(sid, "/big", 0, 10)
            after_first = Reads.count
            second = c.list_dir_page(sid, "/big", 10, 10)
        finally:
            cat._IndexTrees._read = original  # type: ignore[method-assign]
        assert after_first >= 1 and Reads.count == after_first  # the second page came from memory
        assert [e.name for e in first + second] == [f"item{i:05d}.dat" for i in range(20)]


def test_rows_are_used_when_a_large_folder_has_no_packed_copy(repo: Repository, tmp_path: Path) -> None:
    sid = _snapshot(repo, ["a.txt"], 0, big=cat.LISTING_MIN_ENTRIES + 1)
    expected = list_dir(RepositoryTrees(repo), repo.load_snapshot(sid).tree, "/big")
    path = tmp_path / "c.sqlite"
    with Catalog(path, repo) as c:
        c.update()
    db = sqlite3.connect(path)
    db.execute("UPDATE trees SET listing = NULL")
    db.commit()
    db.close()
    with Catalog(path, repo) as c:
        assert c.is_indexed(sid)
        assert c.list_dir(sid, "/big") == expected
        assert c.listing(sid, "/big").find("item00003.dat") == expected[3]


# ------------------------------------------------------------------------------------ threads


class _GatedTrees(RepositoryTrees):
    """Holds the indexing of the second snapshot's folder ``gate_tree`` until ``release`` is set."""

    def __init__(self, repo: Repository, gate_tree: bytes) -> None:
        super().__init__(repo)
        self.gate_tree = gate_tree
        self.reached = threading.Event()
        self.release = threading.Event()

    def load_tree(self, tree_id: bytes, *, cancel: CancelToken = NEVER) -> list[Entry]:
        if tree_id == self.gate_tree:
            self.reached.set()
            assert self.release.wait(60), "the reader did not finish"
        return super().load_tree(tree_id, cancel=cancel)


def _docs_tree(repo: Repository, sid: str) -> bytes:
    tree = cat.resolve(RepositoryTrees(repo), repo.load_snapshot(sid).tree, "/docs").subtree
    assert tree is not None
    return tree


def test_reads_go_on_while_a_snapshot_is_being_indexed(repo: Repository, tmp_path: Path) -> None:
    s1 = _snapshot(repo, ["budget.xlsx", "notes.txt"], 0)
    path = tmp_path / "c.sqlite"
    with Catalog(path, repo) as first:
        first.update()
    s2 = _snapshot(repo, ["budget.xlsx", "notes.txt", "plan.odt"], 1)
    trees = _GatedTrees(repo, _docs_tree(repo, s2))
    with Catalog(path, repo, trees=trees) as c:
        assert [s.id for s in c.snapshots()] == [s1]
        errors: list[BaseException] = []
        results: dict[str, object] = {}

        def index() -> None:
            try:
                results["update"] = c.update()
            except BaseException as exc:  # reported by the test below
                errors.append(exc)
                trees.reached.set()

        writer = threading.Thread(target=index)
        writer.start()
        assert trees.reached.wait(60)
        try:
            # the writer holds its transaction open: this thread reads what was committed before
            results["snapshots"] = [s.id for s in c.snapshots()]
            results["search"] = [(h.path, len(h.versions)) for h in c.search("*.odt")]
            results["list"] = [e.name for e in c.list_dir(s1, "/docs")]
            results["versions"] = len(c.versions("/docs/budget.xlsx"))
        finally:
            trees.release.set()
            writer.join(60)
        assert not errors
        assert results["snapshots"] == [s1]
        assert results["search"] == []
        assert results["list"] == ["budget.xlsx", "notes.txt"]
        assert results["versions"] == 1
        assert isinstance(results["update"], cat.UpdateResult) and results["update"].added == 1
        # once committed, the new snapshot is visible
        assert [s.id for s in c.snapshots()] == [s1, s2]
        assert [h.path for h in c.search("*.odt")] == ["/docs/plan.odt"]


@pytest.mark.parametrize("in_file", [True, False])
def test_one_catalog_used_by_readers_while_two_threads_update_it(
    repo: Repository, tmp_path: Path, in_file: bool
) -> None:
    ids = [_snapshot(repo, [f"doc{j}.txt" for j in range(i + 1)], i, big=20) for i in range(8)]
    errors: list[BaseException] = []
    seen: list[tuple[int, int]] = []
    done = threading.Event()
    with Catalog(tmp_path / "c.sqlite" if in_file else None, repo) as c:

        def update() -> None:
            try:
                c.update()
            except BaseException as exc:  # reported by the test below
                errors.append(exc)

        def read() -> None:
            try:
                while True:
                    finished = done.is_set()
                    snaps = c.snapshots()
                    hits = c.search("doc*.txt", limit=None)
                    holders = {s.id for h in hits for v in h.versions for s in v.snapshots}
                    assert holders <= {s.id for s in c.snapshots()}
                    for s in snaps:
                        names = [e.name for e in c.list_dir(s.id, "/docs")]
                        assert names == [f"doc{j}.txt" for j in range(ids.index(s.id) + 1)]
                    seen.append((len(snaps), len(hits)))
                    if finished:
                        return
            except BaseException as exc:  # reported by the test below
                errors.append(exc)

        readers = [threading.Thread(target=read) for _ in range(2)]
        writers = [threading.Thread(target=update) for _ in range(2)]
        for t in readers + writers:
            t.start()
        for t in writers:
            t.join(120)
        done.set()
        for t in readers:
            t.join(120)
        assert not errors, errors
        assert [s.id for s in c.snapshots()] == ids  # each indexed once, by one of the writers
        assert seen and seen[-1] == (8, 8)


def test_a_rebuilt_index_replaces_other_threads_connections(repo: Repository, tmp_path: Path) -> None:
    sid = _snapshot(repo, ["a.txt"], 0)
    with Catalog(tmp_path / "c.sqlite", repo) as c, ThreadPoolExecutor(max_workers=1) as worker:
        c.update()
        assert [s.id for s in worker.submit(c.snapshots).result()] == [sid]
        c._reset()  # what a damaged index leads to, here in the main thread
        assert worker.submit(c.snapshots).result() == []  # the worker's old connection was replaced
        c.update()
        listed = worker.submit(c.list_dir, sid, "/docs").result()
        assert [e.name for e in listed] == ["a.txt"]


def test_a_damaged_folder_in_the_index_resets_it(repo: Repository, tmp_path: Path) -> None:
    sid = _snapshot(repo, ["a.txt", "b.txt"], 0)
    path = tmp_path / "c.sqlite"
    with Catalog(path, repo) as c:
        c.update()
    db = sqlite3.connect(path)
    db.execute("UPDATE entries SET content = x'01' WHERE content IS NOT NULL")
    db.commit()
    db.close()
    with Catalog(path, repo) as c:
        with pytest.raises(CatalogError, match="damaged and has been reset"):
            c.list_dir(sid, "/docs")
        assert c.snapshots() == []
        c.update()
        assert [e.name for e in c.list_dir(sid, "/docs")] == ["a.txt", "b.txt"]
