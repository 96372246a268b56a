"""A disposable local cache of a repository's small, hot files.

Opening a repository on a remote backend would otherwise download every index file, every
snapshot and, for an incremental backup or a browse, the tree packs. The cache keeps copies of
exactly those (restic caches the same three kinds) under ``<cache root>/<repository ID>/`` in
the repository's own layout.

Everything in it is named by content (the SHA-256 of the stored bytes), so an entry is never
stale in content: it is either the right file or unreadable (and the repository verifies every
file it reads anyway). Entries whose files disappeared from the repository (after a prune) are
removed when the repository lists that kind again. Deleting the whole cache at any time is safe:
it is rebuilt from the repository on demand.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from safekeep.storage.base import FileType, Handle

log = logging.getLogger(__name__)

CACHED_TYPES = (FileType.INDEX, FileType.SNAPSHOT, FileType.PACK)
TAG = "Signature: 8a477f597d28d172789f06886806bc55\n# Safekeep/restic repository cache; safe to delete.\n"


class RepositoryCache:
    def __init__(self, root: str | os.PathLike[str], repo_id: str) -> None:
        if not repo_id or "/" in repo_id or repo_id.startswith("."):
            raise ValueError("invalid repository ID for the cache")
        self.root = Path(root)
        self.dir = self.root / repo_id
        self._ready = False

    def _prepare(self) -> None:
        if self._ready:
            return
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tag = self.root / "CACHEDIR.TAG"  # tells backup tools (including us) to skip the cache
        if not tag.exists():
            tag.write_text(TAG)
        self._ready = True

    def _path(self, h: Handle) -> Path:
        return self.dir / h.path()

    def get(self, h: Handle, offset: int = 0, length: int | None = None) -> bytes | None:
        if h.type not in CACHED_TYPES:
            return None
        try:
            with open(self._path(h), "rb") as f:
                if offset:
                    f.seek(offset)
                return f.read() if length is None else f.read(length)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.debug("cache read failed for %s: %s", h.path(), exc)
            return None

    def has(self, h: Handle) -> bool:
        return self._path(h).is_file()

    def put(self, h: Handle, data: bytes | bytearray | memoryview) -> None:
        """Store a copy; failures only cost speed and are logged, never raised."""
        if h.type not in CACHED_TYPES:
            return
        try:
            self._prepare()
            path = self._path(h)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            log.info("could not write to the cache (%s); continuing without it", exc)

    def drop(self, h: Handle) -> None:
        try:
            self._path(h).unlink()
        except OSError:
            pass

    def prune(self, type: FileType, existing: set[str]) -> int:
        """Remove cached files of ``type`` that the repository no longer has."""
        base = self.dir / type.value
        if not base.is_dir():
            return 0
        removed = 0
        files = base.rglob("*") if type is FileType.PACK else base.iterdir()
        for p in list(files):
            if p.is_file() and not p.name.startswith(".") and p.name not in existing:
                try:
                    p.unlink()
                    removed += 1
                except OSError:
                    pass
        return removed
