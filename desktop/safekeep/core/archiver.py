"""Backup: turn folders and files into a snapshot.

The pipeline:

1. The **scan** (``fs.scan``, a background thread, started by the CLI before the key is even
   derived) visits each source depth-first, lists folders in name order, applies exclusions
   and reads each entry's metadata (``fs.nodes``), a bounded distance ahead of the walker.
2. The **walker** (calling thread) takes the folders' listings in the same order. A file whose
   size, mtime, ctime and inode equal its node in the **parent snapshot** is not read: its
   content list is reused (restic's rule), provided the index still has its blobs. Parent
   trees are decoded lazily (``decode_tree_lazy``): only the compared fields are converted.
3. Other files go to a pool of **file workers**: each reads its file, cuts chunks (``chunker``)
   and hashes them. A small file's chunks are saved right there (``Repository.save_blob``
   deduplicates, compresses, encrypts and appends to a pack; full packs upload in the
   background); a large file is read in windows through one reused buffer and its chunks go to
   a **blob pool**, so one large file keeps every core busy. Semaphores and a byte budget bound
   the files and chunks in flight, so memory stays flat however large the tree.
4. When a folder's files are done, its **tree blob** is encoded (Go-JSON-exact) and saved.
5. ``Repository.flush`` uploads the last packs and writes the index; only then is the
   **snapshot** written. An interruption at any point leaves a valid repository.

Per-file problems (unreadable, vanished, changed while being read) go to the error policy and
are counted; they never abort the backup unless the policy raises.
"""

from __future__ import annotations

import concurrent.futures
import errno
import getpass
import logging
import os
import queue
import socket
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from safekeep import __version__
from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.clock import SYSTEM_CLOCK, Clock
from safekeep.common.errors import Cancelled, SafekeepError
from safekeep.common.progress import (
    NULL_PROGRESS,
    ErrorPolicy,
    ErrorRecorder,
    Progress,
    ProgressSink,
    Throttle,
)
from safekeep.core.chunker import MAX_SIZE, Chunker
from safekeep.core.format.pack import BlobType
from safekeep.core.format.snapshot import Snapshot
from safekeep.core.format.times import format_time, local_now
from safekeep.core.format.tree import Node, NodeView, TreeFormatError, decode_tree_lazy, encode_tree
from safekeep.core.fs.exclude import Excluder
from safekeep.core.fs.nodes import UserCache, node_from_path
from safekeep.core.fs.scan import Scan
from safekeep.core.repository import Repository, sha256

log = logging.getLogger(__name__)

READ_WINDOW = 8 * 1024 * 1024
LARGE_FILES_AT_ONCE = 1  # one large file at a time reads faster than the cores compress
BLOB_QUEUE_BYTES = 16 * 1024 * 1024  # chunks waiting for compression and encryption
PRUNE_FUTURES_AT = 1024
SMALL_FILE = 1024 * 1024  # read in one call; larger files go through the window buffers
BATCH_FILES = 16  # small files per worker job: a folder's files spread over every worker
BATCH_BYTES = 4 * 1024 * 1024  # files at least this large get a job of their own
_O_NOATIME = getattr(os, "O_NOATIME", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class SourceError(SafekeepError):
    """A problem with one file or folder being backed up (recorded, not fatal)."""


class NothingToBackUp(SafekeepError):
    def __init__(self, paths: list[str]) -> None:
        super().__init__(
            "None of the folders to back up could be found: " + ", ".join(paths),
            hint="Check that the folders exist and that the disk holding them is connected.",
        )


@dataclass(frozen=True, slots=True)
class BackupOptions:
    excludes: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    hostname: str = ""  # "" = this machine's name
    parent: str | None = None  # snapshot ID; None = the latest with the same host and paths
    use_parent: bool = True
    ignore_inode: bool = False
    workers: int = 0  # 0 = one per CPU (at least 2)
    time: datetime | None = None  # the snapshot's time; None = now


@dataclass(slots=True)
class BackupSummary:
    snapshot_id: str = ""
    parent: str | None = None
    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    dirs_new: int = 0
    dirs_changed: int = 0
    dirs_unmodified: int = 0
    data_blobs: int = 0
    tree_blobs: int = 0
    data_added: int = 0
    data_added_packed: int = 0
    total_files_processed: int = 0
    total_bytes_processed: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    backup_start: datetime | None = None
    backup_end: datetime | None = None

    def snapshot_summary(self) -> dict[str, object]:
        keys = [
            "files_new",
            "files_changed",
            "files_unmodified",
            "dirs_new",
            "dirs_changed",
            "dirs_unmodified",
            "data_blobs",
            "tree_blobs",
            "data_added",
            "data_added_packed",
            "total_files_processed",
            "total_bytes_processed",
        ]
        out: dict[str, object] = {}
        if self.backup_start and self.backup_end:
            out["backup_start"] = format_time(self.backup_start)
            out["backup_end"] = format_time(self.backup_end)
        out.update({k: getattr(self, k) for k in keys})
        return out


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.summary = BackupSummary()
        self.files_done = 0
        self.bytes_done = 0
        self.current = ""

    def add(self, **kw: int) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self.summary, k, getattr(self.summary, k) + v)


