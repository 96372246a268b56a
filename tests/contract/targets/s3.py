"""The contract suite against the ``s3`` provider on moto's S3 server (``tests/servers/s3.py``).

Each backend gets a fresh prefix in the shared plain bucket. The multipart threshold is lowered
to 6 MiB (parts of 5 MiB) so the suite's 20 MiB files go through the multipart path. A save is
broken by a botocore event hook that fails the next upload request with a dropped connection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from safekeep.storage.base import Backend
from safekeep.storage.registry import ProviderSettings, create_backend, parse_location
from tests.contract.conftest import ProviderUnderTest

OPTIONS = {"s3.multipart-threshold": "6MiB", "s3.part-size": "5MiB"}


def fail_next_upload(backend: Backend) -> None:
    """Make the next PutObject or UploadPart request fail as if the connection dropped."""
    import botocore.exceptions

    client: Any = backend.client  # type: ignore[attr-defined]
    state = {"armed": True}

    def hook(request: Any, **_: Any) -> None:
        if state["armed"]:
            state["armed"] = False
            raise botocore.exceptions.ConnectionClosedError(endpoint_url=request.url)

    client.meta.events.register("before-send.s3.PutObject", hook)
    client.meta.events.register("before-send.s3.UploadPart", hook)


def make_target(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ProviderUnderTest:
    moto = request.getfixturevalue("moto_s3")
    settings = ProviderSettings(env=moto.env(), options=OPTIONS)

    def make() -> Backend:
        return create_backend(parse_location(moto.location(moto.plain_bucket)), settings)

    return ProviderUnderTest("s3", make, fail_next_upload)
