"""The restic crypto envelope: ``IV(16) || AES-256-CTR(plaintext) || Poly1305-AES(ciphertext)``.

A :class:`MasterKey` has three parts: a 32-byte AES-256 key for encryption and a Poly1305-AES MAC
key made of ``k`` (16-byte AES-128 key) and ``r`` (16 bytes, clamped inside Poly1305). The
one-time Poly1305 key for a message is ``r || AES-128_k(IV)``. The MAC covers the ciphertext only;
it is verified before anything is decrypted. Every sealed object carries 32 bytes of overhead.

All functions here are pure computation on bytes and safe to call from many threads; the
underlying primitives (OpenSSL through ``cryptography``) release the GIL.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
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

    def _poly_key(self, iv: bytes) -> bytes:
        enc = Cipher(algorithms.AES(self.mac_k), modes.ECB()).encryptor()  # noqa: S305 - one block, by design
        return self.mac_r + enc.update(iv) + enc.finalize()

    def seal(self, plaintext: bytes | bytearray | memoryview) -> bytes:
        """Encrypt and authenticate ``plaintext``; returns ``IV || CT || MAC``."""
        return b"".join(self.seal_parts(plaintext))

    def seal_parts(self, plaintext: bytes | bytearray | memoryview) -> tuple[bytes, bytes, bytes]:
        """:meth:`seal` as its three parts ``(IV, CT, MAC)``, saving a copy of large payloads."""
        iv = _new_iv()
        ct = Cipher(algorithms.AES(self.encrypt), modes.CTR(iv)).encryptor().update(plaintext)
        mac = Poly1305.generate_tag(self._poly_key(iv), ct)
        return iv, ct, mac

    def open(self, sealed: bytes | bytearray | memoryview) -> bytes:
        """Verify and decrypt ``IV || CT || MAC``; raises :class:`AuthenticationFailed`."""
        view = memoryview(sealed)
        if len(view) < OVERHEAD:
            raise AuthenticationFailed("ciphertext shorter than the envelope")
        iv = bytes(view[:IV_SIZE])
        ct = view[IV_SIZE:-MAC_SIZE]
        tag = bytes(view[-MAC_SIZE:])
        expected = Poly1305.generate_tag(self._poly_key(iv), ct)
        if not hmac.compare_digest(expected, tag):
            raise AuthenticationFailed("MAC mismatch")
        dec = Cipher(algorithms.AES(self.encrypt), modes.CTR(iv)).decryptor()
        return dec.update(ct) + dec.finalize()


def _new_iv() -> bytes:
    while True:
        iv = os.urandom(IV_SIZE)
        if any(iv):  # restic rejects an all-zero nonce
            return iv
