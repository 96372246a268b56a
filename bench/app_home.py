"""A private, throw-away Safekeep home for the benchmarks that run the app's windows in-process."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def private_app_home(work: Path) -> Path:
    """A new run folder under ``work``; this process's Safekeep home, secrets store and Qt
    settings are pointed into it (cheap test scrypt parameters: benchmark data only), and Qt
    draws off-screen unless a platform was chosen. Call before importing PySide6."""
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.update(
        SAFEKEEP_HOME=str(run_dir / "home"),
        SAFEKEEP_SECRETS="file",
        SAFEKEEP_TEST_KDF="1024,8,1",
        XDG_CONFIG_HOME=str(run_dir / "config"),
    )
    return run_dir
