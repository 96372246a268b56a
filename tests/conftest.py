"""Shared pytest fixtures."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path as _Path
from typing import Any

import pytest

# Real servers the tests start on 127.0.0.1 live in tests/servers/<name>.py as fixture plugins;
# each module is discovered, so adding a server touches no shared file.
pytest_plugins = [
    *sorted(
        f"tests.servers.{p.stem}"
        for p in (_Path(__file__).parent / "servers").glob("*.py")
        if not p.stem.startswith("_")
    ),
    "tests.fakes.tls",  # test_ca, trust_test_ca: a throw-away CA for the TLS fakes
    "tests.fakes.netguard",  # loopback_only: fails any connection to another machine
]


@pytest.fixture(scope="session")
def restic_bin() -> str:
    """Path of the ``restic`` program (the interoperability oracle).

    Missing restic skips the test locally but fails it in CI (``CI=true``), so the oracle can
    never silently drop out of the pipeline.
    """
    path = shutil.which("restic")
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("restic is required in CI but was not found on PATH")
        pytest.skip("restic is not installed")
    return path


# ---------------------------------------------------------------------------------------------
# Helpers for the repository-engine tests (interop with restic, damage, awkward names).


class ResticRunner:
    """Runs ``restic`` against one repository folder with a fixed password and a private cache."""

    def __init__(self, binary: str, cache_dir: str) -> None:
        self.binary = binary
        self.cache_dir = cache_dir

    def env(self, password: str) -> dict[str, str]:
        return dict(os.environ, RESTIC_PASSWORD=password, RESTIC_CACHE_DIR=self.cache_dir)

    def __call__(
        self,
        repo: str | os.PathLike[str],
        *args: str,
        password: str = "pw",
        check: bool = True,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run(
            [self.binary, "-r", os.fspath(repo), *args],
            env=self.env(password),
            capture_output=True,
            input=input,
            timeout=300,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"restic {' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stdout.decode(errors='replace')}\n{proc.stderr.decode(errors='replace')}"
            )
        return proc

    def json(self, repo: str | os.PathLike[str], *args: str, password: str = "pw") -> Any:
        return json.loads(self(repo, *args, "--json", password=password).stdout)


@pytest.fixture()
def restic(restic_bin: str, tmp_path_factory: pytest.TempPathFactory) -> ResticRunner:
    """``restic(repo, *args)`` runs the real restic (password ``pw``); fails on a non-zero exit."""
    return ResticRunner(restic_bin, str(tmp_path_factory.mktemp("restic-cache")))


FAST_KDF_N, FAST_KDF_R, FAST_KDF_P = 1024, 8, 1


def _sk_repo(location: str, *, password: str = "pw", create: bool = True, **options: Any) -> Any:
    from safekeep.core.format.keys import KDFParams
    from safekeep.core.repository import Repository, RepositoryOptions
    from safekeep.storage.compose import open_backend

    version = options.pop("version", 2)
    opts = RepositoryOptions(kdf=KDFParams(FAST_KDF_N, FAST_KDF_R, FAST_KDF_P), **options)
    backend = open_backend(location)
    if create:
        return Repository.init(backend, password, options=opts, version=version)
    repo = Repository.open(backend, password, options=opts)
    repo.load_index()
    return repo


@pytest.fixture()
def sk_repo() -> Any:
    """``sk_repo(path, create=True, **RepositoryOptions)``: a Safekeep repository in a folder
    (cheap scrypt); ``create=False`` opens an existing one and loads its index."""
    opened: list[Any] = []

    def make(
        location: str | os.PathLike[str], *, create: bool = True, password: str = "pw", **kw: Any
    ) -> Any:
        repo = _sk_repo(os.fspath(location), password=password, create=create, **kw)
        opened.append(repo)
        return repo

    yield make
    for r in opened:
        r.close()


def write_file(path: _Path, data: bytes) -> None:
    """Write ``data`` to ``path``, making its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def settle_access_times(src: _Path) -> None:
    """Read every file and folder once, so access times stop changing the trees (relatime)."""
    for dirpath, _, files in os.walk(src):
        os.listdir(dirpath)
        for f in files:
            (_Path(dirpath) / f).read_bytes()


def tree_state(
    root: str | os.PathLike[str], *, times: bool = True, root_meta: bool = True
) -> dict[bytes, tuple[Any, ...]]:
    """Everything restore must reproduce below ``root``, keyed by raw relative path.

    Per entry: file type and permission bits (``st_mode``), ``st_mtime_ns`` (not for the root
    unless ``root_meta``), content (files) or link target (symlinks), size, the sorted ``user.*``
    extended attributes and a hardlink-group key (the sorted paths sharing the inode).
    """
    base = os.fsencode(os.fspath(root))
    entries: dict[bytes, tuple[Any, ...]] = {}
    inodes: dict[tuple[int, int], list[bytes]] = {}
    stats: dict[bytes, os.stat_result] = {}

    def walk(rel: bytes) -> None:
        full = os.path.join(base, rel) if rel else base
        st = os.lstat(full)
        stats[rel] = st
        if stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(full)):
                walk(os.path.join(rel, name) if rel else name)
        elif stat.S_ISREG(st.st_mode):
            inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)

    walk(b"")
    link_group = {p: tuple(sorted(ps)) for ps in inodes.values() for p in ps}
    for rel, st in stats.items():
        full = os.path.join(base, rel) if rel else base
        content: Any = None
        xattrs: tuple[tuple[str, bytes], ...] = ()
        if stat.S_ISREG(st.st_mode):
            with open(full, "rb") as f:
                content = hashlib.sha256(f.read()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            content = os.readlink(full)
        if not stat.S_ISLNK(st.st_mode):
            try:
                xattrs = tuple(
                    sorted(
                        (n, os.getxattr(full, n, follow_symlinks=False))
                        for n in os.listxattr(full, follow_symlinks=False)
                        if n.startswith("user.")
                    )
                )
            except OSError:
                xattrs = ()
        is_root = rel == b""
        mtime = st.st_mtime_ns if times and (root_meta or not is_root) else None
        mode = st.st_mode if root_meta or not is_root else stat.S_IFMT(st.st_mode)
        size = st.st_size if not stat.S_ISDIR(st.st_mode) else None
        entries[rel] = (mode, mtime, size, content, xattrs, link_group.get(rel))
    return entries


def assert_same_tree(expected: dict[bytes, tuple[Any, ...]], actual: dict[bytes, tuple[Any, ...]]) -> None:
    """Compare two :func:`tree_state` results with a readable difference."""
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    assert not missing and not extra, f"missing {missing!r}, unexpected {extra!r}"
    diffs = {k: (expected[k], actual[k]) for k in expected if expected[k] != actual[k]}
    assert not diffs, "differences (expected, actual):\n" + "\n".join(f"{k!r}: {v}" for k, v in diffs.items())


def snapshot_root(base: str | os.PathLike[str], source: str | os.PathLike[str]) -> str:
    """Where a snapshot of the absolute path ``source`` lands when restored into ``base``."""
    return os.path.join(os.fspath(base), os.fspath(source).lstrip("/"))


class TreeTools:
    state = staticmethod(tree_state)
    assert_same = staticmethod(assert_same_tree)
    snapshot_root = staticmethod(snapshot_root)


@pytest.fixture()
def trees() -> type[TreeTools]:
    """``trees.state(root)``, ``trees.assert_same(a, b)``, ``trees.snapshot_root(base, src)``."""
    return TreeTools
