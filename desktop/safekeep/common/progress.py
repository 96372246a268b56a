"""Progress reporting: numbers and paths, never preformatted strings.

Operations report through small protocols whose default implementations do nothing. The CLI's
text output, its ``--json`` lines and the GUI are different implementations of the same protocol.
Producers throttle at the source with :class:`Throttle` so a fast loop does not flood consumers.
Per-file errors go to an :data:`ErrorPolicy`: it either records the error (the operation skips
the item and counts it) or raises to abort.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from safekeep.common.clock import SYSTEM_CLOCK, Clock


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot of an operation's progress. ``*_total`` is -1 while still unknown."""

    phase: str
    files_done: int = 0
    files_total: int = -1
    bytes_done: int = 0
    bytes_total: int = -1
    errors: int = 0
    current_path: str = ""
    elapsed: float = 0.0


class ProgressSink(Protocol):
    def progress(self, p: Progress) -> None: ...


class NullProgress:
    def progress(self, p: Progress) -> None:
        return None


NULL_PROGRESS: ProgressSink = NullProgress()


class Throttle:
    """True at most every ``interval`` seconds (and always on the first call)."""

    def __init__(self, interval: float = 0.2, clock: Clock = SYSTEM_CLOCK) -> None:
        self._interval = interval
        self._clock = clock
        self._last = float("-inf")

    def ready(self) -> bool:
        now = self._clock.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            return True
        return False


ErrorPolicy = Callable[[str, Exception], None]
"""``policy(path, exc)``: return to skip the item (after recording it), or raise to abort."""


@dataclass(slots=True)
class ItemError:
    path: str
    message: str


@dataclass(slots=True)
class ErrorRecorder:
    """The skip-and-record policy: remembers every error and lets the operation continue."""

    errors: list[ItemError] = field(default_factory=list)
    on_record: Callable[[ItemError], None] | None = None

    def __call__(self, path: str, exc: Exception) -> None:
        item = ItemError(path, str(exc) or type(exc).__name__)
        self.errors.append(item)
        if self.on_record is not None:
            self.on_record(item)


def abort_on_error(path: str, exc: Exception) -> None:
    """The abort policy: re-raise the first per-item error."""
    raise exc
