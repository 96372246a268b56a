"""Pack files: sealed blobs followed by a sealed header and its length.

``Blob_1 || ... || Blob_N || seal(header) || uint32_le(len(seal(header)))``. Each blob is sealed on
its own (its plaintext optionally zstd-compressed). Header entries are 37 bytes
(``type``, ``u32 length``, ``sha256``) or, for compressed blobs, 41 bytes (``type``, ``u32 length``,
``u32 uncompressed length``, ``sha256``). Blob offsets are implicit: blobs are contiguous from
byte 0 in header order. A pack can therefore be parsed without any index.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from safekeep.core.crypto import OVERHEAD, AuthenticationFailed, MasterKey

ENTRY_SIZE = 37
COMPRESSED_ENTRY_SIZE = 41
# restic's limit on the header size it reads: a generous bound against hostile packs
MAX_HEADER_SIZE = 16 * 1024 * 1024 + OVERHEAD


class BlobType(enum.IntEnum):
    DATA = 0
    TREE = 1

    @property
    def json_name(self) -> str:
        return "data" if self is BlobType.DATA else "tree"

    @staticmethod
    def from_json(name: str) -> BlobType:
        if name == "data":
            return BlobType.DATA
        if name == "tree":
            return BlobType.TREE
        raise ValueError(f"unknown blob type {name!r}")


@dataclass(frozen=True, slots=True)
class PackedBlob:
    """One blob's place in a pack. ``length`` is the sealed length in the pack;
    ``uncompressed_length`` is 0 for blobs stored uncompressed."""

    type: BlobType
    id: bytes
    offset: int
    length: int
    uncompressed_length: int = 0

    @property
    def plaintext_length(self) -> int:
        if self.uncompressed_length:
            return self.uncompressed_length
        return self.length - OVERHEAD


class PackFormatError(ValueError):
    """A pack's trailer or header is malformed (or fails authentication)."""


def encode_header(blobs: list[PackedBlob]) -> bytes:
    out = bytearray()
    for b in blobs:
        if b.uncompressed_length:
            out += struct.pack("<BII", b.type | 2, b.length, b.uncompressed_length)
        else:
            out += struct.pack("<BI", int(b.type), b.length)
        out += b.id
    return bytes(out)


def decode_header(plain: bytes) -> list[PackedBlob]:
    blobs: list[PackedBlob] = []
    pos = 0
    offset = 0
    while pos < len(plain):
        kind = plain[pos]
        if kind in (0, 1):
            if pos + ENTRY_SIZE > len(plain):
                raise PackFormatError("truncated header entry")
            (length,) = struct.unpack_from("<I", plain, pos + 1)
            blob_id = plain[pos + 5 : pos + 37]
            ulen = 0
            pos += ENTRY_SIZE
        elif kind in (2, 3):
            if pos + COMPRESSED_ENTRY_SIZE > len(plain):
                raise PackFormatError("truncated header entry")
            length, ulen = struct.unpack_from("<II", plain, pos + 1)
            blob_id = plain[pos + 9 : pos + 41]
            pos += COMPRESSED_ENTRY_SIZE
        else:
            raise PackFormatError(f"invalid blob type {kind} in pack header")
        if length < OVERHEAD:
            raise PackFormatError("blob shorter than its encryption overhead")
        blobs.append(PackedBlob(BlobType(kind & 1), bytes(blob_id), offset, length, ulen))
        offset += length
    return blobs


def parse_trailer(tail: bytes, pack_size: int) -> int:
    """Given the pack's last 4 bytes, the length of the sealed header (validated)."""
    if pack_size < 4 + OVERHEAD or len(tail) != 4:
        raise PackFormatError("file too short to be a pack")
    (hlen,) = struct.unpack("<I", tail)
    if hlen < OVERHEAD or hlen > pack_size - 4 or hlen > MAX_HEADER_SIZE:
        raise PackFormatError(f"invalid header length {hlen}")
    return int(hlen)


def read_header(key: MasterKey, sealed_header: bytes, *, data_end: int) -> list[PackedBlob]:
    """Decrypt and parse a pack header; ``data_end`` is where blobs must end (header start)."""
    try:
        plain = key.open(sealed_header)
    except AuthenticationFailed as exc:
        raise PackFormatError("pack header failed authentication") from exc
    blobs = decode_header(plain)
    end = blobs[-1].offset + blobs[-1].length if blobs else 0
    if end != data_end:
        raise PackFormatError("pack header does not describe the pack's data exactly")
    return blobs


def pack_trailer(key: MasterKey, blobs: list[PackedBlob]) -> bytes:
    """What follows a pack's blobs: the sealed header and its length."""
    sealed = key.seal(encode_header(blobs))
    return sealed + struct.pack("<I", len(sealed))


def finish_pack(key: MasterKey, body: bytearray, blobs: list[PackedBlob]) -> None:
    """Append the sealed header and its length to ``body`` in place."""
    body += pack_trailer(key, blobs)
