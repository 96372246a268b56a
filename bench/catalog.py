"""Benchmark the snapshot catalog: ``python -m bench.catalog --files 1000000 --snapshots 30 --work DIR``.

The repository is made synthetically with the core API, not by backing up files on disk (which
would take hours for a million files): a deterministic file list is kept in memory, each
snapshot's folders are encoded with :func:`~safekeep.core.format.tree.encode_tree` and stored
with :meth:`Repository.save_blob` — exactly the tree blobs a backup writes, deduplicated the
same way, so an unchanged folder is the same tree in every snapshot — and a snapshot is saved
pointing at the root. File *contents* are not stored: each file node carries the ID of a data
blob that is never written, because the catalog reads trees only. (``restic check`` would
therefore report missing data blobs; the repository is for this benchmark only.)

Layout of the tree: ``/data/big`` holds ``--big-folder`` files (100,000 by default); the other
files are spread over 30 department folders of 30 project folders each. Names are office-like
(``budget-2024-0193.xlsx``, ``minutes-...docx``). Between snapshots about 0.1 % of the files change
(content and mtime), 100 are added and 50 deleted, in ~20 random project folders; the big
folder changes in every tenth snapshot. The repository is reused when ``--work`` already holds
one made with the same parameters.

Measured (wall time; the repository is on the local disk):

- opening: the repository (cheap scrypt parameters, so the key derivation is not measured),
  its index and the snapshot list; then the latest snapshot's root folder. The same again in a
  fresh Python process, from nothing to the root folder listed, without a catalog and then with
  the catalog built (process start and imports included in the total);
- the big folder straight from its tree blob (what the restore window does before the index
  exists) and from the index: as a :class:`~safekeep.state.catalog.Listing` (what a view that
  shows part of it needs), one page of 100 entries, and all its entries made (``list_dir``).
  "stall" is the longest a thread waking every millisecond was kept waiting meanwhile: how long
  a window whose worker thread does this would freeze;
- building the index for all snapshots, its size on disk, and one incremental update after a
  new snapshot;
- searching across all snapshots for several patterns (median of 3 runs), plus ``versions``,
  ``deleted`` and ``diff``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any, TypeVar

from safekeep.core.format.keys import KDFParams
from safekeep.core.format.pack import BlobType
from safekeep.core.format.snapshot import Snapshot
from safekeep.core.format.tree import MODE_DIR, GoTime, Node, decode_tree, encode_tree
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.state.catalog import DEFAULT_SEARCH_LIMIT, Catalog, RepositoryTrees, folder_listing, list_dir
from safekeep.storage.base import FileType
from safekeep.storage.compose import open_backend

PASSWORD = "bench-password"
CHEAP = KDFParams(1024, 8, 1)
T0 = datetime(2025, 1, 1, 18, 0, tzinfo=UTC)
DEPTS, PROJECTS = 30, 30
WORDS = [
    "budget", "invoice", "minutes", "report", "agenda", "payroll", "receipt", "grant", "member",
    "donation", "schedule", "letter", "contract", "inventory", "order", "photo", "scan", "notes",
]  # fmt: skip
EXTS = [".xlsx", ".docx", ".pdf", ".jpg", ".txt", ".odt", ".csv", ".png"]
T = TypeVar("T")

# a file: (name, size, mtime seconds, content seed)
File = tuple[str, int, int, int]


class Model:
    """The synthetic file tree and how it evolves, reproducible from a seed."""

    def __init__(self, files: int, big: int, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.counter = 0
        self.big: list[File] = [self._new() for _ in range(big)]
        rest = max(0, files - big)
        self.folders: dict[tuple[int, int], list[File]] = {}
        for d in range(DEPTS):
            for p in range(PROJECTS):
                share = rest // (DEPTS * PROJECTS) + (
                    1 if d * PROJECTS + p < rest % (DEPTS * PROJECTS) else 0
                )
                self.folders[(d, p)] = [self._new() for _ in range(share)]
        self.big_dirty = True
        self.dirty: set[tuple[int, int]] = set(self.folders)

    def _new(self) -> File:
        self.counter += 1
        word = self.rng.choice(WORDS)
        name = f"{word}-{2015 + self.counter % 11}-{self.counter:07d}{self.rng.choice(EXTS)}"
        return (name, self.rng.randint(1_000, 5_000_000), 1_600_000_000 + self.counter, self.counter)

    def evolve(self, step: int) -> None:
        """Change ~0.1 % of the files, add 100 and delete 50, in ~20 random project folders."""
        keys = self.rng.sample(sorted(self.folders), 20)
        total = sum(len(v) for v in self.folders.values()) + len(self.big)
        per_folder = max(1, total // 1000 // 20)
        for key in keys:
            files = self.folders[key]
            for _ in range(min(per_folder, len(files))):
                i = self.rng.randrange(len(files))
                name, _, _, _ = files[i]
                self.counter += 1
                files[i] = (
                    name,
                    self.rng.randint(1_000, 5_000_000),
                    1_700_000_000 + self.counter,
                    self.counter,
                )
            files.extend(self._new() for _ in range(5))
            for _ in range(min(2, len(files))):
                files.pop(self.rng.randrange(len(files)))
            self.dirty.add(key)
        if step % 10 == 0 and self.big:
            for _ in range(100):
                i = self.rng.randrange(len(self.big))
                name, _, _, _ = self.big[i]
                self.counter += 1
                self.big[i] = (
                    name,
                    self.rng.randint(1_000, 5_000_000),
                    1_700_000_000 + self.counter,
                    self.counter,
                )
            self.big_dirty = True


def _file_node(f: File) -> Node:
    name, size, mtime, seed = f
    t = GoTime(mtime * 1_000_000_000 + 123_456_789, 3600)
    return Node(
        name=name.encode(),
        type="file",
        mode=0o644,
        mtime=t,
        atime=t,
        ctime=t,
        uid=1000,
        gid=1000,
        user="office",
        group="office",
        inode=seed,
        device_id=2049,
        size=size,
        links=1,
        content=[sha256(b"%d" % seed).digest()],
    )


def _dir_node(name: str, subtree: bytes) -> Node:
    t = GoTime(1_600_000_000 * 1_000_000_000, 3600)
    return Node(
        name=name.encode(), type="dir", mode=MODE_DIR | 0o755, mtime=t, atime=t, ctime=t, uid=1000, gid=1000,
        user="office", group="office", subtree=subtree,
    )  # fmt: skip


class Writer:
    """Writes the model's trees, re-encoding only folders that changed."""

    def __init__(self, repo: Repository, model: Model) -> None:
        self.repo = repo
        self.model = model
        self.tree_ids: dict[Any, bytes] = {}

    def tree(self, nodes: list[Node]) -> bytes:
        nodes.sort(key=lambda n: n.name)
        return self.repo.save_blob(BlobType.TREE, encode_tree(nodes)).id

    def snapshot(self, when: datetime) -> str:
        m = self.model
        for key in m.dirty:
            self.tree_ids[key] = self.tree([_file_node(f) for f in m.folders[key]])
        if m.big_dirty:
            self.tree_ids["big"] = self.tree([_file_node(f) for f in m.big])
        m.dirty.clear()
        m.big_dirty = False
        depts = []
        for d in range(DEPTS):
            projects = [_dir_node(f"project{p:02d}", self.tree_ids[(d, p)]) for p in range(PROJECTS)]
            depts.append(_dir_node(f"dept{d:02d}", self.tree(projects)))
        data = self.tree([_dir_node("big", self.tree_ids["big"]), *depts])
        root = self.tree([_dir_node("data", data)])
        self.repo.flush()
        snap = Snapshot(time=when, tree=root, paths=["/data"], hostname="office-pc", username="office")
        return self.repo.save_snapshot(snap)


