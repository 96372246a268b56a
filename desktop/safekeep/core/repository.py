"""A repository opened with its password: blob and file I/O on top of a storage backend.

- :meth:`Repository.init` creates ``config`` and the first key; :meth:`Repository.open` finds the
  key that the password unlocks, reads ``config`` and refuses unknown versions.
- :meth:`save_blob` deduplicates against the index, compresses (v2), seals and appends the blob to
  an open pack of its type (data and tree blobs never share a pack). Like restic, a pack is
  spooled to an anonymous temporary file while it fills and while it waits for its upload, so it
  holds no memory then; it is read back only to be uploaded. A full pack is uploaded in the
  background on up to ``connections`` threads. Bounds: packs queued or uploading (on disk) by
  ``connections``, packs read back into memory at once by one for a local disk and by
  ``connections`` otherwise. :meth:`flush` uploads the remaining packs and then writes the index
  for them — packs before index, always.
- :meth:`load_blob` reads a blob through the index and verifies MAC and SHA-256.
- Unpacked files (snapshots, index, locks) are saved under the SHA-256 of their stored bytes, and
  that name is checked again when they are read.
- A write guard (:meth:`set_write_guard`, usually a lock's ``confirm``) runs before every write
  except a lock file's: nothing is written to the repository until the lock is confirmed.

Thread safety: ``save_blob``/``load_blob`` may be called from many threads at once.
"""

from __future__ import annotations

import concurrent.futures
import getpass
import hashlib
import io
import logging
import os
import queue
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import cast

import zstandard

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.clock import SYSTEM_CLOCK, Clock
from safekeep.common.errors import Cancelled
from safekeep.core.cache import RepositoryCache
from safekeep.core.crypto import OVERHEAD, AuthenticationFailed, MasterKey
from safekeep.core.errors import (
    IntegrityError,
    NotARepository,
    RepositoryError,
    RepositoryExists,
    RepositoryNotFound,
    UnsupportedVersion,
    WrongPassword,
)
from safekeep.core.format import unpacked
from safekeep.core.format.config import SUPPORTED_VERSIONS, Config, ConfigError
from safekeep.core.format.index import BlobEntry, IndexFormatError, decode_index_entries, encode_index
from safekeep.core.format.keys import KDFParams, KeyFile, KeyFileError, new_key_file
from safekeep.core.format.pack import BlobType, PackedBlob, pack_trailer
from safekeep.core.format.snapshot import Snapshot, SnapshotFormatError
from safekeep.core.format.times import local_now
from safekeep.core.index import MasterIndex
from safekeep.storage.base import Backend, FileType, Handle
from safekeep.storage.errors import NotFound

log = logging.getLogger(__name__)

DEFAULT_PACK_SIZE = 16 * 1024 * 1024
INDEX_BLOBS_PER_FILE = 50_000  # keeps each index file well under restic's 8 MiB guideline
# shorter data blobs are stored as they are: zstd's frame (about 10 bytes) leaves them little or
# nothing to gain, next to the 32 bytes of encryption and 41 of pack header every blob costs
MIN_COMPRESSED_DATA = 64
SPOOL_BUFFER = 256 * 1024  # gathers small blobs into fewer writes to a pack's temporary file


@dataclass(frozen=True, slots=True)
class RepositoryOptions:
    pack_size: int = DEFAULT_PACK_SIZE
    compression: bool = True  # data blobs; tree blobs are always compressed in v2
    upload_connections: int = 0  # 0 = the backend's ``properties.connections``
    kdf: KDFParams | None = None  # None = calibrate like restic
    cache_dir: str | None = None  # root of the local cache; None = no cache
    temp_dir: str | None = None  # where packs are spooled; None = the system's temporary folder


