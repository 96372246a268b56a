"""Restore: bring a snapshot, or parts of it, back into a folder.

1. **Plan.** Walk the snapshot's trees; create folders (every name checked: no ``..``, no ``/``,
   no NUL, no existing symlink inside the target on the way); create symlinks, empty files and
   special files; for every other file note, pack by pack, which blobs go where. Inside a folder
   this restore created nothing can be in the way, so nothing is looked up there. While the plan
   goes on, the workers already create the planned files' temporary files (a new file costs a
   file system far more than writing a small file's data).
2. **Fetch.** Packs are processed in parallel; each pack is read once (adjacent blobs in one
   ranged read of at most :data:`MAX_READ` bytes: memory is bounded by one read per worker).
   Every blob's MAC is checked before it is decrypted, and a blob is decrypted once even when
   several files share it. Files are written under a temporary name in their folder.
3. **Finish.** When the last blob of a file is written, its size is checked and (``verify``)
   the file is re-read from disk and each chunk checked against its ID, its SHA-256; then it is
   renamed to its real name and its metadata applied. With ``verify`` that re-read is also the
   check of each chunk's SHA-256 (hashing before writing too would hash every byte twice);
   without it each blob's SHA-256 is checked before a byte of it is written. Hardlinks are
   linked to their first restored member. Folder metadata is applied last, deepest first
   (creating children changes a folder's times).

Where things land: by default a snapshot path ``P`` is restored at ``target + P`` (restic's
layout; target ``/`` puts everything back where it was). With ``flatten`` each selected path is
restored as ``target/basename(P)``, like pasting it into a folder.

Conflicts: a folder that exists is merged. A file, symlink or other non-folder in the way is
overwritten, skipped or kept next to the restored copy (``report (restored 2026-11-22).xlsx``),
per :class:`ConflictPolicy` — one policy for the whole restore, and per-path ``decisions`` that
override it (a folder's decision covers everything below it, a deeper decision wins). A folder is
never replaced by a file nor a file by a folder: that is reported as an error and left alone.
:func:`find_conflicts` previews what is in the way before a restore starts.

If a file cannot be restored (damaged data, no space, failed verification), the error goes to
the error policy and its temporary file is removed; after a cancel every unfinished temporary
file is removed too. Nothing half-written is left under a real name, and the item that was in
the way is untouched. :class:`RestoreSummary` counts what happened and lists each non-folder item
(:class:`RestoredItem`, at most :data:`ITEMS_LIMIT`).
"""

from __future__ import annotations

import concurrent.futures
import errno
import hashlib
import itertools
import logging
import os
import posixpath
import stat
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

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
MAX_READ = 8 * 1024 * 1024  # bytes of one ranged read (memory: one per worker)
VERIFY_BLOCK = 1024 * 1024  # bytes read at a time when a restored file is re-read
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
ITEMS_LIMIT = 100_000  # at most this many items in a summary (memory bound)
CONFLICTS_LIMIT = 10_000  # at most this many conflicts in a preview
NAME_MAX = 255  # bytes in one file name (ext4, NTFS, APFS, exFAT)


class RestoreError(SafekeepError):
    """One item could not be restored (recorded; the restore goes on)."""


class ConflictPolicy(StrEnum):
    """What to do with a file or symlink that already exists where an item is restored."""

    OVERWRITE = "overwrite"  # replace it (restic's behaviour)
    SKIP = "skip"  # leave it alone; the item is reported as skipped
    KEEP_BOTH = "keep-both"  # keep it; the restored item gets a "(restored DATE)" name


@dataclass(frozen=True, slots=True)
class RestoreOptions:
    include: tuple[str, ...] = ()  # snapshot paths to restore ("" = everything)
    workers: int = 0  # 0 = the backend's connections, at least 2
    restore_owner: bool = True
    conflict: ConflictPolicy = ConflictPolicy.OVERWRITE  # for every existing item in the way
    # snapshot path -> policy for that item, or for everything below a folder (deepest wins)
    decisions: Mapping[str, ConflictPolicy] = field(default_factory=dict)
    flatten: bool = False  # restore each include path P as target/basename(P)
    verify: bool = True  # re-read each file and check its chunks before it takes its real name
    restored_on: date | None = None  # the date in keep-both names (None: today, by the clock)


class Action(StrEnum):
    """What happened to one restored item (:attr:`RestoredItem.action`)."""

    RESTORED = "restored"  # nothing was in the way
    OVERWRITTEN = "overwritten"
    KEPT_BOTH = "kept-both"  # restored under a new name; the existing item kept
    SKIPPED = "skipped"  # the existing item kept; nothing restored
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RestoredItem:
    """One restored file, symlink or other non-folder, and what happened to it (an :class:`Action`)."""

    snapshot_path: str
    target_path: str
    action: str
    size: int
    verified: bool
    error: str = ""


