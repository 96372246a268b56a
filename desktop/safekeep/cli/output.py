"""Printing for people and for programs.

:class:`Output` is the only thing commands print through:

- in text mode, results go to stdout (:meth:`Output.result`, always shown) and chatter to stdout
  (:meth:`Output.info`, hidden by ``-q``); warnings and per-item errors go to stderr;
- with ``--json`` every message is one JSON object on one line of stdout (:meth:`Output.json`),
  and nothing meant for people is written to stdout.

A transient progress line on stderr (TTY only) is cleared before anything else is printed, so
the two never interleave; all writes hold one lock because progress and errors arrive from
worker threads. The ``format_*`` helpers render numbers, sizes, durations and times the way
restic does.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
from datetime import datetime
from typing import Any, TextIO


class Output:
    def __init__(
        self,
        *,
        json_mode: bool = False,
        quiet: bool = False,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.lock = threading.RLock()
        self._progress_shown = False

    # -------------------------------------------------------------- capabilities

    @property
    def stderr_is_tty(self) -> bool:
        isatty = getattr(self.stderr, "isatty", None)
        return bool(isatty and isatty())

    def terminal_width(self) -> int:
        return shutil.get_terminal_size((80, 24)).columns

    # -------------------------------------------------------------- writing

    def result(self, text: str = "") -> None:
        """A command's result for people (text mode only; shown even with ``-q``)."""
        if self.json_mode:
            return
        with self.lock:
            self.clear_progress()
            self.stdout.write(text + "\n")
            self.stdout.flush()

    def info(self, text: str = "") -> None:
        """Chatter for people (text mode only; hidden by ``-q``)."""
        if self.quiet:
            return
        self.result(text)

    def json(self, obj: Any) -> None:
        """One JSON object on one line of stdout (``--json`` mode only)."""
        if not self.json_mode:
            return
        line = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        with self.lock:
            self.stdout.write(line + "\n")
            self.stdout.flush()

    def warn(self, text: str) -> None:
        """A diagnostic on stderr (always shown, in both modes)."""
        with self.lock:
            self.clear_progress()
            self.stderr.write(text + "\n")
            self.stderr.flush()

    def write_bytes(self, data: bytes) -> None:
        """Raw bytes to stdout (``cat blob``)."""
        with self.lock:
            self.stdout.flush()
            buffer = getattr(self.stdout, "buffer", None)
            if buffer is not None:
                buffer.write(data)
                buffer.flush()
            else:
                self.stdout.write(data.decode("utf-8", "replace"))
                self.stdout.flush()

    def show_progress(self, line: str) -> None:
        """Replace the transient status line on stderr."""
        width = max(20, self.terminal_width() - 1)
        if len(line) > width:
            line = line[: width - 1] + "…"
        with self.lock:
            self.stderr.write("\r" + line + "\x1b[K")
            self.stderr.flush()
            self._progress_shown = True

    def clear_progress(self) -> None:
        with self.lock:
            if self._progress_shown:
                self.stderr.write("\r\x1b[K")
                self.stderr.flush()
                self._progress_shown = False


# ------------------------------------------------------------------ formatting


def format_bytes(n: float) -> str:
    """restic's ``ui.FormatBytes``: ``0 B``, ``512 B``, ``1.500 KiB``, ``3.201 GiB``."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    value = float(n)
    for unit in units:
        if abs(value) < 1024 or unit == units[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.3f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``, as restic's status line."""
    s = max(0, int(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_local_time(dt: datetime) -> str:
    """A time in this machine's zone, ``2006-01-02 15:04:05`` (restic's ``TimeFormat``)."""
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def format_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """A plain table with a rule under the header and at the end, like restic's."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip()

    rule = "-" * max(len(line(headers)), sum(widths) + 2 * (len(widths) - 1))
    out = [line(headers), rule]
    out += [line(r) for r in rows]
    out.append(rule)
    return out
