"""Signing in from the command line on a machine without a desktop, against the Google Drive fake.

``safekeep plan add ... --to gdrive:Office`` prints the consent address; "the person" (a browser
on another computer, played by the fake's consent browser) signs in and pastes the address the
browser ended on back into the terminal. The tokens go to the destination's secrets, and a
backup to Drive then runs with them; ``safekeep logout`` revokes and forgets them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from tests.fakes.gdrive_fake import ConsentBrowser, GDriveFake
from tests.fakes.tls import TestCA

from safekeep.common.cancel import NEVER

PASSWORD = "correct horse battery staple"


@pytest.fixture
def drive(trust_test_ca: TestCA) -> Iterator[GDriveFake]:
    with GDriveFake(trust_test_ca.server_context) as fake:
        yield fake


def test_headless_sign_in_backup_and_sign_out(
    drive: GDriveFake, trust_test_ca: TestCA, tmp_path: Path
) -> None:
    source = tmp_path / "office"
    source.mkdir()
    (source / "minutes.txt").write_text("minutes of the meeting\n" * 100)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAFEKEEP_", "RESTIC_", "DISPLAY"))}
    env.update(
        SAFEKEEP_HOME=str(tmp_path / "home"),
        SAFEKEEP_SECRETS="file",
        SAFEKEEP_PASSWORD=PASSWORD,
        SAFEKEEP_TEST_KDF="1024,8,1",
        REQUESTS_CA_BUNDLE=str(trust_test_ca.bundle),
        CURL_CA_BUNDLE=str(trust_test_ca.bundle),
        SSL_CERT_FILE=str(trust_test_ca.bundle),
        PYTHONUNBUFFERED="1",
    )
    options = [a for k, v in drive.options().items() for a in ("-o", f"{k}={v}")]
    cmd = [sys.executable, "-m", "safekeep", "plan", "add", "Office", "--source", str(source)]
    cmd += ["--to", "Drive=gdrive:Safekeep/office", *options]
    proc = subprocess.Popen(
        cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None and proc.stdin is not None
    url = ""
    for line in proc.stderr:  # the address is printed for the person to open elsewhere
        m = re.search(r"(https://127\.0\.0\.1:\d+/\S+)", line)
        if m:
            url = m.group(1)
            break
    assert url, "the consent address was not printed"
    person = ConsentBrowser(paste=True)  # a browser on another computer: the redirect cannot arrive
    person.open(url)
    pasted = person.redirected(NEVER)
    assert pasted is not None, person.error
    assert pasted.startswith("http://127.0.0.1")
    # stdin is not a terminal here, so the command waits for the loopback; deliver the redirect as
    # the person's browser would have, had it been on this machine
    requests.get(pasted, timeout=30)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert "plan Office saved" in out

    r = subprocess.run(
        [sys.executable, "-m", "safekeep", "backup", "--plan", "Office"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Drive: success" in r.stdout
    assert drive.find("Safekeep", "office", "config", folder=False)  # the repository is in Drive

    r = subprocess.run(
        [sys.executable, "-m", "safekeep", "logout", "Drive"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "safekeep", "backup", "--plan", "Office"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 1
    assert "not signed in" in r.stdout.lower() + r.stderr.lower()