@dataclass(frozen=True, slots=True)
class Conflict:
    """A selected item whose place in the target is taken.

    ``kind``: "file" (a file, symlink or other non-folder is there, and the backup has a
    non-folder: the conflict policy decides), "folder" (a selected folder that exists: it is
    merged; listed so that a decision can cover everything in it) or "type" (a folder where the
    backup has a file, or a file or symlink where it has a folder: never replaced, an error).
    Sizes of folders are 0; times are Unix seconds.
    """

    snapshot_path: str
    target_path: str
    kind: str
    existing_size: int
    existing_mtime: float
    backup_size: int
    backup_mtime: float


@dataclass(frozen=True, slots=True)
class ConflictScan:
    conflicts: tuple[Conflict, ...] = ()
    more: bool = False  # there were more than the limit; the rest are not listed


@dataclass(slots=True)
class RestoreSummary:
    files_restored: int = 0  # files put in place, including the overwritten and kept-both ones
    dirs_restored: int = 0
    other_restored: int = 0  # symlinks, fifos, devices, hardlinks
    bytes_written: int = 0
    files_total: int = 0
    bytes_total: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    skipped: int = 0  # items not restored because something was in the way (policy "skip")
    overwritten: int = 0
    kept_both: int = 0
    verified: int = 0  # files whose restored content was re-read and matched the backup
    items: list[RestoredItem] = field(default_factory=list)
    items_omitted: int = 0  # items beyond ITEMS_LIMIT, counted only

    @property
    def restored(self) -> int:
        """Non-folder items put in place."""
        return self.files_restored + self.other_restored


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """What a finished restore did, as stored after the run (see ``Service.restore_report``).

    ``restored`` counts every non-folder item put in place (including the overwritten and
    kept-both ones), ``folders`` the folders; ``failed`` the items that could not be restored
    (``errors``: path and message, at most ITEMS_LIMIT); ``items`` lists the first ITEMS_LIMIT
    non-folder items, ``items_omitted`` how many more there were. ``complete`` is False when the
    restore was cancelled or stopped before its end.
    """

    restored: int = 0
    overwritten: int = 0
    kept_both: int = 0
    skipped: int = 0
    failed: int = 0
    verified: int = 0
    folders: int = 0
    bytes_written: int = 0
    items: tuple[RestoredItem, ...] = ()
    items_omitted: int = 0
    run_id: str = ""
    snapshot_id: str = ""
    target: str = ""
    errors: tuple[tuple[str, str], ...] = ()
    complete: bool = True

    @classmethod
    def of(
        cls,
        s: RestoreSummary,
        *,
        run_id: str = "",
        snapshot_id: str = "",
        target: str = "",
        complete: bool = True,
    ) -> RestoreReport:
        return cls(
            restored=s.restored,
            overwritten=s.overwritten,
            kept_both=s.kept_both,
            skipped=s.skipped,
            failed=len(s.errors),
            verified=s.verified,
            folders=s.dirs_restored,
            bytes_written=s.bytes_written,
            items=tuple(s.items),
            items_omitted=s.items_omitted,
            run_id=run_id,
            snapshot_id=snapshot_id,
            target=target,
            errors=tuple(s.errors[:ITEMS_LIMIT]),
            complete=complete,
        )

    def counts(self) -> dict[str, int]:
        """The numbers alone (for events and the audit log)."""
        return {
            "restored": self.restored,
            "overwritten": self.overwritten,
            "kept_both": self.kept_both,
            "skipped": self.skipped,
            "failed": self.failed,
            "verified": self.verified,
            "folders": self.folders,
            "bytes_written": self.bytes_written,
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["errors"] = [list(e) for e in self.errors]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RestoreReport:
        items = tuple(
            RestoredItem(
                snapshot_path=str(i["snapshot_path"]),
                target_path=str(i["target_path"]),
                action=str(i["action"]),
                size=int(i["size"]),
                verified=bool(i["verified"]),
                error=str(i.get("error") or ""),
            )
            for i in d.get("items") or ()
        )
        return cls(
            **{k: int(d.get(k) or 0) for k in cls().counts()},
            items=items,
            items_omitted=int(d.get("items_omitted") or 0),
            run_id=str(d.get("run_id") or ""),
            snapshot_id=str(d.get("snapshot_id") or ""),
            target=str(d.get("target") or ""),
            errors=tuple((str(p), str(m)) for p, m in d.get("errors") or ()),
            complete=bool(d.get("complete", True)),
        )


# ---------------------------------------------------------------------------- selection


def _clean(path: str) -> str:
    p = "/" + path.strip("/")
    return posixpath.normpath(p) if p != "/" else "/"


def _under(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or below it."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


class _Selection:
    """Which snapshot paths a restore takes, and (with ``flatten``) the roots placed in the target."""

    def __init__(self, include: Sequence[str], flatten: bool) -> None:
        cleaned = sorted({_clean(p) for p in include})
        self.includes = [] if "/" in cleaned else cleaned
        # the outermost selected paths (a path below another one is part of it)
        self.roots = [p for p in self.includes if not any(q != p and _under(p, q) for q in self.includes)]
        self.flatten = flatten and bool(self.roots)

    def selected(self, path: str) -> str:
        """'all', 'partial' (an ancestor of something included) or 'none'."""
        if not self.includes:
            return "all"
        result = "none"
        for inc in self.includes:
            if _under(path, inc):
                return "all"
            if inc.startswith(path.rstrip("/") + "/"):
                result = "partial"
        return result


def _child(snap_path: str, name: bytes) -> str:
    return snap_path.rstrip("/") + "/" + os.fsdecode(name)


def _find_node(repo: Repository, tree_id: bytes, path: str, cancel: CancelToken) -> Node | None:
    """The node at snapshot path ``path`` (not "/"), or None."""
    parts = [os.fsencode(p) for p in path.strip("/").split("/")]
    for i, name in enumerate(parts):
        nodes = decode_tree(repo.load_blob(BlobType.TREE, tree_id, cancel=cancel))
        node = next((n for n in nodes if n.name == name), None)
        if node is None:
            return None
        if i == len(parts) - 1:
            return node
        if node.type != "dir" or node.subtree is None:
            return None
        tree_id = node.subtree
    return None


def keep_both_name(name: bytes, day: date, n: int = 1) -> bytes:
    """``report.xlsx`` -> ``report (restored 2026-11-22).xlsx`` (``n`` > 1: ``... 2026-11-22 2)``).

    The last suffix stays (``a.tar.gz`` -> ``a.tar (restored ...).gz``); a leading dot is no
    suffix (``.bashrc (restored ...)``). Long names are shortened to fit NAME_MAX bytes.
    """
    stem, ext = os.path.splitext(name)
    if len(ext) > 32:  # not a real suffix: keep the whole name as the stem
        stem, ext = name, b""
    tag = f" (restored {day.isoformat()}{f' {n}' if n > 1 else ''})".encode()
    room = NAME_MAX - len(tag) - len(ext)
    if len(stem) > room:
        stem = stem[:room]
        try:  # do not cut a UTF-8 character in half
            name.decode()
            stem = stem.decode(errors="ignore").encode()
        except UnicodeDecodeError:
            pass
    return stem + tag + ext


def _exists(path: bytes) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------------------- restoring


class _FileJob:
    """One file to restore: its blobs still to write, under ``lock`` (workers write in parallel)."""

    __slots__ = ("action", "created", "end", "failed", "lock", "node", "path", "remaining", "shown", "tmp")

    def __init__(self, path: bytes, node: Node, blobs: int, shown: str, action: Action) -> None:
        self.path = path
        self.tmp = _tmp_name(path)
        self.node = node
        self.shown = shown
        self.action = action
        self.remaining = blobs
        self.failed = False
        self.created = False  # the temporary file exists
        self.end = 0  # the end of the furthest write: the size of the (new, empty) temporary file
        self.lock = threading.Lock()


class _Link:
    __slots__ = ("action", "first", "node", "path", "shown")

    def __init__(self, first: bytes, path: bytes, node: Node, shown: str, action: Action) -> None:
        self.first = first
        self.path = path
        self.node = node
        self.shown = shown
        self.action = action


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    n = os.pwrite(fd, data, offset)
    if n < len(data):  # a short write (rare: a signal, or the disk filling up)
        view = memoryview(data)
        while n < len(data):
            n += os.pwrite(fd, view[n:], offset + n) or _no_progress()


def _reader(fd: int) -> Callable[[memoryview, int], int]:
    """``read_at(buffer, offset)`` for ``fd``: reads into ``buffer`` (no copy), returns the bytes read."""
    if hasattr(os, "preadv"):
        return lambda buffer, offset: os.preadv(fd, [buffer], offset)
    f = open(fd, "rb", buffering=0, closefd=False)  # noqa: SIM115 - the caller closes fd

    def read_at(buffer: memoryview, offset: int) -> int:
        f.seek(offset)
        return f.readinto(buffer) or 0

    return read_at


def _write_error(exc: OSError) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return RestoreError("The restore target is full.")
    return exc


def _no_progress() -> int:
    raise OSError(errno.ENOSPC, "No space left on device")


def _pack_offset(entry: tuple[PackedBlob, _FileJob, int]) -> int:
    return entry[0].offset


_TMP_TOKEN = os.urandom(6).hex().encode()  # temporary names are unique; created with O_EXCL all the same
_tmp_numbers = itertools.count()


def _tmp_name(path: bytes) -> bytes:
    return os.path.join(
        os.path.dirname(path), b".safekeep-%s-%d-%d.tmp" % (_TMP_TOKEN, os.getpid(), next(_tmp_numbers))
    )


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
        self._to_create: list[_FileJob] = []  # planned in the current folder, not yet created
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._futures: list[concurrent.futures.Future[None]] = []
        self._dirs: list[tuple[bytes, Node]] = []
        self._hardlinks: dict[tuple[int, int], bytes] = {}
        self._links_todo: list[_Link] = []
        self._lock = threading.Lock()
        self._local = threading.local()  # per worker thread: the buffer verification reads into
        self._throttle = Throttle(0.25, clock)
        self._start = 0.0
        self._selection = _Selection(self.options.include, self.options.flatten)
        self._decisions = {_clean(k): ConflictPolicy(v) for k, v in self.options.decisions.items()}
        self._claimed: set[bytes] = set()  # names given to kept-both copies in this restore
        self._day = self.options.restored_on

    # ------------------------------------------------------------------ public

    def restore(self, snapshot: Snapshot, target: str) -> RestoreSummary:
        self._start = self.clock.monotonic()
        if self._day is None:
            self._day = self.clock.now().astimezone().date()
        fresh = not os.path.lexists(target)
        os.makedirs(target, exist_ok=True)
        root = os.fsencode(os.path.abspath(target))
        workers = self.options.workers or max(2, self.repo.backend.properties.connections)
        try:
            with concurrent.futures.ThreadPoolExecutor(workers, "safekeep-restore") as pool:
                self._pool = pool
                try:
                    if self._selection.flatten:
                        self._plan_roots(snapshot.tree, root)
                    else:
                        self._plan_tree(snapshot.tree, root, "/", fresh=fresh)
                    self._create_planned()
                    self.summary.files_total = len(self._jobs) + self.summary.files_restored
                    self._fetch()
                except BaseException:
                    self.cancel_pending(self._futures)
                    raise
                finally:
                    self._pool = None
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

    def _error(self, path: bytes | str, exc: Exception) -> None:
        p = os.fsdecode(path)
        log.info("restore: %s: %s", p, exc)
        self.recorder(p, exc)  # always counted in the summary
        if self._policy is not None:
            self._policy(p, exc)

    def _plan_roots(self, tree_id: bytes, root: bytes) -> None:
        """``flatten``: each selected path goes to ``root/basename``."""
        names: dict[bytes, str] = {}
        siblings = {os.fsencode(posixpath.basename(p)) for p in self._selection.roots}
        for path in self._selection.roots:
            self.cancel.raise_if_cancelled()
            try:
                node = _find_node(self.repo, tree_id, path, self.cancel)
            except SafekeepError as exc:
                if isinstance(exc, Cancelled):
                    raise
                self._error(path, exc)
                continue
            if node is None:
                self._error(path, RestoreError(f"{path} is not in the snapshot"))
                continue
            if node.name in names:
                other = names[node.name]
                self._error(
                    path,
                    RestoreError(
                        f"{path} was not restored: {other} has the same name and goes to the same place"
                    ),
                )
                continue
            names[node.name] = path
            self._plan_entry(node, root, path, "all", siblings)

    def _plan_tree(self, tree_id: bytes, dir_path: bytes, snap_path: str, *, fresh: bool = False) -> None:
        """Plan the items of one folder; ``fresh``: ``dir_path`` was created by this restore, so
        nothing can be in the way in it (no need to look)."""
        self.cancel.raise_if_cancelled()
        try:
            nodes = decode_tree(self.repo.load_blob(BlobType.TREE, tree_id, cancel=self.cancel))
        except SafekeepError as exc:
            if isinstance(exc, Cancelled):
                raise
            self._error(snap_path, exc)
            return
        siblings = {n.name for n in nodes}
        outer, self._to_create = self._to_create, []
        try:
            for node in nodes:
                shown = _child(snap_path, node.name)
                sel = self._selection.selected(shown)
                if sel != "none":
                    self._plan_entry(node, dir_path, shown, sel, siblings, fresh=fresh)
            self._create_planned()  # this folder's files
        finally:
            self._to_create = outer

    def _plan_entry(
        self,
        node: Node,
        dir_path: bytes,
        shown: str,
        sel: str,
        siblings: Collection[bytes],
        *,
        fresh: bool = False,
    ) -> None:
        try:
            check_name(node.name, where=posixpath.dirname(shown))
        except UnsafePathError as exc:
            self._error(shown, exc)
            return
        path = os.path.join(dir_path, node.name)
        try:
            self._plan_node(node, path, shown, sel, siblings, fresh=fresh)
        except (OSError, SafekeepError) as exc:
            if isinstance(exc, Cancelled):
                raise
            err = _write_error(exc) if isinstance(exc, OSError) else exc
            self._error(shown, err)
            if node.type != "dir" and sel == "all":
                self._item(shown, path, Action.FAILED, node.size, error=str(err) or type(err).__name__)

    def _plan_node(
        self, node: Node, path: bytes, shown: str, sel: str, siblings: Collection[bytes], *, fresh: bool
    ) -> None:
        if node.type == "dir":
            created = self._make_dir(path)
            if node.subtree is None:
                raise RestoreError(f"folder {shown} has no content in the backup")
            self._plan_tree(node.subtree, path, shown, fresh=created)
            if sel == "all":
                self._dirs.append((path, node))
                self.summary.dirs_restored += 1
            return
        if sel != "all":
            return
        claim = self._claim(path, shown, node, siblings, fresh=fresh)
        if claim is None:
            return
        path, action = claim
        key = (node.device_id, node.inode)
        if node.links > 1 and node.inode:
            first = self._hardlinks.get(key)
            if first is not None:
                self._links_todo.append(_Link(first, path, node, shown, action))
                return
            self._hardlinks[key] = path
        if node.type == "file":
            content = node.content or []
            if not content:
                self._write_empty(path, node, shown, action)
                return
            job = _FileJob(path, node, len(content), shown, action)
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
            self._to_create.append(job)
            return
        tmp = _tmp_name(path)
        if node.type == "symlink":
            os.symlink(node.linktarget, tmp)
        elif node.type == "fifo":
            os.mkfifo(tmp, 0o600)
        elif node.type in ("dev", "chardev"):
            kind = stat.S_IFBLK if node.type == "dev" else stat.S_IFCHR
            os.mknod(tmp, kind | 0o600, node.device)
        else:
            log.info("not restoring %s of type %s", shown, node.type)
            return
        placed = self._place(tmp, path, node, shown, action)
        if placed is not None:
            self._placed(shown, placed[0], placed[1], node.size, verified=False, other=True)

    # ------------------------------------------------------------------ conflicts

    def _policy_for(self, shown: str) -> ConflictPolicy:
        if self._decisions:
            p = shown
            while True:
                found = self._decisions.get(p)
                if found is not None:
                    return found
                if p == "/":
                    break
                p = posixpath.dirname(p)
        return self.options.conflict

    def _claim(
        self, path: bytes, shown: str, node: Node, siblings: Collection[bytes], *, fresh: bool
    ) -> tuple[bytes, Action] | None:
        """Where a non-folder item goes and what that does to what is there; None: skipped."""
        st = None if fresh else _exists(path)
        if st is None:
            if path in self._claimed:
                raise RestoreError(f"{shown}: a kept copy of another item took the name {os.fsdecode(path)}")
            return path, Action.RESTORED
        if stat.S_ISDIR(st.st_mode):
            raise RestoreError(f"{os.fsdecode(path)} exists and is a folder; it was left alone")
        policy = self._policy_for(shown)
        if policy is ConflictPolicy.SKIP:
            with self._lock:
                self.summary.skipped += 1
            self._item(shown, path, Action.SKIPPED, node.size)
            return None
        if policy is ConflictPolicy.OVERWRITE:
            return path, Action.OVERWRITTEN
        return self._free_name(path, siblings), Action.KEPT_BOTH

    def _free_name(self, path: bytes, siblings: Collection[bytes]) -> bytes:
        folder, name = os.path.split(path)
        assert self._day is not None
        n = 1
        while True:
            candidate = keep_both_name(name, self._day, n)
            full = os.path.join(folder, candidate)
            if candidate not in siblings and full not in self._claimed and _exists(full) is None:
                with self._lock:
                    self._claimed.add(full)
                return full
            n += 1

    def _make_dir(self, path: bytes) -> bool:
        """Create the folder ``path``, or check the one there; True if it was created (it is empty)."""
        try:
            os.mkdir(path, 0o700)
            return True
        except FileExistsError:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                raise UnsafePathError(
                    f"Refusing to restore through the symlink {os.fsdecode(path)!r} inside the target",
                    path=os.fsdecode(path),
                ) from None
            if not stat.S_ISDIR(st.st_mode):
                raise RestoreError(
                    f"{os.fsdecode(path)} exists and is not a folder; it was left alone"
                ) from None
            return False

    def _write_empty(self, path: bytes, node: Node, shown: str, action: Action) -> None:
        tmp = _tmp_name(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        placed = self._place(tmp, path, node, shown, action)
        if placed is not None:
            self._placed(shown, placed[0], placed[1], 0, verified=self.options.verify)

    def _place(
        self, tmp: bytes, path: bytes, node: Node, shown: str, action: Action, *, meta: bool = True
    ) -> tuple[bytes, Action] | None:
        """Rename ``tmp`` to ``path`` and apply the metadata (``meta``: not applied to ``tmp``
        already); None if it was not placed.

        Something that appeared at ``path`` since the plan is overwritten only under the
        overwrite policy; else the item fails and what appeared is left alone.
        """
        try:
            st = _exists(path)
            if st is not None and stat.S_ISDIR(st.st_mode):
                raise RestoreError(f"{os.fsdecode(path)} exists and is a folder; it was left alone")
            if st is not None and action is not Action.OVERWRITTEN:
                if self._policy_for(shown) is not ConflictPolicy.OVERWRITE:
                    raise RestoreError(f"{os.fsdecode(path)} appeared during the restore; it was left alone")
                action = Action.OVERWRITTEN
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        if meta:
            self._meta(path, node)
        return path, action

    def _placed(
        self, shown: str, path: bytes, action: Action, size: int, *, verified: bool, other: bool = False
    ) -> None:
        with self._lock:
            s = self.summary
            if other:
                s.other_restored += 1
            else:
                s.files_restored += 1
            if action is Action.OVERWRITTEN:
                s.overwritten += 1
            elif action is Action.KEPT_BOTH:
                s.kept_both += 1
            if verified:
                s.verified += 1
        self._item(shown, path, action, size, verified=verified)

    def _item(
        self, shown: str, path: bytes, action: Action, size: int, *, verified: bool = False, error: str = ""
    ) -> None:
        with self._lock:
            if len(self.summary.items) >= ITEMS_LIMIT:
                self.summary.items_omitted += 1
                return
            self.summary.items.append(
                RestoredItem(shown, os.fsdecode(path), action.value, size, verified, error)
            )

    def _meta(self, path: bytes, node: Node, fd: int | None = None) -> None:
        for warning in apply_metadata(path, node, fd=fd):
            log.info("restore metadata: %s", warning)

    # ------------------------------------------------------------------ fetching

    def _create_planned(self) -> None:
        """Have a worker create the temporary files of the folder just planned.

        Creating a file is the largest cost of a restore of many small files (file systems
        spend far more time on a new inode than on writing a small file's data), and it needs
        no data from the repository: it starts while the main thread plans, and goes on before
        the packs are fetched. One task per folder: two threads creating files in one folder
        wait for each other (the folder is locked while a name is added), in two folders they
        do not. A file whose data comes before its task ran is created by its first write.
        """
        if not self._to_create:
            return
        assert self._pool is not None
        batch, self._to_create = self._to_create, []
        self._futures.append(self._pool.submit(self._create, batch))

    def _create(self, batch: list[_FileJob]) -> None:
        for job in batch:
            self.cancel.raise_if_cancelled()
            try:
                with job.lock:
                    if job.created or job.failed:
                        continue
                    os.close(os.open(job.tmp, os.O_RDWR | _O_BINARY | os.O_CREAT | os.O_EXCL, 0o600))
                    job.created = True
            except OSError as exc:
                self._fail(job, _write_error(exc))

    def _fetch(self) -> None:
        """Restore every planned blob, pack by pack, on the workers."""
        assert self._pool is not None
        # the largest packs first: a worker does not end up alone with a big pack at the end
        packs = sorted(self._packs.items(), key=lambda p: -len(p[1]))
        self._futures.extend(self._pool.submit(self._pack, pid, entries) for pid, entries in packs)
        for f in concurrent.futures.as_completed(self._futures):
            f.result()

    @staticmethod
    def cancel_pending(futures: list[concurrent.futures.Future[None]]) -> None:
        for f in futures:
            f.cancel()

    def _pack(self, pack_id: str, entries: list[tuple[PackedBlob, _FileJob, int]]) -> None:
        """Restore every planned blob of one pack: adjacent blobs are fetched in one ranged read."""
        if self.cancel.cancelled:
            return
        entries.sort(key=_pack_offset)
        group: list[tuple[PackedBlob, _FileJob, int]] = []
        start = end = 0
        for e in entries:
            b = e[0]
            if group and b.offset - end <= MERGE_GAP and b.offset + b.length - start <= MAX_READ:
                group.append(e)
                end = max(end, b.offset + b.length)
                continue
            if group:
                self._group(pack_id, group, start, end)
            group, start, end = [e], b.offset, b.offset + b.length
        if group:
            self._group(pack_id, group, start, end)

    def _group(
        self, pack_id: str, group: list[tuple[PackedBlob, _FileJob, int]], start: int, end: int
    ) -> None:
        """One ranged read of ``pack_id`` (``start``..``end``) and the blobs in it, in offset order."""
        self.cancel.raise_if_cancelled()
        try:
            data = self.repo.backend.load(
                Handle(FileType.PACK, pack_id), start, end - start, cancel=self.cancel
            )
        except SafekeepError as exc:
            if isinstance(exc, Cancelled):
                raise
            for _, job, _ in group:
                self._fail(job, exc)
            return
        view = memoryview(data)
        # the same blob twice in a row (a chunk shared by files): decrypted once
        last_id = b""
        plain = b""
        broken: SafekeepError | None = None
        for blob, job, offset in group:
            if job.failed:
                continue
            if blob.id != last_id:
                last_id, broken = blob.id, None
                try:
                    sealed = view[blob.offset - start : blob.offset - start + blob.length]
                    plain = self._open_blob(pack_id, blob, sealed)
                except SafekeepError as exc:
                    plain, broken = b"", exc
            if broken is not None:
                self._fail(job, broken)
                continue
            self.cancel.raise_if_cancelled()
            self._write(job, offset, plain)

    def _open_blob(self, pack_id: str, blob: PackedBlob, sealed: memoryview) -> bytes:
        """Check the MAC, decrypt and decompress one blob.

        Its SHA-256 is checked here only without ``verify``: with it, every chunk is hashed when
        the written file is re-read (:meth:`_verify`), before the file takes its name; hashing
        every byte twice would cost about as much CPU time as decrypting it.
        """
        return self.repo.open_blob(pack_id, blob, sealed, check_id=not self.options.verify)

    def _fail(self, job: _FileJob, exc: Exception) -> None:
        with job.lock:
            if job.failed:
                return
            job.failed = True
        self._remove_tmp(job)
        self._error(job.path, exc)
        self._item(job.shown, job.path, Action.FAILED, job.node.size, error=str(exc) or type(exc).__name__)

    def _write(self, job: _FileJob, offset: int, data: bytes) -> None:
        """Write one blob of ``job``; after its last one, check the file and give it its name."""
        try:
            with job.lock:
                if job.failed:
                    return
                fd = os.open(
                    job.tmp, os.O_RDWR | _O_BINARY | (0 if job.created else os.O_CREAT | os.O_EXCL), 0o600
                )
                job.created = True
                try:
                    _pwrite_all(fd, data, offset)
                    job.end = max(job.end, offset + len(data))
                    job.remaining -= 1
                    done = job.remaining == 0
                    if done:
                        self._check(job, fd)
                        self._meta(job.path, job.node, fd)  # through the descriptor, before its name
                finally:
                    os.close(fd)
        except Cancelled:
            self._remove_tmp(job)
            raise
        except OSError as exc:
            self._fail(job, _write_error(exc))
            return
        except SafekeepError as exc:
            self._fail(job, exc)
            return
        with self._lock:
            self.summary.bytes_written += len(data)
        if done:
            self._complete(job)
        self._report()

    def _check(self, job: _FileJob, fd: int) -> None:
        """All of ``job``'s data is written to ``fd``: check its size, and re-read it (``verify``).

        The file was created empty (``O_EXCL``) and only this restore wrote to it, so its size is
        the end of the furthest write (no ``fstat`` needed)."""
        size = job.end
        if size != job.node.size:
            raise RestoreError(
                f"{os.fsdecode(job.path)}: restored {size} bytes but the backup says {job.node.size}"
            )
        if self.options.verify:
            self._verify(job, fd)

    def _complete(self, job: _FileJob) -> None:
        """``job``'s temporary file is written and checked: give it its real name."""
        try:
            placed = self._place(job.tmp, job.path, job.node, job.shown, job.action, meta=False)
        except (OSError, SafekeepError) as exc:
            self._fail(job, exc)
            return
        if placed is not None:
            self._placed(job.shown, placed[0], placed[1], job.node.size, verified=self.options.verify)

    def _verify(self, job: _FileJob, fd: int) -> None:
        """Re-read the temporary file from disk and check every chunk against its ID (its SHA-256).

        The file is read in blocks of :data:`VERIFY_BLOCK` into one buffer per thread; a chunk's
        hash is fed with slices of it, so nothing is copied or allocated per chunk.
        """
        content = job.node.content or []
        view = self._verify_buffer()
        read_at = _reader(fd)
        pos = 0
        for blob_id in content:
            self.cancel.raise_if_cancelled()
            if len(content) == 1:
                length = job.node.size
            else:
                found = self.repo.index.lookup(BlobType.DATA, blob_id)
                if found is None:
                    raise RestoreError(f"{job.shown}: a part of its data ({blob_id.hex()[:12]}) is missing")
                length = found[1].plaintext_length
            h = hashlib.sha256()
            done = 0
            while done < length:
                n = read_at(view[: min(length - done, len(view))], pos + done)
                if not n:
                    raise self._mismatch(job, "has not the size the backup says")
                h.update(view[:n])
                done += n
            if h.digest() != blob_id:
                # the backup's own copy may be wrong (its SHA-256 is first checked here)
                self.repo.load_blob(BlobType.DATA, blob_id, cancel=self.cancel)
                raise self._mismatch(job, f"does not match the backup at byte {pos}")
            pos += length
        if pos != job.node.size:  # the file's own size was checked before (_check)
            raise self._mismatch(job, "has not the size the backup says")

    def _verify_buffer(self) -> memoryview:
        view: memoryview | None = getattr(self._local, "buffer", None)
        if view is None:
            view = memoryview(bytearray(VERIFY_BLOCK))
            self._local.buffer = view
        return view

    @staticmethod
    def _mismatch(job: _FileJob, what: str) -> RestoreError:
        return RestoreError(
            f"{job.shown}: the restored copy {what}; it was removed",
            hint="Check the disk you restore to, then restore the file again.",
        )

    def _finish_links(self) -> None:
        for link in self._links_todo:
            try:
                tmp = _tmp_name(link.path)
                os.link(link.first, tmp)
                placed = self._place(tmp, link.path, link.node, link.shown, link.action)
            except (OSError, SafekeepError) as exc:
                self._error(link.path, exc)
                self._item(link.shown, link.path, Action.FAILED, link.node.size, error=str(exc))
                continue
            if placed is not None:
                self._placed(link.shown, placed[0], placed[1], link.node.size, verified=False, other=True)

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


# ---------------------------------------------------------------------------- preview


class _Full(Exception):
    pass


def find_conflicts(
    repo: Repository,
    snapshot: Snapshot,
    target: str,
    *,
    include: Sequence[str] = (),
    flatten: bool = False,
    limit: int = CONFLICTS_LIMIT,
    cancel: CancelToken = NEVER,
) -> ConflictScan:
    """What is in the way of restoring ``include`` of ``snapshot`` into ``target`` (read-only).

    Lists every selected non-folder item whose place is taken ("file"), every clash of a folder
    with a non-folder ("type"), and each selected path that is an existing folder ("folder").
    Only folders that exist in the target are walked, so a restore into a new folder costs
    nothing. The repository's index must be loaded.
    """
    sel = _Selection(include, flatten)
    picked = set(sel.includes)
    root = os.fsencode(os.path.abspath(target))
    found: list[Conflict] = []

    def add(node: Node, path: bytes, shown: str, kind: str, st: os.stat_result) -> None:
        if len(found) >= limit:
            raise _Full
        folder = kind == "folder"
        found.append(
            Conflict(
                snapshot_path=shown,
                target_path=os.fsdecode(path),
                kind=kind,
                existing_size=0 if stat.S_ISDIR(st.st_mode) else st.st_size,
                existing_mtime=st.st_mtime,
                backup_size=0 if folder or node.type == "dir" else node.size,
                backup_mtime=node.mtime.ns / 1e9,
            )
        )

    def children(tree_id: bytes) -> list[Node]:
        cancel.raise_if_cancelled()
        return decode_tree(repo.load_blob(BlobType.TREE, tree_id, cancel=cancel))

    def visit(node: Node, path: bytes, shown: str) -> None:
        """``node`` is selected with everything below it."""
        st = _exists(path)
        if st is None:
            return
        existing_dir = stat.S_ISDIR(st.st_mode)
        if node.type == "dir":
            if not existing_dir:
                add(node, path, shown, "type", st)
                return
            if shown in picked:
                add(node, path, shown, "folder", st)
            if node.subtree is not None:
                walk(node.subtree, path, shown, partial=False)
        elif existing_dir:
            add(node, path, shown, "type", st)
        else:
            add(node, path, shown, "file", st)

    def walk(tree_id: bytes, dir_path: bytes, snap_path: str, *, partial: bool) -> None:
        for node in children(tree_id):
            shown = _child(snap_path, node.name)
            how = sel.selected(shown) if partial else "all"
            if how == "none":
                continue
            try:
                check_name(node.name, where=snap_path)
            except UnsafePathError:
                continue
            path = os.path.join(dir_path, node.name)
            if how == "all":
                visit(node, path, shown)
            elif node.type == "dir" and node.subtree is not None:
                st = _exists(path)
                if st is not None and stat.S_ISDIR(st.st_mode):
                    walk(node.subtree, path, shown, partial=True)

    try:
        if sel.flatten:
            for p in sel.roots:
                node = _find_node(repo, snapshot.tree, p, cancel)
                if node is not None:
                    visit(node, os.path.join(root, node.name), p)
        else:
            walk(snapshot.tree, root, "/", partial=bool(sel.includes))
    except _Full:
        return ConflictScan(tuple(found), more=True)
    return ConflictScan(tuple(found), more=False)
