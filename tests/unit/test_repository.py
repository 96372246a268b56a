"""Repository: deduplication, pack layout and size, and the packs → index → snapshot order."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from safekeep.common.cancel import CancelToken
from safekeep.common.clock import FakeClock
from safekeep.common.errors import Cancelled
from safekeep.common.progress import Progress
from safekeep.core import repository
from safekeep.core.archiver import BackupOptions, backup
from safekeep.core.errors import RepositoryError
from safekeep.core.format.keys import KDFParams
from safekeep.core.format.pack import BlobType, parse_trailer, read_header
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.core.restorer import RestoreOptions, restore
from safekeep.storage.base import FileType, Handle
from safekeep.storage.errors import PermanentStorageError
from safekeep.storage.providers.memory import MemoryBackend

CHEAP = KDFParams(16, 1, 1)


def _repo(backend: MemoryBackend | None = None, **kw: Any) -> Repository:
    return Repository.init(backend or MemoryBackend(), "pw", options=RepositoryOptions(kdf=CHEAP, **kw))


def _reopen(repo: Repository) -> Repository:
    again = Repository.open(repo.backend, "pw", options=RepositoryOptions(kdf=CHEAP))
    again.load_index()
    return again


def _packs(repo: Repository) -> dict[str, list[Any]]:
    """Every pack's header, parsed from the pack alone (no index)."""
    out = {}
    for info in list(repo.backend.list(FileType.PACK)):
        body = repo.backend.load(Handle(FileType.PACK, info.name))
        hlen = parse_trailer(body[-4:], len(body))
        end = len(body) - 4 - hlen
        out[info.name] = read_header(repo.key, body[end : end + hlen], data_end=end)
    return out


def _files(root: Path, spec: dict[str, bytes]) -> None:
    for name, data in spec.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def test_dedup_across_files_and_runs(tmp_path: Path) -> None:
    rng = random.Random(1)
    same = rng.randbytes(100_000)
    _files(tmp_path / "src", {"a": same, "b": same, "sub/c": same, "d": rng.randbytes(50_000)})
    repo = _repo()
    _, s1 = backup(repo, [str(tmp_path / "src")], BackupOptions())
    assert s1.data_blobs == 2 and s1.files_new == 4
    assert repo.index.count(BlobType.DATA) == 2
    # a second run of a copy (new inodes, same content) adds no data
    _files(tmp_path / "src", {"e": same})
    _, s2 = backup(repo, [str(tmp_path / "src")], BackupOptions())
    assert s2.data_blobs == 0 and s2.files_new == 1 and s2.files_unmodified == 4
    assert _reopen(repo).index.count(BlobType.DATA) == 2


def test_data_and_tree_blobs_never_share_a_pack_and_packs_match_the_index(tmp_path: Path) -> None:
    rng = random.Random(2)
    _files(tmp_path / "src", {f"d{i}/f{j}": rng.randbytes(3000) for i in range(5) for j in range(5)})
    repo = _repo(pack_size=16 * 1024)
    backup(repo, [str(tmp_path / "src")], BackupOptions())
    packs = _packs(repo)
    kinds = {pid: {b.type for b in blobs} for pid, blobs in packs.items()}
    assert all(len(k) == 1 for k in kinds.values())
    assert {BlobType.DATA, BlobType.TREE} == set().union(*kinds.values())
    index = _reopen(repo).index.by_pack()
    assert index == packs  # every pack indexed, with exactly the header's entries


def test_pack_size_target(tmp_path: Path) -> None:
    target = 64 * 1024
    rng = random.Random(3)
    _files(tmp_path / "src", {f"f{i:03d}": rng.randbytes(5000) for i in range(100)})
    repo = _repo(pack_size=target)
    backup(repo, [str(tmp_path / "src")], BackupOptions(workers=2))
    data_packs = [b for b in _packs(repo).values() if b[0].type is BlobType.DATA]
    assert len(data_packs) >= 7
    ends = sorted(b[-1].offset + b[-1].length for b in data_packs)
    full = [e for e in ends if e >= target]
    assert len(full) >= len(data_packs) - 1  # only the last pack may be short
    for blobs in data_packs:  # a pack closes with the first blob that reaches the target
        assert blobs[-1].offset < target


