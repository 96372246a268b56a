"""Read the folders to back up ahead of the archiver, in a background thread.

A **scan** walks the sources depth-first in exactly the order the archiver visits them (names
sorted by their bytes, subfolders entered where they appear) and, for each folder, produces a
**listing**: every entry that is not excluded, with its ``lstat`` result and its tree node
(``nodes.node_from_path``), or the ``OSError`` that prevented them. The archiver takes the
listings one by one instead of listing and ``lstat``-ing itself.

Why: the walk needs no repository key. Started before the repository is opened, it runs while
scrypt derives the key (which releases the GIL) and while the index loads, and afterwards its
system calls overlap with the archiver's own work.

Bounds: the scan stops reading ahead once ``limit`` entries wait in listings not yet taken (one
folder's listing is always completed, so memory is that of the largest folder plus ``limit``
entries). The archiver and the scan must agree on the order; if a taken listing is not the
one the archiver asks for, the scan is stopped and ``take`` returns None from then on: the
archiver then reads the file system itself, so a disagreement costs speed, never correctness.
"""

from __future__ import annotations

import collections
import logging
import os
import stat
import threading
from dataclasses import dataclass

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.core.format.tree import Node
from safekeep.core.fs.exclude import Excluder
from safekeep.core.fs.nodes import UserCache, node_from_path

__all__ = ["Entry", "Listing", "Scan"]

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 4096  # entries read ahead (about 1 KiB each)
JOIN_TIMEOUT = 1.0


@dataclass(slots=True)
class Entry:
    """One folder entry: its node, or why it could not be read."""

    name: bytes
    path: bytes
    node: Node | None
    error: OSError | None


@dataclass(slots=True)
class Listing:
    """A folder's entries in name order; ``error`` if the folder itself could not be listed."""

    path: bytes
    entries: list[Entry]
    error: OSError | None = None


class Scan:
    """The background walk of ``roots`` (absolute folder paths, in the archiver's order)."""

    def __init__(
        self, roots: list[bytes], excluder: Excluder, *, limit: int = DEFAULT_LIMIT, with_atime: bool = False
    ) -> None:
        self._roots = roots
        self._excluder = excluder
        self._limit = limit
        self._with_atime = with_atime
        self._users = UserCache()
        self._ready: collections.deque[Listing] = collections.deque()
        self._buffered = 0  # entries in self._ready
        self._done = False  # the walk finished (or failed, or was stopped)
        self._stopped = False
        self.taken = 0  # listings handed to the archiver
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="safekeep-scan", daemon=True)

    def start(self) -> Scan:
        self._thread.start()
        return self

    # ------------------------------------------------------------------ consumer side

    def take(self, path: bytes, cancel: CancelToken = NEVER) -> Listing | None:
        """The listing of folder ``path`` (waits for it), or None: read it yourself."""
        with self._cond:
            if self._stopped:
                return None
            while not self._ready and not self._done:
                cancel.raise_if_cancelled()
                self._cond.wait(0.25)
            if not self._ready:
                return None  # the walk ended early (stopped or failed): no more listings
            listing = self._ready.popleft()
            self._buffered -= len(listing.entries)
            self._cond.notify_all()
        if listing.path != path:
            log.debug("scan order differs at %r (expected %r); reading directly", listing.path, path)
            self.close()
            return None
        self.taken += 1
        return listing

    def close(self) -> None:
        """Stop the walk and drop what it read ahead. Idempotent. Does not wait for a system call
        that hangs (a stalled network share): the thread is a daemon and ends after it."""
        with self._cond:
            self._stopped = True
            self._ready.clear()
            self._buffered = 0
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(JOIN_TIMEOUT)

    # ------------------------------------------------------------------ the walk

    def _run(self) -> None:
        try:
            for root in self._roots:
                try:
                    if not stat.S_ISDIR(os.lstat(root).st_mode):
                        continue  # a file given as a source: the archiver reads it itself
                except OSError:
                    continue
                if not self._walk(root):
                    break
        except Exception:  # the archiver reads the rest itself and meets the problem there
            log.debug("background scan failed; the archiver reads directly", exc_info=True)
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _walk(self, path: bytes) -> bool:
        """Emit ``path``'s listing, then walk its subfolders. False once stopped."""
        with self._cond:
            while self._buffered >= self._limit and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return False
        listing = self._list(path)
        with self._cond:
            if self._stopped:
                return False
            self._ready.append(listing)
            self._buffered += len(listing.entries)
            self._cond.notify_all()
        for entry in listing.entries:
            if entry.node is not None and entry.node.type == "dir" and not self._walk(entry.path):
                return False
        return True

    def _list(self, path: bytes) -> Listing:
        try:
            with os.scandir(path) as it:
                names = sorted(e.name for e in it)
        except OSError as exc:
            return Listing(path, [], exc)
        excluder = self._excluder
        entries: list[Entry] = []
        for name in names:
            child = os.path.join(path, name)
            if excluder and excluder.excluded(child):
                continue
            try:
                st = os.lstat(child)
                node = node_from_path(child, name, st, user_cache=self._users, with_atime=self._with_atime)
            except OSError as exc:
                entries.append(Entry(name, child, None, exc))
                continue
            entries.append(Entry(name, child, node, None))
        return Listing(path, entries)
