"""Restore: bring a snapshot, or parts of it, back into a folder.

1. **Plan.** Walk the snapshot's trees; create folders (every name checked: no ``..``, no ``/``,
   no NUL, no existing symlink inside the target on the way); create symlinks, empty files and
   special files; for every other file note, pack by pack, which blobs go where.
2. **Fetch.** Packs are processed in parallel; each pack is read once (adjacent blobs in one
   ranged read). Every blob is decrypted and checked against its SHA-256 before a byte of it is
   written. Files are written under a temporary name in their folder.
3. **Finish.** When the last blob of a file is written, the file is renamed to its real name
   and its metadata applied. Hardlinks are linked to their first restored member. Folder metadata
   is applied last, deepest first (creating children changes a folder's times).

If a file cannot be restored (damaged data, no space), the error goes to the error policy and its
temporary file is removed; after a cancel every unfinished temporary file is removed too. Nothing
half-written is left under a real name.
"""

from __future__ import annotations

import concurrent.futures
import errno
import logging
import os
import stat
import threading
import uuid
from dataclasses import dataclass, field

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
from safekeep.core.format.pack import BlobType, PackedBlob
from safekeep.core.format.snapshot import Snapshot
from safekeep.core.format.tree import Node, decode_tree
from safekeep.core.fs.restore_meta import apply_metadata
from safekeep.core.fs.safepath import UnsafePathError, check_name
from safekeep.core.repository import Repository
from safekeep.storage.base import FileType, Handle

log = logging.getLogger(__name__)

MERGE_GAP = 1024 * 1024  # read across gaps up to this size instead of issuing another request
MAX_READ = 32 * 1024 * 1024


class RestoreError(SafekeepError):
    """One item could not be restored (recorded; the restore goes on)."""


@dataclass(frozen=True, slots=True)
class RestoreOptions:
    include: tuple[str, ...] = ()  # snapshot paths to restore ("" = everything)
    workers: int = 0  # 0 = the backend's connections, at least 2
    restore_owner: bool = True


@dataclass(slots=True)
class RestoreSummary:
    files_restored: int = 0
    dirs_restored: int = 0
    other_restored: int = 0  # symlinks, fifos, devices, hardlinks
    bytes_written: int = 0
    files_total: int = 0
    bytes_total: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)


class _FileJob:
    __slots__ = ("failed", "lock", "node", "path", "remaining", "tmp", "written")

    def __init__(self, path: bytes, node: Node, blobs: int) -> None:
        self.path = path
        self.tmp = _tmp_name(path)
        self.node = node
        self.remaining = blobs
        self.failed = False
        self.written = False
        self.lock = threading.Lock()


def _tmp_name(path: bytes) -> bytes:
    return os.path.join(os.path.dirname(path), f".safekeep-{uuid.uuid4().hex[:16]}.tmp".encode())


