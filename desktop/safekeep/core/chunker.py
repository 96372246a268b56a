"""Content-defined chunking: 512 KiB minimum, about 1 MiB average, 8 MiB maximum.

Uses FastCDC (``pyfastcdc``, compiled, releases the GIL) with its gear table seeded from the
repository's chunker polynomial, so cut points differ between repositories (restic randomises its
Rabin polynomial per repository for the same reason). Files smaller than the minimum become one
chunk. restic reads any chunking, so this only affects deduplication against blobs that restic
itself wrote: identical files below 512 KiB still deduplicate across both programs because they
are single blobs either way.
"""

from __future__ import annotations

from collections.abc import Iterator

from pyfastcdc import FastCDC

MIN_SIZE = 512 * 1024
AVG_SIZE = 512 * 1024  # FastCDC's effective average is avg + min = ~1 MiB
MAX_SIZE = 8 * 1024 * 1024


class Chunker:
    def __init__(self, polynomial: str) -> None:
        seed = int(polynomial, 16) & 0x7FFFFFFF if polynomial else 0
        self._cdc = FastCDC(AVG_SIZE, min_size=MIN_SIZE, max_size=MAX_SIZE, normalized_chunking=1, seed=seed)

    def cuts(self, buf: bytes | bytearray | memoryview) -> Iterator[tuple[int, int]]:
        """``(offset, length)`` of each chunk of ``buf``.

        Thread-safe: each call gets its own cursor over the read-only configuration."""
        if len(buf) <= MIN_SIZE:
            if len(buf):
                yield 0, len(buf)
            return
        for c in self._cdc.cut_buf(buf):
            yield c.offset, c.length
