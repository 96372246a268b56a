"""Cooperative cancellation.

A :class:`CancelToken` is passed to every long operation. Producers check it at safe points
(between files, between blobs, before writing anything to a repository) and raise
:class:`~safekeep.common.errors.Cancelled`. After cancellation nothing more is written.
"""

from __future__ import annotations

import threading

from safekeep.common.errors import Cancelled


class CancelToken:
    """A thread-safe, one-way switch. Once cancelled it stays cancelled."""

    __slots__ = ("_event", "_reason")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._reason = ""

    def cancel(self, reason: str = "") -> None:
        self._reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def reason(self) -> str:
        return self._reason

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; return True early if cancelled meanwhile."""
        return self._event.wait(timeout)


class _NeverCancelled(CancelToken):
    """The token for callers that never cancel; ``cancel()`` on it is a programming error."""

    def cancel(self, reason: str = "") -> None:
        raise RuntimeError("NEVER cannot be cancelled")


NEVER: CancelToken = _NeverCancelled()
