"""Which environment variables carry a provider's credentials, and which of them are secret.

When a destination is added from the command line, the provider's settings are taken from the
environment under restic's names (``AWS_ACCESS_KEY_ID``, ``AZURE_ACCOUNT_KEY``, ...). The
non-secret ones are stored with the destination; the secret ones go to the keyring, and the
destination records only their names.
"""

from __future__ import annotations

from collections.abc import Mapping

from safekeep.storage.registry import parse_location

PROVIDER_ENV: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # scheme: (plain settings, secrets)
    "s3": (
        ("AWS_ACCESS_KEY_ID", "AWS_DEFAULT_REGION", "AWS_PROFILE"),
        ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
    ),
    "azure": (("AZURE_ACCOUNT_NAME", "AZURE_ENDPOINT_SUFFIX"), ("AZURE_ACCOUNT_KEY", "AZURE_ACCOUNT_SAS")),
    "gs": (("GOOGLE_PROJECT_ID", "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST"), ()),
    "sftp": ((), ("SAFEKEEP_SFTP_PASSWORD", "SAFEKEEP_SFTP_KEY_PASSPHRASE")),
    "webdav": (("SAFEKEEP_WEBDAV_USER",), ("SAFEKEEP_WEBDAV_PASSWORD",)),
    "ftp": ((), ("SAFEKEEP_FTP_PASSWORD",)),
}


def credentials_from_env(location: str, environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """``(settings, secrets)`` for ``location``'s provider, taken from ``environ``."""
    scheme = parse_location(location).scheme
    plain, secret = PROVIDER_ENV.get(scheme, ((), ()))
    return (
        {k: environ[k] for k in plain if environ.get(k)},
        {k: environ[k] for k in secret if environ.get(k)},
    )