def test_failed_pack_upload_writes_no_index_or_snapshot(tmp_path: Path) -> None:
    _files(tmp_path / "src", {"one": b"first run"})
    backend = MemoryBackend()
    repo = _repo(backend)
    snap1, _ = backup(repo, [str(tmp_path / "src")], BackupOptions())
    before = _count(backend)
    _files(tmp_path / "src", {"two": os.urandom(50_000)})
    backend.fail_next("save", PermanentStorageError("disk on fire"))
    with pytest.raises(PermanentStorageError):
        backup(repo, [str(tmp_path / "src")], BackupOptions())
    after = _count(backend)
    assert after[FileType.INDEX] == before[FileType.INDEX]
    assert after[FileType.SNAPSHOT] == before[FileType.SNAPSHOT]

    again = _reopen(repo)
    assert [s.id for s in again.list_snapshots()] == [snap1.id]
    out = tmp_path / "out"
    assert restore(again, snap1, str(out), RestoreOptions()).errors == []
    assert (out / str(tmp_path / "src").lstrip("/") / "one").read_bytes() == b"first run"
    # and the next backup succeeds
    _, s3 = backup(again, [str(tmp_path / "src")], BackupOptions())
    assert s3.errors == [] and s3.files_new == 1


def _count(backend: MemoryBackend) -> dict[FileType, int]:
    out = dict.fromkeys(FileType, 0)
    for h in backend.files:
        out[h.type] += 1
    return out


class _TickClock(FakeClock):
    """A fake clock whose monotonic reading moves on every call, so progress is never throttled."""

    def monotonic(self) -> float:
        self.advance(1.0)
        return super().monotonic()


@pytest.mark.restic
def test_cancel_mid_backup_leaves_a_valid_repository(tmp_path: Path, sk_repo: Any, restic: Any) -> None:
    rng = random.Random(4)
    _files(tmp_path / "src", {f"f{i:02d}": rng.randbytes(40_000) for i in range(40)})
    repo_dir = tmp_path / "repo"
    repo = sk_repo(repo_dir, pack_size=64 * 1024)
    snap1, _ = backup(repo, [str(tmp_path / "src" / "f00")], BackupOptions())
    token = CancelToken()
    seen: list[int] = []

    class Sink:
        def progress(self, p: Progress) -> None:
            seen.append(p.files_done)
            if p.files_done >= 5:
                token.cancel("test")

    with pytest.raises(Cancelled):
        backup(
            repo,
            [str(tmp_path / "src")],
            BackupOptions(workers=1),
            progress=Sink(),
            cancel=token,
            clock=_TickClock(),
        )
    assert max(seen) < 40
    assert [s.id for s in repo.list_snapshots()] == [snap1.id]
    restic(repo_dir, "check", "--read-data")
    again = sk_repo(repo_dir, create=False)
    _, s = backup(again, [str(tmp_path / "src")], BackupOptions())
    assert s.errors == [] and s.files_new == 40
    restic(repo_dir, "check", "--read-data")


def test_save_blob_deduplicates_and_load_verifies() -> None:
    repo = _repo()
    r1 = repo.save_blob(BlobType.DATA, b"hello")
    r2 = repo.save_blob(BlobType.DATA, b"hello")
    assert r1.added and not r2.added and r1.id == r2.id
    t = repo.save_blob(BlobType.TREE, b"hello")  # same bytes, other type: stored separately
    assert t.added
    repo.flush()
    assert repo.load_blob(BlobType.DATA, r1.id) == b"hello"
    assert repo.load_blob(BlobType.TREE, t.id) == b"hello"
    (index_name,) = [i.name for i in repo.backend.list(FileType.INDEX)]
    assert repo.load_unpacked(FileType.INDEX, index_name).startswith(b'{"packs":')


