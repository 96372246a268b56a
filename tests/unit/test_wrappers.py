"""Connection limit, bandwidth limits and tracing wrappers (fake clock, no sleeps)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from safekeep.common.cancel import CancelToken
from safekeep.common.clock import FakeClock
from safekeep.common.errors import Cancelled
from safekeep.storage.base import FileType, Handle
from safekeep.storage.compose import StorageOptions, wrap
from safekeep.storage.errors import TransientStorageError
from safekeep.storage.providers.memory import MemoryBackend
from safekeep.storage.wrappers.limits import (
    PACE_CHUNK,
    BandwidthLimitBackend,
    ConnectionLimitBackend,
    TokenBucket,
)
from safekeep.storage.wrappers.readonly import ReadOnlyBackend
from safekeep.storage.wrappers.retry import RetryBackend
from safekeep.storage.wrappers.trace import REDACTED, TraceBackend, redact

H = Handle(FileType.PACK, "ab" + "0" * 62)


# -- bandwidth -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [10 * 1024 * 1024, 3 * 1024 * 1024 + 17])
def test_upload_pacing_matches_the_limit(size: int) -> None:
    clock = FakeClock()
    rate = 256 * 1024
    b = BandwidthLimitBackend(MemoryBackend(), upload=TokenBucket(rate, clock), download=None)
    b.save(H, b"x" * size)
    expected = (size - PACE_CHUNK) / rate  # the first chunk is the burst
    assert sum(clock.sleeps) == pytest.approx(expected, rel=0.01)
    assert max(clock.sleeps) <= 0.5 + 1e-9  # sliced waits: cancel is noticed quickly


def test_download_pacing_and_no_upload_limit() -> None:
    clock = FakeClock()
    inner = MemoryBackend()
    inner.save(H, b"y" * (2 * 1024 * 1024))
    rate = 512 * 1024
    b = BandwidthLimitBackend(inner, upload=None, download=TokenBucket(rate, clock))
    b.save(Handle(FileType.KEY, "k"), b"z" * 1_000_000)
    assert clock.sleeps == []  # uploads are not limited
    for _ in range(3):
        assert len(b.load(H)) == 2 * 1024 * 1024
    assert sum(clock.sleeps) == pytest.approx((3 * 2 * 1024 * 1024 - PACE_CHUNK) / rate, rel=0.01)


def test_idle_time_refills_only_one_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1024, clock, capacity=1024)
    assert bucket.reserve(1024) == 0.0
    clock.advance(3600)  # a long idle period does not bank an hour of bandwidth
    assert bucket.reserve(1024) == 0.0
    assert bucket.reserve(1024) == pytest.approx(1.0)


def test_compose_builds_the_limits_from_options() -> None:
    clock = FakeClock()
    b = wrap(
        MemoryBackend(),
        options=StorageOptions(upload_limit_kib=100, retry_attempts=2, connections=2, trace=True),
        clock=clock,
    )
    assert isinstance(b, RetryBackend)
    assert isinstance(b.inner, BandwidthLimitBackend)
    assert isinstance(b.inner.inner, ConnectionLimitBackend)
    assert isinstance(b.inner.inner.inner, TraceBackend)
    assert b.properties.connections == 2
    b.save(H, b"a" * (1024 * 1024))
    assert sum(clock.sleeps) == pytest.approx((1024 * 1024 - PACE_CHUNK) / (100 * 1024), rel=0.01)
    ro = wrap(MemoryBackend(), options=StorageOptions(read_only=True, download_limit_kib=5))
    assert isinstance(ro, ReadOnlyBackend)


def test_storage_options_reject_bad_limits() -> None:
    with pytest.raises(ValueError):
        StorageOptions(connections=0)
    with pytest.raises(ValueError):
        StorageOptions(upload_limit_kib=0)


def test_cancel_interrupts_a_paced_save() -> None:
    clock = FakeClock()
    token = CancelToken()
    inner = MemoryBackend()

    class CancelClock(FakeClock):
        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            if len(self.sleeps) > 3:
                token.cancel()

    clock = CancelClock()
    b = BandwidthLimitBackend(inner, upload=TokenBucket(1024, clock), download=None)
    with pytest.raises(Cancelled):
        b.save(H, b"x" * 1_000_000, cancel=token)
    assert inner.files == {}


# -- connection limit -------------------------------------------------------------------------


class CountingBackend(MemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.active = 0
        self.peak = 0
        self._count_lock = threading.Lock()

    def _track(self) -> None:
        with self._count_lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(0.002)  # hold the slot briefly so overlaps happen
        with self._count_lock:
            self.active -= 1

    def save(self, h, data, *, cancel=None):  # type: ignore[no-untyped-def, override]
        self._track()
        super().save(h, data)

    def list(self, type: FileType, *, cancel=None) -> Iterator:  # type: ignore[no-untyped-def, override, type-arg]
        self._track()
        yield from super().list(type)


def test_connection_limit_is_never_exceeded() -> None:
    inner = CountingBackend()
    b = ConnectionLimitBackend(inner, 3)

    def work(i: int) -> None:
        b.save(Handle(FileType.PACK, f"{i:064x}"), b"d")
        list(b.list(FileType.PACK))

    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(work, range(60)))
    assert 1 <= inner.peak <= 3
    assert len(list(b.list(FileType.PACK))) == 60


# -- tracing and redaction ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("GET https://h/x?sig=abcDEF123%2F&se=2030 failed", "abcDEF123%2F"),
        ("headers {'Authorization': 'Basic dTpwYXNzd29yZA=='}", "dTpwYXNzd29yZA=="),
        ("Authorization: Bearer eyJhbGciOi.eyJzdWIiOiIx.sflKxw", "eyJhbGciOi"),
        ("connect to https://alice:hunter2@dav.example.org/x", "hunter2"),
        ("password=hunter2 user=alice", "hunter2"),
        ('{"client_secret": "s3cr3t-value"}', "s3cr3t-value"),
        ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
        ("access key AKIAIOSFODNN7EXAMPLE rejected", "AKIAIOSFODNN7EXAMPLE"),
        (
            "key Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw== x",
            "Eby8vdM02xNOcqFlqUwJPLlm",
        ),
        ("X-Amz-Security-Token: FwoGZXIvYXdzEJr", "FwoGZXIvYXdzEJr"),
    ],
)
def test_redact_removes_secrets(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert REDACTED in out


def test_redact_keeps_ordinary_text_and_ids() -> None:
    text = "data/ab/" + "ab" * 32 + " not found on 127.0.0.1:8080 (HTTP 404)"
    assert redact(text) == text


def test_trace_logs_ops_sizes_and_redacted_errors(caplog: pytest.LogCaptureFixture) -> None:
    inner = MemoryBackend()
    clock = FakeClock()
    b = TraceBackend(inner, clock=clock)
    payload = b"very-private-content"
    inner.fail_next("load", TransientStorageError("GET https://u:topsecret@h/x?sig=SIGVALUE1 reset"))
    with caplog.at_level(logging.DEBUG, logger="safekeep.storage.trace"):
        b.save(H, payload)
        with pytest.raises(TransientStorageError):
            b.load(H)
        assert b.load(H, 2, 4) == payload[2:6]
        assert [fi.name for fi in b.list(FileType.PACK)] == [H.name]
    text = caplog.text
    assert f"save {H.path()} sent={len(payload)}" in text
    assert "TransientStorageError" in text and "failed" in text
    assert "offset=2 length=4 received=4 ok" in text
    assert "list data entries=1 ok" in text
    assert "topsecret" not in text and "SIGVALUE1" not in text
    assert "very-private-content" not in text
