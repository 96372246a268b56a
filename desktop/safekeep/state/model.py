"""The records the app keeps: destinations, plans, runs and settings (pure data, no I/O).

Every record is a frozen dataclass with ``to_dict``/``from_dict`` for its JSON form; the app
database (:mod:`safekeep.state.db`) stores them, the engine passes them across the process
boundary and the CLI prints them with ``--json``. Secrets are never part of a record: a
destination holds *references* (names in the keyring, see :mod:`safekeep.state.secrets`).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any


def new_id() -> str:
    """A short random identifier for a plan, destination or run (12 hex digits)."""
    return uuid.uuid4().hex[:12]


def _strs(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(str(v) for v in value)


def _str_map(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a mapping, got {value!r}")
    return {str(k): str(v) for k, v in value.items()}


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a plan's backups go: a storage location and the repository in it.

    ``location`` is a restic-style location string (``/media/usb/backup``, ``s3:host/bucket``).
    ``env`` holds non-secret provider settings under restic's variable names
    (``AWS_ACCESS_KEY_ID``, ``AWS_DEFAULT_REGION``); ``secret_env`` names the variables whose values
    are secrets kept in the keyring (``AWS_SECRET_ACCESS_KEY``): the value is read from the
    destination's keyring scope under that same name. The repository password is in the same
    scope under :data:`PASSWORD_SECRET`.
    """

    id: str
    name: str
    location: str
    env: Mapping[str, str] = field(default_factory=dict)
    secret_env: tuple[str, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)
    removable: bool = False
    low_space_mib: int | None = None
    upload_limit_kib: int | None = None
    download_limit_kib: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "location": self.location,
            "env": dict(self.env),
            "secret_env": list(self.secret_env),
            "options": dict(self.options),
            "removable": self.removable,
            "low_space_mib": self.low_space_mib,
            "upload_limit_kib": self.upload_limit_kib,
            "download_limit_kib": self.download_limit_kib,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Destination:
        return cls(
            id=str(d["id"]),
            name=str(d["name"]),
            location=str(d["location"]),
            env=_str_map(d.get("env")),
            secret_env=_strs(d.get("secret_env")),
            options=_str_map(d.get("options")),
            removable=bool(d.get("removable", False)),
            low_space_mib=_opt_int(d.get("low_space_mib")),
            upload_limit_kib=_opt_int(d.get("upload_limit_kib")),
            download_limit_kib=_opt_int(d.get("download_limit_kib")),
        )


PASSWORD_SECRET = "repository-password"  # noqa: S105 - a name, not a password
"""The keyring name, inside a destination's scope, of its repository password."""


def _opt_int(value: object) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        raise ValueError(f"expected a number, got {value!r}")
    return int(value)


@dataclass(frozen=True, slots=True)
class Trigger:
    """When a plan runs. ``kind`` and ``params`` are interpreted by ``safekeep.triggers.rules``.

    Kinds: ``interval`` (``minutes``), ``daily`` (``times`` as ``"HH:MM"``), ``weekly``
    (``weekdays`` 0=Monday..6, ``times``), ``monthly`` (``days``: 1..31, or -1 for the last day;
    ``times``), ``cron`` (``expression``), ``file-change`` (``quiet_seconds``,
    ``max_delay_seconds``), ``disk-connected`` (no params).
    """

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Trigger:
        params = d.get("params") or {}
        if not isinstance(params, Mapping):
            raise ValueError(f"trigger params must be a mapping, got {params!r}")
        return cls(kind=str(d["kind"]), params=dict(params))


