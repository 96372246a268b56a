"""Retry transient storage failures with exponential backoff and full jitter.

Only :class:`~safekeep.storage.errors.TransientStorageError` is retried; permanent errors,
:class:`~safekeep.common.errors.Cancelled` and anything else propagate at once. Attempt ``n``
(counting from 1) that fails waits a random time in ``[0, min(max_delay, base_delay * 2**(n-1))]``
("full jitter"), or at least the error's ``retry_after`` when the server asked for one. After
``max_attempts`` attempts the last error is raised. Waiting goes through the injected
:class:`~safekeep.common.clock.Clock` in short slices and stops as soon as the
:class:`~safekeep.common.cancel.CancelToken` is cancelled (raising ``Cancelled``).

``save`` is always retried with the whole data (it is a bytes-like object, not a stream), and a
save that fails is retried under the same name: providers' atomic saves make that safe.
``list`` is restarted after a transient failure and skips names it has already yielded, so every
file is still yielded exactly once.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from typing import TypeVar

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.clock import Clock
from safekeep.storage.base import Backend, FileInfo, FileType, Handle
from safekeep.storage.errors import TransientStorageError
from safekeep.storage.wrappers.delegate import Wrapper

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_BASE_DELAY = 0.5
DEFAULT_MAX_DELAY = 60.0
MAX_RETRY_AFTER = 600.0
"""A server's ``retry_after`` is honoured up to this many seconds."""
_SLEEP_SLICE = 0.5
"""Waits are slept in slices this long so a cancel is noticed quickly."""


class RetryBackend(Wrapper):
    """Wraps ``inner`` and retries its transient failures. See the module docstring."""

    def __init__(
        self,
        inner: Backend,
        *,
        clock: Clock,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        base_delay: float = DEFAULT_BASE_DELAY,
        max_delay: float = DEFAULT_MAX_DELAY,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if base_delay < 0 or max_delay < 0:
            raise ValueError("delays must not be negative")
        super().__init__(inner)
        self._clock = clock
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._rng = rng if rng is not None else random.Random()

    def create(self, *, cancel: CancelToken = NEVER) -> None:
        self._call("create", "", lambda: self._inner.create(cancel=cancel), cancel)

    def save(self, h: Handle, data: bytes | bytearray | memoryview, *, cancel: CancelToken = NEVER) -> None:
        self._call("save", h.path(), lambda: self._inner.save(h, data, cancel=cancel), cancel)

    def load(
        self, h: Handle, offset: int = 0, length: int | None = None, *, cancel: CancelToken = NEVER
    ) -> bytes:
        return self._call(
            "load", h.path(), lambda: self._inner.load(h, offset, length, cancel=cancel), cancel
        )

    def stat(self, h: Handle, *, cancel: CancelToken = NEVER) -> FileInfo:
        return self._call("stat", h.path(), lambda: self._inner.stat(h, cancel=cancel), cancel)

    def list(self, type: FileType, *, cancel: CancelToken = NEVER) -> Iterator[FileInfo]:
        seen: set[str] = set()
        attempt = 1
        while True:
            cancel.raise_if_cancelled()
            try:
                for info in self._inner.list(type, cancel=cancel):
                    if info.name not in seen:
                        seen.add(info.name)
                        yield info
                return
            except TransientStorageError as exc:
                self._wait_or_raise("list", type.value, attempt, exc, cancel)
                attempt += 1

    def remove(self, h: Handle, *, cancel: CancelToken = NEVER) -> None:
        self._call("remove", h.path(), lambda: self._inner.remove(h, cancel=cancel), cancel)

    # -- internals -----------------------------------------------------------------------------

    def _call(self, op: str, what: str, fn: Callable[[], T], cancel: CancelToken) -> T:
        attempt = 1
        while True:
            cancel.raise_if_cancelled()
            try:
                return fn()
            except TransientStorageError as exc:
                self._wait_or_raise(op, what, attempt, exc, cancel)
                attempt += 1

    def delay_for(self, attempt: int, exc: TransientStorageError) -> float:
        """How long to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self._max_delay, self._base_delay * (2 ** min(attempt - 1, 62)))
        delay = self._rng.uniform(0.0, ceiling)
        if exc.retry_after is not None:
            delay = max(delay, min(max(exc.retry_after, 0.0), MAX_RETRY_AFTER))
        return delay

    def _wait_or_raise(
        self, op: str, what: str, attempt: int, exc: TransientStorageError, cancel: CancelToken
    ) -> None:
        if attempt >= self._max_attempts:
            log.warning("%s %s failed after %d attempts: %s", op, what, attempt, exc)
            raise exc
        delay = self.delay_for(attempt, exc)
        log.info(
            "%s %s failed (attempt %d of %d), retrying in %.1fs: %s",
            op,
            what,
            attempt,
            self._max_attempts,
            delay,
            exc,
        )
        self._sleep(delay, cancel)

    def _sleep(self, delay: float, cancel: CancelToken) -> None:
        remaining = delay
        while remaining > 0:
            cancel.raise_if_cancelled()
            step = min(remaining, _SLEEP_SLICE)
            self._clock.sleep(step)
            remaining -= step
        cancel.raise_if_cancelled()
