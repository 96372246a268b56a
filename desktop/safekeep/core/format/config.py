"""The repository ``config`` file: version, repository ID, chunker polynomial.

Stored encrypted and never compressed, under the fixed name ``config``. Readers refuse any
version other than 1 and 2.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

SUPPORTED_VERSIONS = (1, 2)


class ConfigError(ValueError):
    """The config JSON is malformed."""


@dataclass(frozen=True, slots=True)
class Config:
    version: int
    id: str
    chunker_polynomial: str

    @staticmethod
    def new(version: int = 2) -> Config:
        return Config(version, os.urandom(32).hex(), _random_polynomial())

    def to_json(self) -> bytes:
        return json.dumps(
            {"version": self.version, "id": self.id, "chunker_polynomial": self.chunker_polynomial},
            separators=(",", ":"),
        ).encode()

    @staticmethod
    def from_json(raw: bytes) -> Config:
        try:
            obj = json.loads(raw)
            return Config(int(obj["version"]), str(obj["id"]), str(obj.get("chunker_polynomial", "")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"malformed config: {exc}") from exc


def _poly_mod(a: int, b: int) -> int:
    db = b.bit_length() - 1
    while a.bit_length() - 1 >= db:
        a ^= b << (a.bit_length() - 1 - db)
    return a


def _poly_mulmod(a: int, b: int, m: int) -> int:
    result = 0
    while b:
        if b & 1:
            result ^= a
        a <<= 1
        if a.bit_length() - 1 >= m.bit_length() - 1:
            a = _poly_mod(a, m)
        b >>= 1
    return _poly_mod(result, m)


def _poly_gcd(a: int, b: int) -> int:
    while b:
        a, b = b, _poly_mod(a, b)
    return a


def is_irreducible(f: int) -> bool:
    """Ben-Or's irreducibility test over GF(2), as restic's chunker uses for its polynomial."""
    degree = f.bit_length() - 1
    x = 2
    power = x
    for _ in range(degree // 2):
        power = _poly_mulmod(power, power, f)  # x^(2^i) mod f
        if _poly_gcd(f, power ^ x) != 1:
            return False
    return True


def _random_polynomial() -> str:
    """A random irreducible polynomial of degree 53, like restic's ``chunker.RandomPolynomial``."""
    while True:
        candidate = int.from_bytes(os.urandom(8), "little") & ((1 << 54) - 1)
        candidate |= (1 << 53) | 1
        if is_irreducible(candidate):
            return f"{candidate:x}"
