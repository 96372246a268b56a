"""The local fake of Google Cloud Storage's JSON API (``tests/fakes/gcs_fake.py``) on 127.0.0.1.

GCS itself cannot run here, so the ``gs`` provider is tested against this fake. The session
fixture :func:`gcs_fake` yields the running :class:`~tests.fakes.gcs_fake.GcsFake` with a bucket
``safekeep-test`` and a service-account key file the fake accepts (``fake.key_file``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.gcs_fake import GcsFake
from tests.servers import require

BUCKET = "safekeep-test"


@pytest.fixture(scope="session")
def gcs_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsFake]:
    fake = GcsFake()
    try:
        fake.start()
    except OSError as exc:  # pragma: no cover - depends on the machine
        require(False, f"the GCS fake did not start: {exc}")
        raise
    fake.add_bucket(BUCKET)
    fake.key_file = fake.service_account_file(tmp_path_factory.mktemp("gcs") / "key.json")
    try:
        yield fake
    finally:
        fake.stop()
