"""The contract suite against the Azure provider on Azurite (``tests/servers/azurite.py``).

Each backend gets a fresh prefix in one container per test. The block size is lowered to 4 MiB so
the suite's 5 and 20 MiB files go through block uploads (stage_block + commit_block_list). A save
is broken by making the SDK's next block commit or single upload fail as if the connection had
dropped.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from safekeep.storage.base import Backend
from safekeep.storage.registry import ProviderSettings, create_backend, parse_location
from tests.contract.conftest import ProviderUnderTest


def fail_next_commit(backend: Backend) -> None:
    from azure.core.exceptions import ServiceRequestError

    state = {"armed": True}
    container: Any = backend._container  # type: ignore[attr-defined]
    real = container.get_blob_client

    def get_blob_client(name: str) -> Any:
        client = real(name)
        if state["armed"]:
            real_commit, real_upload = client.commit_block_list, client.upload_blob

            def fail(*a: Any, **kw: Any) -> Any:
                if state["armed"]:
                    state["armed"] = False
                    raise ServiceRequestError("injected: connection dropped")
                return real_commit(*a, **kw)

            def fail_upload(*a: Any, **kw: Any) -> Any:
                if state["armed"]:
                    state["armed"] = False
                    raise ServiceRequestError("injected: connection dropped")
                return real_upload(*a, **kw)

            client.commit_block_list = fail
            client.upload_blob = fail_upload
        return client

    container.get_blob_client = get_blob_client


def make_target(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ProviderUnderTest:
    azurite = request.getfixturevalue("azurite")
    container = azurite.new_container()
    settings = ProviderSettings(
        env=azurite.env(), options=azurite.options(**{"azure.block-size": str(4 << 20)})
    )
    counter = itertools.count()

    def make() -> Backend:
        return create_backend(parse_location(f"azure:{container}:/repo{next(counter)}"), settings)

    return ProviderUnderTest("azure", make, fail_next_commit)