def _read_file_node(path: bytes) -> int:
    flags = os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK
    try:
        return os.open(path, flags | _O_NOATIME)
    except PermissionError:
        if not _O_NOATIME:
            raise
        return os.open(path, flags)  # O_NOATIME needs ownership; retry without it


class Archiver:
    def __init__(
        self,
        repo: Repository,
        options: BackupOptions | None = None,
        *,
        progress: ProgressSink = NULL_PROGRESS,
        on_error: ErrorPolicy | None = None,
        cancel: CancelToken = NEVER,
        clock: Clock = SYSTEM_CLOCK,
        scan: Scan | None = None,
    ) -> None:
        """``scan``: a walk of the same paths started earlier with :func:`start_scan` (e.g. before
        the repository was opened); without one, ``backup`` starts its own."""
        self.repo = repo
        self.options = options or BackupOptions()
        self._scan = scan
        self.progress = progress
        self.recorder = ErrorRecorder()
        self._policy = on_error
        self.cancel = cancel
        self.clock = clock
        self.excluder = Excluder(list(self.options.excludes))
        self.chunker = Chunker(repo.config.chunker_polynomial)
        self.users = UserCache()
        # one file worker per core: more only contend for the interpreter (11,400 office files
        # on 2 cores: 2.7 s with 2 workers, 3.2 s with 4)
        workers = self.options.workers or max(2, os.cpu_count() or 2)
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, "safekeep-file")
        self._slots = threading.BoundedSemaphore(workers * 2)
        # large files are read through a few reused buffers: memory stays flat and no
        # window-sized allocation (with its page faults) happens per read
        self._blob_pool = concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2, "safekeep-blob")
        self._blob_budget = _ByteBudget(BLOB_QUEUE_BYTES)
        self._blob_futures: list[concurrent.futures.Future[None]] = []
        self._futures_lock = threading.Lock()
        self._buffers: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._buffer_slots = threading.BoundedSemaphore(LARGE_FILES_AT_ONCE)
        self._c = _Counters()
        self._throttle = Throttle(0.25, clock)
        self._start = 0.0

    # ------------------------------------------------------------------ public

    def backup(self, paths: list[str]) -> tuple[Snapshot, BackupSummary]:
        """Back up ``paths`` and write a snapshot. Raises ``Cancelled`` (no snapshot written)."""
        if self._scan is None:
            self._scan = start_scan(paths, self.options)  # walks while the index loads
        try:
            return self._backup(paths)
        finally:
            self._scan.close()

    def _backup(self, paths: list[str]) -> tuple[Snapshot, BackupSummary]:
        self.repo.set_cancel(self.cancel)
        self.repo.ensure_index(cancel=self.cancel)
        self._start = self.clock.monotonic()
        summary = self._c.summary
        summary.backup_start = local_now(self.clock.now())
        sources = _normalise(paths)
        hostname = self.options.hostname or socket.gethostname()
        parent = self._find_parent(sources, hostname)
        summary.parent = parent.id if parent else None
        try:
            existing = [s for s in sources if os.path.lexists(s)]
            for s in sources:
                if s not in existing:
                    self._error(s, SourceError(f"{s} does not exist"))
            if not existing:
                raise NothingToBackUp(sources)
            root_parent = self._load_tree(parent.tree) if parent else {}
            root = self._save_virtual(b"/", _build_layout(existing), root_parent)
            self._finish_blobs()
            self.repo.flush()
        except BaseException:
            for f in self._blob_futures:
                f.cancel()
            self._pool.shutdown(wait=True)
            self._blob_pool.shutdown(wait=True)
            self.repo.abandon()
            raise
        finally:
            self._pool.shutdown(wait=True)
            self._blob_pool.shutdown(wait=True)
        self.cancel.raise_if_cancelled()
        summary.backup_end = local_now(self.clock.now())
        snap = Snapshot(
            time=local_now(self.options.time or self.clock.now()),
            tree=root,
            paths=sources,
            hostname=hostname,
            username=_username(),
            uid=os.getuid() if hasattr(os, "getuid") else 0,
            gid=os.getgid() if hasattr(os, "getgid") else 0,
            excludes=list(self.options.excludes),
            tags=list(self.options.tags),
            parent=summary.parent,
            program_version=f"safekeep {__version__}",
            summary=summary.snapshot_summary(),
        )
        summary.snapshot_id = self.repo.save_snapshot(snap, cancel=self.cancel)
        summary.errors = [(e.path, e.message) for e in self.recorder.errors]
        self._report(final=True)
        return snap, summary

    # ------------------------------------------------------------------ helpers

    def _error(self, path: str | bytes, exc: Exception) -> None:
        p = os.fsdecode(path)
        log.info("skipped %s: %s", p, exc)
        self.recorder(p, exc)  # always counted in the summary
        if self._policy is not None:
            self._policy(p, exc)  # the caller's policy may also abort
        self._report()

    def _report(self, final: bool = False) -> None:
        if not (final or self._throttle.ready()):
            return
        c = self._c
        self.progress.progress(
            Progress(
                phase="done" if final else "backup",
                files_done=c.files_done,
                bytes_done=c.bytes_done,
                errors=len(self.recorder.errors),
                current_path=c.current,
                elapsed=self.clock.monotonic() - self._start,
            )
        )

    def _find_parent(self, sources: list[str], hostname: str) -> Snapshot | None:
        if not self.options.use_parent:
            return None
        if self.options.parent:
            return self.repo.find_snapshot(self.options.parent, cancel=self.cancel)
        best: Snapshot | None = None
        for s in self.repo.list_snapshots(cancel=self.cancel):
            if s.hostname == hostname and sorted(s.paths) == sorted(sources):
                best = s
        return best

    def _load_tree(self, tree_id: bytes | None) -> dict[bytes, NodeView]:
        """The parent snapshot's folder ``tree_id``, by name; nodes are decoded only as far as
        the comparison reads them. Unreadable: {} (its files are read again)."""
        if not tree_id:
            return {}
        try:
            return decode_tree_lazy(self.repo.load_blob(BlobType.TREE, tree_id))
        except (SafekeepError, TreeFormatError) as exc:
            log.warning("parent tree %s unreadable, files will be re-read: %s", tree_id.hex()[:12], exc)
            return {}

    def _parent_subtree(self, pnode: NodeView | None) -> dict[bytes, NodeView]:
        if pnode is None:
            return {}
        try:
            subtree = pnode.subtree if pnode.type == "dir" else None
        except TreeFormatError as exc:
            log.warning("parent folder node unreadable, its files will be re-read: %s", exc)
            return {}
        return self._load_tree(subtree)

    def _save_tree(self, nodes: list[Node]) -> tuple[bytes, bool]:
        data = encode_tree(nodes)
        res = self.repo.save_blob(BlobType.TREE, data)
        if res.added:
            self._c.add(tree_blobs=1, data_added=len(data), data_added_packed=res.stored_size)
        return res.id, res.added

    def _dir_node(self, path: bytes, name: bytes) -> Node | None:
        try:
            st = os.lstat(path)
        except OSError as exc:
            self._error(path, exc)
            return None
        return node_from_path(path, name, st, user_cache=self.users)

    def _save_virtual(self, path: bytes, layout: _Layout, parent_nodes: dict[bytes, NodeView]) -> bytes:
        """Save a folder above the sources: only the children on the way to a source."""
        nodes: list[Node] = []
        for name in sorted(layout):
            child = os.path.join(path, name)
            sub = layout[name]
            pnode = parent_nodes.get(name)
            if sub is None:  # a source itself
                node = self._entry(child, name, pnode, top=True)
                if node is not None and node.type == "file":  # a file given as a source
                    if (content := self._unchanged(node, pnode)) is not None:
                        node.content = content
                        self._count_unmodified(node)
                    else:
                        content = self._submit_files([(child, node, pnode is None)]).result()[0]
                        node.content = content
                        if content is None:
                            node = None
                if node is not None:
                    nodes.append(node)
                continue
            node = self._dir_node(child, name)
            if node is None:
                continue
            node.subtree = self._save_virtual(child, sub, self._parent_subtree(pnode))
            nodes.append(node)
        tree_id, _ = self._save_tree(nodes)
        return tree_id

    def _entry(self, path: bytes, name: bytes, pnode: NodeView | None, *, top: bool = False) -> Node | None:
        """Node for one directory entry; folders recurse, files are queued. None = skipped."""
        self.cancel.raise_if_cancelled()
        if self.excluder and not top and self.excluder.excluded(path):
            return None
        try:
            st = os.lstat(path)
        except OSError as exc:
            self._error(path, exc)
            return None
        try:
            node = node_from_path(path, name, st, user_cache=self.users)
        except OSError as exc:
            self._error(path, exc)
            return None
        return self._finish_entry(path, node, pnode)

    def _finish_entry(self, path: bytes, node: Node, pnode: NodeView | None) -> Node | None:
        """A folder's node gets its subtree (saved recursively); other nodes are returned as is."""
        if node.type == "dir":
            ptree = self._parent_subtree(pnode)
            subtree = self._save_dir(path, ptree)
            if subtree is None:
                return None
            node.subtree = subtree
            try:
                parent_subtree = pnode.subtree if pnode is not None and pnode.type == "dir" else None
            except TreeFormatError:
                parent_subtree = None
            if parent_subtree is None:
                self._c.add(dirs_new=1)
            elif parent_subtree == subtree:
                self._c.add(dirs_unmodified=1)
            else:
                self._c.add(dirs_changed=1)
        return node

    def _save_dir(self, path: bytes, parent_nodes: dict[bytes, NodeView]) -> bytes | None:
        listing = self._scan.take(path, self.cancel) if self._scan is not None else None
        if listing is not None:
            if listing.error is not None:
                self._error(path, listing.error)
                return None
            names = [e.name for e in listing.entries]
        else:
            try:
                with os.scandir(path) as it:
                    names = sorted(e.name for e in it)
            except OSError as exc:
                self._error(path, exc)
                return None
        nodes: list[Node | None] = []
        pending: list[tuple[list[int], concurrent.futures.Future[list[list[bytes] | None]]]] = []
        batch: list[tuple[bytes, Node, bool]] = []
        batch_at: list[int] = []
        batch_bytes = 0

        def flush_batch() -> None:
            nonlocal batch, batch_at, batch_bytes
            if batch:
                pending.append((batch_at, self._submit_files(batch)))
                batch, batch_at, batch_bytes = [], [], 0

        for i, name in enumerate(names):
            pnode = parent_nodes.get(name)
            if listing is None:
                child = os.path.join(path, name)
                node = self._entry(child, name, pnode)
            else:
                self.cancel.raise_if_cancelled()
                entry = listing.entries[i]
                child = entry.path
                if entry.node is None:
                    self._error(child, entry.error or SourceError(f"{os.fsdecode(child)} could not be read"))
                    continue
                node = self._finish_entry(child, entry.node, pnode)
            if node is None:
                continue
            if node.type == "file":
                if (content := self._unchanged(node, pnode)) is not None:
                    node.content = content
                    self._count_unmodified(node)
                elif node.size >= BATCH_BYTES:
                    pending.append(([len(nodes)], self._submit_files([(child, node, pnode is None)])))
                else:
                    batch.append((child, node, pnode is None))
                    batch_at.append(len(nodes))
                    batch_bytes += node.size
                    if len(batch) >= BATCH_FILES or batch_bytes >= BATCH_BYTES:
                        flush_batch()
            nodes.append(node)
        flush_batch()
        for positions, fut in pending:
            for i, content in zip(positions, fut.result(), strict=True):
                if content is None:
                    nodes[i] = None
                else:
                    node = nodes[i]
                    assert node is not None
                    node.content = content
        self.cancel.raise_if_cancelled()
        tree_id, _ = self._save_tree([n for n in nodes if n is not None])
        return tree_id

    def _count_unmodified(self, node: Node) -> None:
        self._c.add(files_unmodified=1, total_files_processed=1, total_bytes_processed=node.size)
        with self._c.lock:
            self._c.files_done += 1
            self._c.bytes_done += node.size
        self._report()

    def _unchanged(self, node: Node, pnode: NodeView | None) -> list[bytes] | None:
        """The parent's content list if the file need not be read again (restic's rule: same
        size, mtime, ctime and inode, and the index still has every blob), else None."""
        if pnode is None:
            return None
        try:
            if pnode.type != "file" or node.size != pnode.size:
                return None
            if pnode.time_text("mtime") != node.mtime.fixed().rfc3339nano():
                return None
            if pnode.time_text("ctime") != node.ctime.fixed().rfc3339nano():
                return None
            if not self.options.ignore_inode and node.inode != pnode.inode:
                return None
            content = pnode.content
        except TreeFormatError as exc:
            log.warning("parent node of %s unreadable, the file is read again: %s", node.name, exc)
            return None
        if content is None:
            return None
        has_blob = self.repo.has_blob
        for b in content:
            if not has_blob(BlobType.DATA, b):
                return None
        return content

    def _submit_files(
        self, items: list[tuple[bytes, Node, bool]]
    ) -> concurrent.futures.Future[list[list[bytes] | None]]:
        """Queue files for reading; small files travel in batches to keep per-file overhead low."""
        while not self._slots.acquire(timeout=0.25):
            self.cancel.raise_if_cancelled()

        def run() -> list[list[bytes] | None]:
            try:
                return [self._file(path, node, is_new) for path, node, is_new in items]
            except _RepositoryFailure as exc:
                raise exc.error from None
            finally:
                self._slots.release()

        return self._pool.submit(run)

    def _file(self, path: bytes, node: Node, is_new: bool) -> list[bytes] | None:
        if self.cancel.cancelled:
            return None
        with self._c.lock:
            self._c.current = os.fsdecode(path)
        try:
            content, size, changed = self._read_chunks(path, node)
        except Cancelled:
            return None
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                self._error(path, SourceError(f"{os.fsdecode(path)} vanished before it could be read"))
            else:
                self._error(path, exc)
            return None
        except SourceError as exc:
            self._error(path, exc)
            return None
        node.size = size
        if changed:
            self._error(path, SourceError(f"{os.fsdecode(path)} changed while it was being read"))
        self._c.add(
            files_new=1 if is_new else 0,
            files_changed=0 if is_new else 1,
            total_files_processed=1,
            total_bytes_processed=size,
        )
        with self._c.lock:
            self._c.files_done += 1
        self._report()
        return content

    def _read_chunks(self, path: bytes, node: Node) -> tuple[list[bytes], int, bool]:
        fd = _read_file_node(path)
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                raise SourceError(f"{os.fsdecode(path)} was replaced by something that is not a file")
            if before.st_size < SMALL_FILE:
                # one read of its size + 1: exactly its size back is the whole file (the fstat
                # after the read tells if it changed); more or less reads on to the end
                data = os.read(fd, before.st_size + 1)
                if len(data) != before.st_size:
                    while more := os.read(fd, SMALL_FILE):
                        data += more
                content: list[bytes] = []
                view = memoryview(data)
                for off, length in self.chunker.cuts(view):
                    self._save_data(view[off : off + length], content, owner=data, inline=True)
                total = len(data)
            else:
                with self._buffer_slots:  # made on first use, then reused
                    try:
                        buf = self._buffers.get_nowait()
                    except queue.Empty:
                        buf = bytearray(READ_WINDOW + MAX_SIZE)
                    try:
                        content, total = self._read_windows(fd, buf)
                    finally:
                        self._buffers.put(buf)
            after = os.fstat(fd)
            changed = (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or (
                total != node.size
            )
            return content, total, changed
        finally:
            os.close(fd)

    def _read_windows(self, fd: int, buf: bytearray) -> tuple[list[bytes], int]:
        """Chunk a large file through a reused buffer: window after window, carrying the tail.

        The last cut in a window may only be where the window ends, so it is carried to the
        front of the buffer and cut again together with the next window."""
        content: list[bytes] = []
        view = memoryview(buf)
        filled = 0
        total = 0
        while True:
            self.cancel.raise_if_cancelled()
            n = os.readv(fd, [view[filled : filled + READ_WINDOW]])
            eof = n == 0
            filled += n
            if not filled:
                break
            cuts = list(self.chunker.cuts(view[:filled]))
            keep = len(cuts) if eof else len(cuts) - 1
            for off, length in cuts[:keep]:
                self._save_data(view[off : off + length], content)
            consumed = cuts[keep - 1][0] + cuts[keep - 1][1] if keep else 0
            total += consumed
            rest = filled - consumed
            if rest and consumed:
                # bytearray slice assignment copies with memcpy: never let the ranges overlap
                buf[:rest] = view[consumed:filled] if rest <= consumed else bytes(view[consumed:filled])
            filled = rest
            if eof:
                break
        view.release()
        return content, total

    def _save_data(
        self, chunk: memoryview, content: list[bytes], *, owner: bytes | None = None, inline: bool = False
    ) -> None:
        """Hash a chunk now (its ID goes into the file's content list in order) and save it.

        A chunk of a small file (``inline``) is compressed, encrypted and packed right here: the
        file workers already run several files at once, and a hand-off per small blob would
        cost more than it spreads. A large file's chunks go to the blob pool, so one large file
        keeps every core busy. ``owner``: an immutable bytes object the chunk views (no copy
        needed)."""
        blob_id = sha256(chunk)
        content.append(blob_id)
        n = len(chunk)
        with self._c.lock:
            self._c.bytes_done += n
        if inline:
            if not self.repo.has_blob(BlobType.DATA, blob_id):
                try:
                    res = self.repo.save_blob(BlobType.DATA, chunk, blob_id=blob_id)
                except OSError as exc:  # the repository's storage failed, not the file being read
                    raise _RepositoryFailure(exc) from exc
                if res.added:
                    self._c.add(data_blobs=1, data_added=n, data_added_packed=res.stored_size)
        elif not self.repo.has_blob(BlobType.DATA, blob_id):
            data = owner if owner is not None and len(owner) == n else bytes(chunk)
            self._blob_budget.acquire(n, self.cancel)
            try:
                future = self._blob_pool.submit(self._save_blob, data, blob_id)
                with self._futures_lock:
                    self._blob_futures.append(future)
                    if len(self._blob_futures) >= PRUNE_FUTURES_AT:
                        self._prune_blob_futures()
            except BaseException:
                self._blob_budget.release(n)
                raise
        self._report()

    def _save_blob(self, data: bytes, blob_id: bytes) -> None:
        try:
            res = self.repo.save_blob(BlobType.DATA, data, blob_id=blob_id)
            if res.added:
                self._c.add(data_blobs=1, data_added=len(data), data_added_packed=res.stored_size)
        finally:
            self._blob_budget.release(len(data))

    def _prune_blob_futures(self) -> None:
        """Forget finished blob saves (raising the first failure) so nothing per blob is held
        for the whole run. Called with ``_futures_lock`` held."""
        pending = []
        for f in self._blob_futures:
            if f.done():
                f.result()
            else:
                pending.append(f)
        self._blob_futures = pending

    def _finish_blobs(self) -> None:
        """Wait for every queued blob; the first failure is raised."""
        with self._futures_lock:
            futures, self._blob_futures = self._blob_futures, []
        for f in futures:
            f.result()


class _RepositoryFailure(Exception):
    """Carries a storage ``OSError`` from a blob saved while reading a file past the handlers
    that skip unreadable files: it must abort the backup."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class _ByteBudget:
    """Bounds the bytes of chunks queued for the blob pool (memory stays flat)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._cond = threading.Condition()

    def acquire(self, n: int, cancel: CancelToken) -> None:
        with self._cond:
            while self._used and self._used + n > self._limit:
                if cancel.cancelled:
                    raise Cancelled()
                self._cond.wait(0.25)
            self._used += n

    def release(self, n: int) -> None:
        with self._cond:
            self._used -= n
            self._cond.notify_all()


_Layout = dict[bytes, "_Layout | None"]


def start_scan(paths: list[str], options: BackupOptions | None = None) -> Scan:
    """Start walking ``paths`` in the background, in the order a backup of them visits them.

    Pass the result to :class:`Archiver` for the same paths and options; call ``close()`` on it
    when the backup could not start."""
    options = options or BackupOptions()
    existing = [s for s in _normalise(paths) if os.path.lexists(s)]
    roots: list[bytes] = []

    def visit(prefix: bytes, layout: _Layout) -> None:
        for name in sorted(layout):
            sub = layout[name]
            path = os.path.join(prefix, name)
            if sub is None:
                roots.append(path)
            else:
                visit(path, sub)

    visit(b"/", _build_layout(existing))
    return Scan(roots, Excluder(list(options.excludes))).start()


def _normalise(paths: list[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        a = os.path.normpath(os.path.abspath(p))
        if a not in out:
            out.append(a)
    # a source inside another source is already covered
    return [a for a in out if not any(a != b and a.startswith(b.rstrip("/") + "/") for b in out)]


def _build_layout(sources: list[str]) -> _Layout:
    root: _Layout = {}
    for s in sources:
        parts = [os.fsencode(p) for p in s.split("/") if p]
        node = root
        for part in parts[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = {}
                node[part] = nxt
            node = nxt
        if parts:
            node[parts[-1]] = None
    return root


def _username() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def backup(
    repo: Repository,
    paths: list[str],
    options: BackupOptions | None = None,
    *,
    progress: ProgressSink = NULL_PROGRESS,
    on_error: ErrorPolicy | None = None,
    cancel: CancelToken = NEVER,
    clock: Clock = SYSTEM_CLOCK,
) -> tuple[Snapshot, BackupSummary]:
    return Archiver(repo, options, progress=progress, on_error=on_error, cancel=cancel, clock=clock).backup(
        paths
    )


__all__ = ["Archiver", "BackupOptions", "BackupSummary", "Callable", "backup", "start_scan"]
