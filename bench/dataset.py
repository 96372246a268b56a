"""A deterministic, office-like dataset and a mutator that changes about 1 % of it.

The tree resembles what a small office keeps: a few large files (CSV exports and logs — text that
compresses well; mailbox/database-like files — semi-compressible records; photos/videos —
random bytes), thousands of documents of 1-200 KiB in nested folders, and about 5 % duplicate
files. Everything derives from one seed, so two runs produce identical bytes.

The mutator touches about 1 % of the files the way a working day does: an insertion in the
middle of a large file, appends to logs, in-place overwrites, new files, deleted files.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

WORDS = [
    "invoice",
    "budget",
    "member",
    "donation",
    "report",
    "minutes",
    "agenda",
    "payroll",
    "receipt",
    "grant",
    "volunteer",
    "schedule",
    "patient",
    "course",
    "lesson",
    "stock",
    "order",
    "supplier",
    "customer",
    "meeting",
    "account",
    "ledger",
    "quarter",
    "annual",
    "summary",
    "draft",
    "final",
    "review",
    "approved",
    "pending",
    "total",
    "amount",
    "date",
    "name",
]

MiB = 1024 * 1024


@dataclass(frozen=True)
class DatasetSpec:
    total_mib: int = 1024
    seed: int = 20261122
    small_files: int = 0  # 0 = scaled from total_mib (about 11,700 for 1 GiB)

    def small_count(self) -> int:
        return self.small_files or max(50, round(11_400 * self.total_mib / 1024))


def _text_block(rng: random.Random, size: int) -> bytes:
    lines = []
    n = 0
    while n < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
        line += f" {rng.randint(0, 99999)}.{rng.randint(0, 99):02d}\n"
        lines.append(line)
        n += len(line)
    return "".join(lines).encode()[:size]


def _csv(rng: random.Random, size: int) -> bytes:
    out = bytearray(b"id,date,name,category,amount,notes\n")
    i = 0
    while len(out) < size:
        i += 1
        out += (
            f"{i},2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d},{rng.choice(WORDS).title()} "
            f"{rng.choice(WORDS).title()},{rng.choice(WORDS)},{rng.randint(1, 99999) / 100:.2f},"
            f"{rng.choice(WORDS)} {rng.choice(WORDS)}\n"
        ).encode()
    return bytes(out[:size])


def _records(rng: random.Random, size: int) -> bytes:
    """Database/mailbox-like: text records mixed with binary blobs (semi-compressible)."""
    out = bytearray()
    while len(out) < size:
        out += _text_block(rng, rng.randint(2000, 12000))
        out += rng.randbytes(rng.randint(1000, 9000))
    return bytes(out[:size])


def _random(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def generate(root: Path, spec: DatasetSpec = DatasetSpec()) -> tuple[int, int]:
    """Create the dataset under ``root`` (which must not exist); returns (files, bytes)."""
    rng = random.Random(spec.seed)
    root.mkdir(parents=True)
    budget = spec.total_mib * MiB
    big_share = budget * 55 // 100
    # a few large files: CSV, logs, mailbox/database-like, media
    big = [
        ("exports/donations-2020-2026.csv", _csv, 0.20),
        ("logs/server.log", _text_block, 0.12),
        ("mail/office.mbox", _records, 0.22),
        ("database/members.db", _records, 0.16),
        ("media/video/event-2026.mp4", _random, 0.18),
        ("media/video/training.mp4", _random, 0.12),
    ]
    files = 0
    written = 0
    for rel, make, share in big:
        size = int(big_share * share)
        _write(root / rel, make(rng, size))
        files += 1
        written += size
    small_budget = budget - written
    count = spec.small_count()
    mean = small_budget / count
    dirs = [
        f"office/{a}/{b}"
        for a in ("finance", "members", "events", "admin", "courses", "shop")
        for b in ("2023", "2024", "2025", "2026", "archive", "drafts", "shared")
    ]
    dirs += [f"{d}/{c}" for d in dirs[:20] for c in ("q1", "q2", "q3", "q4")]
    made: list[Path] = []
    for i in range(count):
        folder = rng.choice(dirs)
        if made and rng.random() < 0.05:  # a duplicate of an earlier document
            src = rng.choice(made)
            data = src.read_bytes()
            path = root / folder / f"copy of {src.name}"
        else:
            kind = rng.random()
            size = max(1024, min(200 * 1024, int(rng.expovariate(1 / mean))))
            if kind < 0.45:
                data, ext = _text_block(rng, size), ".txt"
            elif kind < 0.70:
                data, ext = _records(rng, size), ".docx"
            elif kind < 0.85:
                data, ext = _csv(rng, size), ".csv"
            else:
                data, ext = _random(rng, size), ".jpg"
            path = root / folder / f"{rng.choice(WORDS)}-{i:05d}{ext}"
        if path.exists():
            path = path.with_name(f"{i}-{path.name}")
        _write(path, data)
        made.append(path)
        files += 1
        written += len(data)
    return files, written


def mutate(root: Path, seed: int = 1) -> dict[str, int]:
    """Change about 1 % of the files under ``root``, deterministically for a given tree."""
    rng = random.Random(seed)
    all_files = sorted(p for p in root.rglob("*") if p.is_file())
    large = sorted(all_files, key=lambda p: p.stat().st_size, reverse=True)[:6]
    small = [p for p in all_files if p not in large]
    n = max(5, len(all_files) // 100)
    stats = {"inserted": 0, "appended": 0, "overwritten": 0, "new": 0, "deleted": 0}
    # an insertion in the middle of the largest compressible file (database-like)
    target = next(p for p in large if p.suffix in (".db", ".mbox", ".csv"))
    data = target.read_bytes()
    mid = len(data) // 2
    target.write_bytes(data[:mid] + _text_block(rng, 64 * 1024) + data[mid:])
    stats["inserted"] += 1
    # appends to the log
    log = next((p for p in large if p.suffix == ".log"), None)
    if log is not None:
        with log.open("ab") as f:
            f.write(_text_block(rng, 256 * 1024))
        stats["appended"] += 1
    picks = rng.sample(small, min(len(small), n))
    quarter = max(1, len(picks) // 4)
    for p in picks[:quarter]:  # in-place overwrite of a region
        with p.open("r+b") as f:
            size = p.stat().st_size
            off = rng.randint(0, max(0, size - 512))
            f.seek(off)
            f.write(rng.randbytes(min(512, size)))
        stats["overwritten"] += 1
    for p in picks[quarter : 2 * quarter]:  # appends
        with p.open("ab") as f:
            f.write(_text_block(rng, rng.randint(100, 4000)))
        stats["appended"] += 1
    for p in picks[2 * quarter : 3 * quarter]:
        p.unlink()
        stats["deleted"] += 1
    for i in range(len(picks) - 3 * quarter):  # new documents
        p = root / "office" / "new" / f"{rng.choice(WORDS)}-new-{i:04d}.txt"
        _write(p, _text_block(rng, rng.randint(2000, 150_000)))
        stats["new"] += 1
    return stats


def generate_many_small(root: Path, count: int, seed: int = 7) -> None:
    """``count`` tiny files (for the memory-bound case), 1,000 per folder."""
    rng = random.Random(seed)
    for i in range(count):
        d = root / f"d{i // 1000:05d}"
        if i % 1000 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:07d}.txt").write_bytes(b"%d %d\n" % (i, rng.getrandbits(32)))


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


__all__ = ["DatasetSpec", "generate", "generate_many_small", "mutate", "os"]