@dataclass(slots=True)
class _OpenPack:
    """A pack being filled: its sealed blobs, back to back, in an anonymous temporary file (it
    disappears when closed, and with the process on every exit path)."""

    file: io.BufferedRandom
    size: int = 0
    blobs: list[PackedBlob] = field(default_factory=list)

    @staticmethod
    def create(temp_dir: str | None) -> _OpenPack:
        file = tempfile.TemporaryFile(dir=temp_dir, buffering=SPOOL_BUFFER)  # noqa: SIM115 - closed by close()
        return _OpenPack(cast(io.BufferedRandom, file))  # Windows: a wrapper with the same methods

    def append(self, parts: tuple[bytes, bytes, bytes]) -> int:
        """Write one sealed blob; returns its offset in the pack."""
        offset = self.size
        for part in parts:
            self.file.write(part)
        self.size += sum(len(p) for p in parts)
        return offset

    def read_back(self, trailer: bytes, buf: bytearray) -> memoryview:
        """The whole pack, the blobs then ``trailer``, read into ``buf`` (at least that long)."""
        total = self.size + len(trailer)
        self.file.flush()
        self.file.seek(0)
        view = memoryview(buf)[:total]
        pos = 0
        while pos < self.size:
            n = self.file.readinto(view[pos : self.size])
            if not n:
                view.release()
                raise OSError(f"a pack's temporary file ended after {pos} of {self.size} bytes")
            pos += n
        view[self.size :] = trailer
        return view

    def close(self) -> None:
        try:
            self.file.close()
        except OSError as exc:
            log.debug("closing a pack's temporary file: %s", exc)


@dataclass(frozen=True, slots=True)
class BlobSaveResult:
    id: bytes
    added: bool  # False: it was already in the repository
    stored_size: int  # sealed bytes added to a pack (0 when not added)


