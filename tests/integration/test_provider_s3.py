"""The ``s3`` provider against moto's real S3 server on 127.0.0.1 (``tests/servers/s3.py``).

Covers the engine round trip (then ``restic check --read-data`` on what Safekeep wrote), multipart
uploads and their clean-up, Object Lock retention, storage class and encryption headers, and the
bad-input messages. Wrong keys and missing permissions use moto's IAM enforcement, switched on
through ``/moto-api/reset-auth`` (``MotoS3.auth``), with an IAM user whose policy is the one
:func:`~safekeep.storage.providers.s3_policy.iam_policy` prints.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.servers import free_port
from tests.servers.s3 import MotoS3

from safekeep.common.cancel import CancelToken
from safekeep.common.errors import Cancelled
from safekeep.core.archiver import backup
from safekeep.core.checker import CheckOptions, check
from safekeep.core.forget import KeepRules, forget, plan_forget
from safekeep.core.format.keys import KDFParams
from safekeep.core.prune import PruneOptions, prune
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.core.restorer import restore
from safekeep.storage.base import Backend, FileType, Handle
from safekeep.storage.compose import StorageOptions, open_backend
from safekeep.storage.errors import InvalidLocation, NotFound, PermissionDenied, TransientStorageError
from safekeep.storage.providers.s3 import S3Backend
from safekeep.storage.providers.s3_policy import iam_policy
from safekeep.storage.registry import ProviderSettings, create_backend, parse_location

PW = "correct horse"
SMALL_MULTIPART = {"s3.multipart-threshold": "6MiB", "s3.part-size": "5MiB"}


def provider(location: str, env: dict[str, str], **options: str) -> S3Backend:
    b = create_backend(parse_location(location), ProviderSettings(env=env, options=options))
    assert isinstance(b, S3Backend)
    return b


def pack(data: bytes) -> Handle:
    import hashlib

    return Handle(FileType.PACK, hashlib.sha256(data).hexdigest())


def keys_under(moto: MotoS3, bucket: str, location: str) -> list[str]:
    prefix = location.rsplit("/", 1)[1] + "/"
    resp = moto.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for o in resp.get("Contents", [])]


# -- round trip ---------------------------------------------------------------------------------


@pytest.mark.restic
def test_round_trip_through_the_engine_and_restic_checks_it(
    moto_s3: MotoS3, tmp_path: Path, restic_bin: str, trees: Any
) -> None:
    location = moto_s3.location(moto_s3.plain_bucket)
    opts = StorageOptions(provider=ProviderSettings(env=moto_s3.env(), options=SMALL_MULTIPART))
    src = tmp_path / "src"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "letter.txt").write_text("Dear parish council,\n" * 200)
    (src / "big.bin").write_bytes(random.Random(1).randbytes(24 * 1024 * 1024))  # packs > threshold
    (src / "empty").write_bytes(b"")

    backend = open_backend(location, options=opts)
    repo = Repository.init(backend, PW, options=RepositoryOptions(kdf=KDFParams(1024, 8, 1)))
    backup(repo, [str(src)])
    (src / "docs" / "letter.txt").write_text("changed\n")
    (src / "docs" / "new.txt").write_text("new file\n")
    (src / "empty").unlink()
    backup(repo, [str(src)])
    repo.close()

    repo = Repository.open(open_backend(location, options=opts), PW)
    repo.load_index()
    snap = repo.find_snapshot("latest")
    target = tmp_path / "restored"
    restore(repo, snap, str(target))
    trees.assert_same(
        trees.state(src, root_meta=False),
        trees.state(trees.snapshot_root(target, src), root_meta=False),
    )
    assert check(repo, CheckOptions(read_data=True)).ok
    repo.close()
    # the big file went up in multipart uploads: their ETags end in -<parts>
    client = moto_s3.client()
    prefix = location.rsplit("/", 1)[1]
    packs = client.list_objects_v2(Bucket=moto_s3.plain_bucket, Prefix=f"{prefix}/data/")["Contents"]
    assert any("-" in p["ETag"] for p in packs)

    env = dict(os.environ, **moto_s3.env(RESTIC_PASSWORD=PW, RESTIC_CACHE_DIR=str(tmp_path / "restic-cache")))
    proc = subprocess.run(
        [restic_bin, "-r", location, "check", "--read-data"],
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert b"no errors were found" in proc.stdout


@pytest.mark.restic
def test_forget_and_prune_on_s3_with_the_local_cache(
    moto_s3: MotoS3, tmp_path: Path, restic_bin: str
) -> None:
    """Prune over a remote provider (ranged reads, listing sizes) with a repository cache that
    holds copies of the index files and tree packs prune removes."""
    location = moto_s3.location(moto_s3.plain_bucket)
    opts = StorageOptions(provider=ProviderSettings(env=moto_s3.env()))
    cache = str(tmp_path / "cache")
    cached = RepositoryOptions(kdf=KDFParams(1024, 8, 1), cache_dir=cache, pack_size=1 << 20)
    src = tmp_path / "src"
    src.mkdir()
    (src / "old.bin").write_bytes(random.Random(1).randbytes(3 * 1024 * 1024))
    (src / "letter.txt").write_text("Dear parish council,\n")
    repo = Repository.init(open_backend(location, options=opts), PW, options=cached)
    backup(repo, [str(src)])
    repo.close()
    (src / "old.bin").unlink()
    repo = Repository.open(open_backend(location, options=opts), PW, options=cached)
    repo.load_index()
    backup(repo, [str(src)])
    decided = plan_forget(repo.list_snapshots(), KeepRules(last=1))
    assert forget(repo, decided.remove).removed
    summary = prune(repo, PruneOptions(max_unused=0))
    repo.close()
    assert summary.bytes_freed >= 3 * 1024 * 1024 and not summary.failed

    repo = Repository.open(open_backend(location, options=opts), PW, options=cached)  # the same cache
    assert check(repo, CheckOptions(read_data=True)).ok
    repo.close()
    env = dict(os.environ, **moto_s3.env(RESTIC_PASSWORD=PW, RESTIC_CACHE_DIR=str(tmp_path / "restic-cache")))
    command = [restic_bin, "-r", location, "check", "--read-data"]
    proc = subprocess.run(command, env=env, capture_output=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()


# -- multipart -------------------------------------------------------------------------------


def test_large_files_use_multipart(moto_s3: MotoS3) -> None:
    b = provider(moto_s3.location(moto_s3.plain_bucket), moto_s3.env(), **SMALL_MULTIPART)
    b.create()
    parts: list[int] = []
    b.client.meta.events.register("before-send.s3.UploadPart", lambda request, **_: parts.append(1))
    data = random.Random(2).randbytes(13 * 1024 * 1024)
    h = pack(data)
    b.save(h, data)
    assert len(parts) == 3  # 5 + 5 + 3 MiB
    assert b.load(h) == data
    assert b.load(h, 6 * 1024 * 1024, 10) == data[6 * 1024 * 1024 : 6 * 1024 * 1024 + 10]
    head = moto_s3.client().head_object(Bucket=b.bucket, Key=b.key(h))
    assert head["ETag"].strip('"').endswith("-3")


def test_failed_multipart_upload_leaves_nothing_behind(moto_s3: MotoS3) -> None:
    import botocore.exceptions

    bucket = moto_s3.new_bucket()
    b = provider(moto_s3.location(bucket), moto_s3.env(), **SMALL_MULTIPART)
    b.create()
    seen = {"n": 0}

    def fail_second_part(request: Any, **_: Any) -> None:
        seen["n"] += 1
        if seen["n"] == 2:
            raise botocore.exceptions.ConnectionClosedError(endpoint_url=request.url)

    b.client.meta.events.register("before-send.s3.UploadPart", fail_second_part)
    data = random.Random(3).randbytes(12 * 1024 * 1024)
    h = pack(data)
    with pytest.raises(TransientStorageError):
        b.save(h, data)
    client = moto_s3.client()
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(NotFound):
        b.stat(h)
    b.save(h, data)  # the next run works
    assert b.load(h) == data


def test_cancelled_multipart_upload_is_aborted(moto_s3: MotoS3) -> None:
    bucket = moto_s3.new_bucket()
    b = provider(moto_s3.location(bucket), moto_s3.env(), **SMALL_MULTIPART)
    token = CancelToken()
    b.client.meta.events.register("after-call.s3.UploadPart", lambda **_: token.cancel("user"))
    data = random.Random(4).randbytes(12 * 1024 * 1024)
    with pytest.raises(Cancelled):
        b.save(pack(data), data, cancel=token)
    client = moto_s3.client()
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert client.list_objects_v2(Bucket=bucket).get("Contents", []) == []


# -- Object Lock --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["GOVERNANCE", "COMPLIANCE"])
def test_object_lock_retention_is_applied_and_deletion_refused(moto_s3: MotoS3, mode: str) -> None:
    location = moto_s3.location(moto_s3.locked_bucket)
    b = provider(
        location,
        moto_s3.env(),
        **{"s3.object-lock-days": "3", "s3.object-lock-mode": mode},
        **SMALL_MULTIPART,
    )
    b.create()
    small, big = b"small pack", random.Random(5).randbytes(7 * 1024 * 1024)  # put and multipart
    before = dt.datetime.now(dt.UTC)
    client = moto_s3.client()
    for data in (small, big):
        h = pack(data)
        b.save(h, data)
        head = client.head_object(Bucket=moto_s3.locked_bucket, Key=b.key(h))
        assert head["ObjectLockMode"] == mode
        until = head["ObjectLockRetainUntilDate"]
        assert before + dt.timedelta(days=3) - dt.timedelta(minutes=5) <= until
        assert until <= dt.datetime.now(dt.UTC) + dt.timedelta(days=3, minutes=5)
        with pytest.raises(PermissionDenied) as info:
            b.remove(h)
        assert "protected by Object Lock" in str(info.value)
        assert f"until {until:%Y-%m-%d}" in str(info.value)
        assert b.load(h) == data  # still there
        # the server itself refuses to delete the locked version
        import botocore.exceptions

        with pytest.raises(botocore.exceptions.ClientError) as err:
            client.delete_object(Bucket=moto_s3.locked_bucket, Key=b.key(h), VersionId=head["VersionId"])
        assert err.value.response["Error"]["Code"] == "AccessDenied"
        assert client.head_object(Bucket=moto_s3.locked_bucket, Key=b.key(h))["ContentLength"] == len(data)


def test_object_lock_option_on_a_bucket_without_lock_is_refused(moto_s3: MotoS3) -> None:
    location = moto_s3.location(moto_s3.plain_bucket)
    b = provider(location, moto_s3.env(), **{"s3.object-lock-days": "30"})
    with pytest.raises(InvalidLocation) as info:
        b.create()
    assert "does not have Object Lock enabled" in str(info.value)
    assert "s3.object-lock-days" in info.value.hint
    with pytest.raises(InvalidLocation):
        b.save(pack(b"x"), b"x")
    assert keys_under(moto_s3, moto_s3.plain_bucket, location) == []


# -- storage class, encryption -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"s3.storage-class": "STANDARD_IA", "s3.sse": "AES256"},
            {"StorageClass": "STANDARD_IA", "ServerSideEncryption": "AES256"},
        ),
        ({"s3.sse": "aws:kms", "s3.sse-kms-key-id": "my-key"}, {"ServerSideEncryption": "aws:kms"}),
    ],
)
def test_storage_class_and_encryption_are_applied(
    moto_s3: MotoS3, options: dict[str, str], expected: dict[str, str]
) -> None:
    b = provider(moto_s3.location(moto_s3.plain_bucket), moto_s3.env(), **options, **SMALL_MULTIPART)
    client = moto_s3.client()
    for data in (b"small", random.Random(6).randbytes(7 * 1024 * 1024)):
        h = pack(data)
        b.save(h, data)
        head = client.head_object(Bucket=b.bucket, Key=b.key(h))
        for k, v in expected.items():
            assert head.get(k) == v, (k, head)
        if "s3.sse-kms-key-id" in options:
            assert "my-key" in head.get("SSEKMSKeyId", "")


# -- bad input ---------------------------------------------------------------------------------


def _iam_user(iam: Any, name: str, policy: dict[str, Any]) -> tuple[str, str]:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="safekeep", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def test_keys_and_permissions_with_iam_enforced(moto_s3: MotoS3) -> None:
    bucket = moto_s3.new_bucket()
    location = moto_s3.location(bucket, "repo")
    with moto_s3.auth() as iam:
        good = _iam_user(iam, "backup-user", iam_policy(bucket, "repo"))
        read_only = _iam_user(
            iam,
            "read-only-user",
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject"], "Resource": "*"}
                ],
            },
        )
        moto_s3.enable_auth()

        # the least-privilege policy is enough for everything the provider does
        env = moto_s3.env(AWS_ACCESS_KEY_ID=good[0], AWS_SECRET_ACCESS_KEY=good[1])
        b = provider(location, env)
        b.create()
        h = pack(b"data")
        b.save(h, b"data")
        assert b.load(h, 1, 2) == b"at"
        assert [fi.name for fi in b.list(FileType.PACK)] == [h.name]
        b.remove(h)

        # wrong secret key, unknown access key
        for access, secret in ((good[0], "wrong-secret"), ("AKIAUNKNOWNKEY000000", good[1])):
            bad = provider(location, moto_s3.env(AWS_ACCESS_KEY_ID=access, AWS_SECRET_ACCESS_KEY=secret))
            with pytest.raises(PermissionDenied) as info:
                bad.create()
            assert "the access key or secret key is wrong" in str(info.value)
            assert "wrong-secret" not in str(info.value) + info.value.hint

        # a key without write permission
        ro = provider(
            location, moto_s3.env(AWS_ACCESS_KEY_ID=read_only[0], AWS_SECRET_ACCESS_KEY=read_only[1])
        )
        ro.create()
        with pytest.raises(PermissionDenied) as info:
            ro.save(h, b"data")
        assert "may not save" in str(info.value)
        assert "safekeep storage policy" in info.value.hint


def test_missing_bucket(moto_s3: MotoS3) -> None:
    location = f"s3:{moto_s3.endpoint}/no-such-bucket-here/repo"
    b = provider(location, moto_s3.env())
    with pytest.raises(InvalidLocation) as info:
        b.create()
    assert "The bucket no-such-bucket-here does not exist" in str(info.value)
    assert "Create it in your storage provider's console" in info.value.hint
    with pytest.raises(InvalidLocation):
        b.save(pack(b"x"), b"x")
    created = provider(
        f"s3:{moto_s3.endpoint}/created-by-safekeep/repo", moto_s3.env(), **{"s3.create-bucket": "true"}
    )
    created.create()
    created.save(pack(b"x"), b"x")
    assert moto_s3.client().head_bucket(Bucket="created-by-safekeep")


def test_wrong_endpoint_after_retries(moto_s3: MotoS3) -> None:
    port = free_port()  # nothing listens there
    location = f"s3:http://127.0.0.1:{port}/bucket/repo"
    backend: Backend = open_backend(
        location,
        options=StorageOptions(
            retry_attempts=3, retry_base_delay=0.0, provider=ProviderSettings(env=moto_s3.env())
        ),
    )
    with pytest.raises(TransientStorageError) as info:
        backend.create()
    assert str(info.value) == f"Cannot reach http://127.0.0.1:{port}: the connection was refused."
    assert "address and port" in info.value.hint


def test_secrets_stay_out_of_repr_and_messages(moto_s3: MotoS3) -> None:
    b = provider(moto_s3.location(moto_s3.plain_bucket), moto_s3.env())
    assert moto_s3.secret_key not in repr(b)
    with pytest.raises(NotFound) as info:
        b.load(pack(b"missing"))
    assert moto_s3.secret_key not in str(info.value)
    assert b.free_space() is None
