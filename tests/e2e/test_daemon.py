"""``safekeep daemon`` as a real process: runs on ``safekeep trigger``, on file changes and on schedule.

One daemon, one plan with a one-minute schedule and a file-change trigger (1 s of quiet, 5 s at
most). The test asks for a run from "another program", then writes a burst of 1,000 files (one
run must back up all of them), then waits for the schedule; every run's reason must be in
``safekeep history``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

PASSWORD = "correct horse battery staple"


def cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "safekeep", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def runs(env: dict[str, str]) -> list[dict[str, Any]]:
    r = cli("--json", "history", "--limit", "100", env=env)
    assert r.returncode == 0, r.stderr
    return [m for m in map(json.loads, r.stdout.splitlines()) if m.get("message_type") == "run"]


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SAFEKEEP_", "RESTIC_"))}
    e.update(
        SAFEKEEP_HOME=str(tmp_path / "home"),
        SAFEKEEP_SECRETS="file",
        SAFEKEEP_PASSWORD=PASSWORD,
        SAFEKEEP_TEST_KDF="1024,8,1",
        PYTHONUNBUFFERED="1",
    )
    return e


@pytest.fixture
def daemon(env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    log = open(tmp_path / "daemon.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "safekeep", "-v", "daemon"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    host_file = Path(env["SAFEKEEP_HOME"]) / "data" / "host.json"
    try:
        wait_for("the daemon to listen", host_file.exists, 30)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        finally:
            log.close()
    assert proc.returncode == 0, (tmp_path / "daemon.log").read_text()[-3000:]


def test_daemon_runs_on_trigger_on_change_and_on_schedule(
    env: dict[str, str], tmp_path: Path, restic_bin: str, daemon: subprocess.Popen[str]
) -> None:
    source = tmp_path / "records"
    source.mkdir()
    (source / "first.txt").write_text("the first record\n")
    repo = tmp_path / "usb" / "backup"
    r = cli(
        "plan", "add", "Records", "--source", str(source), "--to", f"USB={repo}",
        "--every", "1", "--on-change", "--quiet-seconds", "1", "--max-delay-seconds", "5", env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr  # the daemon is told to read the plans again

    # another program asks for a run
    r = cli("trigger", "--plan", "Records", "--reason", "before the software update", "--wait", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "queued" in r.stdout  # the daemon ran it, not this command
    first = runs(env)
    assert [(x["reason"], x["reason_text"], x["outcome"]) for x in first] == [
        ("external", "before the software update", "success")
    ]

    # a burst of 1,000 new files: one run, which holds all of them
    burst = source / "batch"
    burst.mkdir()
    for i in range(1000):
        (burst / f"record-{i:04d}.txt").write_text(f"record {i}\n")

    def change_runs() -> list[dict[str, Any]]:
        return [x for x in runs(env) if x["reason"] == "change" and x["finished"]]

    wait_for("a run for the changed files", lambda: bool(change_runs()), 60)
    time.sleep(4)  # longer than the quiet period: a second run would have started by now
    changes = change_runs()
    assert len(changes) == 1, changes
    assert changes[0]["outcome"] == "success"
    snap = changes[0]["results"][0]["snapshot_id"]
    e = dict(env, RESTIC_PASSWORD=PASSWORD, RESTIC_CACHE_DIR=str(tmp_path / "rc"))
    ls = subprocess.run(
        [restic_bin, "-r", str(repo), "ls", "--json", snap], env=e, capture_output=True, text=True, check=True
    )
    names = {json.loads(line).get("name") for line in ls.stdout.splitlines()[1:]}
    assert {f"record-{i:04d}.txt" for i in range(1000)} <= names

    # the schedule: every minute
    wait_for(
        "a scheduled run",
        lambda: any(x["reason"] in ("schedule", "catch-up") and x["finished"] for x in runs(env)),
        150,
    )
    reasons = {x["reason"] for x in runs(env)}
    assert {"external", "change"} <= reasons
    assert "schedule" in reasons or "catch-up" in reasons
    r = cli("history", env=env)
    assert "before the software update" in r.stdout and "change" in r.stdout
