"""Events a job worker reports, one JSON object per line on its stdout.

Every line is ``{"event": KIND, ...fields}``. Kinds:

``started``     ``destination_id``, ``location``
``progress``    ``phase``, ``files_done``, ``files_total``, ``bytes_done``, ``bytes_total``,
                ``errors``, ``current_path``, ``elapsed`` (numbers and a path, never prose);
                phase ``retention``: old backups are being removed after the backup (prune's
                step in ``current_path``)
``file_error``  ``path``, ``message``
``secret``      ``name``, ``value`` — a provider replaced a stored token (the parent writes it to
                the keyring; the pipe is private to the two processes)
``finished``    ``result`` (a :class:`~safekeep.state.model.DestinationResult` as a dict)
``failed``      ``message``, ``hint`` — the job could not run (wrong password, storage gone)
``restore_summary`` a restore's counts (``restored``, ``overwritten``, ``kept_both``, ``skipped``,
                ``failed``, ``verified``, ``folders``, ``bytes_written``), ``complete`` and
                ``report`` (the path of its report file, "" when none was written); sent
                before ``finished``
``retention``   after a backup whose plan keeps a limited history: ``removed`` (the snapshot IDs
                the plan's retention removed), ``kept`` (how many of the plan's snapshots from
                this computer remain) and ``bytes_freed`` (by the prune that followed); sent
                before ``finished``
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

KINDS = frozenset(
    {"started", "progress", "file_error", "secret", "finished", "failed", "restore_summary", "retention"}
)


@dataclass(frozen=True, slots=True)
class JobEvent:
    kind: str
    run_id: str = ""
    destination_id: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_line(self) -> str:
        return json.dumps({"event": self.kind, **self.data}, ensure_ascii=False, separators=(",", ":")) + "\n"

    @classmethod
    def from_line(cls, line: str, *, run_id: str = "", destination_id: str = "") -> JobEvent:
        """Parse one line; raises ``ValueError`` for anything that is not an event."""
        obj = json.loads(line)
        if not isinstance(obj, dict) or obj.get("event") not in KINDS:
            raise ValueError(f"not a job event: {line[:200]!r}")
        kind = str(obj.pop("event"))
        return cls(kind, run_id, destination_id, obj)

    def __repr__(self) -> str:  # a secret event must not show its value in logs
        data = {k: ("***" if k == "value" and self.kind == "secret" else v) for k, v in self.data.items()}
        return f"JobEvent({self.kind!r}, run={self.run_id!r}, destination={self.destination_id!r}, {data})"
