"""Memory-allocator tuning for backups run from the command line (glibc on Linux only).

A backup moves large buffers (read windows, 16 MiB packs) through several threads. With glibc's
defaults, freed large buffers raise the dynamic mmap threshold and then stay in per-thread heap
arenas, so peak memory grows far beyond what is in use. Fixing the threshold at 4 MiB returns
every window- and pack-sized buffer to the system when it is freed, and two arenas stop the
per-thread arenas from multiplying. Smaller allocations (chunks, trees) are unaffected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD = 4 * 1024 * 1024
ARENA_MAX = 2


def tune() -> bool:
    """Apply the settings; returns False where there is no glibc (nothing happens then)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_ARENA_MAX, ARENA_MAX))
    log.debug("allocator tuned: %s", ok)
    return ok
