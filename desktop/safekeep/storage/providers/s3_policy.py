"""A least-privilege IAM policy for one S3 repository, for the user to paste into their console.

:func:`iam_policy` grants exactly what the ``s3`` provider does, on one bucket and one folder
(prefix) in it:

- ``s3:ListBucket`` on the bucket, limited by an ``s3:prefix`` condition to the repository folder;
- ``s3:GetBucketLocation`` and ``s3:GetBucketObjectLockConfiguration`` on the bucket (region and
  Object Lock checks);
- ``s3:GetObject``, ``s3:PutObject``, ``s3:AbortMultipartUpload`` and (unless
  ``allow_delete=False``) ``s3:DeleteObject`` on ``bucket/prefix/*``;
- with ``object_lock=True`` also ``s3:PutObjectRetention`` (needed to upload with a retention
  date) and ``s3:GetObjectRetention`` / ``s3:GetObjectLegalHold`` (to tell a locked file apart).

A key without delete permission still backs up; ``forget``/``prune`` then cannot remove old data
(the storage probe reports that, it does not fail). :func:`policy_json` prints the policy for an
``s3:`` location string (the ``safekeep storage policy`` command).
"""

from __future__ import annotations

import json
from typing import Any

from safekeep.storage.errors import InvalidLocation
from safekeep.storage.providers.s3_presets import parse_address

POLICY_VERSION = "2012-10-17"


def iam_policy(
    bucket: str, prefix: str, *, allow_delete: bool = True, object_lock: bool = False
) -> dict[str, Any]:
    """The policy document (a JSON-able dict) for the repository at ``bucket``/``prefix``."""
    prefix = prefix.strip("/")
    bucket_arn = f"arn:aws:s3:::{bucket}"
    objects_arn = f"{bucket_arn}/{prefix}/*" if prefix else f"{bucket_arn}/*"
    list_stmt: dict[str, Any] = {
        "Sid": "ListRepository",
        "Effect": "Allow",
        "Action": ["s3:ListBucket"],
        "Resource": bucket_arn,
    }
    if prefix:
        list_stmt["Condition"] = {"StringLike": {"s3:prefix": [prefix, f"{prefix}/", f"{prefix}/*"]}}
    object_actions = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
    if allow_delete:
        object_actions.append("s3:DeleteObject")
    if object_lock:
        object_actions += ["s3:PutObjectRetention", "s3:GetObjectRetention", "s3:GetObjectLegalHold"]
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            list_stmt,
            {
                "Sid": "BucketInformation",
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation", "s3:GetBucketObjectLockConfiguration"],
                "Resource": bucket_arn,
            },
            {
                "Sid": "ReadWriteRepository",
                "Effect": "Allow",
                "Action": object_actions,
                "Resource": objects_arn,
            },
        ],
    }


def policy_json(location: str, *, allow_delete: bool = True, object_lock: bool = False) -> str:
    """The policy for an ``s3:`` location string, as indented JSON ready to paste."""
    raw = location.strip()
    if not raw.lower().startswith("s3:"):
        raise InvalidLocation(
            f"{raw!r} is not an S3 location.", hint="Write it as s3:https://host/bucket/folder."
        )
    address = parse_address(raw, raw[3:])
    doc = iam_policy(address.bucket, address.prefix, allow_delete=allow_delete, object_lock=object_lock)
    return json.dumps(doc, indent=2)
