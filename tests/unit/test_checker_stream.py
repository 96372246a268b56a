"""``check --read-data`` streams local packs in segments of whole blobs: every byte is hashed,
every blob verified, and damage anywhere in a pack is found."""

from __future__ import annotations

import itertools
import os
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from safekeep.core import checker
from safekeep.core.checker import CheckOptions, _segments, check
from safekeep.core.format.pack import BlobType, PackedBlob
from safekeep.core.format.snapshot import Snapshot
from safekeep.core.format.tree import Node, encode_tree
from safekeep.storage.base import FileType


def _blobs(lengths: list[int]) -> list[PackedBlob]:
    out, pos = [], 0
    for i, n in enumerate(lengths):
        out.append(PackedBlob(BlobType.DATA, bytes([i]) * 32, pos, n))
        pos += n
    return out


@pytest.mark.parametrize("segment", [0, 1, 100, 250, 10_000])
def test_segments_cover_the_pack_and_hold_whole_blobs(segment: int) -> None:
    blobs = _blobs([40, 120, 60, 300, 50, 50])
    size = sum(b.length for b in blobs) + 77  # the header and its length
    ranges = _segments(blobs, size, segment)
    assert ranges[0][0] == 0 and ranges[-1][1] == size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert [b for _, _, group in ranges for b in group] == blobs
    for start, end, group in ranges:
        assert all(start <= b.offset and b.offset + b.length <= end for b in group)
        if segment and len(group) > 1:  # a segment outgrows the limit only for a single big blob
            assert group[-1].offset + group[-1].length - start <= segment


def test_overlapping_or_overlong_blobs_are_read_as_one_range() -> None:
    blobs = _blobs([40, 120])
    assert _segments([blobs[1], blobs[0]], 200, 50) == [(0, 200, [blobs[1], blobs[0]])]
    assert _segments(blobs, 100, 50) == [(0, 100, blobs)]


def _repo_with_one_pack(tmp_path: Path, sk_repo: Any) -> tuple[Any, str, list[PackedBlob]]:
    repo = sk_repo(tmp_path / "repo", pack_size=1 << 30)
    rng = random.Random(3)
    ids = [repo.save_blob(BlobType.DATA, rng.randbytes(20_000)).id for _ in range(8)]
    nodes = [
        Node(name=f"f{i}".encode(), type="file", mode=0o644, content=[bid], size=20_000)
        for i, bid in enumerate(ids)
    ]
    tree = repo.save_blob(BlobType.TREE, encode_tree(nodes)).id
    repo.flush()
    repo.save_snapshot(Snapshot(time=datetime(2026, 1, 1, tzinfo=UTC), tree=tree, paths=["/src"]))
    (pack_id,) = [p for p, blobs in repo.index.by_pack().items() if blobs[0].type is BlobType.DATA]
    return repo, pack_id, repo.index.by_pack()[pack_id]


def test_a_healthy_pack_read_in_segments_passes(
    tmp_path: Path, sk_repo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _repo_with_one_pack(tmp_path, sk_repo)
    monkeypatch.setattr(checker, "LOCAL_SEGMENT", 45_000)  # two or three blobs per segment
    fresh = sk_repo(tmp_path / "repo", create=False)
    result = check(fresh, CheckOptions(read_data=True))
    assert result.ok, result.errors
    assert result.packs_read == 2 and result.blobs == 8


def test_damage_in_a_middle_segment_names_the_blob_and_its_file(
    tmp_path: Path, sk_repo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, pack_id, blobs = _repo_with_one_pack(tmp_path, sk_repo)
    victim = blobs[5]
    path = tmp_path / "repo" / FileType.PACK.value / pack_id[:2] / pack_id
    os.chmod(path, 0o600)
    with open(path, "r+b") as f:
        f.seek(victim.offset + 100)
        byte = f.read(1)
        f.seek(victim.offset + 100)
        f.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setattr(checker, "LOCAL_SEGMENT", 45_000)
    fresh = sk_repo(tmp_path / "repo", create=False)
    result = check(fresh, CheckOptions(read_data=True))
    (problem,) = [p for p in result.errors if p.pack == pack_id]
    assert "does not match its name" in problem.message and "1 of its 8 blobs" in problem.message
    file_no = [b.id for b in sorted(blobs, key=lambda b: b.offset)].index(victim.id)
    assert len(problem.paths) == 1 and problem.paths[0].endswith(f"/f{file_no}"), problem.paths
