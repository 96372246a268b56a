"""Ctrl-C on the command line.

The first Ctrl-C (SIGINT) — or a SIGTERM — cancels the command's
:class:`~safekeep.common.cancel.CancelToken`: the engine stops at its next safe point, writes no
snapshot and leaves no half-restored file, and the command exits with status 130. A second
Ctrl-C exits at once (``os._exit(130)``) for when a storage call is stuck; the repository stays
valid (packs are written before the index, the index before the snapshot) but temporary files of
a restore may be left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

from safekeep.common.cancel import CancelToken

EXIT_CANCELLED = 130


@contextlib.contextmanager
def cancel_on_interrupt(token: CancelToken, notify: Callable[[str], None]) -> Iterator[None]:
    """While inside the block, SIGINT/SIGTERM cancel ``token`` (a second SIGINT exits hard)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    presses = 0

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal presses
        presses += 1
        if presses > 1 and signum == signal.SIGINT:
            notify("safekeep: interrupted again, exiting now")
            os._exit(EXIT_CANCELLED)
        if not token.cancelled:
            token.cancel("interrupted")
            notify("safekeep: cancelling… (press Ctrl-C again to quit at once)")

    old_int = signal.signal(signal.SIGINT, handler)
    old_term = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
