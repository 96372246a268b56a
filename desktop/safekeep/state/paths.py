"""Where Safekeep keeps its own files on this computer.

The folders follow each platform's convention through ``platformdirs`` (app name ``Safekeep``):
on Linux ``~/.local/share/Safekeep`` (data: the app database), ``~/.config/Safekeep`` (config:
the fallback secrets file), ``~/.cache/Safekeep`` (cache: repository metadata that can always be
rebuilt) and ``~/.local/state/Safekeep/log`` (logs).

Setting ``SAFEKEEP_HOME`` puts everything under one folder instead (``data/``, ``config/``,
``cache/``, ``logs/`` inside it): tests use it, and so does a portable install on a USB stick.

These are functions, not constants, so the environment is read when a path is needed (a test
that sets ``SAFEKEEP_HOME`` after import is honoured). Nothing here creates folders; the code that
writes a file creates its folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import platformdirs

APP_NAME = "Safekeep"
ENV_HOME = "SAFEKEEP_HOME"
DATABASE_NAME = "safekeep.sqlite3"


def home_override(env: Mapping[str, str] | None = None) -> Path | None:
    """The ``SAFEKEEP_HOME`` folder if it is set (``~`` expanded, made absolute), else ``None``."""
    value = (os.environ if env is None else env).get(ENV_HOME, "").strip()
    if not value:
        return None
    return Path(value).expanduser().absolute()


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """The app's data folder (the app database lives here)."""
    home = home_override(env)
    if home is not None:
        return home / "data"
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """The app's configuration folder (the fallback secrets file lives here)."""
    home = home_override(env)
    if home is not None:
        return home / "config"
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """The app's cache folder: only things that can be rebuilt from the repositories."""
    home = home_override(env)
    if home is not None:
        return home / "cache"
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def log_dir(env: Mapping[str, str] | None = None) -> Path:
    """The app's log folder."""
    home = home_override(env)
    if home is not None:
        return home / "logs"
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def database_path(env: Mapping[str, str] | None = None) -> Path:
    """The app database's file: ``<data folder>/safekeep.sqlite3``."""
    return data_dir(env) / DATABASE_NAME
