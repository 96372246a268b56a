"""The "Test connection" probe: does this storage location work for backups?

:func:`probe` runs a fixed series of steps against a backend and reports each one, in plain
words, as soon as it finishes (the setup wizard shows them live; ``safekeep storage test`` prints
them):

1. **connect** — list the repository's key files (proves the address and credentials work).
2. **write** — save a small test object: random bytes under their own SHA-256 as a ``data`` file
   (the one kind restic treats as garbage when nothing references it, so even a probe that is
   interrupted before its clean-up cannot confuse restic or Safekeep; ``prune`` removes it).
3. **read** — read it back whole and compare.
4. **range read** — read a slice from the middle and compare.
5. **list** — the listing of data files includes it.
6. **size** — ``stat`` reports its exact size.
7. **delete** — remove it. A key that may not delete is a *warning*, not a failure: that is how
   append-only keys and Object Lock buckets are meant to work (old data is then removed by the
   storage's own retention rules).
8. **clock** — compare the server's clock with this computer's, when the provider offers
   ``server_time()`` (:class:`ClockReporter`); a skew over a minute is a warning (cloud
   signatures fail beyond about 15 minutes, and lock ages are judged by time).
9. **free space** — when the provider offers ``free_space()`` (:class:`SpaceReporter`).

Each :class:`ProbeStep` has a status (``ok``, ``warning``, ``failed``, ``skipped``), a message
and a hint. Steps that depend on a failed step are skipped with a note saying why. Nothing is
added to the :class:`~safekeep.storage.base.Backend` protocol: the optional extras are found on
the provider itself, looking through the wrappers' ``inner`` chain.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.clock import SYSTEM_CLOCK, Clock
from safekeep.common.errors import Cancelled
from safekeep.storage.base import Backend, FileType, Handle
from safekeep.storage.errors import PermissionDenied, StorageError

TEST_OBJECT_SIZE = 64 * 1024
SKEW_WARNING_SECONDS = 60.0


class Status(enum.Enum):
    OK = "ok"
    WARNING = "warning"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class ProbeStep:
    """One finished step: ``name`` is a stable id (``connect``, ``write``, ...)."""

    name: str
    status: Status
    message: str
    hint: str = ""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    steps: tuple[ProbeStep, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when no step failed (warnings and skips are fine)."""
        return all(s.status is not Status.FAILED for s in self.steps)

    def step(self, name: str) -> ProbeStep:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)


@runtime_checkable
class ClockReporter(Protocol):
    """A provider that can tell the server's time (e.g. from an HTTP ``Date`` header)."""

    def server_time(self) -> datetime | None: ...


@runtime_checkable
class SpaceReporter(Protocol):
    """A provider that can tell how many bytes are free at the location."""

    def free_space(self) -> int | None: ...


def _find(backend: Backend, matches: Callable[[object], bool]) -> object | None:
    """``backend`` or the first backend inside its wrappers for which ``matches`` is true."""
    current: object = backend
    for _ in range(32):
        if matches(current):
            return current
        inner = getattr(current, "inner", None)
        if inner is None:
            return None
        current = inner
    return None


def free_space(backend: Backend) -> int | None:
    """Free bytes at the location, from the provider (through its wrappers), or None if unknown."""
    reporter = _find(backend, lambda b: isinstance(b, SpaceReporter))
    if not isinstance(reporter, SpaceReporter):
        return None
    return reporter.free_space()


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)  # pragma: no cover


class _Run:
    def __init__(self, report: Callable[[ProbeStep], None]) -> None:
        self.steps: list[ProbeStep] = []
        self._report = report

    def add(self, name: str, status: Status, message: str, hint: str = "") -> ProbeStep:
        step = ProbeStep(name, status, message, hint)
        self.steps.append(step)
        self._report(step)
        return step

    def fail(self, name: str, what: str, exc: BaseException) -> None:
        if isinstance(exc, StorageError):
            self.add(name, Status.FAILED, f"{what}: {exc}", exc.hint)
        else:
            self.add(name, Status.FAILED, f"{what}: unexpected error {type(exc).__name__}: {exc}")

    def skip(self, names: list[str], why: str) -> None:
        for n in names:
            self.add(n, Status.SKIPPED, f"Skipped: {why}.")


def probe(
    backend: Backend,
    *,
    clock: Clock = SYSTEM_CLOCK,
    cancel: CancelToken = NEVER,
    report: Callable[[ProbeStep], None] = lambda _step: None,
) -> ProbeResult:
    """Run the probe's steps against ``backend`` (see the module docstring)."""
    run = _Run(report)
    try:
        _probe(backend, run, clock, cancel)
    except Cancelled:
        raise
    return ProbeResult(tuple(run.steps))


def _probe(backend: Backend, run: _Run, clock: Clock, cancel: CancelToken) -> None:
    data_steps = ["write", "read", "range-read", "list", "size", "delete"]
    cancel.raise_if_cancelled()
    try:
        keys = sum(1 for _ in backend.list(FileType.KEY, cancel=cancel))
    except Cancelled:
        raise
    except Exception as exc:
        run.fail("connect", "Cannot connect to the storage", exc)
        run.skip([*data_steps, "clock", "free-space"], "the storage could not be reached")
        return
    run.add(
        "connect",
        Status.OK,
        "Connected. "
        + (
            f"There is a repository here ({keys} key file(s))."
            if keys
            else "There is no repository here yet."
        ),
    )

    data = secrets.token_bytes(TEST_OBJECT_SIZE)
    h = Handle(FileType.PACK, hashlib.sha256(data).hexdigest())
    written = False
    try:
        cancel.raise_if_cancelled()
        try:
            backend.save(h, data, cancel=cancel)
            written = True
        except Cancelled:
            raise
        except Exception as exc:
            run.fail("write", "Cannot write a test file", exc)
            run.skip(data_steps[1:], "the test file could not be written")
        else:
            run.add("write", Status.OK, f"Wrote a test file of {_size(len(data))}.")
            _check_reads(backend, run, h, data, cancel)
            written = _delete(backend, run, h, cancel)
    finally:
        if written and cancel.cancelled:
            try:
                backend.remove(h)
            except Exception:
                pass

    cancel.raise_if_cancelled()
    _clock_step(backend, run, clock)
    cancel.raise_if_cancelled()
    _space_step(backend, run)


