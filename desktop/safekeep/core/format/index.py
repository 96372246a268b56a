"""Index files: which pack holds which blob, where.

JSON: ``{"packs": [{"id": <pack>, "blobs": [{"id", "type", "offset", "length",
"uncompressed_length"?}]}]}``. ``length`` is the sealed length in the pack;
``uncompressed_length`` appears only for compressed blobs. A legacy ``supersedes`` list is
ignored on read and not written. Any number of index files may exist and may overlap.

A large repository has millions of entries, so both directions avoid a Python object per field:
:func:`encode_index` writes the JSON text directly (the same compact form ``json.dumps`` gives),
and :func:`decode_index_entries` yields plain tuples (:data:`BlobEntry`) that the master index
stores without building a :class:`PackedBlob` for each.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from safekeep.core.format.pack import BlobType, PackedBlob

# (type, id, offset, sealed length, uncompressed length or 0)
BlobEntry = tuple[BlobType, bytes, int, int, int]

_TYPE_NAMES = ("data", "tree")
_TYPES = {"data": BlobType.DATA, "tree": BlobType.TREE}
_HEX_ID = re.compile(r"[0-9a-f]{64}")


class IndexFormatError(ValueError):
    """An index file is malformed."""


def _json_id(pack_id: str) -> str:
    # pack IDs are SHA-256 hex strings, which need no JSON escaping
    return f'"{pack_id}"' if _HEX_ID.fullmatch(pack_id) else json.dumps(pack_id)


def encode_index(packs: Iterable[tuple[str, list[PackedBlob]]]) -> bytes:
    out: list[str] = []
    for pack_id, blobs in packs:
        entries = [
            f'{{"id":"{b.id.hex()}","type":"{_TYPE_NAMES[b.type]}","offset":{b.offset:d},'
            f'"length":{b.length:d},"uncompressed_length":{b.uncompressed_length:d}}}'
            if b.uncompressed_length
            else f'{{"id":"{b.id.hex()}","type":"{_TYPE_NAMES[b.type]}","offset":{b.offset:d},'
            f'"length":{b.length:d}}}'
            for b in blobs
        ]
        out.append(f'{{"id":{_json_id(pack_id)},"blobs":[{",".join(entries)}]}}')
    return f'{{"packs":[{",".join(out)}]}}'.encode()


def _int(v: Any) -> int:
    return v if type(v) is int else int(v)


def decode_index_entries(raw: bytes) -> Iterator[tuple[str, list[BlobEntry]]]:
    """Each pack of an index file with its blobs as :data:`BlobEntry` tuples."""
    try:
        obj = json.loads(raw)
        if isinstance(obj, list):  # the oldest (v0) index form: a bare list of packs
            packs = obj
        else:
            packs = obj.get("packs") or []
        types = _TYPES
        fromhex = bytes.fromhex
        for p in packs:
            pack_id = str(p["id"])
            if len(pack_id) != 64:
                raise IndexFormatError(f"invalid pack id {pack_id!r}")
            entries: list[BlobEntry] = []
            append = entries.append
            for b in p.get("blobs") or ():
                kind = types.get(b["type"])
                if kind is None:
                    raise IndexFormatError(f"unknown blob type {b['type']!r}")
                append(
                    (
                        kind,
                        fromhex(b["id"]),
                        _int(b["offset"]),
                        _int(b["length"]),
                        _int(b.get("uncompressed_length") or 0),
                    )
                )
            yield pack_id, entries
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, IndexFormatError):
            raise
        raise IndexFormatError(f"malformed index: {exc}") from exc


def decode_index(raw: bytes) -> Iterator[tuple[str, list[PackedBlob]]]:
    for pack_id, entries in decode_index_entries(raw):
        yield pack_id, [PackedBlob(*e) for e in entries]
