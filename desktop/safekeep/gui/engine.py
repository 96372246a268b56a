"""The engine calls the GUI makes, as one narrow protocol, and how the real engine is opened.

The GUI talks to :class:`safekeep.engine.service.Service` only. :class:`Engine` lists the calls
it needs, so the windows depend on this small surface (convention 4: consumers declare the
narrow protocol they need) and tests can drive the windows with any object that has it. Every
method may block (disk, network, keyring): call them through
:class:`~safekeep.gui.background.Background`, never on the GUI thread.

Secrets: ``secrets`` maps restic's variable names (``AWS_SECRET_ACCESS_KEY``,
``SAFEKEEP_SFTP_PASSWORD``, ...) to values; ``store`` carries what a sign-in obtained (OAuth
tokens). The engine keeps both in the keyring, never in the app database.

The real service cannot be imported while parts of the app are missing, so it is found at run
time by :func:`open_engine`; the protocols here mirror ``safekeep.engine.service``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Protocol, cast

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.errors import SafekeepError
from safekeep.core.format.snapshot import Snapshot
from safekeep.core.restorer import ConflictScan, RestoreReport
from safekeep.engine.events import JobEvent
from safekeep.state.catalog import NULL_INDEX_PROGRESS, Catalog, IndexProgress
from safekeep.state.db import AppDatabase
from safekeep.state.model import Destination, Outcome, Plan, Reason, Run
from safekeep.storage.registry import ProviderSettings
from safekeep.storage.secrets import MemorySecretStore, SecretStore
from safekeep.storage.validate import ProbeResult, ProbeStep


class RunProgress(Protocol):
    """The latest numbers of a running run."""

    @property
    def destination_id(self) -> str: ...

    @property
    def phase(self) -> str: ...

    @property
    def files_done(self) -> int: ...

    @property
    def files_total(self) -> int: ...

    @property
    def bytes_done(self) -> int: ...

    @property
    def bytes_total(self) -> int: ...

    @property
    def current_path(self) -> str: ...


class PlanStatus(Protocol):
    """A plan as the dashboard shows it (``safekeep.engine.service.PlanStatus``)."""

    @property
    def plan(self) -> Plan: ...

    @property
    def state(self) -> Outcome: ...

    @property
    def last_run(self) -> Run | None: ...

    @property
    def last_success(self) -> float | None: ...

    @property
    def running_id(self) -> str: ...

    @property
    def progress(self) -> RunProgress | None: ...

    @property
    def destinations(self) -> Mapping[str, Outcome]: ...


class Engine(Protocol):
    def destinations(self) -> list[Destination]: ...

    def plans(self) -> list[Plan]: ...

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
    ) -> ProbeResult: ...

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
    ) -> Destination: ...

    def save_plan(self, plan: Plan) -> Plan: ...

    def subscribe(self, callback: Callable[[JobEvent], None]) -> Callable[[], None]:
        """Receive every job event (on a background thread); returns an unsubscribe function."""
        ...

    def run_plan(
        self,
        name_or_id: str,
        reason: Reason = Reason.MANUAL,
        reason_text: str = "",
        *,
        on_event: Callable[[JobEvent], None] | None = None,
    ) -> str: ...

    def wait(self, run_id: str, timeout: float | None = None) -> Run: ...

    def cancel(self, run_id: str) -> bool: ...

    def history(self, plan: str | None = None, limit: int = 50) -> list[Run]: ...

    def status(self) -> Sequence[PlanStatus]: ...

    def running(self) -> list[Run]: ...

    def snapshots(self, destination: str, *, cancel: CancelToken = NEVER) -> list[Snapshot]: ...

    def restore(
        self,
        destination: str,
        snapshot_id: str,
        target: str,
        *,
        paths: Sequence[str] = (),
        conflict: str = "overwrite",
        decisions: Mapping[str, str] | None = None,
        flatten: bool = False,
        verify: bool = True,
        on_event: Callable[[JobEvent], None] | None = None,
    ) -> str:
        """Start restoring ``paths`` (snapshot paths; empty: all) of a snapshot into ``target``.

        ``conflict`` is a :class:`~safekeep.core.restorer.ConflictPolicy` value ("overwrite",
        "skip", "keep-both") for every existing item in the way; ``decisions`` maps snapshot
        paths to a policy for that item (or everything below that folder; deepest wins).
        ``flatten``: each selected path P lands at target/basename(P) (restore into a folder);
        otherwise at target + P (target "/" = the original place). Returns the run id; when the
        run is over a ``restore_summary`` event carries the counts and the report's path.
        """
        ...

    def restore_conflicts(
        self,
        destination: str,
        snapshot_id: str,
        target: str,
        *,
        paths: Sequence[str],
        flatten: bool = False,
        cancel: CancelToken = NEVER,
    ) -> ConflictScan:
        """The selected items whose place in ``target`` is already taken (a preview; read-only)."""
        ...

    def restore_report(self, run_id: str) -> RestoreReport | None:
        """What a finished restore did, item by item (None: unknown run or no report)."""
        ...

    def catalog(
        self,
        destination: str,
        *,
        update: bool = True,
        progress: IndexProgress = NULL_INDEX_PROGRESS,
        cancel: CancelToken = NEVER,
    ) -> AbstractContextManager[Catalog]:
        """The destination's catalog (brought up to date first when ``update``), open while in the ``with``.

        The catalog may be used from any thread; run one :meth:`Catalog.update` at a time.
        """
        ...

    def open_version(
        self, destination: str, snapshot_id: str, path: str, *, cancel: CancelToken = NEVER
    ) -> Path:
        """Restore one file of a snapshot into a private temporary folder; returns the read-only copy."""
        ...

    def audit_event(self, action: str, target: str, outcome: str, **details: object) -> None: ...

    @property
    def db(self) -> AppDatabase:
        """The app database: destinations' settings and the app's own settings."""
        ...


class Triggers(Protocol):
    """What starts backups without a person (``safekeep.engine.daemon.TriggerHost``).

    The app hosts it (scheduler, file watcher, ``safekeep trigger`` socket); the tray pauses and
    resumes it and shows when each plan runs next. Its calls are quick (no network).
    """

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def reload(self) -> None: ...

    def pause_for(self, seconds: float) -> None: ...

    def pause_until_tomorrow(self) -> None: ...

    def resume(self) -> None: ...

    def next_run(self, plan_id: str) -> datetime | None: ...

    def paused_until(self, plan_id: str) -> datetime | None: ...


class EngineUnavailable(SafekeepError):
    """The engine package is missing from this installation."""


def open_engine(home: Path | None = None) -> Engine:
    """Open the app's engine (app database, keyring, audit log). Blocks: call in the background."""
    try:
        module = importlib.import_module("safekeep.engine.service")
    except ModuleNotFoundError as exc:
        raise EngineUnavailable(
            "This installation of Safekeep has no backup engine.",
            hint="Reinstall Safekeep; the package safekeep.engine is missing.",
        ) from exc
    service = module.Service.open(home)
    return cast(Engine, service)


def open_triggers(engine: Engine, folder: Path | None = None) -> Triggers:
    """The trigger host over the engine (not started). ``folder`` holds its lock and socket."""
    from safekeep.engine.daemon import TriggerHost  # noqa: PLC0415 - starts the watcher's machinery
    from safekeep.engine.service import Service  # noqa: PLC0415

    assert isinstance(engine, Service)
    return TriggerHost(engine, folder=folder)


def trust_sftp_host(
    location: str,
    fingerprint: str,
    *,
    env: Mapping[str, str],
    secrets: Mapping[str, str],
    options: Mapping[str, str],
) -> None:
    """Record an SFTP server's host key after the person confirmed ``fingerprint`` (blocks)."""
    sftp = importlib.import_module("safekeep.storage.providers.sftp")
    settings = ProviderSettings(
        env={**env, **secrets}, options=dict(options), store=MemorySecretStore(dict(secrets))
    )
    sftp.trust_host_key(location, fingerprint, settings)
