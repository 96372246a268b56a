"""``safekeep forget`` and ``safekeep prune`` as subprocesses: restic's flags and JSON form, dry
runs that change nothing, the audit log entries, and restic checking the result."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.test_cli import PASSWORD, cli_env, json_lines, run_cli

pytestmark = pytest.mark.restic


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path, SAFEKEEP_HOME=str(tmp_path / "home"), SAFEKEEP_SECRETS="file")


@pytest.fixture
def three_backups(tmp_path: Path, env: dict[str, str]) -> tuple[Path, list[str]]:
    """Three snapshots; the first holds a 3 MB file the later ones no longer have."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(random.Random(1).randbytes(3_000_000))
    assert run_cli("init", env=env).returncode == 0
    ids = []
    for n in range(3):
        (src / "note.txt").write_text(f"version {n}\n")
        r = run_cli("--json", "backup", str(src), env=env)
        assert r.returncode == 0, r.stderr
        ids.append(next(m["snapshot_id"] for m in json_lines(r.stdout) if m.get("message_type") == "summary"))
        (src / "big.bin").unlink(missing_ok=True)
    return src, ids


def _pack_bytes(repo: Path) -> int:
    return sum(p.stat().st_size for p in (repo / "data").rglob("*") if p.is_file())


def _audit_actions(home: Path) -> list[dict[str, Any]]:
    log = next(home.rglob("audit*.jsonl"))
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def test_forget_keep_last_with_prune(
    three_backups: tuple[Path, list[str]], env: dict[str, str], tmp_path: Path, restic: Any
) -> None:
    _, ids = three_backups
    repo = tmp_path / "repo"
    before = _pack_bytes(repo)

    dry = run_cli("--json", "forget", "--keep-last", "2", "--prune", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    groups = json.loads(dry.stdout.splitlines()[0])
    assert [s["id"] for s in groups[0]["keep"]] == ids[:0:-1]
    assert [s["id"] for s in groups[0]["remove"]] == [ids[0]]
    assert groups[0]["reasons"][0]["matches"] == ["last snapshot"]
    would = next(m for m in json_lines(dry.stdout)[1:] if m.get("message_type") == "prune")
    assert would["dry_run"] and would["bytes_freed"] >= 2_900_000
    assert _pack_bytes(repo) == before and len(restic.json(repo, "snapshots", password=PASSWORD)) == 3

    r = run_cli("forget", "--keep-last", "2", "--prune", env=env)
    assert r.returncode == 0, r.stderr
    assert "Applying policy: keep 2 latest snapshots" in r.stdout
    assert "remove 1 snapshots:" in r.stdout and ids[0][:8] in r.stdout
    assert "free " in r.stdout
    assert before - _pack_bytes(repo) >= 2_900_000
    assert [s["id"] for s in restic.json(repo, "snapshots", password=PASSWORD)] == ids[1:]
    restic(repo, "check", "--read-data", password=PASSWORD)

    entries = _audit_actions(Path(env["SAFEKEEP_HOME"]))
    forget_entry = next(e for e in entries if e["action"] == "forget")
    assert forget_entry["details"]["removed"] == [ids[0]]
    assert any(e["action"] == "prune" and e["details"]["bytes_freed"] >= 2_900_000 for e in entries)


def test_forget_by_id_then_prune_alone(
    three_backups: tuple[Path, list[str]], env: dict[str, str], tmp_path: Path, restic: Any
) -> None:
    _, ids = three_backups
    repo = tmp_path / "repo"
    r = run_cli("forget", ids[0][:10], env=env)
    assert r.returncode == 0, r.stderr
    assert "removed 1 snapshots" in r.stderr + r.stdout
    before = _pack_bytes(repo)
    dry = run_cli("prune", "--dry-run", env=env)
    assert dry.returncode == 0 and "would free" in dry.stdout, dry.stdout + dry.stderr
    assert _pack_bytes(repo) == before
    r = run_cli("prune", "--max-unused", "0%", env=env)
    assert r.returncode == 0, r.stderr
    assert before - _pack_bytes(repo) >= 2_900_000
    restic(repo, "check", "--read-data", password=PASSWORD)


def test_bad_input_is_refused_before_anything_changes(
    three_backups: tuple[Path, list[str]], env: dict[str, str], tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    before = sorted(p.name for p in (repo / "snapshots").iterdir())
    cases = [
        (("forget",), "nothing would be removed"),
        (("forget", "--keep-daily", "-3"), "keep-daily must be -1"),
        (("forget", "--keep-last", "1", "--group-by", "colour"), "Cannot group by colour"),
        (("prune", "--max-unused", "lots"), "is not a percentage"),
    ]
    for args, message in cases:
        r = run_cli(*args, env=env)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert message in r.stderr, r.stderr
    assert sorted(p.name for p in (repo / "snapshots").iterdir()) == before
