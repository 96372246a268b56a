"""Running one job in a worker process and turning what it says into a result.

:class:`WorkerRun` starts ``python -m safekeep run-job``, writes the job to its stdin, relays
its events to a callback (on the thread that calls :meth:`WorkerRun.wait`) and returns the
destination's :class:`~safekeep.state.model.DestinationResult`:

* the ``finished`` event's result, when the job ran to its end (success, warning, cancelled);
* ``FAILED`` with the worker's message when it could not do the job (wrong password, storage
  unreachable);
* ``INTERRUPTED`` when the worker died without saying either (killed, crashed, out of memory),
  with its exit status and the end of its log in the error text.

Cancel is a message first (the worker stops at a safe point and writes nothing more), then
SIGTERM after ``grace`` seconds, then SIGKILL. Either way the repository stays valid.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

from safekeep.engine.events import JobEvent
from safekeep.engine.jobs import Job
from safekeep.state.model import DestinationResult, Outcome

log = logging.getLogger(__name__)

EventCallback = Callable[[JobEvent], None]


def worker_command() -> list[str]:
    """How to start a worker: this Python running Safekeep's ``run-job`` command."""
    override = os.environ.get("SAFEKEEP_WORKER")
    if override:  # a frozen app points this at its own executable
        return [override, "run-job"]
    return [sys.executable, "-m", "safekeep", "run-job"]


class WorkerRun:
    """One worker process doing one job."""

    def __init__(
        self,
        job: Job,
        *,
        on_event: EventCallback | None = None,
        command: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
        grace: float = 10.0,
    ) -> None:
        self.job = job
        self._on_event = on_event
        self._grace = grace
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._cancel_requested = threading.Event()
        self.exit_code: int | None = None  # once the worker has ended
        self.audited = False  # the worker wrote the job's audit entry itself
        self.audit_problems: list[str] = []
        self._proc = subprocess.Popen(
            list(command or worker_command()),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=env,
            bufsize=1,
        )
        assert self._proc.stdin is not None
        self._proc.stdin.write(job.to_json() + "\n")
        self._proc.stdin.flush()
        self._stderr_thread = threading.Thread(target=self._read_stderr, name="worker-log", daemon=True)
        self._stderr_thread.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            line = line.rstrip("\n")
            self._stderr_tail.append(line)
            log.debug("worker %d: %s", self._proc.pid, line)

    def cancel(self) -> None:
        """Ask the worker to stop; escalate to signals if it does not within the grace period."""
        if self._cancel_requested.is_set() or self._proc.poll() is not None:
            return
        self._cancel_requested.set()
        with contextlib.suppress(OSError, ValueError):
            assert self._proc.stdin is not None
            self._proc.stdin.write('{"cancel": true}\n')
            self._proc.stdin.flush()
        threading.Thread(target=self._escalate, name="worker-cancel", daemon=True).start()

    def _escalate(self) -> None:
        for sig, wait in ((signal.SIGTERM, self._grace), (signal.SIGKILL, self._grace)):
            try:
                self._proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not stop; sending %s", self._proc.pid, sig.name)
                with contextlib.suppress(OSError):
                    self._proc.send_signal(sig)

    def wait(self) -> DestinationResult:
        """Relay events until the worker ends; the destination's result."""
        assert self._proc.stdout is not None
        dest_id = self.job.destination.id
        result: DestinationResult | None = None
        failure: tuple[str, str] | None = None
        started = time.time()
        for line in self._proc.stdout:
            try:
                event = JobEvent.from_line(line, run_id=self.job.run_id, destination_id=dest_id)
            except ValueError:
                log.warning("worker %d said something that is not an event: %r", self._proc.pid, line[:200])
                continue
            if event.kind == "finished":
                self.audited = bool(event.data.get("audited"))
                self.audit_problems = [str(p) for p in event.data.get("audit_problems") or ()]
                try:
                    result = DestinationResult.from_dict(event.data["result"])
                except (KeyError, ValueError, TypeError) as exc:
                    failure = (f"The worker's result could not be read: {exc}.", "")
            elif event.kind == "failed":
                failure = (str(event.data.get("message", "")), str(event.data.get("hint", "")))
            if self._on_event is not None:
                try:
                    self._on_event(event)
                except Exception:
                    log.exception("an event handler failed")
        with contextlib.suppress(OSError, ValueError):
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        code = self._proc.wait()
        self.exit_code = code
        self._stderr_thread.join(5)
        if result is not None:
            return result
        if failure is not None:
            message, hint = failure
            text = f"{message} {hint}".strip()
            outcome = Outcome.CANCELLED if self._cancel_requested.is_set() else Outcome.FAILED
            return DestinationResult(dest_id, outcome, error=text, started=started, finished=time.time())
        if code < 0:
            try:
                how = f"was stopped by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"was stopped by signal {-code}"
        else:
            how = f"exited with status {code}"
        tail = " | ".join(line for line in list(self._stderr_tail)[-3:] if line)
        error = f"The backup process {how} before it finished" + (f" ({tail})." if tail else ".")
        return DestinationResult(
            dest_id,
            Outcome.CANCELLED if self._cancel_requested.is_set() else Outcome.INTERRUPTED,
            error=error + " The repository was left valid; the next run continues.",
            started=started,
            finished=time.time(),
        )