def test_v1_repository_never_compresses(tmp_path: Path) -> None:
    _files(tmp_path / "src", {"t": b"a" * 100_000})
    repo = Repository.init(MemoryBackend(), "pw", version=1, options=RepositoryOptions(kdf=CHEAP))
    backup(repo, [str(tmp_path / "src")], BackupOptions())
    assert all(b.uncompressed_length == 0 for blobs in _packs(repo).values() for b in blobs)
    assert _reopen(repo).version == 1


def _spooled(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every temporary file a pack is spooled to, as the repository creates them."""
    made: list[Any] = []
    create = repository._OpenPack.create

    def tracking(temp_dir: str | None) -> Any:
        pack = create(temp_dir)
        made.append(pack.file)
        return pack

    monkeypatch.setattr(repository._OpenPack, "create", staticmethod(tracking))
    return made


def test_spooled_packs_upload_intact_and_their_temporary_files_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _spooled(monkeypatch)
    rng = random.Random(5)
    _files(tmp_path / "src", {f"f{i:02d}": rng.randbytes(30_000) for i in range(30)})
    repo = _repo(pack_size=64 * 1024, temp_dir=str(tmp_path))
    snap, _ = backup(repo, [str(tmp_path / "src")], BackupOptions(workers=2))
    assert len(made) >= 10 and all(f.closed for f in made)
    assert not [p for p in tmp_path.iterdir() if p.name != "src"]  # nothing left in the folder
    for name, blobs in _packs(repo).items():  # each pack reads back whole: header, name and blobs
        for b in blobs:
            assert repo.load_blob(b.type, b.id) is not None
            assert repo.index.lookup(b.type, b.id) == (name, b)
    out = tmp_path / "out"
    assert restore(_reopen(repo), snap, str(out), RestoreOptions()).errors == []

    repo.save_blob(BlobType.DATA, b"never flushed")  # abandoned, or closed without a flush
    repo.save_blob(BlobType.TREE, b"never flushed either")
    repo.abandon()
    repo.save_blob(BlobType.DATA, b"left open")
    repo.close()
    assert all(f.closed for f in made)


def test_unwritable_temporary_folder_fails_the_backup_with_a_hint(tmp_path: Path) -> None:
    _files(tmp_path / "src", {"a": os.urandom(20_000)})
    backend = MemoryBackend()
    repo = _repo(backend, temp_dir=str(tmp_path / "missing"))
    with pytest.raises(RepositoryError) as info:
        backup(repo, [str(tmp_path / "src")], BackupOptions())
    assert str(tmp_path / "missing") in str(info.value) and "TMPDIR" in info.value.hint
    assert _count(backend)[FileType.PACK] == 0 and _count(backend)[FileType.SNAPSHOT] == 0


def test_tiny_data_blobs_are_stored_as_they_are() -> None:
    repo = _repo()
    tiny = repo.save_blob(BlobType.DATA, b"a" * (repository.MIN_COMPRESSED_DATA - 1))
    larger = repo.save_blob(BlobType.DATA, b"a" * repository.MIN_COMPRESSED_DATA)
    tree = repo.save_blob(BlobType.TREE, b'{"nodes":[]}\n')  # trees always compressed
    repo.flush()
    sizes = {b.id: b.uncompressed_length for blobs in _packs(repo).values() for b in blobs}
    assert sizes[tiny.id] == 0 and sizes[larger.id] == repository.MIN_COMPRESSED_DATA
    assert sizes[tree.id] == len(b'{"nodes":[]}\n')
    again = _reopen(repo)
    assert again.load_blob(BlobType.DATA, tiny.id) == b"a" * (repository.MIN_COMPRESSED_DATA - 1)
    assert again.load_blob(BlobType.DATA, larger.id) == b"a" * repository.MIN_COMPRESSED_DATA
