"""What the setup wizard has gathered so far, and the defaults it offers.

:class:`SetupDraft` is filled page by page and turned into the engine's records at the end
(:meth:`SetupDraft.plan`). The schedule presets map to :class:`~safekeep.state.model.Trigger`
records; the default exclusions are restic-style patterns (see ``safekeep.core.fs.exclude``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from safekeep.state.model import Plan, Retention, Trigger, new_id
from safekeep.storage.secrets import SecretStore


class Mode(enum.Enum):
    NEW = "new"
    EXISTING = "existing"


class SchedulePreset(enum.Enum):
    ON_CHANGE = "on-change"
    HOURLY = "hourly"
    NIGHTLY = "nightly"
    CUSTOM = "custom"


DEFAULT_EXCLUDES: tuple[str, ...] = (
    "*.tmp",
    "~$*",
    ".~lock.*#",
    "Thumbs.db",
    "desktop.ini",
    ".DS_Store",
    "$RECYCLE.BIN",
    ".Trash-*",
    ".cache",
    "*.crdownload",
)
"""Temporary files, Office lock files, thumbnail caches and recycle bins."""

DEFAULT_RETENTION = Retention(keep_hourly=24, keep_daily=7, keep_weekly=5, keep_monthly=12, keep_yearly=5)
"""Kept: every hour of the last day, a week of days, five weeks, a year of months, five years."""

SUGGESTED_FOLDERS: tuple[str, ...] = ("Documents", "Desktop", "Pictures")


def suggested_folders(home: Path) -> list[Path]:
    """The usual personal folders under ``home`` that exist."""
    return [home / name for name in SUGGESTED_FOLDERS if (home / name).is_dir()]


def triggers_for(
    preset: SchedulePreset, *, time: str = "22:00", weekdays: tuple[int, ...] = ()
) -> tuple[Trigger, ...]:
    """The triggers a schedule choice stands for. ``weekdays`` (0=Monday) only for custom;
    empty means every day."""
    if preset is SchedulePreset.ON_CHANGE:
        # a change is backed up after a quiet minute, and at the latest after an hour; the nightly
        # run also catches what the watcher cannot see (network shares, a sleeping computer)
        return (
            Trigger("file-change", {"quiet_seconds": 60, "max_delay_seconds": 3600}),
            Trigger("daily", {"times": ["22:00"]}),
        )
    if preset is SchedulePreset.HOURLY:
        return (Trigger("interval", {"minutes": 60}),)
    if preset is SchedulePreset.NIGHTLY:
        return (Trigger("daily", {"times": ["22:00"]}),)
    if weekdays and len(set(weekdays)) < 7:
        return (Trigger("weekly", {"weekdays": sorted(set(weekdays)), "times": [time]}),)
    return (Trigger("daily", {"times": [time]}),)


@dataclass
class SetupDraft:
    mode: Mode = Mode.NEW
    provider: str = "local"
    destination_name: str = ""
    location: str = ""
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    store: SecretStore | None = None
    """Tokens a sign-in obtained (OAuth storage), handed to the engine with the destination."""
    password: str = ""
    sources: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDES))
    schedule: SchedulePreset = SchedulePreset.ON_CHANGE
    triggers: tuple[Trigger, ...] = field(default_factory=lambda: triggers_for(SchedulePreset.ON_CHANGE))
    plan_name: str = ""
    kit_saved_to: str = ""
    retention: Retention = DEFAULT_RETENTION

    def plan(self, destination_id: str, plan_id: str | None = None) -> Plan:
        return Plan(
            id=plan_id or new_id(),
            name=self.plan_name.strip() or "Backup",
            sources=tuple(self.sources),
            destination_ids=(destination_id,),
            excludes=tuple(p for p in (x.strip() for x in self.excludes) if p),
            triggers=self.triggers,
            retention=self.retention,
        )