def _touch_one_file(repo: Repository, tree: bytes, path: list[str]) -> bytes:
    """Rewrite the trees from ``tree`` down ``path`` with the first file there changed; the new root."""
    nodes = decode_tree(repo.load_blob(BlobType.TREE, tree))
    if not path:
        first = next(i for i, n in enumerate(nodes) if n.type == "file")
        nodes[first].content = [sha256(b"changed").digest()]
        nodes[first].mtime = GoTime(1_800_000_000 * 1_000_000_000, 3600)
    else:
        i = next(i for i, n in enumerate(nodes) if n.name == path[0].encode())
        sub = nodes[i].subtree
        assert sub is not None
        nodes[i].subtree = _touch_one_file(repo, sub, path[1:])
    new = repo.save_blob(BlobType.TREE, encode_tree(nodes)).id
    repo.flush()
    return new


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median_time(fn: Callable[[], T], runs: int = 3) -> tuple[float, T]:
    times, result = [], None
    for _ in range(runs):
        t, result = timed(fn)
        times.append(t)
    assert result is not None
    return statistics.median(times), result


def build(work: Path, files: int, snapshots: int, big: int) -> tuple[Path, float]:
    repo_dir = work / "repo"
    marker = work / "params.json"
    params = {"files": files, "snapshots": snapshots, "big": big, "layout": 1}
    if repo_dir.exists() and marker.exists() and json.loads(marker.read_text()) == params:
        print(f"reusing the repository in {repo_dir}")
        return repo_dir, 0.0
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    print(f"writing {snapshots} snapshots of {files:,} files into {repo_dir} ...", flush=True)
    start = time.perf_counter()
    repo = Repository.init(open_backend(str(repo_dir)), PASSWORD, options=RepositoryOptions(kdf=CHEAP))
    model = Model(files, big)
    writer = Writer(repo, model)
    for i in range(snapshots):
        if i:
            model.evolve(i)
        writer.snapshot(T0 + timedelta(days=i))
        if i % 10 == 0 or i == snapshots - 1:
            print(f"  snapshot {i + 1}/{snapshots} ({time.perf_counter() - start:.0f} s)", flush=True)
    repo.close()
    marker.write_text(json.dumps(params))
    return repo_dir, time.perf_counter() - start


