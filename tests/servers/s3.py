"""moto's S3 server on 127.0.0.1 (``ThreadedMotoServer``, a free port), for the ``s3`` provider.

The session fixture :func:`moto_s3` yields a :class:`MotoS3` with the endpoint, test keys and two
buckets: ``plain`` (versioning off) and ``locked`` (Object Lock enabled at creation, which also
turns on versioning). moto accepts any keys until IAM checks are switched on; :meth:`MotoS3.auth`
switches them on for a block (through moto's ``/moto-api/reset-auth``) so wrong keys and missing
permissions are refused as on AWS. Tests that use ``auth`` must not run concurrently with others
against the same server (pytest runs them one after another).
"""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.servers import require

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"


@dataclass
class MotoS3:
    endpoint: str
    port: int
    plain_bucket: str
    locked_bucket: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    def env(self, **extra: str) -> dict[str, str]:
        """Credentials in restic's variable names, for ``ProviderSettings(env=...)``."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            **extra,
        }

    def client(self, access_key: str | None = None, secret_key: str | None = None) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
        )

    def location(self, bucket: str, prefix: str = "") -> str:
        """A fresh ``s3:http://127.0.0.1:PORT/bucket/prefix`` (a unique prefix when none given)."""
        prefix = prefix or f"repo-{uuid.uuid4().hex[:12]}"
        return f"s3:{self.endpoint}/{bucket}/{prefix}"

    def new_bucket(self, *, object_lock: bool = False) -> str:
        name = f"b-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        return name

    def _reset_auth(self, count: str) -> None:
        req = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=count.encode(),
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            json.loads(resp.read())

    @contextlib.contextmanager
    def auth(self) -> Iterator[Any]:
        """IAM checks on (signatures and policies); yields an IAM client made before that."""
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=REGION,
        )
        try:
            yield iam
        finally:
            self._reset_auth("inf")

    def enable_auth(self) -> None:
        self._reset_auth("0")


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - depends on the install
        require(False, f"moto[server] is not installed: {exc}")
        raise
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    try:
        server.start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        require(False, f"moto's S3 server did not start: {exc}")
        raise
    try:
        host, port = server.get_host_and_port()
        s3 = MotoS3(endpoint=f"http://{host}:{port}", port=port, plain_bucket="", locked_bucket="")
        s3.plain_bucket = s3.new_bucket()
        s3.locked_bucket = s3.new_bucket(object_lock=True)
        yield s3
    finally:
        server.stop()
