"""Index files: which pack holds which blob, where.

JSON: ``{"packs": [{"id": <pack>, "blobs": [{"id", "type", "offset", "length",
"uncompressed_length"?}]}]}``. ``length`` is the sealed length in the pack;
``uncompressed_length`` appears only for compressed blobs. A legacy ``supersedes`` list is
ignored on read and not written. Any number of index files may exist and may overlap.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from safekeep.core.format.pack import BlobType, PackedBlob


class IndexFormatError(ValueError):
    """An index file is malformed."""


def encode_index(packs: Iterable[tuple[str, list[PackedBlob]]]) -> bytes:
    out: list[dict[str, Any]] = []
    for pack_id, blobs in packs:
        entries: list[dict[str, Any]] = []
        for b in blobs:
            e: dict[str, Any] = {
                "id": b.id.hex(),
                "type": b.type.json_name,
                "offset": b.offset,
                "length": b.length,
            }
            if b.uncompressed_length:
                e["uncompressed_length"] = b.uncompressed_length
            entries.append(e)
        out.append({"id": pack_id, "blobs": entries})
    return json.dumps({"packs": out}, separators=(",", ":")).encode()


def decode_index(raw: bytes) -> Iterator[tuple[str, list[PackedBlob]]]:
    try:
        obj = json.loads(raw)
        if isinstance(obj, list):  # the oldest (v0) index form: a bare list of packs
            packs = obj
        else:
            packs = obj.get("packs") or []
        for p in packs:
            pack_id = str(p["id"])
            if len(pack_id) != 64:
                raise IndexFormatError(f"invalid pack id {pack_id!r}")
            blobs = [
                PackedBlob(
                    BlobType.from_json(b["type"]),
                    bytes.fromhex(b["id"]),
                    int(b["offset"]),
                    int(b["length"]),
                    int(b.get("uncompressed_length") or 0),
                )
                for b in (p.get("blobs") or [])
            ]
            yield pack_id, blobs
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, IndexFormatError):
            raise
        raise IndexFormatError(f"malformed index: {exc}") from exc
