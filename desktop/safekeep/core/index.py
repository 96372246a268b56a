"""The in-memory master index: blob ID -> (pack, offset, length, uncompressed length).

Built from every index file of the repository (and added to as new packs are written). Entries
are kept compactly: pack IDs are interned in a list and each blob maps to one integer that packs
the pack number, offset, sealed length and uncompressed length, so a large repository does not
cost a Python object per field per blob.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

from safekeep.core.format.index import BlobEntry
from safekeep.core.format.pack import BlobType, PackedBlob

_M32 = (1 << 32) - 1


def _pack(pack_no: int, offset: int, length: int, ulen: int) -> int:
    return (pack_no << 96) | (offset << 64) | (length << 32) | ulen


class MasterIndex:
    def __init__(self) -> None:
        self._pack_ids: list[str] = []
        self._pack_nos: dict[str, int] = {}
        self._blobs: tuple[dict[bytes, int], dict[bytes, int]] = ({}, {})
        self._lock = threading.Lock()

    def _pack_no(self, pack_id: str) -> int:
        no = self._pack_nos.get(pack_id)
        if no is None:
            no = len(self._pack_ids)
            self._pack_ids.append(pack_id)
            self._pack_nos[pack_id] = no
        return no

    def add_pack(self, pack_id: str, blobs: list[PackedBlob]) -> None:
        with self._lock:
            base = self._pack_no(pack_id) << 96
            data, tree = self._blobs
            for b in blobs:
                (tree if b.type else data)[b.id] = (
                    base | (b.offset << 64) | (b.length << 32) | b.uncompressed_length
                )

    def add_entries(self, pack_id: str, entries: Iterable[BlobEntry]) -> None:
        """:meth:`add_pack` for blobs as decoded from an index file, without objects per blob."""
        with self._lock:
            base = self._pack_no(pack_id) << 96
            data, tree = self._blobs
            for kind, blob_id, offset, length, ulen in entries:
                (tree if kind else data)[blob_id] = base | (offset << 64) | (length << 32) | ulen

    def has(self, type: BlobType, blob_id: bytes) -> bool:
        return blob_id in self._blobs[type]

    def lookup(self, type: BlobType, blob_id: bytes) -> tuple[str, PackedBlob] | None:
        v = self._blobs[type].get(blob_id)
        if v is None:
            return None
        return self._pack_ids[v >> 96], PackedBlob(
            type, blob_id, (v >> 64) & _M32, (v >> 32) & _M32, v & _M32
        )

    def count(self, type: BlobType) -> int:
        return len(self._blobs[type])

    def pack_ids(self) -> set[str]:
        """Packs that hold at least one indexed blob."""
        used: set[int] = set()
        for d in self._blobs:
            used.update(v >> 96 for v in d.values())
        return {self._pack_ids[n] for n in used}

    def blobs(self) -> Iterator[tuple[str, PackedBlob]]:
        for t in (BlobType.DATA, BlobType.TREE):
            for blob_id in list(self._blobs[t]):
                found = self.lookup(t, blob_id)
                if found is not None:
                    yield found

    def by_pack(self) -> dict[str, list[PackedBlob]]:
        out: dict[str, list[PackedBlob]] = {}
        for pack_id, blob in self.blobs():
            out.setdefault(pack_id, []).append(blob)
        for blobs in out.values():
            blobs.sort(key=lambda b: b.offset)
        return out
