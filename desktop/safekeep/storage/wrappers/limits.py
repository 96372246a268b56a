"""Connection and bandwidth limits.

- :class:`ConnectionLimitBackend` lets at most ``connections`` calls reach the inner backend at
  once (a semaphore around every call; for ``list``, around each step of the iteration, which is
  when a provider fetches the next page). Its :attr:`properties` report the lower of the limit
  and the provider's own value, so consumers size their parallelism accordingly.
- :class:`BandwidthLimitBackend` paces uploads and downloads with a token bucket per direction,
  in bytes per second, sleeping through the injected :class:`~safekeep.common.clock.Clock`.

Pacing works on whole calls (the interface hands over bytes, not streams): a save of ``n`` bytes
first reserves them from the upload bucket in chunks of at most :data:`PACE_CHUNK` bytes, waiting
as each chunk's tokens come due, so a large save is paced smoothly and a parallel small save can
slip in between. A load is charged after it returns (its size is known only then), so the next
transfer waits for it. Over any long run the transferred bytes divided by the elapsed time stay at
or below the limit; the bucket holds at most one chunk (the burst). Reservations may drive the
bucket negative — a debt the next caller waits out — which keeps concurrent callers fair without
holding a lock while sleeping. Waits are sliced so a cancel is noticed promptly.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.clock import Clock
from safekeep.storage.base import Backend, FileInfo, FileType, Handle, Properties
from safekeep.storage.wrappers.delegate import Wrapper

T = TypeVar("T")

PACE_CHUNK = 64 * 1024
"""Bytes reserved per step; also the bucket's capacity (the largest burst)."""
_SLEEP_SLICE = 0.5


class ConnectionLimitBackend(Wrapper):
    """At most ``connections`` concurrent calls reach ``inner``."""

    def __init__(self, inner: Backend, connections: int) -> None:
        if connections < 1:
            raise ValueError("connections must be at least 1")
        super().__init__(inner)
        self._limit = connections
        self._sem = threading.BoundedSemaphore(connections)
        props = inner.properties
        self._properties = dataclasses.replace(props, connections=min(props.connections, connections))

    @property
    def properties(self) -> Properties:
        return self._properties

    def _run(self, fn: Callable[[], T]) -> T:
        with self._sem:
            return fn()

    def create(self, *, cancel: CancelToken = NEVER) -> None:
        self._run(lambda: self._inner.create(cancel=cancel))

    def save(self, h: Handle, data: bytes | bytearray | memoryview, *, cancel: CancelToken = NEVER) -> None:
        self._run(lambda: self._inner.save(h, data, cancel=cancel))

    def load(
        self, h: Handle, offset: int = 0, length: int | None = None, *, cancel: CancelToken = NEVER
    ) -> bytes:
        return self._run(lambda: self._inner.load(h, offset, length, cancel=cancel))

    def stat(self, h: Handle, *, cancel: CancelToken = NEVER) -> FileInfo:
        return self._run(lambda: self._inner.stat(h, cancel=cancel))

    def list(self, type: FileType, *, cancel: CancelToken = NEVER) -> Iterator[FileInfo]:
        it = self._run(lambda: iter(self._inner.list(type, cancel=cancel)))
        sentinel = None
        while True:
            info = self._run(lambda: next(it, sentinel))
            if info is None:
                return
            yield info

    def remove(self, h: Handle, *, cancel: CancelToken = NEVER) -> None:
        self._run(lambda: self._inner.remove(h, cancel=cancel))


class TokenBucket:
    """A token bucket of ``rate`` bytes per second holding at most ``capacity`` bytes."""

    def __init__(self, rate: float, clock: Clock, *, capacity: int = PACE_CHUNK) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rate = float(rate)
        self._clock = clock
        self._capacity = float(max(1, capacity))
        self._tokens = self._capacity
        self._last = clock.monotonic()
        self._lock = threading.Lock()

    @property
    def rate(self) -> float:
        return self._rate

    def reserve(self, n: int) -> float:
        """Take ``n`` tokens now; return how many seconds the caller must wait for them."""
        with self._lock:
            now = self._clock.monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
            self._last = now
            self._tokens -= n
            return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    def take(self, n: int, cancel: CancelToken = NEVER) -> None:
        """Consume ``n`` bytes' worth, waiting (in chunks) as the rate requires."""
        left = n
        while left > 0:
            step = min(left, int(self._capacity))
            self._wait(self.reserve(step), cancel)
            left -= step

    def _wait(self, seconds: float, cancel: CancelToken) -> None:
        remaining = seconds
        while remaining > 0:
            cancel.raise_if_cancelled()
            step = min(remaining, _SLEEP_SLICE)
            self._clock.sleep(step)
            remaining -= step


class BandwidthLimitBackend(Wrapper):
    """Paces ``save`` with ``upload`` and ``load`` with ``download`` (either may be None)."""

    def __init__(self, inner: Backend, *, upload: TokenBucket | None, download: TokenBucket | None) -> None:
        super().__init__(inner)
        self._upload = upload
        self._download = download

    def create(self, *, cancel: CancelToken = NEVER) -> None:
        self._inner.create(cancel=cancel)

    def save(self, h: Handle, data: bytes | bytearray | memoryview, *, cancel: CancelToken = NEVER) -> None:
        if self._upload is not None:
            self._upload.take(memoryview(data).nbytes, cancel)
        cancel.raise_if_cancelled()
        self._inner.save(h, data, cancel=cancel)

    def load(
        self, h: Handle, offset: int = 0, length: int | None = None, *, cancel: CancelToken = NEVER
    ) -> bytes:
        data = self._inner.load(h, offset, length, cancel=cancel)
        if self._download is not None:
            self._download.take(len(data), cancel)
        return data

    def stat(self, h: Handle, *, cancel: CancelToken = NEVER) -> FileInfo:
        return self._inner.stat(h, cancel=cancel)

    def list(self, type: FileType, *, cancel: CancelToken = NEVER) -> Iterator[FileInfo]:
        return self._inner.list(type, cancel=cancel)

    def remove(self, h: Handle, *, cancel: CancelToken = NEVER) -> None:
        self._inner.remove(h, cancel=cancel)
