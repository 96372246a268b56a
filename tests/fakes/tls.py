"""A throw-away certificate authority for the local TLS fakes of cloud providers.

The fakes of Google Drive, OneDrive and Dropbox serve HTTPS on 127.0.0.1 with a certificate from
this CA, and the SDKs are made to trust it through the variables they read
(``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` for requests, ``SSL_CERT_FILE`` for the standard
library; these machines export the first two globally, so they are always overridden here).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class TestCA:
    """The CA's bundle file and a server-side SSL context for ``localhost``/``127.0.0.1``."""

    bundle: Path
    server_context: ssl.SSLContext

    __test__ = False  # not a test class


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("test-ca")
    bundle = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return TestCA(bundle, ctx)


@pytest.fixture
def trust_test_ca(test_ca: TestCA, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestCA]:
    """Make requests, httplib2 and urllib trust the test CA for the length of one test."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(name, str(test_ca.bundle))
    yield test_ca
