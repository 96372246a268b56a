"""Plans from the command line: one plan, two destinations (a local folder and S3 on moto).

``safekeep plan add`` creates both repositories and keeps their secrets (the documented file
fallback here; the keyring itself is tested against a real Secret Service elsewhere),
``safekeep backup --plan`` runs both and ``safekeep history`` shows both results. Killing the
worker in the middle leaves both repositories passing ``restic check``, the history says
"interrupted", and the next run succeeds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.servers.s3 import MotoS3

PASSWORD = "correct horse battery staple"
TEST_KDF = "1024,8,1"


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


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture
def env(tmp_path: Path, moto_s3: MotoS3) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SAFEKEEP_", "RESTIC_", "AWS_"))}
    e.update(
        SAFEKEEP_HOME=str(tmp_path / "home"),
        SAFEKEEP_SECRETS="file",
        SAFEKEEP_PASSWORD=PASSWORD,
        SAFEKEEP_TEST_KDF=TEST_KDF,
        PYTHONUNBUFFERED="1",
        **moto_s3.env(),
    )
    return e


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "office"
    (src / "letters").mkdir(parents=True)
    for i in range(30):
        (src / "letters" / f"letter-{i:02d}.txt").write_text(f"Dear member {i},\n" * 50)
    (src / "ledger.bin").write_bytes(os.urandom(2_000_000))
    return src


def add_plan(env: dict[str, str], source: Path, usb: Path, s3_location: str) -> None:
    r = cli(
        "plan", "add", "Office", "--source", str(source),
        "--to", f"USB={usb}", "--to", f"Cloud={s3_location}", "--daily", "22:00", env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr


def restic_check(restic_bin: str, location: str, env: dict[str, str], tmp_path: Path) -> None:
    e = dict(env, RESTIC_PASSWORD=PASSWORD, RESTIC_CACHE_DIR=str(tmp_path / "restic-cache"))
    r = subprocess.run(
        [restic_bin, "-r", location, "check", "--read-data"],
        env=e,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no errors were found" in r.stdout


def snapshots(restic_bin: str, location: str, env: dict[str, str], tmp_path: Path) -> list[dict[str, Any]]:
    e = dict(env, RESTIC_PASSWORD=PASSWORD, RESTIC_CACHE_DIR=str(tmp_path / "restic-cache"))
    r = subprocess.run(
        [restic_bin, "-r", location, "snapshots", "--json"],
        env=e,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    result: list[dict[str, Any]] = json.loads(r.stdout)
    return result


def test_plan_with_two_destinations_backs_up_to_both(
    env: dict[str, str], source: Path, tmp_path: Path, moto_s3: MotoS3, restic_bin: str
) -> None:
    usb = tmp_path / "usb" / "backup"
    s3_location = moto_s3.location(moto_s3.plain_bucket)
    add_plan(env, source, usb, s3_location)

    r = cli("plan", "list", env=env)
    assert r.returncode == 0 and "Office" in r.stdout and "every day at 22:00" in r.stdout

    r = cli("backup", "--plan", "Office", env=env)
    assert r.returncode == 0, r.stderr
    assert "USB: success" in r.stdout and "Cloud: success" in r.stdout

    for location in (str(usb), s3_location):
        snaps = snapshots(restic_bin, location, env, tmp_path)
        assert len(snaps) == 1
        assert snaps[0]["paths"] == [str(source)]
        assert any(t.startswith("plan:") for t in snaps[0]["tags"])
        restic_check(restic_bin, location, env, tmp_path)

    r = cli("--json", "history", env=env)
    runs = [m for m in json_lines(r.stdout) if m["message_type"] == "run"]
    assert len(runs) == 1
    assert runs[0]["outcome"] == "success" and runs[0]["reason"] == "manual"
    assert sorted(res["outcome"] for res in runs[0]["results"]) == ["success", "success"]
    assert all(res["snapshot_id"] for res in runs[0]["results"])
    # the audit log recorded the plan, both destinations and both backups
    r = cli("audit", "verify", env=env)
    assert r.returncode == 0, r.stdout + r.stderr


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(entry.name))
    return out


def test_killed_worker_leaves_valid_repositories_and_the_next_run_succeeds(
    env: dict[str, str], tmp_path: Path, moto_s3: MotoS3, restic_bin: str
) -> None:
    big = tmp_path / "big"
    big.mkdir()
    for i in range(12):  # enough work that the worker is still busy when it is killed
        (big / f"data-{i}.bin").write_bytes(os.urandom(8_000_000))
    usb = tmp_path / "usb" / "backup"
    s3_location = moto_s3.location(moto_s3.plain_bucket)
    add_plan(env, big, usb, s3_location)

    proc = subprocess.Popen(
        [sys.executable, "-m", "safekeep", "--json", "backup", "--plan", "Office"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    killed = False
    for line in proc.stdout:  # wait until the first destination's worker reports progress
        msg = json.loads(line)
        if msg.get("message_type") == "progress" and msg.get("bytes_done", 0) > 0 and not killed:
            workers = _children(proc.pid)
            assert workers, "the backup should run in a worker process"
            for w in workers:
                os.kill(w, signal.SIGKILL)
            killed = True
    proc.wait(120)
    assert killed
    assert proc.returncode == 1

    r = cli("--json", "history", env=env)
    runs = [m for m in json_lines(r.stdout) if m["message_type"] == "run"]
    assert runs[0]["outcome"] == "interrupted"
    outcomes = {res["outcome"] for res in runs[0]["results"]}
    assert "interrupted" in outcomes
    r = cli("history", env=env)
    assert "interrupted" in r.stdout

    for location in (str(usb), s3_location):
        restic_check(restic_bin, location, env, tmp_path)

    r = cli("backup", "--plan", "Office", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    for location in (str(usb), s3_location):
        assert len(snapshots(restic_bin, location, env, tmp_path)) >= 1
        restic_check(restic_bin, location, env, tmp_path)
    runs = [m for m in json_lines(cli("--json", "history", env=env).stdout) if m["message_type"] == "run"]
    assert [r["outcome"] for r in runs] == ["success", "interrupted"]
