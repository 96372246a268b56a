"""The restic crypto envelope: known-answer tests from restic's own test suite and Bernstein's
Poly1305-AES paper, plus tamper and nonce properties."""

from __future__ import annotations

import concurrent.futures
import os
import random

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.poly1305 import Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from safekeep.core import crypto
from safekeep.core.crypto import OVERHEAD, AuthenticationFailed, MasterKey

# Poly1305-AES test vectors from D. J. Bernstein, "The Poly1305-AES message-authentication code"
# (cr.yp.to/mac/poly1305-20050329.pdf), appendix B, as used by restic's
# internal/crypto/crypto_int_test.go: (msg, r, k, nonce, mac).
POLY1305_AES_VECTORS = [
    (
        "f3f6",
        "851fc40c3467ac0be05cc20404f3f700",
        "ec074c835580741701425b623235add6",
        "fb447350c4e868c52ac3275cf9d4327e",
        "f4c633c3044fc145f84f335cb81953de",
    ),
    (
        "",
        "a0f3080000f46400d0c7e9076c834403",
        "75deaa25c09f208e1dc4ce6b5cad3fbf",
        "61ee09218d29b0aaed7e154a2c5509cc",
        "dd3fab2251f11ac759f0887129cc2ee7",
    ),
    (
        "663cea190ffb83d89593f3f476b6bc24d7e679107ea26adb8caf6652d0656136",
        "48443d0bb0d21109c89a100b5ce2c208",
        "6acb5f61a7176dd320c5c1eb2edcdc74",
        "ae212a5539972959 5dea458bc621ff0e".replace(" ", ""),
        "0ee1c16bb73f0f4fd19881753c01cdbe",
    ),
    (
        "ab0812724a7f1e342742cbed374d94d136c6b8795d45b3819830f2c04491faf0990c62e48b8018b2c3e4a0fa3134cb67"
        "fa83e158c994d961c4cb21095c1bf9",
        "12976a08c4426d0ce8a82407c4f48207",
        "e1a5668a4d5b66a5f68cc5424ed5982d",
        "9ae831e743978d3a23527c7128149e3a",
        "5154ad0d2cb26e01274fc51148491f1b",
    ),
]


@pytest.mark.parametrize(("msg", "r", "k", "nonce", "mac"), POLY1305_AES_VECTORS)
def test_poly1305_aes_known_answers(msg: str, r: str, k: str, nonce: str, mac: str) -> None:
    key = MasterKey(bytes(32), bytes.fromhex(k), bytes.fromhex(r))
    tag = Poly1305.generate_tag(key._poly_key(bytes.fromhex(nonce)), bytes.fromhex(msg))
    assert tag.hex() == mac


def test_envelope_known_answer_from_restic() -> None:
    """restic's TestCrypto vector: a ciphertext made by restic's Go code decrypts here."""
    key = MasterKey(
        encrypt=bytes.fromhex("303e8687b1d7db18421bdc6bb8588ccadac4d59ee87b8ff70c44e635790cafef"),
        mac_k=bytes.fromhex("ef4d8824cb80b2bcc5fbff8a9b12a42c"),
        mac_r=bytes.fromhex("cc8d4b948ee0ebfe1d415de921d10353"),
    )
    sealed = bytes.fromhex(
        "69fb41c62d12def4593bd71757138606338f621aeaeb39da0fe4f99233f8037a54ea63338a813bcf3f75d8c3cc75dddf8750"
    )
    assert key.open(sealed) == b"Dies ist ein Test!"
    for i in range(len(sealed)):  # every byte is covered: IV (via the MAC key), ciphertext, tag
        bad = bytearray(sealed)
        bad[i] ^= 0x80
        with pytest.raises(AuthenticationFailed):
            key.open(bytes(bad))


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=2048), where=st.integers(min_value=0), bit=st.integers(0, 7))
def test_seal_open_and_tamper(data: bytes, where: int, bit: int) -> None:
    key = MasterKey.generate()
    sealed = key.seal(data)
    assert len(sealed) == len(data) + OVERHEAD
    assert key.open(sealed) == data
    assert key.open(bytearray(sealed)) == data and key.open(memoryview(sealed)) == data
    bad = bytearray(sealed)
    bad[where % len(bad)] ^= 1 << bit
    with pytest.raises(AuthenticationFailed):
        key.open(bytes(bad))
    with pytest.raises(AuthenticationFailed):
        MasterKey.generate().open(sealed)  # another key


def test_short_input_is_rejected() -> None:
    key = MasterKey.generate()
    for n in range(OVERHEAD):
        with pytest.raises(AuthenticationFailed):
            key.open(bytes(n))


def test_all_zero_iv_is_never_produced(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter([bytes(16), bytes(16), b"\x00" * 15 + b"\x01"])
    monkeypatch.setattr(crypto.os, "urandom", lambda n: next(draws))
    monkeypatch.setattr(crypto, "_ivs", crypto._IvPool())  # nothing drawn ahead
    sealed = MasterKey(bytes(32), bytes(16), bytes(16)).seal(b"x")
    assert sealed[:16] == b"\x00" * 15 + b"\x01"


def test_ivs_differ_and_key_sizes_checked() -> None:
    key = MasterKey.generate()
    ivs = {key.seal(b"same")[:16] for _ in range(64)}
    assert len(ivs) == 64
    with pytest.raises(ValueError):
        MasterKey(bytes(31), bytes(16), bytes(16))
    assert "***" in repr(key)
    assert MasterKey.from_user_key(bytes(range(64))) == MasterKey(
        bytes(range(32)), bytes(range(32, 48)), bytes(range(48, 64))
    )


def _reference_seal(key: MasterKey, iv: bytes, data: bytes) -> bytes:
    """The envelope built from fresh cipher objects, as restic's Go code does it."""
    ct = Cipher(algorithms.AES(key.encrypt), modes.CTR(iv)).encryptor().update(data)
    ecb = Cipher(algorithms.AES(key.mac_k), modes.ECB()).encryptor()
    return iv + ct + Poly1305.generate_tag(key.mac_r + ecb.update(iv) + ecb.finalize(), ct)


def test_reused_cipher_contexts_match_fresh_ones_on_many_threads() -> None:
    """Each thread reuses its cipher objects across messages, keys and failed opens; every envelope
    still equals one built from scratch for the same IV."""
    keys = [MasterKey.generate(), MasterKey.generate()]

    def work(seed: int) -> None:
        rnd = random.Random(seed)
        for i in range(200):
            key = keys[i % 2]
            data = rnd.randbytes(rnd.randrange(0, 3000))
            sealed = key.seal(data)
            assert sealed == _reference_seal(key, sealed[:16], data)
            assert key.open(sealed) == data
            with pytest.raises(AuthenticationFailed):
                keys[(i + 1) % 2].open(sealed)

    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        list(ex.map(work, range(8)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() exists on POSIX systems only")
def test_a_forked_child_draws_its_own_ivs() -> None:
    key = MasterKey.generate()
    key.seal(b"draws a batch of IVs ahead")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next IV and leave at once
        os.write(write, key.seal(b"x")[:16])
        os._exit(0)
    os.close(write)
    child_iv = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child_iv) == 16 and child_iv != key.seal(b"x")[:16]
