"""Restore reports: what each restore did, item by item, kept as a file after the run.

A restore's worker writes a :class:`~safekeep.core.restorer.RestoreReport` as JSON to
``<folder>/<run id>.json`` (the service's folder is ``<cache>/restore-reports``); the service reads
it back for the window that shows "what went where". The file is written under a temporary name
and renamed, so a reader sees a whole report or none. Reports are a convenience, not a record
(the audit log is the record): only the newest :data:`KEEP` are kept.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from safekeep.core.restorer import RestoreReport

log = logging.getLogger(__name__)

KEEP = 20  # reports kept in a folder (each up to ITEMS_LIMIT items); older ones are removed
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def report_path(folder: str | os.PathLike[str], run_id: str) -> Path | None:
    """Where the report of ``run_id`` lives (None for a run id that is not a plain name)."""
    if not _RUN_ID.fullmatch(run_id):
        return None
    return Path(folder) / f"{run_id}.json"


def write_report(folder: str | os.PathLike[str], report: RestoreReport) -> Path:
    """Write ``report`` (named by its run id) into ``folder``; returns its path. Raises ``OSError``."""
    path = report_path(folder, report.run_id)
    if path is None:
        raise ValueError(f"not a run id: {report.run_id!r}")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(report.to_dict(), f, ensure_ascii=False, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    prune(path.parent, keep=KEEP)
    return path


def read_report(folder: str | os.PathLike[str], run_id: str) -> RestoreReport | None:
    """The report of ``run_id``; None if there is none or it cannot be read."""
    path = report_path(folder, run_id)
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return RestoreReport.from_dict(json.load(f))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("the restore report %s cannot be read: %s", path, exc)
        return None


def prune(folder: Path, *, keep: int = KEEP) -> None:
    """Remove all but the newest ``keep`` reports in ``folder``."""
    try:
        reports = [(e.stat().st_mtime, e.path) for e in os.scandir(folder) if e.name.endswith(".json")]
    except OSError as exc:
        log.info("cannot list the restore reports in %s: %s", folder, exc)
        return
    reports.sort(reverse=True)
    for _, path in reports[keep:]:
        try:
            os.unlink(path)
        except OSError as exc:
            log.info("cannot remove the old restore report %s: %s", path, exc)
