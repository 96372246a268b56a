"""Check: is everything a snapshot needs present and intact?

Structure (always):
- every index file loads; every pack the index names exists with a size that fits its blobs;
- every snapshot loads; every tree reachable from a snapshot loads, decrypts and matches its ID;
  every data blob a file needs is in the index.
Packs that no index mentions are reported as warnings (left by an interrupted backup; harmless).

Data (``read_data`` or ``read_data_subset``): packs are read in parallel (one per core or
connection), each streamed front to back — a local pack in segments of whole blobs (a few MiB,
so memory stays small), a remote one in one request: the pack's SHA-256 (hashed as it streams)
must equal its name, its header must decrypt and agree with the index, and every blob must pass
its MAC, decompress and match its ID. A damaged pack is reported together with the files (snapshot
and path) that use its blobs.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import os
import random
import re
import threading
from dataclasses import dataclass, field

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.errors import Cancelled, SafekeepError, UsageError
from safekeep.common.progress import NULL_PROGRESS, Progress, ProgressSink, Throttle
from safekeep.core.format.index import decode_index
from safekeep.core.format.pack import BlobType, PackedBlob, PackFormatError, parse_trailer, read_header
from safekeep.core.format.tree import Node, decode_tree
from safekeep.core.repository import Repository
from safekeep.storage.base import FileType, Handle

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CheckOptions:
    read_data: bool = False
    read_data_subset: str | None = None  # "10%" or "n/t" (the n-th of t groups)
    seed: int | None = None  # for a reproducible percentage subset


@dataclass(slots=True)
class CheckProblem:
    kind: str  # "index", "pack", "snapshot", "tree", "blob"
    message: str
    pack: str = ""
    snapshot: str = ""
    paths: list[str] = field(default_factory=list)


@dataclass(slots=True)
class CheckResult:
    errors: list[CheckProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    snapshots: int = 0
    trees: int = 0
    blobs: int = 0
    packs_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


LOCAL_SEGMENT = 4 * 1024 * 1024
"""Bytes of a local pack read at once by ``check --read-data`` (whole blobs; a larger blob alone)."""


def _segments(blobs: list[PackedBlob], size: int, segment: int) -> list[tuple[int, int, list[PackedBlob]]]:
    """Consecutive ranges ``(start, end, blobs)`` that cover a pack of ``size`` bytes whose
    ``blobs`` (sorted by offset) lie wholly in their range; the last range ends at ``size``.
    ``segment`` 0, or blobs that overlap or run past the end (a damaged pack or index): one range."""
    pos = 0
    for b in blobs:
        if b.offset < pos or b.offset + b.length > size:
            return [(0, size, blobs)]
        pos = b.offset + b.length
    if segment <= 0 or size <= segment:
        return [(0, size, blobs)]
    out: list[tuple[int, int, list[PackedBlob]]] = []
    start = 0
    group: list[PackedBlob] = []
    for b in blobs:
        end = b.offset + b.length
        if group and end - start > segment:
            cut = group[-1].offset + group[-1].length
            out.append((start, cut, group))
            start, group = cut, []
        group.append(b)
    if group and size - start > segment:
        cut = group[-1].offset + group[-1].length
        out.append((start, cut, group))
        start, group = cut, []
    out.append((start, size, group))
    return out


def select_subset(pack_ids: list[str], subset: str, seed: int | None = None) -> list[str]:
    """The packs to read for ``--read-data-subset`` (``N%`` random, or ``n/t`` by ID group)."""
    text = subset.strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)%", text)
    if m:
        pct = float(m.group(1))
        if not 0 < pct <= 100:
            raise UsageError("--read-data-subset: the percentage must be between 0 and 100.")
        count = max(1, round(len(pack_ids) * pct / 100)) if pack_ids else 0
        return random.Random(seed).sample(sorted(pack_ids), count)
    m = re.fullmatch(r"(\d+)/(\d+)", text)
    if m:
        n, t = int(m.group(1)), int(m.group(2))
        if not 1 <= n <= t:
            raise UsageError("--read-data-subset n/t needs 1 <= n <= t.")
        return [p for p in pack_ids if int(p[:2], 16) % t == n - 1]
    raise UsageError(f"--read-data-subset: {subset!r} is not 'N%' or 'n/t'.")


class Checker:
    def __init__(
        self,
        repo: Repository,
        options: CheckOptions | None = None,
        *,
        progress: ProgressSink = NULL_PROGRESS,
        cancel: CancelToken = NEVER,
    ) -> None:
        self.repo = repo
        self.options = options or CheckOptions()
        self.progress = progress
        self.cancel = cancel
        self.result = CheckResult()
        self._lock = threading.Lock()
        self._throttle = Throttle(0.25)
        self._bad_blobs: dict[bytes, str] = {}  # blob id -> pack

    def run(self) -> CheckResult:
        repo, res = self.repo, self.result
        snapshot_names = [i.name for i in repo.backend.list(FileType.SNAPSHOT, cancel=self.cancel)]
        pack_sizes = {i.name: i.size for i in repo.backend.list(FileType.PACK, cancel=self.cancel)}
        self._load_index()
        by_pack = repo.index.by_pack()
        for pack_id, blobs in by_pack.items():
            size = pack_sizes.get(pack_id)
            if size is None:
                self._problem("pack", f"pack {pack_id[:16]} is in the index but missing", pack=pack_id)
                self._mark_bad(pack_id, blobs)
            elif blobs and blobs[-1].offset + blobs[-1].length > size:
                self._problem("pack", f"pack {pack_id[:16]} is truncated ({size} bytes)", pack=pack_id)
                self._mark_bad(pack_id, blobs)
        for pack_id in sorted(set(pack_sizes) - set(by_pack)):
            res.warnings.append(
                f"pack {pack_id[:16]} is not referenced by any index (left by an interrupted backup; "
                "harmless, 'prune' removes it)"
            )
        if self.options.read_data or self.options.read_data_subset:
            packs = sorted(set(by_pack) & set(pack_sizes))
            if self.options.read_data_subset:
                packs = select_subset(packs, self.options.read_data_subset, self.options.seed)
            self._read_packs(packs, by_pack, pack_sizes)
        self._check_snapshots(snapshot_names)
        self._report("done")
        return res

    # ------------------------------------------------------------------ structure

    def _problem(
        self, kind: str, message: str, *, pack: str = "", snapshot: str = "", paths: list[str] | None = None
    ) -> CheckProblem:
        p = CheckProblem(kind, message, pack, snapshot, list(paths or []))
        with self._lock:
            self.result.errors.append(p)
        return p

    def _mark_bad(self, pack_id: str, blobs: list[PackedBlob]) -> None:
        with self._lock:
            for b in blobs:
                self._bad_blobs[b.id] = pack_id

    def _load_index(self) -> None:
        for info in self.repo.backend.list(FileType.INDEX, cancel=self.cancel):
            self.cancel.raise_if_cancelled()
            try:
                raw = self.repo.load_unpacked(FileType.INDEX, info.name, cancel=self.cancel)
                for pack_id, blobs in decode_index(raw):
                    self.repo.index.add_pack(pack_id, blobs)
            except (SafekeepError, ValueError) as exc:
                if isinstance(exc, Cancelled):
                    raise
                self._problem("index", f"index {info.name[:16]} cannot be read: {exc}")

    def _check_snapshots(self, names: list[str]) -> None:
        seen_trees: set[bytes] = set()
        damaged_pack_paths: dict[str, CheckProblem] = {
            p.pack: p for p in self.result.errors if p.kind == "pack" and p.pack
        }
        for name in sorted(names):
            self.cancel.raise_if_cancelled()
            try:
                snap = self.repo.load_snapshot(name, cancel=self.cancel)
            except SafekeepError as exc:
                if isinstance(exc, Cancelled):
                    raise
                self._problem("snapshot", f"snapshot {name[:8]} cannot be read: {exc}", snapshot=name)
                continue
            self.result.snapshots += 1
            self._walk(snap.tree, "/", name, seen_trees, damaged_pack_paths)

    def _walk(
        self,
        tree_id: bytes,
        path: str,
        snap: str,
        seen: set[bytes],
        damaged: dict[str, CheckProblem],
    ) -> None:
        # Trees are revisited per snapshot only when they hold damaged blobs (to name the files).
        if tree_id in seen and not self._bad_blobs:
            return
        first_visit = tree_id not in seen
        seen.add(tree_id)
        if tree_id in self._bad_blobs:
            self._affected(damaged, self._bad_blobs[tree_id], snap, path)
            return
        if not self.repo.index.has(BlobType.TREE, tree_id):
            if first_visit:
                self._problem(
                    "tree", f"tree {tree_id.hex()[:16]} ({path}) is not in the index", snapshot=snap
                )
            return
        try:
            nodes = decode_tree(self.repo.load_blob(BlobType.TREE, tree_id, cancel=self.cancel))
        except (SafekeepError, ValueError) as exc:
            if isinstance(exc, Cancelled):
                raise
            if first_visit:
                pack = getattr(exc, "pack", "")
                self._problem(
                    "tree",
                    f"tree {tree_id.hex()[:16]} ({path}) is damaged: {exc}",
                    snapshot=snap,
                    pack=pack,
                    paths=[path],
                )
            return
        if first_visit:
            self.result.trees += 1
        self._report("snapshots")
        for node in nodes:
            child = path.rstrip("/") + "/" + os.fsdecode(node.name)
            if node.type == "dir":
                if node.subtree is None:
                    if first_visit:
                        self._problem("tree", f"folder {child} has no subtree", snapshot=snap)
                    continue
                self._walk(node.subtree, child, snap, seen, damaged)
            elif node.type == "file":
                self._file(node, child, snap, first_visit, damaged)

    def _file(
        self, node: Node, path: str, snap: str, first_visit: bool, damaged: dict[str, CheckProblem]
    ) -> None:
        for blob_id in node.content or []:
            bad_pack = self._bad_blobs.get(blob_id)
            if bad_pack is not None:
                self._affected(damaged, bad_pack, snap, path)
            elif first_visit:
                self.result.blobs += 1
                if not self.repo.index.has(BlobType.DATA, blob_id):
                    self._problem(
                        "blob",
                        f"{path}: data blob {blob_id.hex()[:16]} is missing",
                        snapshot=snap,
                        paths=[path],
                    )

    def _affected(self, damaged: dict[str, CheckProblem], pack: str, snap: str, path: str) -> None:
        problem = damaged.get(pack)
        if problem is None:
            problem = self._problem("pack", f"pack {pack[:16]} is damaged", pack=pack)
            damaged[pack] = problem
        entry = f"{snap[:8]}:{path}"
        if entry not in problem.paths:
            problem.paths.append(entry)

    # ------------------------------------------------------------------ data

    def _read_packs(
        self, packs: list[str], by_pack: dict[str, list[PackedBlob]], sizes: dict[str, int]
    ) -> None:
        total = len(packs)
        workers = max(2, self.repo.backend.properties.connections)
        # local files are read in segments, which keeps memory small; a remote pack in one request
        segment = LOCAL_SEGMENT if self.repo.backend.properties.is_local else 0
        with concurrent.futures.ThreadPoolExecutor(workers, "safekeep-check") as ex:
            pending: set[concurrent.futures.Future[None]] = set()
            try:
                for p in packs:
                    if len(pending) >= 2 * workers:  # submit as workers free up: bounded memory
                        done, pending = concurrent.futures.wait(
                            pending, return_when=concurrent.futures.FIRST_COMPLETED
                        )
                        self._collect(done, total)
                    pending.add(ex.submit(self._read_pack, p, by_pack[p], sizes[p], segment))
                self._collect(pending, total, wait=True)
            except BaseException:
                for f in pending:
                    f.cancel()
                raise

    def _collect(self, futures: set[concurrent.futures.Future[None]], total: int, wait: bool = False) -> None:
        done = concurrent.futures.as_completed(futures) if wait else futures
        for f in done:
            f.result()
            with self._lock:
                self.result.packs_read += 1
            self._report("read-data", done=self.result.packs_read, total=total)

    def _read_pack(self, pack_id: str, indexed: list[PackedBlob], size: int, segment: int) -> None:
        """Stream one pack: its SHA-256 must match its name, its header must agree with the index
        and every indexed blob must open (MAC, decompression, ID)."""
        self.cancel.raise_if_cancelled()
        h = Handle(FileType.PACK, pack_id)
        blobs = sorted(indexed, key=lambda b: b.offset)
        problems: list[str] = []
        bad: list[PackedBlob] = []
        hasher = hashlib.sha256()
        tail = b""
        try:
            for start, end, group in _segments(blobs, size, segment):
                self.cancel.raise_if_cancelled()
                data = self.repo.backend.load(h, start, end - start, cancel=self.cancel)
                hasher.update(data)
                view = memoryview(data)
                for blob in group:
                    lo = blob.offset - start
                    try:
                        self.repo.open_blob(pack_id, blob, view[lo : lo + blob.length])
                    except SafekeepError:
                        bad.append(blob)
                if end >= size:
                    tail = data
                del view, data
        except SafekeepError as exc:
            if isinstance(exc, Cancelled):
                raise
            self._problem("pack", f"pack {pack_id[:16]} cannot be read: {exc}", pack=pack_id)
            self._mark_bad(pack_id, indexed)
            return
        if hasher.hexdigest() != pack_id:
            problems.append("its content does not match its name")
        try:
            hlen = parse_trailer(bytes(tail[-4:]), size)
            if hlen + 4 <= len(tail):
                sealed_header = bytes(tail[len(tail) - 4 - hlen : len(tail) - 4])
            else:  # the header begins before the last segment (only in a malformed pack)
                sealed_header = self.repo.backend.load(h, size - 4 - hlen, hlen, cancel=self.cancel)
            header = read_header(self.repo.key, sealed_header, data_end=size - 4 - hlen)
            want = {(b.id, b.offset, b.length, b.uncompressed_length, b.type) for b in indexed}
            have = {(b.id, b.offset, b.length, b.uncompressed_length, b.type) for b in header}
            if not want <= have:
                problems.append("its header disagrees with the index")
        except PackFormatError as exc:
            problems.append(str(exc))
        except SafekeepError as exc:
            if isinstance(exc, Cancelled):
                raise
            problems.append(f"its header cannot be read: {exc}")
        if bad:
            problems.append(f"{len(bad)} of its {len(indexed)} blobs are damaged")
        if problems:
            self._problem("pack", f"pack {pack_id[:16]} is damaged: " + "; ".join(problems), pack=pack_id)
            self._mark_bad(pack_id, bad or indexed)

    def _report(self, phase: str, done: int = 0, total: int = -1) -> None:
        if phase != "done" and not self._throttle.ready():
            return
        self.progress.progress(
            Progress(phase=phase, files_done=done, files_total=total, errors=len(self.result.errors))
        )


def check(
    repo: Repository,
    options: CheckOptions | None = None,
    *,
    progress: ProgressSink = NULL_PROGRESS,
    cancel: CancelToken = NEVER,
) -> CheckResult:
    return Checker(repo, options, progress=progress, cancel=cancel).run()
