"""The restic crypto envelope: ``IV(16) || AES-256-CTR(plaintext) || Poly1305-AES(ciphertext)``.

A :class:`MasterKey` has three parts: a 32-byte AES-256 key for encryption and a Poly1305-AES MAC
key made of ``k`` (16-byte AES-128 key) and ``r`` (16 bytes, clamped inside Poly1305). The
one-time Poly1305 key for a message is ``r || AES-128_k(IV)``. The MAC covers the ciphertext only;
it is verified before anything is decrypted. Every sealed object carries 32 bytes of overhead.

All functions here are pure computation on bytes and safe to call from many threads; the
underlying primitives (OpenSSL through ``cryptography``) release the GIL. Building a cipher object
costs more than sealing a small blob, so each thread keeps its own two per key: the AES-128-ECB
encryptor for the one-time MAC keys (keyed by the fixed ``k``) and an AES-256-CTR context whose
nonce is reset for every message (CTR encryption and decryption are the same operation).
"""

from __future__ import annotations

import hmac
import os
import threading
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.poly1305 import Poly1305

IV_SIZE = 16
MAC_SIZE = 16
OVERHEAD = IV_SIZE + MAC_SIZE


class AuthenticationFailed(Exception):
    """The MAC did not verify: wrong key, or damaged/tampered data."""


@dataclass(frozen=True, slots=True, repr=False)
class MasterKey:
    encrypt: bytes  # 32 bytes, AES-256
    mac_k: bytes  # 16 bytes, AES-128 key for Poly1305-AES
    mac_r: bytes  # 16 bytes, Poly1305 r (stored unclamped)
    # per thread: (ECB encryptor for the MAC keys, CTR context), built on first use
    _local: threading.local = field(
        default_factory=threading.local, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if len(self.encrypt) != 32 or len(self.mac_k) != 16 or len(self.mac_r) != 16:
            raise ValueError("invalid key sizes")

    def __repr__(self) -> str:
        return "MasterKey(***)"

    @staticmethod
    def generate() -> MasterKey:
        return MasterKey(os.urandom(32), os.urandom(16), os.urandom(16))

    @staticmethod
    def from_user_key(derived: bytes) -> MasterKey:
        """The key derived from a password by scrypt (64 bytes): encrypt, then mac k, then mac r."""
        if len(derived) != 64:
            raise ValueError("a derived key is 64 bytes")
        return MasterKey(derived[:32], derived[32:48], derived[48:64])

    def _contexts(self) -> tuple[CipherContext, CipherContext]:
        ctx: tuple[CipherContext, CipherContext] | None = getattr(self._local, "ctx", None)
        if ctx is None:
            ecb = Cipher(algorithms.AES(self.mac_k), modes.ECB()).encryptor()  # noqa: S305 - one block, by design
            ctr = Cipher(algorithms.AES(self.encrypt), modes.CTR(b"\x00" * IV_SIZE)).encryptor()
            ctx = (ecb, ctr)
            self._local.ctx = ctx
        return ctx

    def _poly_key(self, iv: bytes) -> bytes:
        return self.mac_r + self._contexts()[0].update(iv)

    def _ctr(self, iv: bytes, data: bytes | bytearray | memoryview) -> tuple[bytes, bytes]:
        """``(one-time Poly1305 key, AES-256-CTR(data) with nonce iv)``; CTR is its own inverse."""
        ecb, ctr = self._contexts()
        ctr.reset_nonce(iv)
        return self.mac_r + ecb.update(iv), ctr.update(data)

    def seal(self, plaintext: bytes | bytearray | memoryview) -> bytes:
        """Encrypt and authenticate ``plaintext``; returns ``IV || CT || MAC``."""
        return b"".join(self.seal_parts(plaintext))

    def seal_parts(self, plaintext: bytes | bytearray | memoryview) -> tuple[bytes, bytes, bytes]:
        """:meth:`seal` as its three parts ``(IV, CT, MAC)``, saving a copy of large payloads."""
        iv = _new_iv()
        poly_key, ct = self._ctr(iv, plaintext)
        return iv, ct, Poly1305.generate_tag(poly_key, ct)

    def open(self, sealed: bytes | bytearray | memoryview) -> bytes:
        """Verify and decrypt ``IV || CT || MAC``; raises :class:`AuthenticationFailed`."""
        view = memoryview(sealed)
        if len(view) < OVERHEAD:
            raise AuthenticationFailed("ciphertext shorter than the envelope")
        iv = bytes(view[:IV_SIZE])
        ct = view[IV_SIZE:-MAC_SIZE]
        tag = bytes(view[-MAC_SIZE:])
        ecb, ctr = self._contexts()
        expected = Poly1305.generate_tag(self.mac_r + ecb.update(iv), ct)
        if not hmac.compare_digest(expected, tag):
            raise AuthenticationFailed("MAC mismatch")
        ctr.reset_nonce(iv)
        return ctr.update(ct)


IV_BATCH = 256  # IVs drawn from the OS's random source at once


class _IvPool(threading.local):
    """Random bytes drawn ahead for this thread's IVs (IVs are public, so this keeps no secret);
    one system call per :data:`IV_BATCH` blobs instead of one per blob."""

    def __init__(self) -> None:
        self.buf = b""
        self.pos = 0


_ivs = _IvPool()


def _forget_ivs() -> None:
    # a forked child must never reuse IVs its parent drew: under one key that would reuse keystream
    _ivs.buf = b""
    _ivs.pos = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_ivs)


def _new_iv() -> bytes:
    pool = _ivs
    while True:
        if pool.pos + IV_SIZE > len(pool.buf):
            pool.buf = os.urandom(IV_SIZE * IV_BATCH)
            pool.pos = 0
        iv = pool.buf[pool.pos : pool.pos + IV_SIZE]
        pool.pos += IV_SIZE
        if len(iv) == IV_SIZE and any(iv):  # restic rejects an all-zero nonce
            return iv
