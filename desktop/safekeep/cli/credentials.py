"""Where the repository is and its password, from the options and the environment.

Kept free of heavy imports: :mod:`safekeep.cli.early_key` reads these before the command's
modules load. Sources, first found wins (restic's conventions, restic's variable names as
fallbacks): location ``-r/--repo``, ``$SAFEKEEP_REPOSITORY``, ``$RESTIC_REPOSITORY``; password
``--password-file``, ``$SAFEKEEP_PASSWORD_FILE``, ``$RESTIC_PASSWORD_FILE``, ``$SAFEKEEP_PASSWORD``,
``$RESTIC_PASSWORD`` (the prompt, the last source, belongs to :class:`~safekeep.cli.context.CliContext`).
"""

from __future__ import annotations

from collections.abc import Mapping

from safekeep.common.errors import SafekeepError
from safekeep.common.secret import Secret

ENV_REPOSITORY = ("SAFEKEEP_REPOSITORY", "RESTIC_REPOSITORY")
ENV_PASSWORD_FILE = ("SAFEKEEP_PASSWORD_FILE", "RESTIC_PASSWORD_FILE")
ENV_PASSWORD = ("SAFEKEEP_PASSWORD", "RESTIC_PASSWORD")


def env_value(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    """The first of ``names`` set (non-empty) in ``env``."""
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


def repository_location(option: str | None, env: Mapping[str, str]) -> str | None:
    return option or env_value(env, ENV_REPOSITORY)


def stored_password(password_file: str | None, env: Mapping[str, str]) -> Secret | None:
    """The password from a file or the environment; None when it would have to be asked for."""
    path = password_file or env_value(env, ENV_PASSWORD_FILE)
    if path:
        return read_password_file(path)
    value = env_value(env, ENV_PASSWORD)
    return Secret(value) if value is not None else None


def read_password_file(path: str) -> Secret:
    """A password file, read like restic reads it: surrounding whitespace is stripped."""
    try:
        with open(path, encoding="utf-8") as f:
            return Secret(f.read().strip())
    except OSError as exc:
        raise SafekeepError(
            f"Cannot read the password file {path}: {exc.strerror or exc}.",
            hint="Check the file name and that you may read it.",
        ) from exc
    except UnicodeDecodeError as exc:
        raise SafekeepError(
            f"The password file {path} is not UTF-8 text.", hint="Save it as UTF-8 text."
        ) from exc
