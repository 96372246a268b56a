"""The ``gs`` provider against the local fake of the GCS JSON API (``tests/fakes/gcs_fake.py``).

Google Cloud Storage cannot run here: these tests exercise the real ``google-cloud-storage``
client (real OAuth service-account grant, multipart and resumable uploads, ranged downloads,
paged listings) against a FAKE that follows Google's documented wire format — not against GCS.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.contract.targets.gs import settings_for
from tests.fakes.gcs_fake import GcsFake
from tests.servers.gcs import BUCKET

from safekeep.core.archiver import backup
from safekeep.core.checker import CheckOptions, check
from safekeep.core.format.keys import KDFParams
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.core.restorer import restore
from safekeep.storage.base import FileType, Handle
from safekeep.storage.compose import StorageOptions, open_backend
from safekeep.storage.errors import InvalidLocation, PermissionDenied
from safekeep.storage.providers.gs import GcsBackend
from safekeep.storage.registry import ProviderSettings, create_backend, parse_location

PW = "correct horse"


def fresh_location() -> str:
    return f"gs:{BUCKET}:/repo-{uuid.uuid4().hex[:12]}"


def provider(location: str, settings: ProviderSettings) -> GcsBackend:
    b = create_backend(parse_location(location), settings)
    assert isinstance(b, GcsBackend)
    return b


def test_location_syntax() -> None:
    loc = parse_location("gs:my-bucket:/office/restic")
    assert (loc.scheme, loc.bucket, loc.path) == ("gs", "my-bucket", "office/restic")
    assert parse_location("gs:my-bucket").path == ""
    with pytest.raises(InvalidLocation):
        parse_location("gs::/x")
    with pytest.raises(InvalidLocation):
        parse_location("gs:Bad_Bucket!:/x")


def test_round_trip_through_the_engine(gcs_fake: GcsFake, tmp_path: Path, trees: Any) -> None:
    location = fresh_location()
    opts = StorageOptions(provider=settings_for(gcs_fake, **{"gs.storage-class": "COLDLINE"}))
    src = tmp_path / "src"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "minutes.txt").write_text("Minutes of the meeting\n" * 300)
    (src / "big.bin").write_bytes(random.Random(1).randbytes(6 * 1024 * 1024))
    backend = open_backend(location, options=opts)
    repo = Repository.init(backend, PW, options=RepositoryOptions(kdf=KDFParams(1024, 8, 1)))
    backup(repo, [str(src)])
    (src / "docs" / "minutes.txt").write_text("changed\n")
    (src / "docs" / "agenda.txt").write_text("new\n")
    backup(repo, [str(src)])
    repo.close()

    repo = Repository.open(open_backend(location, options=opts), PW)
    repo.load_index()
    target = tmp_path / "restored"
    restore(repo, repo.find_snapshot("latest"), str(target))
    trees.assert_same(
        trees.state(src, root_meta=False), trees.state(trees.snapshot_root(target, src), root_meta=False)
    )
    assert check(repo, CheckOptions(read_data=True)).ok
    repo.close()
    prefix = location.split(":/", 1)[1] + "/"
    stored = {n: o for n, o in gcs_fake.objects(BUCKET).items() if n.startswith(prefix)}
    assert stored and {o.storage_class for o in stored.values()} == {"COLDLINE"}
    assert any(n.startswith(prefix + "data/") for n in stored)


def test_listing_pages(gcs_fake: GcsFake) -> None:
    b = provider(fresh_location(), settings_for(gcs_fake))
    b.create()
    names = set()
    for i in range(gcs_fake.page_cap * 2 + 17):
        data = f"lock {i}".encode()
        h = Handle(FileType.LOCK, f"{i:064x}")
        b.save(h, data)
        names.add(h.name)
    before = len(gcs_fake.log)
    listed = list(b.list(FileType.LOCK))
    assert {fi.name for fi in listed} == names and len(listed) == len(names)
    list_calls = [q for (m, p, q) in gcs_fake.log[before:] if m == "GET" and p.endswith("/o")]
    assert len(list_calls) == 3
    assert sum(1 for q in list_calls if "pageToken" in q) == 2


def test_storage_class_applied_to_new_objects(gcs_fake: GcsFake) -> None:
    b = provider(fresh_location(), settings_for(gcs_fake, **{"gs.storage-class": "coldline"}))
    for data in (b"small", random.Random(2).randbytes(3 * 1024 * 1024)):  # multipart and resumable
        h = Handle(FileType.PACK, f"{len(data):064x}")
        b.save(h, data)
        assert gcs_fake.objects(BUCKET)[b.key(h)].storage_class == "COLDLINE"
        assert b.load(h) == data
        assert b.load(h, 2, 3) == data[2:5]


def test_bad_credentials_files(gcs_fake: GcsFake, tmp_path: Path) -> None:
    location = fresh_location()
    env = dict(settings_for(gcs_fake).env or {})
    with pytest.raises(PermissionDenied) as info:
        provider(
            location,
            ProviderSettings(env={**env, "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "nope.json")}),
        )
    assert "does not exist" in str(info.value)
    assert "GOOGLE_APPLICATION_CREDENTIALS" in info.value.hint
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(PermissionDenied) as info:
        provider(location, ProviderSettings(env={**env, "GOOGLE_APPLICATION_CREDENTIALS": str(garbage)}))
    assert "is not a usable Google service-account key" in str(info.value)
    # a well-formed key that Google (the fake) does not know: refused at the token exchange
    stranger = gcs_fake.service_account_file(tmp_path / "stranger.json", email="x@y.iam", registered=False)
    b = provider(location, ProviderSettings(env={**env, "GOOGLE_APPLICATION_CREDENTIALS": str(stranger)}))
    with pytest.raises(PermissionDenied) as info:
        b.create()
    assert "Google refused the service-account key" in str(info.value)
    assert "PRIVATE KEY" not in str(info.value) + info.value.hint


def test_missing_bucket(gcs_fake: GcsFake) -> None:
    b = provider("gs:no-such-bucket:/repo", settings_for(gcs_fake))
    with pytest.raises(InvalidLocation) as info:
        b.create()
    assert "The bucket no-such-bucket does not exist" in str(info.value)
    assert "Create it in the Google Cloud console" in info.value.hint
    with pytest.raises(InvalidLocation):
        b.save(Handle.config(), b"x")
    assert b.free_space() is None
