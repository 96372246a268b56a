"""Creating rclone remotes for the long tail of providers (Box, pCloud, Mega, Zoho WorkDrive,
Egnyte, Seafile, ...).

:func:`create_remote` runs ``rclone config create NAME TYPE key=value ...`` so the setup wizard
can make a remote without the person using a terminal; the repository location is then
``rclone:NAME:path``. Parameter values that rclone treats as passwords (``pass``, ``password``)
are obscured by rclone itself (``--obscure``). Values go on rclone's command line, which other
processes of the same machine can see while it runs (a second or less); OAuth remotes (Box,
pCloud, Zoho) need ``rclone authorize`` in a browser and are created with their token.
"""

from __future__ import annotations

import re
import subprocess

from safekeep.storage.errors import InvalidLocation, PermanentStorageError

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_. -]*")


def create_remote(
    name: str,
    type: str,
    params: dict[str, str],
    *,
    config: str | None = None,
    program: str = "rclone",
    timeout: float = 120.0,
) -> None:
    """Create (or update) the rclone remote ``name`` of backend ``type`` with ``params``."""
    if not _NAME.fullmatch(name) or name.endswith(" "):
        raise InvalidLocation(
            f"{name!r} cannot be an rclone remote name.",
            hint="Use letters, digits, '_', '-', '.' and spaces, not at the start or end.",
        )
    argv = [program, "config", "create", name, type, "--obscure", "--non-interactive"]
    argv += [f"{k}={v}" for k, v in params.items()]
    if config:
        argv += ["--config", config]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise InvalidLocation(
            f"The rclone program {program!r} was not found.",
            hint="Install rclone (on Debian/Ubuntu: apt install rclone).",
        ) from exc
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        for value in params.values():  # never echo a secret back
            if value:
                detail = detail.replace(value, "***")
        raise PermanentStorageError(
            f"rclone could not create the remote {name!r} ({type}): {detail}",
            hint="Check the storage type and its settings ('rclone help backends').",
        )
