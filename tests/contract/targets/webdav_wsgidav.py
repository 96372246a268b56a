"""The contract suite against the WebDAV provider on ``WsgiDAV (in-process, cheroot)``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.contract.conftest import ProviderUnderTest
from tests.contract.targets._webdav_common import make_webdav_target


def make_target(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ProviderUnderTest:
    return make_webdav_target("webdav_wsgidav", request, "wsgidav_server")
