"""The backup's allocator settings (glibc): freed file-sized buffers stay for reuse, up to the
trim threshold, instead of going back to the system after every file."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from safekeep.engine import allocator

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")

MiB = 1024 * 1024

# In a fresh process (the settings are process-wide): allocate MiB in 64 KiB pieces (below the
# mmap threshold, so they come from the heap, as a small file's read does), free them, and print
# the free bytes the heap keeps (glibc's mallinfo2().fordblks).
_PROBE = textwrap.dedent(
    """
    import ctypes, sys
    from safekeep.engine import allocator

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    if sys.argv[1] == "tune":
        assert allocator.tune()
    else:  # glibc's default trim threshold, fixed (by default it grows with the process's past)
        assert libc.mallopt(allocator.M_TRIM_THRESHOLD, 128 * 1024)
    blocks = [b"x" * (64 * 1024) for _ in range(int(sys.argv[2]) * 16)]
    del blocks
    print(libc.mallinfo2().fordblks)
    """
)


def _kept(mode: str, mib: int) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode, str(mib)], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def test_freed_file_buffers_stay_for_reuse_only_when_tuned() -> None:
    assert _kept("default", 12) < MiB  # a 128 KiB trim threshold gives them back at once
    assert _kept("tune", 12) >= 12 * MiB  # tuned: below the trim threshold, all of it stays


def test_free_memory_beyond_the_trim_threshold_still_goes_back() -> None:
    # past the threshold glibc trims the heap's top back to its small padding (or to whatever
    # is still in use above the freed pieces): never more than the threshold stays
    kept = _kept("tune", 2 * allocator.TRIM_THRESHOLD // MiB)
    assert kept <= allocator.TRIM_THRESHOLD
