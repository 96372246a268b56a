"""Running engine calls off the GUI thread (the pattern of Anki's ``aqt.operations``).

:class:`Background` runs a callable on a :class:`QThreadPool` and calls ``on_done(result)`` or
``on_error(exc)`` on the GUI thread. :meth:`Background.relay` makes a thread-safe callable for
streamed progress: a worker calls it with any object and the GUI-thread callback receives it.

Delivery works by Qt's queued connections: each call's :class:`_Call` object lives in the GUI
thread, its signals are emitted from the worker, and its own slots (which run in the thread the
object lives in) call the callbacks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

log = logging.getLogger(__name__)

T = TypeVar("T")

THREADS = 16
"""Threads of a :class:`Background`'s own pool (most of them just wait for a run to end)."""


class _Call(QObject):
    done = Signal(object)
    failed = Signal(object)

    def __init__(
        self,
        owner: Background,
        on_done: Callable[[Any], None] | None,
        on_error: Callable[[BaseException], None] | None,
    ) -> None:
        super().__init__(owner)
        self._owner = owner
        self._on_done = on_done
        self._on_error = on_error
        self.done.connect(self._deliver_done)
        self.failed.connect(self._deliver_error)

    @Slot(object)
    def _deliver_done(self, result: object) -> None:
        self._owner._finished(self)
        if self._on_done is not None:
            self._on_done(result)

    @Slot(object)
    def _deliver_error(self, exc: object) -> None:
        self._owner._finished(self)
        assert isinstance(exc, BaseException)
        if self._on_error is not None:
            self._on_error(exc)
        else:
            log.error("background call failed: %s", exc, exc_info=exc)


class _Task(QRunnable):
    def __init__(self, fn: Callable[[], object], call: _Call) -> None:
        super().__init__()
        self._fn = fn
        self._call = call

    def run(self) -> None:
        try:
            result = self._fn()
        except BaseException as exc:
            self._call.failed.emit(exc)
        else:
            self._call.done.emit(result)


class _Relay(QObject):
    item = Signal(object)

    def __init__(self, owner: QObject, callback: Callable[[Any], object]) -> None:
        super().__init__(owner)
        self._callback = callback
        self.item.connect(self._deliver)

    @Slot(object)
    def _deliver(self, value: object) -> None:
        self._callback(value)

    def __call__(self, value: object) -> None:
        self.item.emit(value)


class Background(QObject):
    """Runs callables on a thread pool and hands their outcome back on the GUI thread."""

    idle = Signal()
    """Emitted when the last running call has delivered its outcome."""

    def __init__(self, parent: QObject | None = None, pool: QThreadPool | None = None) -> None:
        super().__init__(parent)
        if pool is None:
            # calls such as ``engine.wait(run)`` block a thread for a whole backup: a pool of its
            # own, wider than the number of cores, keeps them from holding up the quick calls
            pool = QThreadPool(self)
            pool.setMaxThreadCount(max(THREADS, QThreadPool.globalInstance().maxThreadCount()))
        self._pool = pool
        self._running: set[_Call] = set()

    def run(
        self,
        fn: Callable[[], T],
        on_done: Callable[[T], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Run ``fn()`` on the pool; ``on_done(result)`` or ``on_error(exc)`` run on the GUI thread."""
        call = _Call(self, on_done, on_error)
        self._running.add(call)
        self._pool.start(_Task(fn, call))

    def relay(self, callback: Callable[[Any], object]) -> Callable[[Any], None]:
        """A callable any thread may call; ``callback(value)`` then runs on the GUI thread."""
        return _Relay(self, callback)

    def wait_for_done(self, msecs: int = 30_000) -> bool:
        """Wait for the pool's threads to end (at shutdown, so none outlives the app)."""
        return self._pool.waitForDone(msecs)

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def _finished(self, call: _Call) -> None:
        self._running.discard(call)
        call.deleteLater()
        if not self._running:
            self.idle.emit()
