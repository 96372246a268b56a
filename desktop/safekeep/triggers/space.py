"""Low free space on a destination: a warning before backups start failing.

The engine measures a destination's free space (``statvfs`` for a local folder or disk, what an
SFTP server or a cloud provider with a quota reports) and asks :func:`check_space` whether to warn.
The check is pure: free and total bytes, a :class:`SpaceThreshold` and, when known, the size the
next backup is expected to add.

A destination warns when its free space falls below the larger of the threshold's absolute
minimum and its fraction of the total size, or below twice the expected size of the next backup.
Providers that report no total (an unlimited cloud bucket) are checked against the absolute
minimum only; a provider that reports nothing is not checked at all.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True, slots=True)
class SpaceThreshold:
    """When to warn: free space below ``min_free_bytes`` or below ``min_free_fraction`` of the total."""

    min_free_bytes: int = GIB
    min_free_fraction: float = 0.05

    @classmethod
    def from_mib(cls, mib: int | None) -> SpaceThreshold:
        """The destination's configured threshold (``low_space_mib``); None gives the default."""
        if mib is None:
            return cls()
        return cls(min_free_bytes=max(0, mib) * MIB, min_free_fraction=0.0)

    def bytes_for(self, total_bytes: int | None) -> int:
        """The free space below which to warn, for a destination of ``total_bytes``."""
        fraction = int(total_bytes * self.min_free_fraction) if total_bytes else 0
        return max(self.min_free_bytes, fraction)


@dataclass(frozen=True, slots=True)
class SpaceReading:
    """Free and (if known) total bytes of a destination."""

    free_bytes: int
    total_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class SpaceWarning:
    """A destination is running out of space."""

    destination: str
    free_bytes: int
    total_bytes: int | None
    threshold_bytes: int
    expected_bytes: int = 0

    @property
    def message(self) -> str:
        of_total = ""
        if self.total_bytes:
            pct = 100.0 * self.free_bytes / self.total_bytes
            of_total = f" ({pct:.0f}% of {format_bytes(self.total_bytes)})"
        text = f"Only {format_bytes(self.free_bytes)} is free on “{self.destination}”{of_total}."
        if self.expected_bytes and self.free_bytes < 2 * self.expected_bytes:
            text += f" The next backup may add about {format_bytes(self.expected_bytes)}."
        return text

    @property
    def hint(self) -> str:
        return (
            "Free some space there, use a bigger disk, or keep fewer old backups (the plan's retention); "
            "backups will fail when it is full."
        )


def check_space(
    destination: str,
    reading: SpaceReading | None,
    threshold: SpaceThreshold = SpaceThreshold(),
    *,
    expected_bytes: int = 0,
) -> SpaceWarning | None:
    """A warning if ``reading`` is below the threshold (or too small for the next backup)."""
    if reading is None:
        return None
    limit = threshold.bytes_for(reading.total_bytes)
    if reading.free_bytes < limit or (expected_bytes > 0 and reading.free_bytes < 2 * expected_bytes):
        return SpaceWarning(destination, reading.free_bytes, reading.total_bytes, limit, expected_bytes)
    return None


def local_space(path: str) -> SpaceReading:
    """Free and total space of the file system holding ``path`` (raises ``OSError``)."""
    usage = shutil.disk_usage(path)
    return SpaceReading(free_bytes=usage.free, total_bytes=usage.total)


def format_bytes(n: int) -> str:
    """A size for people: ``812 MiB``, ``3.4 GiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
