"""Round trips of every on-disk format object, property-based where the input space is large."""

from __future__ import annotations

import json
import random
import struct
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safekeep.core.archiver import BackupOptions, backup
from safekeep.core.chunker import MAX_SIZE, MIN_SIZE, Chunker
from safekeep.core.crypto import OVERHEAD, AuthenticationFailed, MasterKey
from safekeep.core.format import unpacked
from safekeep.core.format.config import Config, ConfigError, is_irreducible
from safekeep.core.format.index import IndexFormatError, decode_index, encode_index
from safekeep.core.format.keys import KDFParams, KeyFile, new_key_file
from safekeep.core.format.pack import (
    BlobType,
    PackedBlob,
    PackFormatError,
    decode_header,
    encode_header,
    finish_pack,
    parse_trailer,
    read_header,
)
from safekeep.core.format.snapshot import Snapshot, SnapshotFormatError
from safekeep.core.format.times import format_time, parse_time
from safekeep.core.format.tree import decode_tree
from safekeep.core.repository import Repository, RepositoryOptions, sha256
from safekeep.storage.providers.memory import MemoryBackend

CHEAP = KDFParams(16, 1, 1)
ids = st.binary(min_size=32, max_size=32)
u32 = st.integers(min_value=OVERHEAD, max_value=2**32 - 1)
aware = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(9998, 12, 31),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=9, minutes=30))]),
)
texts = st.text(max_size=40)


# ------------------------------------------------------------------ keys and config


@settings(max_examples=25, deadline=None)
@given(password=st.text(max_size=30), user=texts, host=texts, created=aware)
def test_key_file_round_trip(password: str, user: str, host: str, created: datetime) -> None:
    master = MasterKey.generate()
    kf = new_key_file(master, password, created=created, username=user, hostname=host, params=CHEAP)
    raw = kf.to_json()
    assert list(json.loads(raw)) == ["created", "username", "hostname", "kdf", "N", "r", "p", "salt", "data"]
    back = KeyFile.from_json(raw)
    assert back == kf
    assert len(back.salt) == 64
    assert back.unlock(password) == master
    with pytest.raises(AuthenticationFailed):
        back.unlock(password + "x")


def test_key_file_honours_stored_params() -> None:
    master = MasterKey.generate()
    kf = new_key_file(
        master, "pw", created=datetime.now(UTC), username="", hostname="", params=KDFParams(64, 2, 3)
    )
    obj = json.loads(kf.to_json())
    assert (obj["N"], obj["r"], obj["p"], obj["kdf"]) == (64, 2, 3, "scrypt")
    assert KeyFile.from_json(kf.to_json()).unlock("pw") == master
    with pytest.raises(ValueError):
        KDFParams(1000, 8, 1)


@given(version=st.sampled_from([1, 2]))
def test_config_round_trip(version: int) -> None:
    cfg = Config.new(version)
    assert Config.from_json(cfg.to_json()) == cfg
    assert len(cfg.id) == 64
    poly = int(cfg.chunker_polynomial, 16)
    assert poly.bit_length() - 1 == 53 and is_irreducible(poly)
    with pytest.raises(ConfigError):
        Config.from_json(b'{"id": "x"}')


def test_irreducibility_known_polynomials() -> None:
    assert is_irreducible(int("3DA3358B4DC173", 16))  # restic chunker's documented example polynomial
    assert not is_irreducible((1 << 53) | (1 << 1))  # divisible by x


# ------------------------------------------------------------------ packs and index


def _blobs(draw_list: list[tuple[int, bytes, int, int]]) -> list[PackedBlob]:
    out, offset = [], 0
    for t, bid, length, ulen in draw_list:
        out.append(PackedBlob(BlobType(t), bid, offset, length, ulen))
        offset += length
    return out


entries = st.lists(
    st.tuples(st.sampled_from([0, 1]), ids, u32, st.one_of(st.just(0), st.integers(1, 2**32 - 1))),
    max_size=30,
)


@given(entries=entries)
def test_pack_header_round_trip(entries: list[tuple[int, bytes, int, int]]) -> None:
    blobs = _blobs(entries)
    header = encode_header(blobs)
    assert len(header) == sum(41 if b.uncompressed_length else 37 for b in blobs)
    assert decode_header(header) == blobs


