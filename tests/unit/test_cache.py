"""The local repository cache: remote repositories are not re-read on every open."""

from __future__ import annotations

import shutil
from pathlib import Path

from safekeep.core.archiver import backup
from safekeep.core.format.keys import KDFParams
from safekeep.core.format.pack import BlobType
from safekeep.core.format.tree import decode_tree
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.storage.base import FileType, Handle
from safekeep.storage.providers.memory import MemoryBackend

KDF = KDFParams(1024, 8, 1)


class CountingBackend(MemoryBackend):
    """A 'remote' backend (not local) that counts loads per file type."""

    def __init__(self) -> None:
        super().__init__(location="memory:remote")
        self.loads: dict[FileType, int] = {}

    def load(self, h: Handle, offset: int = 0, length: int | None = None, **kw: object) -> bytes:  # type: ignore[override]
        self.loads[h.type] = self.loads.get(h.type, 0) + 1
        return super().load(h, offset, length, **kw)  # type: ignore[arg-type]


def _make(tmp_path: Path) -> tuple[CountingBackend, Path]:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for i in range(20):
        (src / "sub" / f"f{i}.txt").write_text(f"file {i}\n" * (i + 1))
    backend = CountingBackend()
    repo = Repository.init(backend, "pw", options=RepositoryOptions(kdf=KDF))
    backup(repo, [str(src)])
    backup(repo, [str(src)])
    repo.close()
    return backend, src


def _open_and_walk(backend: CountingBackend, cache: Path) -> int:
    backend.loads.clear()
    repo = Repository.open(backend, "pw", options=RepositoryOptions(cache_dir=str(cache)))
    repo.load_index()
    snaps = repo.list_snapshots()
    trees = 0
    todo = [s.tree for s in snaps]
    while todo:
        nodes = decode_tree(repo.load_blob(BlobType.TREE, todo.pop()))
        trees += 1
        todo += [n.subtree for n in nodes if n.subtree]
    repo.close()
    return trees


def test_second_open_reads_index_snapshots_and_trees_from_the_cache(tmp_path: Path) -> None:
    backend, _ = _make(tmp_path)
    cache = tmp_path / "cache"
    trees = _open_and_walk(backend, cache)
    assert trees > 0
    first = dict(backend.loads)
    assert first[FileType.INDEX] >= 1 and first[FileType.SNAPSHOT] == 2 and first[FileType.PACK] >= 1
    _open_and_walk(backend, cache)
    # only the key file and config come from the repository now
    assert backend.loads.get(FileType.INDEX, 0) == 0
    assert backend.loads.get(FileType.SNAPSHOT, 0) == 0
    assert backend.loads.get(FileType.PACK, 0) == 0
    assert (cache / "CACHEDIR.TAG").is_file()


def test_deleted_or_damaged_cache_is_rebuilt(tmp_path: Path) -> None:
    backend, _ = _make(tmp_path)
    cache = tmp_path / "cache"
    _open_and_walk(backend, cache)
    # damage every cached file: each is detected by its hash and re-read from the repository
    for p in cache.rglob("*"):
        if p.is_file() and p.name != "CACHEDIR.TAG":
            p.write_bytes(b"garbage")
    assert _open_and_walk(backend, cache) > 0
    assert backend.loads.get(FileType.SNAPSHOT, 0) == 2
    shutil.rmtree(cache)
    assert _open_and_walk(backend, cache) > 0
    assert backend.loads.get(FileType.INDEX, 0) >= 1


def test_files_removed_from_the_repository_leave_the_cache(tmp_path: Path) -> None:
    backend, _ = _make(tmp_path)
    cache = tmp_path / "cache"
    _open_and_walk(backend, cache)
    repo = Repository.open(backend, "pw")
    gone = repo.list_snapshots()[0].id
    backend.remove(Handle(FileType.SNAPSHOT, gone))
    _open_and_walk(backend, cache)
    cached = {p.name for p in (cache.glob("*/snapshots/*"))}
    assert gone not in cached and len(cached) == 1


def test_local_repositories_are_not_cached(tmp_path: Path) -> None:
    from safekeep.storage.providers.local import LocalBackend

    local = LocalBackend(tmp_path / "repo")
    Repository.init(local, "pw", options=RepositoryOptions(kdf=KDF)).close()
    repo = Repository.open(local, "pw", options=RepositoryOptions(cache_dir=str(tmp_path / "cache")))
    assert repo.cache is None
