"""Shared by the WebDAV contract targets: a fresh folder per backend, and a broken save.

A save is broken by making the provider's next ``MOVE`` (the step that publishes the uploaded
temporary file, or assembles Nextcloud's chunks) fail as if the connection had dropped: the
provider must clean up and leave nothing visible.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
import requests

from safekeep.storage.base import Backend
from safekeep.storage.registry import ProviderSettings, create_backend, parse_location
from tests.contract.conftest import ProviderUnderTest


def fail_next_move(backend: Backend) -> None:
    session: Any = backend._session  # type: ignore[attr-defined]
    real = session.request
    state = {"armed": True}

    def request(method: str, url: str, **kw: Any) -> Any:
        if method == "MOVE" and state["armed"]:
            state["armed"] = False
            raise requests.exceptions.ConnectionError("injected: connection dropped")
        return real(method, url, **kw)

    session.request = request


def make_webdav_target(
    name: str, request: pytest.FixtureRequest, fixture: str, options: dict[str, str] | None = None
) -> ProviderUnderTest:
    server = request.getfixturevalue(fixture)
    settings = ProviderSettings(env=server.env, options=options or {})
    run = uuid.uuid4().hex[:8]
    counter = itertools.count()

    def make() -> Backend:
        return create_backend(parse_location(server.location(f"{run}-{next(counter)}")), settings)

    return ProviderUnderTest(name, make, fail_next_move)
