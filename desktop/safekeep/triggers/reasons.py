"""Why a trigger started a run.

The values are the same strings as the app's run reasons (``safekeep.state.model.Reason``), which
this package may not import; the engine converts with ``Reason(run_reason.value)``.
"""

from __future__ import annotations

import enum


class RunReason(enum.Enum):
    """The reasons a trigger can give for starting a run (manual and external runs start elsewhere)."""

    SCHEDULE = "schedule"
    CATCH_UP = "catch-up"
    RETRY = "retry"
    CHANGE = "change"
    DISK_CONNECTED = "disk-connected"
