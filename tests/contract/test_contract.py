"""The storage contract (``safekeep.storage.base``), checked for every provider.

Each test names the contract point it checks. Providers are the params of ``backend_factory``
in ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from safekeep.common.cancel import CancelToken
from safekeep.common.errors import Cancelled
from safekeep.storage.base import Backend, FileInfo, FileType, Handle, Properties
from safekeep.storage.errors import AlreadyExists, NotFound, PermanentStorageError, StorageError

ALL_TYPES = list(FileType)
NON_CONFIG_TYPES = [t for t in FileType if t is not FileType.CONFIG]


class CancelAfter(CancelToken):
    """A token that cancels itself after ``checks`` cancellation checks have passed."""

    __slots__ = ("_left",)

    def __init__(self, checks: int) -> None:
        super().__init__()
        self._left = checks

    def raise_if_cancelled(self) -> None:
        if self._left <= 0:
            self.cancel("test")
        self._left -= 1
        super().raise_if_cancelled()


def blob(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def handle_for(data: bytes, type: FileType = FileType.PACK) -> Handle:
    if type is FileType.CONFIG:
        return Handle.config()
    return Handle(type, hashlib.sha256(data).hexdigest())


def names(backend: Backend, type: FileType) -> list[str]:
    return sorted(fi.name for fi in backend.list(type))


def everything(backend: Backend) -> dict[FileType, list[FileInfo]]:
    return {t: sorted(backend.list(t), key=lambda fi: fi.name) for t in FileType}


# -- interface -------------------------------------------------------------------------------


def test_implements_the_protocol(backend: Backend) -> None:
    assert isinstance(backend, Backend)
    props = backend.properties
    assert isinstance(props, Properties)
    assert props.connections >= 1
    assert props.location


# -- 1 and 2: immutable files, atomic saves ----------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 4096, 1_000_003, 20 * 1024 * 1024])
def test_save_load_roundtrip(backend: Backend, size: int) -> None:
    data = blob(size, seed=size)
    h = handle_for(data)
    backend.save(h, data)
    assert backend.load(h) == data
    assert backend.stat(h) == FileInfo(h.name, size)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_save_accepts_bytes_like(backend: Backend, wrap: type) -> None:
    data = blob(1000, seed=7)
    h = handle_for(data)
    backend.save(h, wrap(data))
    assert backend.load(h) == data


@pytest.mark.parametrize("type", ALL_TYPES)
def test_every_file_type_roundtrips_and_lists(backend: Backend, type: FileType) -> None:
    data = blob(333, seed=hash(type.value) & 0xFFFF)
    h = handle_for(data, type)
    backend.save(h, data)
    assert backend.load(h) == data
    assert list(backend.list(type)) == [FileInfo(h.name, 333)]
    for other in FileType:
        if other is not type:
            assert list(backend.list(other)) == []


def test_config_handle(backend: Backend) -> None:
    h = Handle.config()
    assert h == Handle(FileType.CONFIG, "config")
    assert h.path() == "config"
    with pytest.raises(NotFound):
        backend.load(h)
    assert list(backend.list(FileType.CONFIG)) == []
    backend.save(h, b"config bytes")
    assert backend.load(h) == b"config bytes"
    assert list(backend.list(FileType.CONFIG)) == [FileInfo("config", 12)]


def test_handle_paths_follow_restic_layout() -> None:
    name = "ab" + "0" * 62
    assert Handle(FileType.PACK, name).path() == f"data/ab/{name}"
    assert Handle(FileType.INDEX, name).path() == f"index/{name}"
    assert Handle(FileType.KEY, name).path() == f"keys/{name}"
    assert Handle(FileType.LOCK, name).path() == f"locks/{name}"
    assert Handle(FileType.SNAPSHOT, name).path() == f"snapshots/{name}"


def test_saving_identical_content_again_keeps_the_file(backend: Backend) -> None:
    data = blob(5000, seed=1)
    h = handle_for(data)
    backend.save(h, data)
    with contextlib.suppress(AlreadyExists):  # allowed by the contract
        backend.save(h, data)
    assert backend.load(h) == data
    assert names(backend, FileType.PACK) == [h.name]


def test_saving_different_content_never_corrupts(backend: Backend) -> None:
    h = Handle.config()
    backend.save(h, b"first")
    try:
        backend.save(h, b"second, different")
    except AlreadyExists:
        assert backend.load(h) == b"first"
    else:  # replaced atomically: either version, never a mix
        assert backend.load(h) in (b"first", b"second, different")


def test_failed_save_leaves_nothing_visible(backend_factory, backend: Backend) -> None:  # type: ignore[no-untyped-def]
    keep = blob(100, seed=2)
    backend.save(handle_for(keep), keep)
    before = everything(backend)
    data = blob(3 * 1024 * 1024, seed=3)
    h = handle_for(data)
    backend_factory.inject_save_failure(backend)
    with pytest.raises(StorageError):
        backend.save(h, data)
    with pytest.raises(NotFound):
        backend.stat(h)
    assert everything(backend) == before
    backend.save(h, data)  # and the next attempt works
    assert backend.load(h) == data


def test_save_with_cancelled_token_writes_nothing(backend: Backend) -> None:
    before = everything(backend)
    data = blob(1000, seed=4)
    h = handle_for(data)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        backend.save(h, data, cancel=token)
    with pytest.raises(NotFound):
        backend.load(h)
    assert everything(backend) == before


@pytest.mark.parametrize("checks", [1, 2, 3, 5, 50])
def test_save_cancelled_midway_is_absent_or_complete(backend: Backend, checks: int) -> None:
    before = everything(backend)
    data = blob(5 * 1024 * 1024, seed=4)
    h = handle_for(data)
    try:
        backend.save(h, data, cancel=CancelAfter(checks))
    except Cancelled:
        with pytest.raises(NotFound):
            backend.load(h)
        assert everything(backend) == before
    else:  # the save finished before it noticed the cancel: it must be complete
        assert backend.load(h) == data
        assert names(backend, FileType.PACK) == [h.name]


def test_cancelled_token_stops_every_call(backend: Backend) -> None:
    data = b"x"
    h = handle_for(data)
    backend.save(h, data)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        backend.load(h, cancel=token)
    with pytest.raises(Cancelled):
        backend.stat(h, cancel=token)
    with pytest.raises(Cancelled):
        list(backend.list(FileType.PACK, cancel=token))
    with pytest.raises(Cancelled):
        backend.remove(h, cancel=token)
    assert backend.load(h) == data  # the cancelled remove removed nothing


# -- 3: exact loads ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "length", "expected"),
    [
        (0, None, slice(0, 1000)),
        (0, 10, slice(0, 10)),
        (10, None, slice(10, 1000)),
        (10, 20, slice(10, 30)),
        (999, 1, slice(999, 1000)),
        (990, 100, slice(990, 1000)),  # beyond the end: what exists
        (1000, None, slice(1000, 1000)),
        (5000, 10, slice(5000, 5000)),
        (10, 0, slice(10, 10)),
    ],
)
def test_ranged_load(backend: Backend, offset: int, length: int | None, expected: slice) -> None:
    data = blob(1000, seed=5)
    h = handle_for(data)
    backend.save(h, data)
    assert backend.load(h, offset, length) == data[expected]


def test_ranged_load_of_large_file(backend: Backend) -> None:
    data = blob(20 * 1024 * 1024 + 17, seed=6)
    h = handle_for(data)
    backend.save(h, data)
    off = 17 * 1024 * 1024 + 5
    assert backend.load(h, off, 3 * 1024 * 1024) == data[off : off + 3 * 1024 * 1024]
    assert backend.load(h, off) == data[off:]


@pytest.mark.parametrize("type", ALL_TYPES)
def test_missing_file_is_not_found(backend: Backend, type: FileType) -> None:
    h = handle_for(b"never saved", type)
    with pytest.raises(NotFound) as info:
        backend.load(h)
    assert isinstance(info.value, PermanentStorageError)
    assert str(info.value)  # a message for a person
    with pytest.raises(NotFound):
        backend.load(h, 10, 5)
    with pytest.raises(NotFound):
        backend.stat(h)
    with pytest.raises(NotFound):
        backend.remove(h)


# -- 4: listing -------------------------------------------------------------------------------


@pytest.mark.parametrize("type", ALL_TYPES)
def test_listing_an_empty_type_yields_nothing(backend: Backend, type: FileType) -> None:
    assert list(backend.list(type)) == []


def test_list_packs_across_all_shards(backend: Backend) -> None:
    expected = {}
    for i in range(300):  # enough to hit most of the 256 shards
        data = blob(i, seed=1000 + i)
        h = handle_for(data)
        backend.save(h, data)
        expected[h.name] = i
    listed = list(backend.list(FileType.PACK))
    assert len(listed) == len(expected)  # each exactly once
    assert {fi.name: fi.size for fi in listed} == expected
    assert len({name[:2] for name in expected}) > 100


@pytest.mark.parametrize("type", NON_CONFIG_TYPES)
def test_list_reports_every_file_once_with_size(backend: Backend, type: FileType) -> None:
    expected = {}
    for i in range(20):
        data = blob(10 + i, seed=i)
        h = handle_for(data, type)
        backend.save(h, data)
        expected[h.name] = 10 + i
    listed = list(backend.list(type))
    assert len(listed) == 20
    assert {fi.name: fi.size for fi in listed} == expected


# -- remove -----------------------------------------------------------------------------------


def test_remove(backend: Backend) -> None:
    a, b = blob(10, seed=1), blob(20, seed=2)
    ha, hb = handle_for(a, FileType.SNAPSHOT), handle_for(b, FileType.SNAPSHOT)
    backend.save(ha, a)
    backend.save(hb, b)
    backend.remove(ha)
    with pytest.raises(NotFound):
        backend.load(ha)
    with pytest.raises(NotFound):
        backend.stat(ha)
    assert names(backend, FileType.SNAPSHOT) == [hb.name]
    with pytest.raises(NotFound):
        backend.remove(ha)
    backend.save(ha, a)  # a removed name can be written again
    assert backend.load(ha) == a


def test_remove_pack(backend: Backend) -> None:
    data = blob(100, seed=9)
    h = handle_for(data)
    backend.save(h, data)
    backend.remove(h)
    assert list(backend.list(FileType.PACK)) == []


# -- 7: create / close ------------------------------------------------------------------------


def test_create_is_idempotent(backend: Backend) -> None:
    data = blob(64, seed=8)
    h = handle_for(data, FileType.KEY)
    backend.save(h, data)
    backend.create()
    backend.create()
    assert backend.load(h) == data
    assert names(backend, FileType.KEY) == [h.name]


def test_fresh_backend_create_then_empty(backend_factory) -> None:  # type: ignore[no-untyped-def]
    b = backend_factory.make()
    b.create()
    b.create()
    assert all(v == [] for v in everything(b).values())
    b.close()


# -- concurrency ------------------------------------------------------------------------------


def test_concurrent_saves_from_threads(backend: Backend) -> None:
    blobs = [blob(1000 + i, seed=2000 + i) for i in range(64)]

    def save(data: bytes) -> None:
        backend.save(handle_for(data), data)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(save, blobs))
    assert {fi.name: fi.size for fi in backend.list(FileType.PACK)} == {
        handle_for(d).name: len(d) for d in blobs
    }
    for d in blobs:
        assert backend.load(handle_for(d)) == d


def test_concurrent_saves_of_the_same_file(backend: Backend) -> None:
    data = blob(2 * 1024 * 1024, seed=11)
    h = handle_for(data)
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def save() -> None:
        barrier.wait()
        try:
            backend.save(h, data)
        except AlreadyExists:
            pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=save) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert backend.load(h) == data
    assert list(backend.list(FileType.PACK)) == [FileInfo(h.name, len(data))]


def test_uncreated_location_lists_empty_and_loads_not_found(backend_factory) -> None:  # type: ignore[no-untyped-def]
    b = backend_factory.make()
    for t in FileType:
        assert list(b.list(t)) == []
    with pytest.raises(NotFound):
        b.load(Handle.config())
    with pytest.raises(NotFound):
        b.stat(Handle.config())
    b.close()