@settings(max_examples=30, deadline=None)
@given(
    payloads=st.lists(
        st.tuples(st.sampled_from(list(BlobType)), st.binary(max_size=600), st.booleans()),
        min_size=1,
        max_size=12,
    )
)
def test_full_pack_parses_without_an_index(payloads: list[tuple[BlobType, bytes, bool]]) -> None:
    key = MasterKey.generate()
    body = bytearray()
    blobs = []
    for t, data, compress in payloads:
        stored = unpacked.compressor().compress(data) if compress and data else data
        sealed = key.seal(stored)
        blobs.append(
            PackedBlob(t, sha256(data), len(body), len(sealed), len(data) if stored is not data else 0)
        )
        body += sealed
    data_end = len(body)
    finish_pack(key, body, blobs)
    hlen = parse_trailer(bytes(body[-4:]), len(body))
    assert len(body) - 4 - hlen == data_end
    got = read_header(key, bytes(body[data_end : data_end + hlen]), data_end=data_end)
    assert got == blobs
    for b, (_, data, _) in zip(got, payloads, strict=True):
        plain = key.open(body[b.offset : b.offset + b.length])
        if b.uncompressed_length:
            plain = unpacked.decompressor().decompress(plain, max_output_size=b.uncompressed_length)
        assert plain == data and b.plaintext_length == len(data)
    with pytest.raises(PackFormatError):
        read_header(MasterKey.generate(), bytes(body[data_end : data_end + hlen]), data_end=data_end)
    with pytest.raises(PackFormatError):
        read_header(key, bytes(body[data_end : data_end + hlen]), data_end=data_end + 1)


def test_pack_trailer_and_header_rejects() -> None:
    with pytest.raises(PackFormatError):
        parse_trailer(struct.pack("<I", 10), 1000)  # shorter than the envelope
    with pytest.raises(PackFormatError):
        parse_trailer(struct.pack("<I", 5000), 1000)  # longer than the pack
    with pytest.raises(PackFormatError):
        decode_header(b"\x04" + bytes(36))  # unknown type
    with pytest.raises(PackFormatError):
        decode_header(b"\x00" + bytes(10))  # truncated entry


@given(packs=st.lists(st.tuples(ids, entries), max_size=8))
def test_index_round_trip(packs: list[tuple[bytes, list[tuple[int, bytes, int, int]]]]) -> None:
    data = [(pid.hex(), _blobs(e)) for pid, e in packs]
    raw = encode_index(data)
    obj = json.loads(raw)
    assert "supersedes" not in obj
    for p in obj["packs"]:
        for b in p["blobs"]:
            assert ("uncompressed_length" in b) == bool(b.get("uncompressed_length"))
    assert list(decode_index(raw)) == data


def test_index_reads_legacy_forms_and_rejects_garbage() -> None:
    legacy = {
        "supersedes": ["ab" * 32],
        "packs": [{"id": "cd" * 32, "blobs": [{"id": "ef" * 32, "type": "tree", "offset": 0, "length": 40}]}],
    }
    ((pid, (blob,)),) = list(decode_index(json.dumps(legacy).encode()))
    assert pid == "cd" * 32 and blob.type is BlobType.TREE and blob.length == 40
    assert next(iter(decode_index(json.dumps(legacy["packs"]).encode())))[0] == "cd" * 32
    with pytest.raises(IndexFormatError):
        list(decode_index(b'{"packs":[{"id":"short","blobs":[]}]}'))
    with pytest.raises(IndexFormatError):
        list(decode_index(b'{"packs":[{"id":"' + b"ab" * 32 + b'","blobs":[{"id":"zz","type":"data"}]}]}'))


# ------------------------------------------------------------------ snapshots, unpacked, times


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=10))


@given(
    time=aware,
    tree=ids,
    paths=st.lists(st.text(min_size=1, max_size=20), max_size=4),
    tags=st.lists(st.text(max_size=10), max_size=4),
    extra=st.dictionaries(st.text(min_size=1, max_size=8).map(lambda s: "x_" + s), json_scalars, max_size=3),
    parent=st.one_of(st.none(), ids.map(bytes.hex)),
)
def test_snapshot_round_trip(
    time: datetime,
    tree: bytes,
    paths: list[str],
    tags: list[str],
    extra: dict[str, object],
    parent: str | None,
) -> None:
    snap = Snapshot(
        time=time.replace(microsecond=time.microsecond),
        tree=tree,
        paths=paths,
        hostname="host",
        username="u",
        uid=1000,
        gid=100,
        tags=tags,
        parent=parent,
        program_version="safekeep 1",
        summary={"files_new": 3, "data_added": 10},
        extra=extra,
    )
    back = Snapshot.from_json(snap.to_json(), "id1")
    snap.id = "id1"
    assert back == snap
    assert Snapshot.from_json(back.to_json()).to_json() == snap.to_json()  # extras survive a rewrite


