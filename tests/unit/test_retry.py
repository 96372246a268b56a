"""RetryBackend: which errors are retried, how long it waits, when it gives up or stops."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from safekeep.common.cancel import CancelToken
from safekeep.common.clock import FakeClock
from safekeep.common.errors import Cancelled
from safekeep.storage.base import FileInfo, FileType, Handle
from safekeep.storage.errors import (
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    TransientStorageError,
)
from safekeep.storage.providers.memory import MemoryBackend
from safekeep.storage.wrappers.readonly import ReadOnlyBackend
from safekeep.storage.wrappers.retry import RetryBackend

H = Handle(FileType.PACK, "ab" + "0" * 62)


class MaxRandom(random.Random):
    """Always picks the top of the jitter range, so delays are the backoff ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def make(
    max_attempts: int = 5, base_delay: float = 0.5, max_delay: float = 60.0, rng: random.Random | None = None
) -> tuple[MemoryBackend, RetryBackend, FakeClock]:
    inner = MemoryBackend()
    clock = FakeClock()
    retry = RetryBackend(
        inner,
        clock=clock,
        max_attempts=max_attempts,
        base_delay=base_delay,
        max_delay=max_delay,
        rng=rng or random.Random(1),
    )
    return inner, retry, clock


def transient(msg: str = "connection reset", retry_after: float | None = None) -> TransientStorageError:
    return TransientStorageError(msg, retry_after=retry_after)


def test_transient_errors_are_retried_until_success() -> None:
    inner, retry, clock = make()
    inner.save(H, b"data")
    inner.fail_next("load", transient(), count=2)
    assert retry.load(H) == b"data"
    assert inner.calls["load"] == 3
    assert clock.sleeps  # it waited between attempts, through the clock


@pytest.mark.parametrize(
    "exc",
    [NotFound("gone"), PermissionDenied("no"), QuotaExceeded("full"), Cancelled(), ValueError("bug")],
)
def test_permanent_errors_are_not_retried(exc: Exception) -> None:
    inner, retry, clock = make()
    inner.fail_next("stat", exc)
    with pytest.raises(type(exc)) as info:
        retry.stat(H)
    assert info.value is exc
    assert inner.calls["stat"] == 1
    assert clock.sleeps == []


def test_gives_up_after_max_attempts_raising_the_last_error() -> None:
    inner, retry, clock = make(max_attempts=3)
    errors = [transient(f"attempt {i}") for i in range(1, 4)]
    for e in errors:
        inner.fail_next("remove", e)
    with pytest.raises(TransientStorageError) as info:
        retry.remove(H)
    assert info.value is errors[-1]
    assert inner.calls["remove"] == 3
    assert clock.sleeps  # waited between attempts, but not after the last one


def test_backoff_is_exponential_and_capped() -> None:
    _, retry, _ = make(base_delay=0.5, max_delay=5.0, rng=MaxRandom())
    exc = transient()
    assert [retry.delay_for(n, exc) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_full_jitter_stays_within_the_ceiling() -> None:
    _, retry, _ = make(base_delay=1.0, max_delay=8.0, rng=random.Random(42))
    exc = transient()
    delays = [retry.delay_for(4, exc) for _ in range(200)]
    assert all(0.0 <= d <= 8.0 for d in delays)
    assert len(set(delays)) > 100  # actually random, not a fixed step


def test_total_wait_matches_the_backoff() -> None:
    inner, retry, clock = make(max_attempts=4, base_delay=1.0, rng=MaxRandom())
    inner.fail_next("list", transient(), count=3)
    assert list(retry.list(FileType.PACK)) == []
    assert sum(clock.sleeps) == pytest.approx(1.0 + 2.0 + 4.0)
    assert max(clock.sleeps) <= 0.5  # waited in short slices, so cancel is noticed quickly


def test_retry_after_is_honoured() -> None:
    inner, retry, clock = make(base_delay=0.1)
    inner.save(H, b"data")
    inner.fail_next("load", transient("slow down", retry_after=30.0))
    assert retry.load(H) == b"data"
    assert sum(clock.sleeps) == pytest.approx(30.0)


def test_save_is_retried_with_the_whole_data() -> None:
    inner, retry, _ = make()
    inner.fail_next("save", transient(), count=2)
    data = bytes(range(256)) * 100
    retry.save(H, memoryview(data))
    assert inner.files == {H: data}
    assert inner.calls["save"] == 3


def test_cancel_stops_the_wait() -> None:
    token = CancelToken()

    class CancellingClock(FakeClock):
        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            token.cancel("user pressed stop")

    inner = MemoryBackend()
    clock = CancellingClock()
    retry = RetryBackend(inner, clock=clock, max_attempts=10, rng=random.Random(1))
    inner.fail_next("load", transient(retry_after=300.0), count=5)
    with pytest.raises(Cancelled):
        retry.load(H, cancel=token)
    assert inner.calls["load"] == 1
    assert sum(clock.sleeps) <= 0.5  # stopped after the first slice, not 300 s later


def test_cancelled_before_the_call_does_nothing() -> None:
    inner, retry, _ = make()
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        retry.save(H, b"x", cancel=token)
    assert inner.calls["save"] == 0


class FlakyLister(MemoryBackend):
    """Fails once in the middle of a listing, after yielding some names."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def list(self, type: FileType, *, cancel: CancelToken | None = None) -> Iterator[FileInfo]:
        for i, info in enumerate(super().list(type)):
            if i == 2 and not self.failed:
                self.failed = True
                raise transient("reset while listing")
            yield info


def test_list_is_restarted_without_duplicates() -> None:
    inner = FlakyLister()
    for i in range(5):
        inner.save(Handle(FileType.INDEX, f"{i:064x}"), b"i" * i)
    retry = RetryBackend(inner, clock=FakeClock(), rng=random.Random(1))
    listed = [fi.name for fi in retry.list(FileType.INDEX)]
    assert inner.failed
    assert sorted(listed) == [f"{i:064x}" for i in range(5)]


def test_properties_and_close_pass_through() -> None:
    inner, retry, _ = make()
    assert retry.properties is inner.properties
    retry.close()
    assert inner.closed


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        RetryBackend(MemoryBackend(), clock=FakeClock(), max_attempts=0)


# -- read-only wrapper ------------------------------------------------------------------------


def test_read_only_refuses_writes_and_passes_reads() -> None:
    inner = MemoryBackend()
    inner.save(H, b"data")
    ro = ReadOnlyBackend(inner)
    with pytest.raises(PermissionDenied, match="repository opened read-only"):
        ro.save(Handle.config(), b"x")
    with pytest.raises(PermissionDenied, match="repository opened read-only"):
        ro.remove(H)
    assert inner.calls["save"] == 1 and inner.calls["remove"] == 0
    assert ro.load(H, 1, 2) == b"at"
    assert ro.stat(H) == FileInfo(H.name, 4)
    assert list(ro.list(FileType.PACK)) == [FileInfo(H.name, 4)]
    assert inner.files == {H: b"data"}