@dataclass(frozen=True, slots=True)
class Retention:
    """How long snapshots are kept, in restic's ``forget`` terms; all zero keeps everything."""

    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0

    def keeps_everything(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))

    def describe(self) -> str:
        """In plain words, e.g. "the last 24 hourly, 7 daily and 12 monthly backups"."""
        if self.keeps_everything():
            return "every backup (nothing is removed)"
        periods = [
            f"{'all' if n == -1 else n} {word}"
            for word, n in (
                ("hourly", self.keep_hourly),
                ("daily", self.keep_daily),
                ("weekly", self.keep_weekly),
                ("monthly", self.keep_monthly),
                ("yearly", self.keep_yearly),
            )
            if n
        ]
        listed = (
            ", ".join(periods[:-1]) + (" and " if len(periods) > 1 else "") + (periods[-1] if periods else "")
        )
        if not self.keep_last:
            return f"the last {listed} backups"
        last = "every backup" if self.keep_last == -1 else f"the last {self.keep_last} backups"
        return f"{last} and the last {listed} backups" if periods else last

    def to_dict(self) -> dict[str, int]:
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Retention:
        if not d:
            return cls()
        known = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in d.items() if k in known})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Runs after a failure: waits between attempts (seconds), then an alert."""

    delays: tuple[int, ...] = (300, 900, 3600, 3 * 3600)

    def to_dict(self) -> dict[str, Any]:
        return {"delays": list(self.delays)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> RetryPolicy:
        if not d:
            return cls()
        return cls(delays=tuple(int(v) for v in d.get("delays", ())))


@dataclass(frozen=True, slots=True)
class Plan:
    """What is backed up, when, where to and for how long."""

    id: str
    name: str
    sources: tuple[str, ...]
    destination_ids: tuple[str, ...]
    excludes: tuple[str, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    retention: Retention = Retention()
    retry: RetryPolicy = RetryPolicy()
    enabled: bool = True

    def with_changes(self, **changes: Any) -> Plan:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "sources": list(self.sources),
            "destination_ids": list(self.destination_ids),
            "excludes": list(self.excludes),
            "triggers": [t.to_dict() for t in self.triggers],
            "retention": self.retention.to_dict(),
            "retry": self.retry.to_dict(),
            "enabled": self.enabled,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        return cls(
            id=str(d["id"]),
            name=str(d["name"]),
            sources=_strs(d.get("sources")),
            destination_ids=_strs(d.get("destination_ids")),
            excludes=_strs(d.get("excludes")),
            triggers=tuple(Trigger.from_dict(t) for t in d.get("triggers") or ()),
            retention=Retention.from_dict(d.get("retention")),
            retry=RetryPolicy.from_dict(d.get("retry")),
            enabled=bool(d.get("enabled", True)),
        )


class Outcome(enum.Enum):
    """How a run (or one destination of it) ended, from best to worst."""

    SUCCESS = "success"
    WARNING = "warning"  # finished, but some files were skipped
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # the worker or the computer stopped mid-run
    FAILED = "failed"
    RUNNING = "running"
    QUEUED = "queued"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @staticmethod
    def worst(outcomes: Sequence[Outcome]) -> Outcome:
        return max(outcomes, key=lambda o: o.severity) if outcomes else Outcome.SUCCESS


_SEVERITY = {
    Outcome.SUCCESS: 0,
    Outcome.QUEUED: 1,
    Outcome.RUNNING: 2,
    Outcome.WARNING: 3,
    Outcome.CANCELLED: 4,
    Outcome.INTERRUPTED: 5,
    Outcome.FAILED: 6,
}


class Reason(enum.Enum):
    """Why a run started."""

    MANUAL = "manual"
    SCHEDULE = "schedule"
    CHANGE = "change"
    EXTERNAL = "external"
    RETRY = "retry"
    CATCH_UP = "catch-up"
    DISK_CONNECTED = "disk-connected"


@dataclass(frozen=True, slots=True)
class SkippedFile:
    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class DestinationResult:
    """One destination's part of a run.

    ``skipped`` lists the files that were not backed up; a long list is capped when stored and
    ``skipped_omitted`` counts the ones left out, so :attr:`skipped_count` is always the total.
    """

    destination_id: str
    outcome: Outcome
    snapshot_id: str = ""
    files: int = 0
    bytes: int = 0
    bytes_added: int = 0
    error: str = ""
    skipped: tuple[SkippedFile, ...] = ()
    started: float | None = None
    finished: float | None = None
    skipped_omitted: int = 0

    @property
    def skipped_count(self) -> int:
        """How many files were skipped, listed or not."""
        return len(self.skipped) + self.skipped_omitted

    def to_dict(self) -> dict[str, Any]:
        return {
            "destination_id": self.destination_id,
            "outcome": self.outcome.value,
            "snapshot_id": self.snapshot_id,
            "files": self.files,
            "bytes": self.bytes,
            "bytes_added": self.bytes_added,
            "error": self.error,
            "skipped": [s.to_dict() for s in self.skipped],
            "started": self.started,
            "finished": self.finished,
            "skipped_omitted": self.skipped_omitted,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DestinationResult:
        return cls(
            destination_id=str(d["destination_id"]),
            outcome=Outcome(d["outcome"]),
            snapshot_id=str(d.get("snapshot_id") or ""),
            files=int(d.get("files") or 0),
            bytes=int(d.get("bytes") or 0),
            bytes_added=int(d.get("bytes_added") or 0),
            error=str(d.get("error") or ""),
            skipped=tuple(SkippedFile(str(s["path"]), str(s["reason"])) for s in d.get("skipped") or ()),
            started=d.get("started"),
            finished=d.get("finished"),
            skipped_omitted=int(d.get("skipped_omitted") or 0),
        )


@dataclass(frozen=True, slots=True)
class Run:
    """One run of a plan (or a restore/check job), as the history shows it.

    ``started``/``finished`` are Unix times. ``outcome`` is the worst of the destinations'.
    """

    id: str
    plan_id: str
    kind: str  # "backup", "restore", "check"
    reason: Reason
    reason_text: str
    started: float
    outcome: Outcome
    finished: float | None = None
    results: tuple[DestinationResult, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "plan_id": self.plan_id,
            "kind": self.kind,
            "reason": self.reason.value,
            "reason_text": self.reason_text,
            "started": self.started,
            "finished": self.finished,
            "outcome": self.outcome.value,
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Run:
        return cls(
            id=str(d["id"]),
            plan_id=str(d["plan_id"]),
            kind=str(d.get("kind") or "backup"),
            reason=Reason(d["reason"]),
            reason_text=str(d.get("reason_text") or ""),
            started=float(d["started"]),
            finished=None if d.get("finished") is None else float(d["finished"]),
            outcome=Outcome(d["outcome"]),
            results=tuple(DestinationResult.from_dict(r) for r in d.get("results") or ()),
        )


class ChannelKind(enum.Enum):
    """How a notification is delivered."""

    DESKTOP = "desktop"
    EMAIL = "email"
    WEBHOOK = "webhook"


@dataclass(frozen=True, slots=True)
class NotificationChannel:
    """Where and when the admin is told about runs.

    ``config`` is the sender's own settings (``safekeep.notify``): recipients and SMTP server for
    email, the URL for a webhook. It never holds a secret: an SMTP password is kept in the keyring
    under the ``app`` scope and ``config`` names it. ``events`` are the run events that are sent
    (``"failure"``, ``"warning"``, ``"success"``, ``"missed"``, ...).
    """

    id: str
    name: str
    kind: ChannelKind
    config: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[str, ...] = ()
    enabled: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind.value,
            "config": dict(self.config),
            "events": list(self.events),
            "enabled": self.enabled,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NotificationChannel:
        config = d.get("config") or {}
        if not isinstance(config, Mapping):
            raise ValueError(f"channel config must be a mapping, got {config!r}")
        return cls(
            id=str(d["id"]),
            name=str(d["name"]),
            kind=ChannelKind(d["kind"]),
            config=dict(config),
            events=_strs(d.get("events")),
            enabled=bool(d.get("enabled", True)),
        )


@dataclass(frozen=True, slots=True)
class SchedulerState:
    """What the scheduler remembers about one plan between runs of the app (Unix times).

    ``last_scheduled`` is when a schedule trigger last fired (catch-up after sleep compares it with
    the schedule); ``paused_until`` holds automatic runs back; ``retry_attempt`` counts the retries
    after a failure so far and ``next_retry`` is when the next one is due.
    """

    plan_id: str
    last_scheduled: float | None = None
    paused_until: float | None = None
    retry_attempt: int = 0
    next_retry: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan_id": self.plan_id,
            "last_scheduled": self.last_scheduled,
            "paused_until": self.paused_until,
            "retry_attempt": self.retry_attempt,
            "next_retry": self.next_retry,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SchedulerState:
        def opt_float(v: object) -> float | None:
            return None if v is None else float(str(v))

        return cls(
            plan_id=str(d["plan_id"]),
            last_scheduled=opt_float(d.get("last_scheduled")),
            paused_until=opt_float(d.get("paused_until")),
            retry_attempt=int(d.get("retry_attempt") or 0),
            next_retry=opt_float(d.get("next_retry")),
        )