def _check_reads(backend: Backend, run: _Run, h: Handle, data: bytes, cancel: CancelToken) -> None:
    try:
        back = backend.load(h, cancel=cancel)
    except Cancelled:
        raise
    except Exception as exc:
        run.fail("read", "Cannot read the test file back", exc)
    else:
        if back == data:
            run.add("read", Status.OK, "Read the test file back; it is identical.")
        else:
            run.add(
                "read",
                Status.FAILED,
                f"The test file read back differs from what was written ({len(back)} of {len(data)} bytes).",
                "The storage is corrupting data: do not use it for backups.",
            )
    off, length = 1000, 4096
    try:
        part = backend.load(h, off, length, cancel=cancel)
    except Cancelled:
        raise
    except Exception as exc:
        run.fail("range-read", "Cannot read part of the test file", exc)
    else:
        if part == data[off : off + length]:
            run.add("range-read", Status.OK, "Read part of the test file; it is correct.")
        else:
            run.add(
                "range-read",
                Status.FAILED,
                "Reading part of the test file returned the wrong bytes.",
                "The storage does not handle partial reads correctly; restores would fail.",
            )
    try:
        found = any(fi.name == h.name for fi in backend.list(FileType.PACK, cancel=cancel))
    except Cancelled:
        raise
    except Exception as exc:
        run.fail("list", "Cannot list the stored files", exc)
    else:
        if found:
            run.add("list", Status.OK, "The test file appears in the listing.")
        else:
            run.add(
                "list",
                Status.FAILED,
                "The test file does not appear in the listing.",
                "The storage lists files inconsistently; check the location, or wait and test again.",
            )
    try:
        info = backend.stat(h, cancel=cancel)
    except Cancelled:
        raise
    except Exception as exc:
        run.fail("size", "Cannot read the test file's size", exc)
    else:
        if info.size == len(data):
            run.add("size", Status.OK, "The test file's size is reported correctly.")
        else:
            run.add(
                "size",
                Status.FAILED,
                f"The storage reports the test file as {info.size} bytes instead of {len(data)}.",
            )


def _delete(backend: Backend, run: _Run, h: Handle, cancel: CancelToken) -> bool:
    """Remove the test file; returns False: nothing is left for the caller to clean up."""
    try:
        backend.remove(h, cancel=cancel)
    except Cancelled:
        raise
    except PermissionDenied as exc:
        run.add(
            "delete",
            Status.WARNING,
            "This key cannot delete files; that is fine with Object Lock or append-only storage.",
            "Old backups will then not be removed by Safekeep (forget/prune); the storage's own "
            f"retention rules must do it. A small test file {h.path()} was left behind. ({exc})",
        )
        return False
    except Exception as exc:
        run.fail("delete", "Cannot delete the test file", exc)
        return False
    run.add("delete", Status.OK, "Deleted the test file.")
    return False


def _clock_step(backend: Backend, run: _Run, clock: Clock) -> None:
    reporter = _find(backend, lambda b: isinstance(b, ClockReporter))
    if not isinstance(reporter, ClockReporter):
        run.add("clock", Status.SKIPPED, "Skipped: this kind of storage does not report its clock.")
        return
    try:
        server = reporter.server_time()
    except Exception as exc:
        run.add("clock", Status.SKIPPED, f"Skipped: the server's clock could not be read ({exc}).")
        return
    if server is None:
        run.add("clock", Status.SKIPPED, "Skipped: the server did not report its clock.")
        return
    skew = (clock.now() - server).total_seconds()
    if abs(skew) > SKEW_WARNING_SECONDS:
        direction = "ahead of" if skew > 0 else "behind"
        run.add(
            "clock",
            Status.WARNING,
            f"This computer's clock is {abs(skew):.0f} seconds {direction} the server's.",
            "Set the clock to synchronise automatically (internet time); cloud storage refuses "
            "requests when clocks differ by more than about 15 minutes.",
        )
    else:
        run.add(
            "clock", Status.OK, f"This computer's clock agrees with the server's ({abs(skew):.0f} s apart)."
        )


def _space_step(backend: Backend, run: _Run) -> None:
    reporter = _find(backend, lambda b: isinstance(b, SpaceReporter))
    if not isinstance(reporter, SpaceReporter):
        run.add("free-space", Status.SKIPPED, "Skipped: this kind of storage does not report free space.")
        return
    try:
        free = reporter.free_space()
    except Exception as exc:
        run.add("free-space", Status.SKIPPED, f"Skipped: free space could not be read ({exc}).")
        return
    if free is None:
        run.add("free-space", Status.SKIPPED, "Skipped: the storage did not report its free space.")
    elif free < 1 << 30:
        run.add(
            "free-space",
            Status.WARNING,
            f"Only {_size(free)} free at this location.",
            "Free some space or choose a larger destination before the first backup.",
        )
    else:
        run.add("free-space", Status.OK, f"{_size(free)} free at this location.")
