"""S3 location parsing, the service presets and the least-privilege IAM policy (no server, no boto3)."""

from __future__ import annotations

import json

import pytest

from safekeep.storage.errors import InvalidLocation
from safekeep.storage.providers.s3_policy import iam_policy, policy_json
from safekeep.storage.providers.s3_presets import PRESETS, guess_region, location_for, parse_address


def parse(text: str):  # type: ignore[no-untyped-def]
    assert text.startswith("s3:")
    return parse_address(text, text[3:])


@pytest.mark.parametrize(
    ("text", "endpoint", "bucket", "prefix"),
    [
        ("s3:https://host.example:9000/bkt/a/b", "https://host.example:9000", "bkt", "a/b"),
        ("s3:host.example/bkt/prefix", "https://host.example", "bkt", "prefix"),
        ("s3:s3.amazonaws.com/my-bucket/restic", "https://s3.amazonaws.com", "my-bucket", "restic"),
        ("s3:http://127.0.0.1:9000/bucket", "http://127.0.0.1:9000", "bucket", ""),
        ("s3:https://host.example/bkt/", "https://host.example", "bkt", ""),
    ],
)
def test_parse_address(text: str, endpoint: str, bucket: str, prefix: str) -> None:
    a = parse(text)
    assert (a.endpoint, a.bucket, a.prefix) == (endpoint, bucket, prefix)


@pytest.mark.parametrize(
    "text",
    [
        "s3:",
        "s3:host.example",
        "s3:https://host.example/",
        "s3:ftp://host/bkt",
        "s3:host:99999/bkt",
        "s3:https://user@host/bkt",
        "s3:host/b/../x",
    ],
)
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(InvalidLocation) as info:
        parse(text)
    assert str(info.value)


@pytest.mark.parametrize("key", sorted(PRESETS))
def test_every_preset_yields_a_parseable_location(key: str) -> None:
    p = PRESETS[key]
    region = p.regions[-1] if p.regions else ""
    text = location_for(
        key, region, "my-bucket", "office/backup", account="acct123", endpoint="nas.local:9000"
    )
    a = parse(text)
    assert a.bucket == "my-bucket"
    assert a.prefix == "office/backup"
    assert a.secure
    assert p.notes
    if not p.needs_endpoint:
        assert guess_region(a.host) == (region or p.default_region)


def test_preset_details() -> None:
    assert location_for("aws", "", "bkt", "p") == "s3:https://s3.amazonaws.com/bkt/p"
    assert location_for("aws", "eu-central-1", "bkt", "") == "s3:https://s3.eu-central-1.amazonaws.com/bkt"
    assert (
        location_for("minio", "", "bkt", "p", endpoint="http://10.0.0.5:9000")
        == "s3:http://10.0.0.5:9000/bkt/p"
    )
    assert guess_region("s3.eu-central-003.backblazeb2.com") == "eu-central-003"
    assert guess_region("ams3.digitaloceanspaces.com") == "ams3"
    assert guess_region("acct.r2.cloudflarestorage.com") == "auto"
    assert guess_region("127.0.0.1") is None
    with pytest.raises(InvalidLocation):
        location_for("r2", "", "bkt", "p")  # needs the account id
    with pytest.raises(InvalidLocation):
        location_for("minio", "", "bkt", "p")  # needs the server address


def test_policy_structure() -> None:
    doc = iam_policy("bkt", "office/repo", object_lock=True)
    assert doc["Version"] == "2012-10-17"
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    listing = by_sid["ListRepository"]
    assert listing["Action"] == ["s3:ListBucket"]
    assert listing["Resource"] == "arn:aws:s3:::bkt"
    assert "office/repo/*" in listing["Condition"]["StringLike"]["s3:prefix"]
    info = by_sid["BucketInformation"]
    assert set(info["Action"]) == {"s3:GetBucketLocation", "s3:GetBucketObjectLockConfiguration"}
    rw = by_sid["ReadWriteRepository"]
    assert rw["Resource"] == "arn:aws:s3:::bkt/office/repo/*"
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:PutObjectRetention"} <= set(rw["Action"])
    no_delete = iam_policy("bkt", "", allow_delete=False)
    rw2 = next(s for s in no_delete["Statement"] if s["Sid"] == "ReadWriteRepository")
    assert "s3:DeleteObject" not in rw2["Action"]
    assert "s3:PutObjectRetention" not in rw2["Action"]
    assert rw2["Resource"] == "arn:aws:s3:::bkt/*"
    assert "Condition" not in no_delete["Statement"][0]
    assert json.loads(policy_json("s3:https://s3.amazonaws.com/bkt/office/repo")) == iam_policy(
        "bkt", "office/repo"
    )
    with pytest.raises(InvalidLocation):
        policy_json("sftp:host:/x")