def test_snapshot_rejects_missing_tree() -> None:
    with pytest.raises(SnapshotFormatError):
        Snapshot.from_json(b'{"time":"2026-01-01T00:00:00Z","paths":[]}')


@settings(max_examples=40, deadline=None)
@given(
    obj=st.recursive(
        json_scalars,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=10,
    )
)
def test_unpacked_round_trip(obj: object) -> None:
    data = json.dumps({"v": obj}).encode()
    key = MasterKey.generate()
    v1 = unpacked.seal(key, data, version=1)
    assert key.open(v1) == data  # raw JSON, no header byte
    v2 = unpacked.seal(key, data, version=2)
    plain = key.open(v2)
    assert plain[0] == 2 and unpacked.decompressor().decompressobj().decompress(plain[1:]) == data
    for sealed in (v1, v2):
        assert unpacked.decode_plaintext(key.open(sealed)) == data
    assert unpacked.decode_plaintext(b"[1]") == b"[1]"
    for bad in (b"", b"\x03abc", b"\x02not zstd"):
        with pytest.raises(unpacked.UnpackedFormatError):
            unpacked.decode_plaintext(bad)


@given(dt=aware)
def test_times_round_trip(dt: datetime) -> None:
    text = format_time(dt)
    back = parse_time(text)
    assert back == dt and back.utcoffset() == dt.utcoffset()
    assert not text.endswith("0Z") or "." not in text  # trailing fraction zeros trimmed


def test_times_go_format_details() -> None:
    assert format_time(datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)) == "2026-01-02T03:04:05.12Z"
    assert format_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5)))) == (
        "2026-01-02T03:04:05-05:00"
    )
    assert parse_time("2026-01-02T03:04:05.123456789+01:00") == datetime(
        2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone(timedelta(hours=1))
    )
    with pytest.raises(ValueError):
        format_time(datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        parse_time("yesterday")


# ------------------------------------------------------------------ chunker


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(0, 12 * 1024 * 1024), seed=st.integers(0, 2**32), zero=st.booleans())
def test_chunker_cuts_cover_exactly(size: int, seed: int, zero: bool) -> None:
    buf = bytes(size) if zero else random.Random(seed).randbytes(size)
    chunker = Chunker(Config.new().chunker_polynomial)
    cuts = list(chunker.cuts(buf))
    pos = 0
    for i, (off, length) in enumerate(cuts):
        assert off == pos and length > 0
        assert length <= MAX_SIZE
        if i < len(cuts) - 1:
            assert length >= MIN_SIZE
        pos += length
    assert pos == size
    if 0 < size <= MIN_SIZE:
        assert cuts == [(0, size)]
    assert list(chunker.cuts(memoryview(buf))) == cuts  # deterministic, any buffer type


def test_chunker_depends_on_polynomial() -> None:
    buf = random.Random(9).randbytes(8 * 1024 * 1024)
    a = list(Chunker("3da3358b4dc173").cuts(buf))
    b = list(Chunker("25b468838dcb75").cuts(buf))
    assert a == list(Chunker("3da3358b4dc173").cuts(buf))
    assert a != b


def test_windowed_backup_chunks_like_the_whole_buffer(tmp_path: pytest.TempPathFactory) -> None:
    """The archiver reads 16 MiB windows and carries the tail over; the result must be the cuts
    of the whole file at once (40 MiB spans three windows)."""
    data = random.Random(11).randbytes(40 * 1024 * 1024)
    path = tmp_path / "big"  # type: ignore[operator]
    path.write_bytes(data)
    repo = Repository.init(MemoryBackend(), "pw", options=RepositoryOptions(kdf=CHEAP, compression=False))
    snap, summary = backup(repo, [str(path)], BackupOptions())
    assert summary.errors == []
    expected = [sha256(data[o : o + n]) for o, n in Chunker(repo.config.chunker_polynomial).cuts(data)]
    assert len(expected) > 10
    node = _find_file(repo, snap.tree, str(path))
    assert node.content == expected
    assert node.size == len(data)
    repo.close()


def _find_file(repo: Repository, tree: bytes, path: str):  # type: ignore[no-untyped-def]
    parts = path.strip("/").split("/")
    for part in parts[:-1]:
        nodes = {n.name: n for n in decode_tree(repo.load_blob(BlobType.TREE, tree))}
        tree = nodes[part.encode()].subtree
    return {n.name: n for n in decode_tree(repo.load_blob(BlobType.TREE, tree))}[parts[-1].encode()]
