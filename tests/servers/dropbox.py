"""The local fake of Dropbox (``tests/fakes/dropbox_fake.py``) on 127.0.0.1, over TLS.

Dropbox itself cannot run here, so the ``dropbox`` provider and its sign-in are tested against
this fake. The fixture :func:`dropbox_fake` yields the session's running
:class:`~tests.fakes.dropbox_fake.DropboxFake` with no faults armed, makes the SDK trust the
test CA (``trust_test_ca``) and fails any connection to another machine (``loopback_only``).
Use ``fake.options()`` as provider options and ``fake.browser()`` as the sign-in browser.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.dropbox_fake import DropboxFake, shared_fake


@pytest.fixture
def dropbox_fake(request: pytest.FixtureRequest, trust_test_ca: Any, loopback_only: None) -> DropboxFake:
    fake = shared_fake(request)
    fake.reset_faults()
    return fake
