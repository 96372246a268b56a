"""SSH key pairs for the SFTP provider.

The setup wizard calls :func:`generate_key_pair` to make an Ed25519 key for Safekeep and shows
the returned public-key line, which the server's administrator appends to the account's
``~/.ssh/authorized_keys``. The private key is written in OpenSSH's format (readable by
``ssh`` and paramiko) with mode 0600, and the public line next to it as ``<path>.pub``. Point
the SFTP provider at it with the option ``sftp.key-file=<path>``.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safekeep.common.secret import Secret


def generate_key_pair(
    path: str | os.PathLike[str], *, comment: str = "", passphrase: Secret | None = None
) -> str:
    """Write a new Ed25519 key pair to ``path`` (+ ``.pub``) and return the public-key line.

    Refuses to overwrite an existing key (``FileExistsError``): a key that is installed on a
    server must not be lost by accident.
    """
    target = Path(path)
    if target.exists():
        raise FileExistsError(f"{target} already exists; choose another file for the new key")
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.reveal().encode())
        if passphrase is not None and passphrase.reveal()
        else serialization.NoEncryption()
    )
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = public.decode("ascii") + " " + (comment or f"safekeep@{socket.gethostname()}")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    Path(str(target) + ".pub").write_text(line + "\n", encoding="ascii")
    return line
