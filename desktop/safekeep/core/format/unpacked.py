"""The outer form of files that are not packs: config, index, snapshot and lock files.

On disk: ``IV || CT || MAC`` (the crypto envelope). The plaintext of a version-2 repository is
``0x02 || zstd(JSON)``; a plaintext starting with ``{`` or ``[`` is raw JSON (version 1 and
backward compatibility), and any other first byte is refused. ``config`` is never compressed.
"""

from __future__ import annotations

import threading

import zstandard

from safekeep.core.crypto import MasterKey

ENCODING_ZSTD = 0x02

# zstd level for everything Safekeep compresses (blobs, index, snapshots). On the benchmark's
# mixed dataset level 2 costs 15 % less CPU than level 3 for a repository 1 % larger (restic's
# "auto", klauspost's SpeedDefault, lands between the two); level 1 saves another 12 % CPU but
# is 2 % larger. Any level is readable by restic and every other zstd decoder.
COMPRESSION_LEVEL = 2

_local = threading.local()


def compressor() -> zstandard.ZstdCompressor:
    """A per-thread zstd compressor (:data:`COMPRESSION_LEVEL`, no checksum, as restic writes)."""
    c: zstandard.ZstdCompressor | None = getattr(_local, "c", None)
    if c is None:
        c = zstandard.ZstdCompressor(level=COMPRESSION_LEVEL, write_checksum=False)
        _local.c = c
    return c


def decompressor() -> zstandard.ZstdDecompressor:
    d: zstandard.ZstdDecompressor | None = getattr(_local, "d", None)
    if d is None:
        d = zstandard.ZstdDecompressor()
        _local.d = d
    return d


class UnpackedFormatError(ValueError):
    """The decrypted content is not in a known encoding."""


def encode_plaintext(data: bytes, *, version: int, compress: bool = True) -> bytes:
    if version >= 2 and compress:
        return bytes([ENCODING_ZSTD]) + compressor().compress(data)
    return data


def decode_plaintext(plain: bytes) -> bytes:
    if not plain:
        raise UnpackedFormatError("empty file content")
    first = plain[0]
    if first in (ord("{"), ord("[")):
        return plain
    if first == ENCODING_ZSTD:
        try:
            return decompressor().decompressobj().decompress(plain[1:])
        except zstandard.ZstdError as exc:
            raise UnpackedFormatError(f"invalid zstd data: {exc}") from exc
    raise UnpackedFormatError(f"unknown encoding version {first}")


def seal(key: MasterKey, data: bytes, *, version: int, compress: bool = True) -> bytes:
    return key.seal(encode_plaintext(data, version=version, compress=compress))
