"""Key files: the master key encrypted under a password-derived key (scrypt).

A key file (``keys/<sha256 of its bytes>``) is plain JSON in Go field order: ``created``,
``username``, ``hostname``, ``kdf`` ("scrypt"), ``N``, ``r``, ``p``, ``salt`` (64 bytes, base64)
and ``data`` (base64 of the sealed master-key JSON). The user key is
``scrypt(password, salt, N, r, p, 64)``: bytes 0-31 encrypt, 32-47 are the MAC ``k``, 48-63 the
MAC ``r``. A wrong password shows up as a MAC failure. Readers honour the stored N/r/p; writers
calibrate new parameters like restic (about 0.5 s of work, at most 60 MiB of memory).
Several key files hold the same master key under different passwords.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from safekeep.core.crypto import AuthenticationFailed, MasterKey
from safekeep.core.format.times import format_time, parse_time

SALT_SIZE = 64
KDF_TIMEOUT = 0.5
KDF_MEMORY = 60 * 1024 * 1024


class KeyFileError(ValueError):
    """A key file could not be parsed."""


@dataclass(frozen=True, slots=True)
class KDFParams:
    n: int
    r: int
    p: int

    def __post_init__(self) -> None:
        if self.n < 2 or self.n & (self.n - 1):
            raise ValueError("scrypt N must be a power of two greater than 1")
        if self.r < 1 or self.p < 1:
            raise ValueError("scrypt r and p must be positive")

    @property
    def memory(self) -> int:
        return 128 * self.n * self.r


def derive(password: str, salt: bytes, params: KDFParams) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=params.n,
        r=params.r,
        p=params.p,
        maxmem=params.memory * 2 + (32 << 20),
        dklen=64,
    )


_calibrated: KDFParams | None = None
_calibrate_lock = threading.Lock()


def calibrate(timeout: float = KDF_TIMEOUT, memory: int = KDF_MEMORY) -> KDFParams:
    """Parameters that take about ``timeout`` seconds within ``memory`` bytes (restic's rule:
    start at N=16384, r=8, p=1; keep r=8; raise N while memory allows, then p, until the time is
    reached). Cached per process."""
    global _calibrated
    with _calibrate_lock:
        if _calibrated is not None:
            return _calibrated
        params = KDFParams(16384, 8, 1)
        salt = os.urandom(SALT_SIZE)
        start = time.perf_counter()
        derive("calibration", salt, params)
        spent = max(time.perf_counter() - start, 1e-4)
        while spent * 2 <= timeout and KDFParams(params.n * 2, 8, 1).memory <= memory:
            params = KDFParams(params.n * 2, 8, params.p)
            spent *= 2
        if spent < timeout:
            params = KDFParams(params.n, 8, max(1, int(params.p * timeout / spent)))
        _calibrated = params
        return params


@dataclass(frozen=True, slots=True)
class KeyFile:
    created: datetime
    username: str
    hostname: str
    params: KDFParams
    salt: bytes
    data: bytes  # sealed master-key JSON

    def to_json(self) -> bytes:
        obj: dict[str, Any] = {
            "created": format_time(self.created),
            "username": self.username,
            "hostname": self.hostname,
            "kdf": "scrypt",
            "N": self.params.n,
            "r": self.params.r,
            "p": self.params.p,
            "salt": base64.b64encode(self.salt).decode(),
            "data": base64.b64encode(self.data).decode(),
        }
        return json.dumps(obj, separators=(",", ":")).encode()

    @staticmethod
    def from_json(raw: bytes) -> KeyFile:
        try:
            obj = json.loads(raw)
            if obj.get("kdf") != "scrypt":
                raise KeyFileError(f"unsupported key derivation {obj.get('kdf')!r}")
            return KeyFile(
                created=parse_time(obj["created"]),
                username=str(obj.get("username", "")),
                hostname=str(obj.get("hostname", "")),
                params=KDFParams(int(obj["N"]), int(obj["r"]), int(obj["p"])),
                salt=base64.b64decode(obj["salt"]),
                data=base64.b64decode(obj["data"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyFileError(f"malformed key file: {exc}") from exc

    def unlock(self, password: str) -> MasterKey:
        """Return the master key, or raise :class:`AuthenticationFailed` for a wrong password."""
        user = MasterKey.from_user_key(derive(password, self.salt, self.params))
        plain = user.open(self.data)
        try:
            obj = json.loads(plain)
            return MasterKey(
                encrypt=base64.b64decode(obj["encrypt"]),
                mac_k=base64.b64decode(obj["mac"]["k"]),
                mac_r=base64.b64decode(obj["mac"]["r"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise AuthenticationFailed("key data is not a master key") from exc


def new_key_file(
    master: MasterKey,
    password: str,
    *,
    created: datetime,
    username: str,
    hostname: str,
    params: KDFParams | None = None,
) -> KeyFile:
    params = params or calibrate()
    salt = os.urandom(SALT_SIZE)
    user = MasterKey.from_user_key(derive(password, salt, params))
    inner = json.dumps(
        {
            "mac": {
                "k": base64.b64encode(master.mac_k).decode(),
                "r": base64.b64encode(master.mac_r).decode(),
            },
            "encrypt": base64.b64encode(master.encrypt).decode(),
        },
        separators=(",", ":"),
    ).encode()
    return KeyFile(created, username, hostname, params, salt, user.seal(inner))