class StallMeter:
    """The longest time a thread that wakes every millisecond was kept waiting: how long a window's
    event loop would freeze while this process works in another thread (Python runs one thread at
    a time, and one long call into C keeps the others out)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now

    def __enter__(self) -> StallMeter:
        self._thread.start()
        time.sleep(0.02)
        self.longest = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def stall_of(fn: Callable[[], object]) -> float:
    """The worst stall (see :class:`StallMeter`) over 3 runs of ``fn``."""
    worst = 0.0
    for _ in range(3):
        with StallMeter() as meter:
            fn()
        worst = max(worst, meter.longest)
    return worst


def open_in_fresh_process(work: Path, with_catalog: bool) -> dict[str, float]:
    """Time a new Python process taking a snapshot from nothing to its root folder listed (the
    total includes starting Python and importing Safekeep; the phases are measured inside)."""
    start = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.catalog",
            "--work",
            str(work),
            "--open-child",
            "catalog" if with_catalog else "trees",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout
    phases: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    phases["total"] = time.perf_counter() - start
    return phases


def open_child(work: Path, mode: str) -> int:
    """The child of :func:`open_in_fresh_process`: prints the phases' times as JSON."""
    phases: dict[str, float] = {}
    t, repo = timed(
        lambda: Repository.open(
            open_backend(str(work / "repo")), PASSWORD, options=RepositoryOptions(kdf=CHEAP)
        )
    )
    phases["open repository"] = t
    if mode == "catalog":
        t, catalog = timed(lambda: Catalog(work / "catalog.sqlite", repo))
        phases["open catalog"] = t
        t, latest = timed(lambda: catalog.snapshot("latest"))
        phases["latest snapshot (index)"] = t
        indexed = catalog.is_indexed(latest.id)
        t, root = timed(lambda: catalog.listing(latest.id, "/data"))
        phases["list /data"] = t
        if not indexed:
            raise SystemExit("the catalog does not hold the latest snapshot")
    else:
        phases["load repository index"], _ = timed(repo.load_index)
        t, snaps = timed(repo.list_snapshots)
        phases["list snapshots"] = t
        trees = RepositoryTrees(repo)
        t, root = timed(lambda: folder_listing(trees, snaps[-1].tree, "/data"))
        phases["list /data"] = t
    assert len(root) > 0
    print(json.dumps(phases))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.catalog", description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--snapshots", type=int, default=30)
    ap.add_argument("--big-folder", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=Path("bench/out/catalog"))
    ap.add_argument("--open-child", choices=["catalog", "trees"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    work: Path = args.work.resolve()
    if args.open_child:
        return open_child(work, args.open_child)
    big = min(args.big_folder, args.files)
    repo_dir, build_time = build(work, args.files, args.snapshots, big)
    rows: list[tuple[str, float, str]] = []

    def row(what: str, seconds: float, note: str = "") -> None:
        rows.append((what, seconds, note))
        print(f"  {what}: {seconds * 1000:.0f} ms {note}", flush=True)

    t_open, repo = timed(
        lambda: Repository.open(open_backend(str(repo_dir)), PASSWORD, options=RepositoryOptions(kdf=CHEAP))
    )
    t_index, _ = timed(repo.load_index)
    t_snaps, snaps = timed(repo.list_snapshots)
    latest = snaps[-1]
    trees = RepositoryTrees(repo, cache_entries=0)
    t_root, root = timed(lambda: list_dir(trees, latest.tree, "/data"))
    row("open repository (key, config)", t_open, "(cheap test scrypt)")
    row("load repository index", t_index, f"({len(repo.index.pack_ids())} packs)")
    row("list snapshots", t_snaps, f"({len(snaps)} snapshots)")
    row("open latest snapshot: list /data", t_root, f"({len(root)} entries)")
    row("open snapshot total", t_open + t_index + t_snaps + t_root)
    fresh = open_in_fresh_process(work, with_catalog=False)
    row(
        "open latest snapshot, fresh process, no catalog",
        fresh["total"],
        "(" + ", ".join(f"{k} {v * 1000:.0f}" for k, v in fresh.items() if k != "total") + " ms)",
    )
    t_big_listing, big_listing = median_time(lambda: folder_listing(trees, latest.tree, "/data/big"))
    row(
        "listing of /data/big from the tree blob",
        t_big_listing,
        f"({len(big_listing):,} entries, median of 3; stall "
        f"{stall_of(lambda: folder_listing(trees, latest.tree, '/data/big')) * 1000:.0f} ms)",
    )
    t_big_tree, big_entries = median_time(lambda: list_dir(trees, latest.tree, "/data/big"))
    row(
        "list_dir /data/big from the tree blob",
        t_big_tree,
        f"(all {len(big_entries):,} entries made, median of 3; stall "
        f"{stall_of(lambda: list_dir(trees, latest.tree, '/data/big')) * 1000:.0f} ms)",
    )

    db = work / "catalog.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    catalog = Catalog(db, repo, cache_entries=0)  # no listing cache: every listing below is read
    t_build, result = timed(catalog.update)
    catalog._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = catalog.size_on_disk()
    row(
        "build the index (all snapshots)",
        t_build,
        f"({result.added} snapshots, {result.trees_read:,} trees read, {result.entries:,} entries written)",
    )
    fresh = open_in_fresh_process(work, with_catalog=True)
    row(
        "open latest snapshot, fresh process, warm catalog",
        fresh["total"],
        "(" + ", ".join(f"{k} {v * 1000:.0f}" for k, v in fresh.items() if k != "total") + " ms)",
    )
    t_listing, listing = median_time(lambda: catalog.listing(latest.id, "/data/big"))
    row(
        "listing of /data/big from the index",
        t_listing,
        f"({len(listing):,} entries, median of 3; stall "
        f"{stall_of(lambda: catalog.listing(latest.id, '/data/big')) * 1000:.0f} ms)",
    )
    middle = len(listing) // 2
    t_page, page = median_time(lambda: catalog.list_dir_page(latest.id, "/data/big", middle, 100))
    assert page == big_entries[middle : middle + 100]
    row(
        "list_dir_page /data/big, 100 entries from the middle", t_page, "(median of 3; folder read each time)"
    )
    t_big_index, from_index = median_time(lambda: catalog.list_dir(latest.id, "/data/big"))
    assert from_index == big_entries
    row(
        "list_dir /data/big from the index",
        t_big_index,
        f"(all {len(from_index):,} entries made, median of 3; stall "
        f"{stall_of(lambda: catalog.list_dir(latest.id, '/data/big')) * 1000:.0f} ms)",
    )

    searches: list[tuple[str, int | None]] = [
        ("budget-2020*.xlsx", DEFAULT_SEARCH_LIMIT),
        ("*minutes*", DEFAULT_SEARCH_LIMIT),
        ("*minutes*", None),
        ("*0123*", DEFAULT_SEARCH_LIMIT),
        ("*.pdf", DEFAULT_SEARCH_LIMIT),
        ("/data/dept07/**/invoice*", DEFAULT_SEARCH_LIMIT),
        (big_entries[len(big_entries) // 2].name, DEFAULT_SEARCH_LIMIT),
    ]
    for pattern, limit in searches:
        t_search, hits = median_time(lambda p=pattern, lim=limit: catalog.search(p, limit=lim))  # type: ignore[misc]
        versions = sum(len(h.versions) for h in hits)
        note = (
            f"({len(hits):,} paths, {versions:,} versions; {'limit ' + str(limit) if limit else 'no limit'})"
        )
        row(f"search {pattern!r}", t_search, note)
    _, many = timed(lambda: catalog.search("*minutes*", limit=2000))
    sample = max(many, key=lambda h: len(h.versions)).path if many else "/data"
    t_vers, vers = median_time(lambda: catalog.versions(sample))
    row("versions of one file", t_vers, f"({len(vers)} versions)")
    t_vers_big, vers_big = median_time(lambda: catalog.versions("/data/big"))
    row("versions of /data/big (folder)", t_vers_big, f"({len(vers_big)} versions)")
    t_del, deleted = timed(catalog.deleted)
    row("deleted files (latest vs all older)", t_del, f"({len(deleted):,} paths)")
    t_diff, diff = timed(lambda: catalog.diff(snaps[0].id, latest.id))
    row(
        "diff first..latest (from the index)",
        t_diff,
        f"(+{len(diff.added):,} -{len(diff.removed):,} ~{len(diff.changed):,})",
    )
    t_diff_tree, _ = timed(lambda: Catalog(None, repo).diff(snaps[0].id, latest.id))
    row("diff first..latest (from tree blobs)", t_diff_tree)

    # one more snapshot changing one file, then an incremental update
    t_noop, _ = timed(catalog.update)
    row("update with nothing new", t_noop)
    new_root = _touch_one_file(repo, latest.tree, ["data", "dept00", "project00"])
    extra = repo.save_snapshot(
        Snapshot(time=latest.time + timedelta(days=1), tree=new_root, paths=["/data"], hostname="office-pc")
    )
    t_incr, incr = timed(catalog.update)
    row("incremental update (1 new snapshot, 1 file changed)", t_incr, f"({incr.trees_read} trees read)")
    size_after = catalog.size_on_disk()
    repo.remove_files(FileType.SNAPSHOT, [extra])  # leave the repository as built, for the next run
    catalog.close()
    repo.close()

    print()
    print(f"catalog benchmark: {args.files:,} files per snapshot, {len(snaps)} snapshots, big folder {big:,}")
    if build_time:
        print(f"(writing the synthetic repository took {build_time:.0f} s)")
    head = f"{'measurement':58s} {'time':>10s}  notes"
    print(head)
    print("-" * len(head))
    for what, seconds, note in rows:
        print(f"{what:58s} {seconds * 1000:8.0f} ms  {note}")
    print(
        f"{'index size on disk':58s} {size / 2**20:8.1f} MiB  "
        f"(after the extra snapshot {size_after / 2**20:.1f} MiB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
