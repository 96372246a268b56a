"""The round trip every storage provider's integration tests run through the engine.

Back up a small tree (a folder, a text file, a 3 MiB random file), change it, back up again,
restore the latest snapshot into a new folder, compare byte for byte, and ``check --read-data``.
"""

from __future__ import annotations

import os
from pathlib import Path

from safekeep.core.archiver import backup
from safekeep.core.checker import CheckOptions, check
from safekeep.core.format.keys import KDFParams
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.core.restorer import restore
from safekeep.storage.compose import StorageOptions, open_backend

PASSWORD = "pw"
REPO_OPTIONS = RepositoryOptions(kdf=KDFParams(1024, 8, 1))  # cheap scrypt; restic honours it


def write_tree(root: Path, version: int) -> None:
    (root / "docs").mkdir(parents=True, exist_ok=True)
    (root / "docs" / "letter.txt").write_text(f"Dear members, version {version}\n" * 50)
    (root / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024) if version == 1 else b"changed" * 1000)
    if version == 2:
        (root / "docs" / "new.txt").write_text("added later")


def round_trip(location: str, options: StorageOptions, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, 1)
    repo = Repository.init(open_backend(location, options=options), PASSWORD, options=REPO_OPTIONS)
    backup(repo, [str(src)])
    write_tree(src, 2)
    backup(repo, [str(src)])
    repo.close()
    repo = Repository.open(open_backend(location, options=options), PASSWORD, options=REPO_OPTIONS)
    try:
        repo.load_index()
        snap = repo.find_snapshot("latest")
        target = tmp_path / "restored"
        restore(repo, snap, str(target))
        restored = target / str(src).lstrip("/")
        assert (restored / "docs" / "new.txt").read_text() == "added later"
        assert (restored / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
        assert (restored / "docs" / "letter.txt").read_text() == (src / "docs" / "letter.txt").read_text()
        assert check(repo, CheckOptions(read_data=True)).ok
    finally:
        repo.close()
