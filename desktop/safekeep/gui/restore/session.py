"""One destination's catalog, opened and brought up to date in the background, queried from it.

:class:`CatalogSession` enters ``engine.catalog(destination, update=False)`` on a background
thread and keeps it open until :meth:`CatalogSession.close`. Right after opening, it runs
:meth:`Catalog.update` on another background thread and reports its progress (``indexing``)
and its end (``indexed``). :meth:`CatalogSession.call` runs a function of the catalog off the
GUI thread at any time (the catalog is safe to use from several threads while one of them
updates it); calls made before the catalog is open wait for it. Closing cancels what runs and
leaves the ``with`` once every call has returned, on a background thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from PySide6.QtCore import QObject, Signal

from safekeep.common.cancel import CancelToken
from safekeep.common.errors import Cancelled
from safekeep.gui.background import Background
from safekeep.gui.engine import Engine
from safekeep.state.catalog import Catalog

log = logging.getLogger(__name__)

T = TypeVar("T")

CatalogCall = Callable[[Catalog, CancelToken], T]
"""A function of the open catalog and the session's cancel token, run off the GUI thread."""


class _Relay:
    """The catalog's :class:`~safekeep.state.catalog.IndexProgress`, forwarded to the GUI thread."""

    def __init__(self, send: Callable[[Any], None]) -> None:
        self._send = send

    def indexing(self, snapshots_done: int, snapshots_total: int, entries: int) -> None:
        self._send((snapshots_done, snapshots_total, entries))


class CatalogSession(QObject):
    """The catalog of one destination while a window shows it."""

    opened = Signal()
    """The catalog is open: calls run now (the index may still be incomplete)."""
    indexing = Signal(object)
    """``(snapshots_done, snapshots_total, entries)`` while the index is brought up to date."""
    indexed = Signal()
    """The index is up to date: search, versions and deleted files see every snapshot."""
    failed = Signal(object)
    """Opening or updating failed (the exception); calls waiting for the catalog fail with it."""

    def __init__(
        self, engine: Engine, background: Background, destination_id: str, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.engine = engine
        self.background = background
        self.destination_id = destination_id
        self.cancel = CancelToken()
        self.catalog: Catalog | None = None
        self.error: BaseException | None = None
        self.complete = False
        self.closed = False
        self._context: AbstractContextManager[Catalog] | None = None
        self._pending: list[
            tuple[CatalogCall[Any], Callable[[Any], None] | None, Callable[[BaseException], None] | None]
        ] = []
        self._busy = 0
        self._idle = threading.Condition()

    # ---------------------------------------------------------------- life cycle

    def start(self) -> None:
        """Open the catalog, then update it (both in the background)."""
        engine, dest, cancel = self.engine, self.destination_id, self.cancel

        def open_it() -> tuple[AbstractContextManager[Catalog], Catalog]:
            context = engine.catalog(dest, update=False, cancel=cancel)
            catalog = context.__enter__()
            return context, catalog

        self._enter()
        self.background.run(open_it, self._opened, self._open_failed)

    def _opened(self, result: tuple[AbstractContextManager[Catalog], Catalog]) -> None:
        self._leave()
        self._context, self.catalog = result
        if self.closed:
            self._exit_later()
            return
        self.opened.emit()
        pending, self._pending = self._pending, []
        for fn, on_done, on_error in pending:
            self.call(fn, on_done, on_error)
        self._update()

    def _open_failed(self, exc: BaseException) -> None:
        self._leave()
        self.error = exc
        pending, self._pending = self._pending, []
        for _fn, _on_done, on_error in pending:
            if on_error is not None:
                on_error(exc)
        if not self.closed:
            self.failed.emit(exc)

    def _update(self) -> None:
        catalog, cancel = self.catalog, self.cancel
        assert catalog is not None
        progress = _Relay(self.background.relay(self._progress))
        self.call(
            lambda c, _: catalog.update(progress=progress, cancel=cancel), self._updated, self._update_failed
        )

    def _progress(self, numbers: tuple[int, int, int]) -> None:
        if not self.closed:
            self.indexing.emit(numbers)

    def _updated(self, _result: object) -> None:
        self.complete = True
        if not self.closed:
            self.indexed.emit()

    def _update_failed(self, exc: BaseException) -> None:
        if isinstance(exc, Cancelled) or self.closed:
            return
        log.warning("the catalog of %s could not be brought up to date: %s", self.destination_id, exc)
        self.failed.emit(exc)

    def close(self) -> None:
        """Cancel what runs and close the catalog once every call has returned (in the background)."""
        if self.closed:
            return
        self.closed = True
        self.cancel.cancel("the window closed")
        self._pending = []
        if self._context is not None:
            self._exit_later()

    def _exit_later(self) -> None:
        context, self._context = self._context, None
        self.catalog = None
        if context is None:
            return

        def leave() -> None:
            with self._idle:
                self._idle.wait_for(lambda: self._busy == 0, timeout=120)
            context.__exit__(None, None, None)

        self.background.run(leave, None, lambda exc: log.warning("closing the catalog failed: %s", exc))

    # ---------------------------------------------------------------- calls

    def call(
        self,
        fn: CatalogCall[T],
        on_done: Callable[[T], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Run ``fn(catalog, cancel)`` in the background once the catalog is open.

        ``on_done``/``on_error`` run on the GUI thread, and not at all once the session is closed.
        """
        if self.closed:
            return
        if self.catalog is None:
            if self.error is not None:
                if on_error is not None:
                    on_error(self.error)
                return
            self._pending.append((fn, on_done, on_error))
            return
        catalog, cancel = self.catalog, self.cancel

        def work() -> T:
            try:
                return fn(catalog, cancel)
            finally:
                self._leave()

        def done(result: T) -> None:
            if not self.closed and on_done is not None:
                on_done(result)

        def failed(exc: BaseException) -> None:
            if not self.closed and on_error is not None:
                on_error(exc)

        self._enter()
        self.background.run(work, done, failed)

    def _enter(self) -> None:
        with self._idle:
            self._busy += 1

    def _leave(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()