def sha256(data: bytes | bytearray | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass(frozen=True, slots=True)
class Unlocked:
    """A repository's master key (from the key file ``key_id``) and its config."""

    key_id: str
    master: MasterKey
    config: Config


def _read_config(location: str, master: MasterKey, sealed: bytes) -> Config:
    try:
        plain = master.open(sealed)
    except AuthenticationFailed as exc:
        raise IntegrityError("The repository's config file is damaged (it fails authentication).") from exc
    try:
        config = Config.from_json(plain)
    except ConfigError as exc:
        raise NotARepository(location, str(exc)) from exc
    if config.version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersion(config.version)
    return config


class Repository:
    def __init__(
        self,
        backend: Backend,
        key: MasterKey,
        config: Config,
        *,
        key_id: str = "",
        options: RepositoryOptions | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.backend = backend
        self.key = key
        self.config = config
        self.key_id = key_id
        self.options = options or RepositoryOptions()
        self.clock = clock
        self.index = MasterIndex()
        self.index_loaded = False
        # a local repository needs no cache: its files are already local
        self.cache: RepositoryCache | None = (
            RepositoryCache(self.options.cache_dir, config.id)
            if self.options.cache_dir and not backend.properties.is_local
            else None
        )
        self._lock = threading.Lock()
        self._pending: tuple[set[bytes], set[bytes]] = (set(), set())
        self._open: dict[BlobType, _OpenPack] = {}
        self._unindexed: list[tuple[str, list[PackedBlob]]] = []
        self._unindexed_blobs = 0
        self._index_lock = threading.Lock()
        conns = max(1, self.options.upload_connections or backend.properties.connections)
        self._uploader = concurrent.futures.ThreadPoolExecutor(conns, "safekeep-upload")
        # full packs waiting for or being uploaded (in their temporary files)
        self._in_flight = threading.BoundedSemaphore(conns)
        # packs read back into memory for their upload, each pack_size bytes and a little more:
        # one for a local disk (a second write side by side gains nothing), else one per connection
        self._loaded = threading.BoundedSemaphore(1 if backend.properties.is_local else conns)
        self._buffers: queue.SimpleQueue[bytearray] = queue.SimpleQueue()  # reused for read_back
        self._futures: list[concurrent.futures.Future[None]] = []
        self._upload_error: BaseException | None = None
        self._cancel: CancelToken = NEVER
        self._write_guard: Callable[[], None] | None = None

    # ------------------------------------------------------------------ open / init

    @property
    def version(self) -> int:
        return self.config.version

    @property
    def location(self) -> str:
        return self.backend.properties.location

    @staticmethod
    def init(
        backend: Backend,
        password: str,
        *,
        version: int = 2,
        options: RepositoryOptions | None = None,
        clock: Clock = SYSTEM_CLOCK,
        cancel: CancelToken = NEVER,
    ) -> Repository:
        options = options or RepositoryOptions()
        location = backend.properties.location
        try:
            backend.stat(Handle.config(), cancel=cancel)
            raise RepositoryExists(location)
        except NotFound:
            pass
        if any(True for _ in backend.list(FileType.KEY, cancel=cancel)):
            raise RepositoryExists(location)
        backend.create(cancel=cancel)
        master = MasterKey.generate()
        config = Config.new(version)
        repo = Repository(backend, master, config, options=options, clock=clock)
        repo.key_id = repo.add_key(password, cancel=cancel)
        backend.save(Handle.config(), master.seal(config.to_json()), cancel=cancel)
        return repo

    @staticmethod
    def unlock(backend: Backend, password: str, *, cancel: CancelToken = NEVER) -> Unlocked:
        """The first half of :meth:`open`, the slow one: find the key file ``password`` opens
        (scrypt for each one tried) and read the config with it. Raises what :meth:`open` raises."""
        location = backend.properties.location
        try:
            sealed_config = backend.load(Handle.config(), cancel=cancel)
        except NotFound:
            if any(
                True for t in FileType if t is not FileType.CONFIG for _ in backend.list(t, cancel=cancel)
            ):
                raise NotARepository(location, "its 'config' file is missing") from None
            raise RepositoryNotFound(location) from None
        key_infos = list(backend.list(FileType.KEY, cancel=cancel))
        if not key_infos:
            raise NotARepository(location, "it has no key files")
        for info in key_infos:
            cancel.raise_if_cancelled()
            try:
                raw = backend.load(Handle(FileType.KEY, info.name), cancel=cancel)
                kf = KeyFile.from_json(raw)
                master = kf.unlock(password)
            except (KeyFileError, AuthenticationFailed, ValueError) as exc:
                log.debug("key %s does not open: %s", info.name[:8], exc)
                continue
            return Unlocked(info.name, master, _read_config(location, master, sealed_config))
        raise WrongPassword()

    @staticmethod
    def open(
        backend: Backend,
        password: str,
        *,
        options: RepositoryOptions | None = None,
        clock: Clock = SYSTEM_CLOCK,
        cancel: CancelToken = NEVER,
        unlocked: Unlocked | None = None,
    ) -> Repository:
        """Open the repository with ``password``; ``unlocked``: the result of :meth:`unlock` for
        this location, done earlier (the config is read again here and must open with it)."""
        if unlocked is None:
            unlocked = Repository.unlock(backend, password, cancel=cancel)
        else:
            location = backend.properties.location
            try:
                sealed_config = backend.load(Handle.config(), cancel=cancel)
            except NotFound:
                raise RepositoryNotFound(location) from None
            config = _read_config(location, unlocked.master, sealed_config)
            if config.id != unlocked.config.id:
                raise RepositoryError(f"The repository at {location} changed while it was being opened.")
        return Repository(
            backend, unlocked.master, unlocked.config, key_id=unlocked.key_id, options=options, clock=clock
        )

    def set_write_guard(self, guard: Callable[[], None] | None) -> None:
        """``guard`` runs before every write (lock files excepted) and may raise to refuse it;
        e.g. :meth:`safekeep.core.locks.Lock.confirm`, so reading can start while a lock settles."""
        self._write_guard = guard

    def _before_write(self) -> None:
        guard = self._write_guard
        if guard is not None:
            guard()

    # ------------------------------------------------------------------ keys

    def add_key(self, password: str, *, cancel: CancelToken = NEVER) -> str:
        kf = new_key_file(
            self.key,
            password,
            created=local_now(self.clock.now()),
            username=_username(),
            hostname=socket.gethostname(),
            params=self.options.kdf,
        )
        raw = kf.to_json()
        key_id = sha256(raw).hex()
        self._before_write()
        self.backend.save(Handle(FileType.KEY, key_id), raw, cancel=cancel)
        return key_id

    def list_keys(self, *, cancel: CancelToken = NEVER) -> list[tuple[str, KeyFile]]:
        out = []
        for info in self.backend.list(FileType.KEY, cancel=cancel):
            raw = self.backend.load(Handle(FileType.KEY, info.name), cancel=cancel)
            try:
                out.append((info.name, KeyFile.from_json(raw)))
            except KeyFileError:
                log.warning("unreadable key file %s", info.name)
        return out

    def change_password(self, new_password: str, *, cancel: CancelToken = NEVER) -> str:
        """Add a key for ``new_password``, switch to it and remove the key in use; returns its ID."""
        old = self.key_id
        self.key_id = self.add_key(new_password, cancel=cancel)  # add_key passes the write guard
        if old:
            self.backend.remove(Handle(FileType.KEY, old), cancel=cancel)
        return self.key_id

    def remove_key(self, key_id: str, *, cancel: CancelToken = NEVER) -> None:
        if key_id == self.key_id:
            raise RepositoryError(
                "The key in use cannot be removed.",
                hint="Open the repository with another password first, or use 'key passwd' to change it.",
            )
        self._before_write()
        self.backend.remove(Handle(FileType.KEY, key_id), cancel=cancel)

    # ------------------------------------------------------------------ unpacked files

    def save_unpacked(self, type: FileType, data: bytes, *, cancel: CancelToken = NEVER) -> str:
        cancel.raise_if_cancelled()
        if type is not FileType.LOCK:
            self._before_write()
        sealed = unpacked.seal(self.key, data, version=self.version)
        name = sha256(sealed).hex()
        self.backend.save(Handle(type, name), sealed, cancel=cancel)
        return name

    def load_unpacked(self, type: FileType, name: str, *, cancel: CancelToken = NEVER) -> bytes:
        h = Handle(type, name)
        sealed = self.cache.get(h) if self.cache is not None else None
        if sealed is not None and sha256(sealed).hex() != name:
            sealed = None  # a damaged cache copy: read the repository's (and replace the copy)
        if sealed is None:
            sealed = self.backend.load(h, cancel=cancel)
            if sha256(sealed).hex() != name:
                raise IntegrityError(f"{type.value}/{name} is damaged: its content does not match its name.")
            if self.cache is not None and type is not FileType.LOCK:
                self.cache.put(h, sealed)
        try:
            return unpacked.decode_plaintext(self.key.open(sealed))
        except AuthenticationFailed as exc:
            raise IntegrityError(f"{type.value}/{name} fails authentication (damaged or tampered).") from exc
        except unpacked.UnpackedFormatError as exc:
            raise IntegrityError(f"{type.value}/{name}: {exc}") from exc

    def resolve_id(self, type: FileType, prefix: str, *, cancel: CancelToken = NEVER) -> str:
        """The full ID of the one file of ``type`` whose name starts with ``prefix``."""
        matches = [i.name for i in self.backend.list(type, cancel=cancel) if i.name.startswith(prefix)]
        if not matches:
            raise RepositoryError(f"No {type.value} file matches {prefix!r}.")
        if len(matches) > 1:
            raise RepositoryError(
                f"{prefix!r} matches several {type.value} files.", hint="Give more characters of the ID."
            )
        return matches[0]

    # ------------------------------------------------------------------ index

    def load_index(self, *, cancel: CancelToken = NEVER) -> None:
        names = [i.name for i in self.backend.list(FileType.INDEX, cancel=cancel)]
        if self.cache is not None:
            self.cache.prune(FileType.INDEX, set(names))
        for _, packs in self.read_index_files(names, cancel=cancel):
            for pack_id, entries in packs:
                self.index.add_entries(pack_id, entries)
        self.index_loaded = True
        if self.cache is not None:
            self.cache.prune(FileType.PACK, self.index.pack_ids())

    def read_index_files(
        self, names: list[str], *, cancel: CancelToken = NEVER
    ) -> Iterator[tuple[str, list[tuple[str, list[BlobEntry]]]]]:
        """Each index file of ``names`` (read in parallel, in order) with its packs' entries."""

        def one(name: str) -> list[tuple[str, list[BlobEntry]]]:
            cancel.raise_if_cancelled()
            raw = self.load_unpacked(FileType.INDEX, name, cancel=cancel)
            try:
                return list(decode_index_entries(raw))
            except IndexFormatError as exc:
                raise IntegrityError(f"index/{name} is malformed: {exc}") from exc

        workers = max(2, self.backend.properties.connections)
        with concurrent.futures.ThreadPoolExecutor(workers, "safekeep-index") as ex:
            yield from zip(names, ex.map(one, names), strict=True)

    def ensure_index(self, *, cancel: CancelToken = NEVER) -> None:
        """Load the index unless it was already loaded."""
        if not self.index_loaded:
            self.load_index(cancel=cancel)

    def has_blob(self, type: BlobType, blob_id: bytes) -> bool:
        return self.index.has(type, blob_id) or blob_id in self._pending[type]

    # ------------------------------------------------------------------ blobs

    def save_blob(
        self, type: BlobType, data: bytes | memoryview, *, blob_id: bytes | None = None
    ) -> BlobSaveResult:
        """Store a blob unless the repository already has it. Thread-safe."""
        if self._upload_error is not None:
            raise self._upload_error
        self._cancel.raise_if_cancelled()
        bid = blob_id or sha256(data)
        with self._lock:
            if self.index.has(type, bid) or bid in self._pending[type]:
                return BlobSaveResult(bid, False, 0)
            self._pending[type].add(bid)
        try:
            payload: bytes | memoryview = data
            ulen = 0
            if (
                self.version >= 2
                and len(data)
                and (type is BlobType.TREE or (self.options.compression and len(data) >= MIN_COMPRESSED_DATA))
            ):
                compressed = unpacked.compressor().compress(data)
                if type is BlobType.TREE or len(compressed) < len(data):
                    payload, ulen = compressed, len(data)
            parts = self.key.seal_parts(payload)
            sealed_len = len(parts[0]) + len(parts[1]) + len(parts[2])
        except BaseException:
            with self._lock:
                self._pending[type].discard(bid)
            raise
        full: _OpenPack | None = None
        with self._lock:
            try:
                pack = self._open.get(type)
                if pack is None:
                    pack = self._open[type] = _OpenPack.create(self.options.temp_dir)
                offset = pack.append(parts)
            except OSError as exc:
                self._pending[type].discard(bid)
                broken = self._open.pop(type, None)
                if broken is not None:  # its other blobs are lost: this backup cannot complete
                    broken.close()
                err = self._spool_error(exc)
                if self._upload_error is None:
                    self._upload_error = err
                raise err from exc
            pack.blobs.append(PackedBlob(type, bid, offset, sealed_len, ulen))
            if pack.size >= self.options.pack_size:
                full = self._open.pop(type)
        if full is not None:
            self._submit(full)
        return BlobSaveResult(bid, True, sealed_len)

    def _spool_error(self, exc: OSError) -> RepositoryError:
        where = self.options.temp_dir or tempfile.gettempdir()
        return RepositoryError(
            f"A pack could not be written to the temporary folder {where}: {exc.strerror or exc}.",
            hint="Free some space there (packs need a few times 16 MiB), or set TMPDIR to another folder.",
        )

    def _submit(self, pack: _OpenPack) -> None:
        try:
            while not self._in_flight.acquire(timeout=0.2):
                if self._upload_error is not None:
                    raise self._upload_error
        except BaseException:
            pack.close()
            raise
        try:
            self._futures.append(self._uploader.submit(self._upload, pack))
        except BaseException:
            pack.close()
            self._in_flight.release()
            raise

    def _upload(self, pack: _OpenPack) -> None:
        try:
            if self._upload_error is not None or self._cancel.cancelled:
                return
            self._before_write()
            trailer = pack_trailer(self.key, pack.blobs)
            with self._loaded:
                # buffers are reused across packs: a fresh one is zero-filled and page-faulted
                buf = self._buffers.get_nowait() if not self._buffers.empty() else bytearray()
                need = pack.size + len(trailer)
                if len(buf) < need:
                    try:
                        buf.extend(bytes(need - len(buf)))
                    except BufferError:  # still viewed by a provider that kept the last pack
                        buf = bytearray(need)
                try:
                    try:
                        body = pack.read_back(trailer, buf)
                    except OSError as exc:
                        raise self._spool_error(exc) from exc
                    pack.close()
                    pack_id = sha256(body).hex()
                    self.backend.save(Handle(FileType.PACK, pack_id), body, cancel=self._cancel)
                    del body  # the buffer is reused: providers keep no view of it after save
                finally:
                    self._buffers.put(buf)
            with self._lock:
                self.index.add_pack(pack_id, pack.blobs)
                for b in pack.blobs:
                    self._pending[b.type].discard(b.id)
                self._unindexed.append((pack_id, pack.blobs))
                self._unindexed_blobs += len(pack.blobs)
                write_now = self._unindexed_blobs >= INDEX_BLOBS_PER_FILE
            if write_now:
                self._write_index()
        except BaseException as exc:
            if self._upload_error is None:
                self._upload_error = exc
        finally:
            pack.close()
            self._in_flight.release()

    def _write_index(self) -> None:
        with self._index_lock:
            with self._lock:
                packs, self._unindexed = self._unindexed, []
                self._unindexed_blobs = 0
            if packs and not self._cancel.cancelled:
                self.save_unpacked(FileType.INDEX, encode_index(packs), cancel=self._cancel)

    def set_cancel(self, cancel: CancelToken) -> None:
        """Uploads stop when ``cancel`` fires; nothing more is written after it."""
        self._cancel = cancel

    def flush(self) -> None:
        """Upload all open packs, wait for every upload, then write their index."""
        with self._lock:
            opened = list(self._open.values())
            self._open.clear()
        for i, p in enumerate(opened):
            if not p.blobs:
                p.close()
                continue
            try:
                self._submit(p)
            except BaseException:
                for rest in opened[i + 1 :]:
                    rest.close()
                raise
        for f in self._futures:
            f.result()
        self._futures.clear()
        if self._upload_error is not None:
            err, self._upload_error = self._upload_error, None
            raise err
        if self._cancel.cancelled:
            raise Cancelled()
        self._write_index()

    def abandon(self) -> None:
        """Drop unfinished packs after a failure or cancel; uploads in progress are awaited."""
        with self._lock:
            opened = list(self._open.values())
            self._open.clear()
        for p in opened:
            p.close()
        for f in self._futures:
            f.exception()
        self._futures.clear()
        self._upload_error = None
        for s in self._pending:
            s.clear()

    def close(self) -> None:
        self._uploader.shutdown(wait=True)
        with self._lock:
            opened = list(self._open.values())
            self._open.clear()
        for p in opened:  # blobs never flushed: their temporary files go
            p.close()

    def load_blob(self, type: BlobType, blob_id: bytes, *, cancel: CancelToken = NEVER) -> bytes:
        found = self.index.lookup(type, blob_id)
        if found is None:
            raise IntegrityError(f"The {type.json_name} blob {blob_id.hex()[:16]} is not in the index.")
        pack_id, blob = found
        h = Handle(FileType.PACK, pack_id)
        if self.cache is not None and type is BlobType.TREE:
            sealed = self._cached_tree_range(h, blob, cancel)
            try:
                return self.open_blob(pack_id, blob, sealed)
            except IntegrityError:
                self.cache.drop(h)  # a damaged cache copy: fall back to the repository
        sealed = self.backend.load(h, blob.offset, blob.length, cancel=cancel)
        return self.open_blob(pack_id, blob, sealed)

    def _cached_tree_range(self, h: Handle, blob: PackedBlob, cancel: CancelToken) -> bytes:
        """A tree blob's bytes from the cached copy of its pack, fetching the pack once."""
        assert self.cache is not None
        data = self.cache.get(h, blob.offset, blob.length)
        if data is None:
            whole = self.backend.load(h, cancel=cancel)
            if sha256(whole).hex() == h.name:  # never cache a damaged pack
                self.cache.put(h, whole)
            data = whole[blob.offset : blob.offset + blob.length]
        return data

    def open_blob(
        self, pack_id: str, blob: PackedBlob, sealed: bytes | memoryview, *, check_id: bool = True
    ) -> bytes:
        """Decrypt, decompress and verify one sealed blob read from ``pack_id``.

        The MAC is always checked before decrypting. ``check_id=False`` skips the SHA-256 of the
        plaintext, for a caller that hashes the same bytes itself later (restore's verification).
        """
        if len(sealed) != blob.length:
            raise IntegrityError(
                f"Pack {pack_id[:16]} is truncated: blob {blob.id.hex()[:16]} is incomplete.",
                pack=pack_id,
                blob=blob.id.hex(),
            )
        try:
            plain = self.key.open(sealed)
            if blob.uncompressed_length:
                plain = unpacked.decompressor().decompress(plain, max_output_size=blob.uncompressed_length)
        except (AuthenticationFailed, zstandard.ZstdError) as exc:
            raise IntegrityError(
                f"Blob {blob.id.hex()[:16]} in pack {pack_id[:16]} is damaged ({exc}).",
                pack=pack_id,
                blob=blob.id.hex(),
            ) from exc
        if check_id and sha256(plain) != blob.id:
            raise IntegrityError(
                f"Blob {blob.id.hex()[:16]} in pack {pack_id[:16]} does not match its ID.",
                pack=pack_id,
                blob=blob.id.hex(),
            )
        return plain

    # ------------------------------------------------------------------ snapshots

    def save_snapshot(self, snap: Snapshot, *, cancel: CancelToken = NEVER) -> str:
        snap.id = self.save_unpacked(FileType.SNAPSHOT, snap.to_json(), cancel=cancel)
        return snap.id

    def load_snapshot(self, snapshot_id: str, *, cancel: CancelToken = NEVER) -> Snapshot:
        raw = self.load_unpacked(FileType.SNAPSHOT, snapshot_id, cancel=cancel)
        try:
            return Snapshot.from_json(raw, snapshot_id)
        except SnapshotFormatError as exc:
            raise IntegrityError(f"snapshots/{snapshot_id} is malformed: {exc}") from exc

    def list_snapshots(self, *, cancel: CancelToken = NEVER) -> list[Snapshot]:
        names = [i.name for i in self.backend.list(FileType.SNAPSHOT, cancel=cancel)]
        if self.cache is not None:
            self.cache.prune(FileType.SNAPSHOT, set(names))
        with concurrent.futures.ThreadPoolExecutor(4, "safekeep-snap") as ex:
            snaps = list(ex.map(lambda n: self.load_snapshot(n, cancel=cancel), names))
        snaps.sort(key=lambda s: (s.time, s.id))
        return snaps

    def find_snapshot(self, ref: str, *, cancel: CancelToken = NEVER) -> Snapshot:
        """``latest`` or an ID prefix."""
        if ref == "latest":
            snaps = self.list_snapshots(cancel=cancel)
            if not snaps:
                raise RepositoryError("The repository has no snapshots yet.")
            return snaps[-1]
        return self.load_snapshot(self.resolve_id(FileType.SNAPSHOT, ref, cancel=cancel), cancel=cancel)

    def remove_files(self, type: FileType, names: Iterable[str], *, cancel: CancelToken = NEVER) -> None:
        if type is not FileType.LOCK:
            self._before_write()
        for n in names:
            self.backend.remove(Handle(type, n), cancel=cancel)


def _username() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else ""


__all__ = ["OVERHEAD", "BlobSaveResult", "Repository", "RepositoryOptions", "sha256"]
