"""Progress and per-item errors on the command line: a text sink and a JSON-lines sink.

Both implement :class:`~safekeep.common.progress.ProgressSink` and throttle once more on their
own side (the engine already throttles at the source), so a terminal or a pipe is never flooded.

- :class:`TextProgress` redraws one status line on stderr, and only when stderr is a terminal:
  ``[0:12] 45.10%  120 files 36.200 MiB, total 300 files 80.000 MiB, 0 errors  /path/now``.
- :class:`JsonProgress` prints restic-style ``{"message_type":"status", ...}`` lines on stdout.
  Field names follow restic's ``backup --json`` (``files_done``/``bytes_done``) or
  ``restore --json`` (``files_restored``/``bytes_restored``) depending on the operation.

:func:`item_error_printer` returns the callback that shows each per-item error the moment it is
recorded: ``error: <path>: <message>`` on stderr, or
``{"message_type":"error","error":{"message":...},"during":...,"item":...}`` with ``--json``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from safekeep.cli.output import Output, format_bytes, format_duration
from safekeep.common.clock import SYSTEM_CLOCK, Clock
from safekeep.common.progress import NULL_PROGRESS, ItemError, Progress, ProgressSink, Throttle

TEXT_INTERVAL = 0.5
JSON_INTERVAL = 1.0


def _fraction(p: Progress) -> float | None:
    if p.bytes_total > 0:
        return min(1.0, p.bytes_done / p.bytes_total)
    if p.files_total > 0:
        return min(1.0, p.files_done / p.files_total)
    return None


class TextProgress:
    """One status line on stderr, redrawn at most every ``interval`` seconds."""

    def __init__(self, out: Output, *, interval: float = TEXT_INTERVAL, clock: Clock = SYSTEM_CLOCK) -> None:
        self._out = out
        self._throttle = Throttle(interval, clock)

    def progress(self, p: Progress) -> None:
        if p.phase == "done":
            self._out.clear_progress()
            return
        if not self._throttle.ready():
            return
        parts = [f"[{format_duration(p.elapsed)}]"]
        frac = _fraction(p)
        if frac is not None:
            parts.append(f"{frac * 100:.2f}%")
        done = f"{p.files_done} files {format_bytes(p.bytes_done)}"
        if p.files_total >= 0 or p.bytes_total >= 0:
            total_files = max(p.files_total, 0)
            total_bytes = max(p.bytes_total, 0)
            done += f", total {total_files} files {format_bytes(total_bytes)}"
        parts.append(done + f", {p.errors} errors")
        if p.current_path:
            parts.append(p.current_path)
        self._out.show_progress("  ".join(parts))


class JsonProgress:
    """restic-style ``status`` lines on stdout, at most every ``interval`` seconds."""

    def __init__(
        self,
        out: Output,
        *,
        operation: str = "backup",
        interval: float = JSON_INTERVAL,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._out = out
        self._operation = operation
        self._throttle = Throttle(interval, clock)

    def progress(self, p: Progress) -> None:
        if p.phase == "done" or not self._throttle.ready():
            return
        frac = _fraction(p)
        msg: dict[str, Any] = {
            "message_type": "status",
            "seconds_elapsed": int(p.elapsed),
            "percent_done": round(frac, 4) if frac is not None else 0,
        }
        if p.files_total >= 0:
            msg["total_files"] = p.files_total
        done_key = "restored" if self._operation == "restore" else "done"
        msg[f"files_{done_key}"] = p.files_done
        if p.bytes_total >= 0:
            msg["total_bytes"] = p.bytes_total
        msg[f"bytes_{done_key}"] = p.bytes_done
        msg["error_count"] = p.errors
        if self._operation != "restore" and p.current_path:
            msg["current_files"] = [p.current_path]
        if self._operation not in ("backup", "restore"):
            msg["phase"] = p.phase
        self._out.json(msg)


def make_progress(out: Output, operation: str) -> ProgressSink:
    """The sink a command should use: JSON lines, a TTY status line, or nothing."""
    if out.quiet:
        return NULL_PROGRESS
    if out.json_mode:
        return JsonProgress(out, operation=operation)
    if out.stderr_is_tty:
        return TextProgress(out)
    return NULL_PROGRESS


def item_error_printer(out: Output, during: str) -> Callable[[ItemError], None]:
    """A callback for :attr:`ErrorRecorder.on_record` that prints each error as it happens."""

    def show(item: ItemError) -> None:
        if out.json_mode:
            out.json(
                {
                    "message_type": "error",
                    "error": {"message": item.message},
                    "during": during,
                    "item": item.path,
                }
            )
        else:
            out.warn(f"error: {item.path}: {item.message}")

    return show
