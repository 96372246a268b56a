"""The contract suite against the WebDAV provider in Nextcloud mode, on the Nextcloud fake.

The fake (``tests/fakes/nextcloud_fake.py``) is WsgiDAV plus Nextcloud's chunked upload v2 and
paginated PROPFIND. The chunking threshold is lowered to 1 MiB (256 KiB chunks) and the page size
to 50, so the suite's large files go through chunked upload and its 300-pack listing is paged.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.contract.conftest import ProviderUnderTest
from tests.contract.targets._webdav_common import make_webdav_target

OPTIONS = {
    "webdav.chunk-threshold": str(1 << 20),
    "webdav.chunk-size": str(256 << 10),
    "webdav.page-size": "50",
}


def make_target(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ProviderUnderTest:
    return make_webdav_target("webdav_nextcloud", request, "nextcloud_server", OPTIONS)