class Restorer:
    def __init__(
        self,
        repo: Repository,
        options: RestoreOptions | None = None,
        *,
        progress: ProgressSink = NULL_PROGRESS,
        on_error: ErrorPolicy | None = None,
        cancel: CancelToken = NEVER,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.repo = repo
        self.options = options or RestoreOptions()
        self.progress = progress
        self.recorder = ErrorRecorder()
        self._policy = on_error
        self.cancel = cancel
        self.clock = clock
        self.summary = RestoreSummary()
        self._packs: dict[str, list[tuple[PackedBlob, _FileJob, int]]] = {}
        self._jobs: list[_FileJob] = []
        self._dirs: list[tuple[bytes, Node]] = []
        self._hardlinks: dict[tuple[int, int], bytes] = {}
        self._links_todo: list[tuple[bytes, bytes]] = []
        self._lock = threading.Lock()
        self._throttle = Throttle(0.25, clock)
        self._start = 0.0
        self._includes = [_clean(p) for p in self.options.include if _clean(p) != "/"]

    # ------------------------------------------------------------------ public

    def restore(self, snapshot: Snapshot, target: str) -> RestoreSummary:
        self._start = self.clock.monotonic()
        os.makedirs(target, exist_ok=True)
        root = os.fsencode(os.path.abspath(target))
        try:
            self._plan_tree(snapshot.tree, root, "/")
            self.summary.files_total = len(self._jobs) + self.summary.files_restored
            self._fetch()
            self.cancel.raise_if_cancelled()
            self._finish_links()
            for path, node in self._dirs:  # post-order: children before their parents
                self._meta(path, node)
        finally:
            self._cleanup()
        self.summary.errors = [(e.path, e.message) for e in self.recorder.errors]
        self._report(final=True)
        return self.summary

    # ------------------------------------------------------------------ planning

    def _selected(self, path: str) -> str:
        """'all', 'partial' (an ancestor of something included) or 'none'."""
        if not self._includes:
            return "all"
        result = "none"
        for inc in self._includes:
            if path == inc or path.startswith(inc.rstrip("/") + "/"):
                return "all"
            if inc.startswith(path.rstrip("/") + "/"):
                result = "partial"
        return result

    def _error(self, path: bytes | str, exc: Exception) -> None:
        p = os.fsdecode(path)
        log.info("restore: %s: %s", p, exc)
        self.recorder(p, exc)  # always counted in the summary
        if self._policy is not None:
            self._policy(p, exc)

    def _plan_tree(self, tree_id: bytes, dir_path: bytes, snap_path: str) -> None:
        self.cancel.raise_if_cancelled()
        try:
            nodes = decode_tree(self.repo.load_blob(BlobType.TREE, tree_id, cancel=self.cancel))
        except SafekeepError as exc:
            self._error(snap_path, exc)
            return
        for node in nodes:
            name_shown = snap_path.rstrip("/") + "/" + os.fsdecode(node.name)
            sel = self._selected(name_shown)
            if sel == "none":
                continue
            try:
                check_name(node.name, where=snap_path)
            except UnsafePathError as exc:
                self._error(name_shown, exc)
                continue
            path = os.path.join(dir_path, node.name)
            try:
                self._plan_node(node, path, name_shown, sel)
            except (OSError, SafekeepError) as exc:
                if isinstance(exc, Cancelled):
                    raise
                self._error(name_shown, exc)

    def _plan_node(self, node: Node, path: bytes, shown: str, sel: str) -> None:
        if node.type == "dir":
            self._make_dir(path)
            if node.subtree is None:
                raise RestoreError(f"folder {shown} has no content in the backup")
            self._plan_tree(node.subtree, path, shown)
            if sel == "all":
                self._dirs.append((path, node))
                self.summary.dirs_restored += 1
            return
        if sel != "all":
            return
        key = (node.device_id, node.inode)
        if node.type != "dir" and node.links > 1 and node.inode:
            first = self._hardlinks.get(key)
            if first is not None:
                self._links_todo.append((first, path))
                return
            self._hardlinks[key] = path
        if node.type == "file":
            content = node.content or []
            if not content:
                self._write_empty(path, node)
                return
            job = _FileJob(path, node, len(content))
            offset = 0
            for blob_id in content:
                found = self.repo.index.lookup(BlobType.DATA, blob_id)
                if found is None:
                    job.failed = True
                    raise RestoreError(f"{shown}: a part of its data ({blob_id.hex()[:12]}) is missing")
                pack_id, blob = found
                self._packs.setdefault(pack_id, []).append((blob, job, offset))
                offset += blob.plaintext_length
            self._jobs.append(job)
            self.summary.bytes_total += offset
        elif node.type == "symlink":
            tmp = _tmp_name(path)
            os.symlink(node.linktarget, tmp)
            self._rename_into_place(tmp, path, node)
            self.summary.other_restored += 1
        elif node.type == "fifo":
            tmp = _tmp_name(path)
            os.mkfifo(tmp, 0o600)
            self._rename_into_place(tmp, path, node)
            self.summary.other_restored += 1
        elif node.type in ("dev", "chardev"):
            kind = stat.S_IFBLK if node.type == "dev" else stat.S_IFCHR
            tmp = _tmp_name(path)
            os.mknod(tmp, kind | 0o600, node.device)
            self._rename_into_place(tmp, path, node)
            self.summary.other_restored += 1
        else:
            log.info("not restoring %s of type %s", shown, node.type)

    def _make_dir(self, path: bytes) -> None:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                raise UnsafePathError(
                    f"Refusing to restore through the symlink {os.fsdecode(path)!r} inside the target",
                    path=os.fsdecode(path),
                ) from None
            if not stat.S_ISDIR(st.st_mode):
                raise RestoreError(f"{os.fsdecode(path)} exists and is not a folder") from None

    def _write_empty(self, path: bytes, node: Node) -> None:
        tmp = _tmp_name(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        self._rename_into_place(tmp, path, node)
        self.summary.files_restored += 1

    def _rename_into_place(self, tmp: bytes, path: bytes, node: Node) -> None:
        try:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode):
                os.unlink(tmp)
                raise RestoreError(f"{os.fsdecode(path)} exists and is a folder; it was left alone")
        except FileNotFoundError:
            pass
        os.replace(tmp, path)
        self._meta(path, node)

    def _meta(self, path: bytes, node: Node) -> None:
        for warning in apply_metadata(path, node):
            log.info("restore metadata: %s", warning)

    # ------------------------------------------------------------------ fetching

    def _fetch(self) -> None:
        workers = self.options.workers or max(2, self.repo.backend.properties.connections)
        with concurrent.futures.ThreadPoolExecutor(workers, "safekeep-restore") as ex:
            futures = [ex.submit(self._pack, pid, entries) for pid, entries in self._packs.items()]
            try:
                for f in concurrent.futures.as_completed(futures):
                    f.result()
            except BaseException:
                self.cancel_pending(futures)
                raise

    @staticmethod
    def cancel_pending(futures: list[concurrent.futures.Future[None]]) -> None:
        for f in futures:
            f.cancel()

    def _pack(self, pack_id: str, entries: list[tuple[PackedBlob, _FileJob, int]]) -> None:
        if self.cancel.cancelled:
            return
        entries.sort(key=lambda e: e[0].offset)
        # group into ranged reads
        groups: list[list[tuple[PackedBlob, _FileJob, int]]] = []
        for e in entries:
            if groups:
                last = groups[-1]
                start = last[0][0].offset
                end = max(b.offset + b.length for b, _, _ in last)
                if e[0].offset - end <= MERGE_GAP and e[0].offset + e[0].length - start <= MAX_READ:
                    last.append(e)
                    continue
            groups.append([e])
        for group in groups:
            self.cancel.raise_if_cancelled()
            start = group[0][0].offset
            end = max(b.offset + b.length for b, _, _ in group)
            try:
                data = self.repo.backend.load(
                    Handle(FileType.PACK, pack_id), start, end - start, cancel=self.cancel
                )
            except SafekeepError as exc:
                if isinstance(exc, Cancelled):
                    raise
                for _, job, _ in group:
                    self._fail(job, exc)
                continue
            view = memoryview(data)
            plain_cache: dict[bytes, bytes] = {}
            for blob, job, offset in group:
                if job.failed:
                    continue
                plain = plain_cache.get(blob.id)
                if plain is None:
                    try:
                        sealed = view[blob.offset - start : blob.offset - start + blob.length]
                        plain = self.repo.open_blob(pack_id, blob, sealed)
                    except SafekeepError as exc:
                        self._fail(job, exc)
                        continue
                    plain_cache[blob.id] = plain
                self._write(job, offset, plain)

    def _fail(self, job: _FileJob, exc: Exception) -> None:
        with job.lock:
            if job.failed:
                return
            job.failed = True
        self._remove_tmp(job)
        self._error(job.path, exc)

    def _write(self, job: _FileJob, offset: int, data: bytes) -> None:
        try:
            with job.lock:
                if job.failed:
                    return
                flags = os.O_WRONLY | (0 if job.written else os.O_CREAT | os.O_EXCL)
                fd = os.open(job.tmp, flags, 0o600)
                job.written = True
                try:
                    os.pwrite(fd, data, offset)
                finally:
                    os.close(fd)
                job.remaining -= 1
                done = job.remaining == 0
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                exc = RestoreError("The restore target is full.")  # type: ignore[assignment]
            self._fail(job, exc)
            return
        with self._lock:
            self.summary.bytes_written += len(data)
        if done:
            try:
                size = os.stat(job.tmp).st_size
                if size != job.node.size:
                    raise RestoreError(
                        f"{os.fsdecode(job.path)}: restored {size} bytes but the backup says {job.node.size}"
                    )
                self._rename_into_place(job.tmp, job.path, job.node)
            except (OSError, SafekeepError) as exc:
                self._fail(job, exc)
                return
            with self._lock:
                self.summary.files_restored += 1
        self._report()

    def _finish_links(self) -> None:
        for first, path in self._links_todo:
            try:
                tmp = _tmp_name(path)
                os.link(first, tmp)
                os.replace(tmp, path)
                self.summary.other_restored += 1
            except OSError as exc:
                self._error(path, exc)

    def _remove_tmp(self, job: _FileJob) -> None:
        try:
            os.unlink(job.tmp)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove temporary file %s: %s", os.fsdecode(job.tmp), exc)

    def _cleanup(self) -> None:
        for job in self._jobs:
            if job.remaining > 0 or job.failed:
                self._remove_tmp(job)

    def _report(self, final: bool = False) -> None:
        if not (final or self._throttle.ready()):
            return
        s = self.summary
        self.progress.progress(
            Progress(
                phase="done" if final else "restore",
                files_done=s.files_restored,
                files_total=s.files_total,
                bytes_done=s.bytes_written,
                bytes_total=s.bytes_total,
                errors=len(self.recorder.errors),
                elapsed=self.clock.monotonic() - self._start,
            )
        )


def _clean(path: str) -> str:
    p = "/" + path.strip("/")
    return os.path.normpath(p) if p != "/" else "/"


def restore(
    repo: Repository,
    snapshot: Snapshot,
    target: str,
    options: RestoreOptions | None = None,
    *,
    progress: ProgressSink = NULL_PROGRESS,
    on_error: ErrorPolicy | None = None,
    cancel: CancelToken = NEVER,
    clock: Clock = SYSTEM_CLOCK,
) -> RestoreSummary:
    return Restorer(repo, options, progress=progress, on_error=on_error, cancel=cancel, clock=clock).restore(
        snapshot, target
    )
