"""Prune: free the space of data no snapshot needs any more.

After :mod:`safekeep.core.forget` removed snapshots, their packs still hold the blobs only those
snapshots used. Prune finds which blobs the remaining snapshots reach (every tree, every file's
data blobs), then for each pack:

- **kept**: every blob in it is used (or so little is unused that rewriting does not pay);
- **removed**: nothing in it is used (also packs no index mentions, left by an interrupted
  backup, and index entries whose pack file is gone and whose blobs nobody needs);
- **repacked**: partly used, and the unused space of the repository is above the tolerated
  share (``max_unused``, 5 % of the used size, restic's default). The packs with the most unused
  space are repacked first, until the unused space left is within the share. Their used blobs are
  read, verified (MAC and ID) and written into new packs.

A blob stored twice (two backups racing, an interrupted run) counts as used only once; its other
copies are unused space.

The order keeps the repository valid at every step, so an interruption or a cancel loses
nothing: (1) new packs are written and indexed; (2) the index files that mention packs about to
go are rewritten without them (new files first, then the old ones removed; the other index files
are left alone); (3) only then are packs removed. A snapshot that needs a blob the repository does
not have stops prune before anything changes. Storage that refuses a removal (an S3 Object Lock
that has not ended, a key without delete permission) is reported, not fatal: the file stays and a
later prune tries again.

The caller holds the repository's exclusive lock for the whole run.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, fields

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.progress import NULL_PROGRESS, Progress, ProgressSink, Throttle
from safekeep.core.crypto import OVERHEAD
from safekeep.core.errors import IntegrityError
from safekeep.core.format.index import BlobEntry, encode_index
from safekeep.core.format.pack import COMPRESSED_ENTRY_SIZE, ENTRY_SIZE, BlobType, PackedBlob
from safekeep.core.format.tree import decode_tree_lazy
from safekeep.core.index import MasterIndex
from safekeep.core.repository import INDEX_BLOBS_PER_FILE, Repository
from safekeep.storage.base import FileType, Handle
from safekeep.storage.errors import NotFound, PermissionDenied

log = logging.getLogger(__name__)

DEFAULT_MAX_UNUSED = 0.05
PACK_FRAMING = OVERHEAD + 4  # the sealed header's IV and MAC, and its length at the end


@dataclass(frozen=True, slots=True)
class PruneOptions:
    """``max_unused``: the share of the used size that may stay unused (0.05 = 5 %), so packs are
    not rewritten for a few stray blobs; 0 repacks every partly used pack. ``dry_run`` only
    works out what would happen; ``ignore_snapshots`` (IDs) are treated as already removed, for a
    dry run after a dry-run forget."""

    max_unused: float = DEFAULT_MAX_UNUSED
    dry_run: bool = False
    ignore_snapshots: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.max_unused < 0:
            raise ValueError("max_unused cannot be negative")


@dataclass(slots=True)
class PruneSummary:
    """What prune did (or, in a dry run, would do). Sizes are bytes of pack files."""

    snapshots: int = 0
    used_blobs: int = 0
    used_bytes: int = 0
    unused_bytes: int = 0  # before pruning
    packs_total: int = 0
    packs_kept: int = 0
    packs_removed: int = 0  # nothing in them was used (unreferenced packs included)
    packs_repacked: int = 0
    unreferenced_packs: int = 0  # in no index: left by interrupted backups
    blobs_repacked: int = 0
    bytes_repacked: int = 0  # sealed bytes copied into new packs
    bytes_removed: int = 0  # size of the packs removed and repacked
    index_files_rewritten: int = 0
    unused_bytes_after: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, why) the storage kept
    dry_run: bool = False

    @property
    def bytes_freed(self) -> int:
        """Storage space given back (packs removed minus the new packs' data)."""
        return max(0, self.bytes_removed - self.bytes_repacked)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["failed"] = [list(f) for f in self.failed]
        out["bytes_freed"] = self.bytes_freed
        return out


@dataclass(slots=True)
class _Pack:
    pack_id: str
    size: int  # the pack file's size; 0 when the file is missing
    blobs: list[PackedBlob]
    used: list[PackedBlob] = field(default_factory=list)  # the copies prune keeps

    @property
    def used_bytes(self) -> int:
        """The kept blobs with their header entries; the header's own framing counts as used
        while anything in the pack is."""
        return sum(b.length + _entry_size(b) for b in self.used)

    @property
    def unused_bytes(self) -> int:
        if not self.size:
            return 0
        if not self.used:
            return self.size
        return max(0, self.size - self.used_bytes - PACK_FRAMING)


def _entry_size(b: PackedBlob) -> int:
    return COMPRESSED_ENTRY_SIZE if b.uncompressed_length else ENTRY_SIZE


class Pruner:
    def __init__(
        self,
        repo: Repository,
        options: PruneOptions | None = None,
        *,
        progress: ProgressSink = NULL_PROGRESS,
        cancel: CancelToken = NEVER,
    ) -> None:
        self.repo = repo
        self.options = options or PruneOptions()
        self.progress = progress
        self.cancel = cancel
        self.summary = PruneSummary(dry_run=self.options.dry_run)
        self._throttle = Throttle(0.25)
        self._phase = ""

    # ------------------------------------------------------------------ reading

    def _index_files(self) -> dict[str, list[tuple[str, list[BlobEntry]]]]:
        names = sorted(i.name for i in self.repo.backend.list(FileType.INDEX, cancel=self.cancel))
        return dict(self.repo.read_index_files(names, cancel=self.cancel))

    def _used_blobs(self, index: MasterIndex) -> tuple[set[bytes], set[bytes]]:
        """(trees, data blobs) that the snapshots reach; each tree is read once."""
        repo, cancel = self.repo, self.cancel
        ignore = self.options.ignore_snapshots
        snaps = [s for s in repo.list_snapshots(cancel=cancel) if s.id not in ignore]
        self.summary.snapshots = len(snaps)
        trees: set[bytes] = set()
        data: set[bytes] = set()
        level = sorted({s.tree for s in snaps})
        trees.update(level)
        owner = {s.tree: s.id for s in snaps}

        def children(tree_id: bytes) -> tuple[list[bytes], list[bytes]]:
            cancel.raise_if_cancelled()
            if not index.has(BlobType.TREE, tree_id):
                raise IntegrityError(
                    f"Snapshot {owner.get(tree_id, '')[:8] or '?'} needs tree {tree_id.hex()[:16]}, which "
                    "the repository does not have. Prune stopped without changing anything.",
                    blob=tree_id.hex(),
                )
            nodes = decode_tree_lazy(repo.load_blob(BlobType.TREE, tree_id, cancel=cancel))
            subtrees: list[bytes] = []
            contents: list[bytes] = []
            for view in nodes.values():
                sub = view.subtree
                if sub is not None:
                    subtrees.append(sub)
                content = view.content
                if content:
                    contents.extend(content)
            return subtrees, contents

        workers = max(4, repo.backend.properties.connections)
        with concurrent.futures.ThreadPoolExecutor(workers, "safekeep-prune-trees") as ex:
            while level:
                nxt: list[bytes] = []
                for subtrees, contents in ex.map(children, level):
                    data.update(contents)
                    for t in subtrees:
                        if t not in trees:
                            trees.add(t)
                            nxt.append(t)
                    self._report("reading trees", len(trees))
                level = nxt
        return trees, data

    # ------------------------------------------------------------------ planning

    def _plan(
        self, files: dict[str, list[tuple[str, list[BlobEntry]]]], sizes: dict[str, int]
    ) -> tuple[dict[str, _Pack], set[str], set[str]]:
        """Every indexed pack with the copies prune keeps; the packs to remove and to repack."""
        s = self.summary
        packs: dict[str, _Pack] = {}
        for entries in files.values():
            for pack_id, blob_entries in entries:
                if pack_id not in packs:
                    blobs = [PackedBlob(t, i, o, n, u) for t, i, o, n, u in blob_entries]
                    packs[pack_id] = _Pack(pack_id, sizes.get(pack_id, 0), blobs)
        index = MasterIndex()  # the blobs in packs that exist; trees are read through it
        for p in packs.values():
            if p.size:
                index.add_pack(p.pack_id, p.blobs)
        self.repo.index, self.repo.index_loaded = index, True
        trees, data = self._used_blobs(index)
        wanted = (data, trees)  # indexed by BlobType
        missing = [b for b in data if not index.has(BlobType.DATA, b)]
        if missing:
            raise IntegrityError(
                f"{len(missing)} data blob(s) that snapshots need are missing from the repository "
                f"(e.g. {missing[0].hex()[:16]}). Prune stopped without changing anything.",
                blob=missing[0].hex(),
            )
        claimed: tuple[set[bytes], set[bytes]] = (set(), set())
        for pack_id in sorted(packs):  # each used blob is kept once: its copy in the first pack
            p = packs[pack_id]
            if not p.size:
                continue
            for b in p.blobs:
                if b.id in wanted[b.type] and b.id not in claimed[b.type]:
                    claimed[b.type].add(b.id)
                    p.used.append(b)
        s.used_blobs = len(claimed[0]) + len(claimed[1])
        s.packs_total = len(sizes)
        s.used_bytes = sum(p.used_bytes for p in packs.values())
        unreferenced = set(sizes) - set(packs)
        s.unreferenced_packs = len(unreferenced)
        s.unused_bytes = sum(p.unused_bytes for p in packs.values()) + sum(sizes[i] for i in unreferenced)

        # (an indexed pack whose file is gone is only dropped from the index: run() adds it)
        remove = {i for i, p in packs.items() if p.size and not p.used} | unreferenced
        partly = sorted(
            (p for p in packs.values() if p.used and p.unused_bytes),
            key=lambda p: (-p.unused_bytes / p.size, p.pack_id),
        )
        allowed = int(s.used_bytes * self.options.max_unused)
        left = sum(p.unused_bytes for p in partly)
        repack: set[str] = set()
        for p in partly:
            if left <= allowed:
                break
            repack.add(p.pack_id)
            left -= p.unused_bytes
        s.unused_bytes_after = left
        s.packs_removed = len(remove)
        s.packs_repacked = len(repack)
        s.packs_kept = len(sizes) - len((remove | repack) & set(sizes))
        s.bytes_removed = sum(sizes.get(i, 0) for i in remove | repack)
        kept_ids = {
            b.id for i, p in packs.items() if p.size and i not in remove and i not in repack for b in p.blobs
        }
        s.blobs_repacked = sum(1 for i in repack for b in packs[i].used if b.id not in kept_ids)
        s.bytes_repacked = sum(b.length for i in repack for b in packs[i].used if b.id not in kept_ids)
        return packs, remove, repack

    # ------------------------------------------------------------------ running

    def run(self) -> PruneSummary:
        repo, cancel, s = self.repo, self.cancel, self.summary
        self._report("reading index")
        sizes = {i.name: i.size for i in repo.backend.list(FileType.PACK, cancel=cancel)}
        files = self._index_files()
        packs, remove, repack = self._plan(files, sizes)
        drop = remove | repack | {i for i, p in packs.items() if not p.size}
        rewrite = sorted(name for name, entries in files.items() if any(pid in drop for pid, _ in entries))
        s.index_files_rewritten = len(rewrite)
        if self.options.dry_run or not drop:
            self._report("done")
            return s
        self._repack(packs, remove, repack)
        cancel.raise_if_cancelled()
        self._rewrite_index(files, rewrite, drop)
        self._remove(FileType.INDEX, rewrite)
        self._remove(FileType.PACK, sorted(remove | repack))
        self._report("done")
        return s

    def _repack(self, packs: dict[str, _Pack], remove: set[str], repack: set[str]) -> None:
        """Copy the used blobs of ``repack`` into new packs (written and indexed on return)."""
        if not repack:
            return
        repo, cancel = self.repo, self.cancel
        kept = MasterIndex()  # what stays where it is; save_blob skips only those
        for pack_id, p in packs.items():
            if p.size and pack_id not in remove and pack_id not in repack:
                kept.add_pack(pack_id, p.blobs)
        repo.index = kept
        repo.set_cancel(cancel)
        done = 0
        try:
            for pack_id in sorted(repack):
                cancel.raise_if_cancelled()
                todo = [b for b in packs[pack_id].used if not repo.has_blob(b.type, b.id)]
                if not todo:
                    continue
                start = min(b.offset for b in todo)
                end = max(b.offset + b.length for b in todo)
                body = repo.backend.load(Handle(FileType.PACK, pack_id), start, end - start, cancel=cancel)
                for b in todo:
                    sealed = body[b.offset - start : b.offset - start + b.length]
                    repo.save_blob(b.type, repo.open_blob(pack_id, b, sealed), blob_id=b.id)
                    done += 1
                    self._report("repacking", done, self.summary.blobs_repacked)
            repo.flush()
        except BaseException:
            repo.abandon()
            raise

    def _rewrite_index(
        self, files: dict[str, list[tuple[str, list[BlobEntry]]]], rewrite: list[str], drop: set[str]
    ) -> None:
        """New index files for the packs that stay, from the index files that mention dropped
        ones (a pack listed in several of them is written once)."""
        written: set[str] = set()
        batch: list[tuple[str, list[PackedBlob]]] = []
        count = 0
        for name in rewrite:
            for pack_id, entries in files[name]:
                if pack_id in drop or pack_id in written:
                    continue
                written.add(pack_id)
                batch.append((pack_id, [PackedBlob(t, i, o, n, u) for t, i, o, n, u in entries]))
                count += len(entries)
                if count >= INDEX_BLOBS_PER_FILE:
                    self.cancel.raise_if_cancelled()
                    self.repo.save_unpacked(FileType.INDEX, encode_index(batch), cancel=self.cancel)
                    batch, count = [], 0
        if batch:
            self.cancel.raise_if_cancelled()
            self.repo.save_unpacked(FileType.INDEX, encode_index(batch), cancel=self.cancel)

    def _remove(self, type: FileType, names: Iterable[str]) -> None:
        """Remove files; a refusal is recorded and the rest still go. Not cancelled part-way:
        each removal leaves the repository valid, and finishing them is quick."""
        names = list(names)
        for n, name in enumerate(names, 1):
            h = Handle(type, name)
            try:
                self.repo.remove_files(type, [name])
            except NotFound:
                pass
            except PermissionDenied as exc:
                self.summary.failed.append((h.path(), exc.user_text()))
            if self.repo.cache is not None:
                self.repo.cache.drop(h)
            self._report(f"removing {type.value} files", n, len(names))

    def _report(self, phase: str, done: int = 0, total: int = -1) -> None:
        """Throttled, except that a new phase is always reported."""
        if phase != self._phase or self._throttle.ready():
            self._phase = phase
            self.progress.progress(Progress(phase=phase, files_done=done, files_total=total))


def prune(
    repo: Repository,
    options: PruneOptions | None = None,
    *,
    progress: ProgressSink = NULL_PROGRESS,
    cancel: CancelToken = NEVER,
) -> PruneSummary:
    """Run :class:`Pruner`; the caller holds the exclusive lock. Raises :class:`IntegrityError`
    (nothing changed) when a snapshot needs a blob the repository lacks, and
    :class:`~safekeep.common.errors.Cancelled` when cancelled before the index was rewritten
    (nothing removed)."""
    return Pruner(repo, options, progress=progress, cancel=cancel).run()
