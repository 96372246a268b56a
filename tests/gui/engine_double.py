"""An in-process stand-in for ``safekeep.engine.service.Service`` for the GUI tests.

The connection test is the real storage probe and a new destination gets a real repository
(``Repository.init`` with a cheap KDF); plans and runs live in memory. ``run_plan`` walks the
plan's folders on a thread and reports progress events like the job worker does, then records
a finished run. Tests that need real backups use the real service instead.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.core.format.keys import KDFParams
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.engine.events import JobEvent
from safekeep.state.model import Destination, DestinationResult, Outcome, Plan, Reason, Run, new_id
from safekeep.storage.compose import StorageOptions, open_backend
from safekeep.storage.registry import ProviderSettings
from safekeep.storage.secrets import SecretStore
from safekeep.storage.validate import ProbeResult, ProbeStep, probe


@dataclass(frozen=True)
class Progress:
    destination_id: str = ""
    phase: str = ""
    files_done: int = 0
    files_total: int = -1
    bytes_done: int = 0
    bytes_total: int = -1
    current_path: str = ""


@dataclass(frozen=True)
class Status:
    plan: Plan
    state: Outcome
    last_run: Run | None
    last_success: float | None
    running_id: str = ""
    progress: Progress | None = None
    destinations: Mapping[str, Outcome] = field(default_factory=dict)


class EngineDouble:
    def __init__(self) -> None:
        self._dests: dict[str, Destination] = {}
        self._plans: dict[str, Plan] = {}
        self._runs: dict[str, Run] = {}
        self._done: dict[str, threading.Event] = {}
        self._subscribers: list[Callable[[JobEvent], None]] = []
        self.passwords: dict[str, str] = {}
        self.outcome = Outcome.SUCCESS

    def destinations(self) -> list[Destination]:
        return list(self._dests.values())

    def plans(self) -> list[Plan]:
        return list(self._plans.values())

    def test_location(
        self,
        location: str,
        *,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        options: Mapping[str, str] | None = None,
        store: SecretStore | None = None,
        on_step: Callable[[ProbeStep], None] | None = None,
        cancel: CancelToken = NEVER,
    ) -> ProbeResult:
        settings = ProviderSettings(
            env={**(env or {}), **(secrets or {})}, options=dict(options or {}), store=store
        )
        backend = open_backend(location, options=StorageOptions(provider=settings, retry_attempts=1))
        try:
            return probe(backend, report=on_step or (lambda _s: None), cancel=cancel)
        finally:
            backend.close()

    def add_destination(
        self,
        name: str,
        location: str,
        *,
        password: str,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        options: Mapping[str, str] | None = None,
        create: bool = True,
        removable: bool = False,
        store: SecretStore | None = None,
        cancel: CancelToken = NEVER,
    ) -> Destination:
        settings = ProviderSettings(
            env={**(env or {}), **(secrets or {})}, options=dict(options or {}), store=store
        )
        backend = open_backend(location, options=StorageOptions(provider=settings, retry_attempts=1))
        opts = RepositoryOptions(kdf=KDFParams(1024, 8, 1))
        try:
            if create:
                repo = Repository.init(backend, password, options=opts)
            else:
                repo = Repository.open(backend, password, options=opts)
            repo.close()
        finally:
            backend.close()
        dest = Destination(
            new_id(), name, location, dict(env or {}), tuple(sorted(secrets or {})), dict(options or {})
        )
        self._dests[dest.id] = dest
        self.passwords[dest.id] = password
        return dest

    def save_plan(self, plan: Plan) -> Plan:
        self._plans[plan.id] = plan
        return plan

    def subscribe(self, callback: Callable[[JobEvent], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def run_plan(
        self,
        name_or_id: str,
        reason: Reason = Reason.MANUAL,
        reason_text: str = "",
        *,
        on_event: Callable[[JobEvent], None] | None = None,
    ) -> str:
        plan = self._plans[name_or_id]
        run = Run(new_id(), plan.id, "backup", reason, reason_text, time.time(), Outcome.RUNNING)
        self._runs[run.id] = run
        self._done[run.id] = threading.Event()
        targets = [*([on_event] if on_event else []), *self._subscribers]

        def emit(kind: str, dest_id: str, **data: object) -> None:
            for t in targets:
                t(JobEvent(kind, run.id, dest_id, dict(data)))

        def work() -> None:
            files = [
                os.path.join(root, f)
                for src in plan.sources
                for root, _d, names in os.walk(src)
                for f in names
            ]
            total = sum(os.path.getsize(f) for f in files)
            results = []
            for dest_id in plan.destination_ids:
                emit("started", dest_id, destination_id=dest_id)
                done = 0
                for i, f in enumerate(files, 1):
                    done += os.path.getsize(f)
                    emit(
                        "progress",
                        dest_id,
                        files_done=i,
                        files_total=len(files),
                        bytes_done=done,
                        bytes_total=total,
                        current_path=f,
                    )
                results.append(DestinationResult(dest_id, self.outcome, "0" * 64, len(files), total, total))
                emit("finished", dest_id)
            self._runs[run.id] = Run(
                run.id,
                plan.id,
                "backup",
                reason,
                reason_text,
                run.started,
                self.outcome,
                time.time(),
                tuple(results),
            )
            self._done[run.id].set()

        threading.Thread(target=work, daemon=True).start()
        return run.id

    def wait(self, run_id: str, timeout: float | None = None) -> Run:
        self._done[run_id].wait(timeout)
        return self._runs[run_id]

    def cancel(self, run_id: str) -> bool:
        return False

    def history(self, plan: str | None = None, limit: int = 50) -> list[Run]:
        runs = [r for r in self._runs.values() if plan is None or r.plan_id == plan]
        return sorted(runs, key=lambda r: r.started, reverse=True)[:limit]

    def status(self) -> Sequence[Status]:
        out = []
        for plan in self._plans.values():
            runs = self.history(plan.id, 1)
            last = runs[0] if runs else None
            ok = [
                r.finished for r in self.history(plan.id) if r.outcome in (Outcome.SUCCESS, Outcome.WARNING)
            ]
            out.append(
                Status(
                    plan,
                    last.outcome if last else Outcome.QUEUED,
                    last,
                    ok[0] if ok else None,
                    destinations={r.destination_id: r.outcome for r in (last.results if last else ())},
                )
            )
        return out
