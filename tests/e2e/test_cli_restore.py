"""``safekeep restore`` with things in the way: ``--conflict``, ``--into``, ``--no-verify``, and
the summary of what went where (``-v`` lists each item), run as a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.e2e.test_cli import cli_env, json_lines, run_cli


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path, SAFEKEEP_HOME=str(tmp_path / "home"))


@pytest.fixture
def source(tmp_path: Path, env: dict[str, str]) -> Path:
    """A folder, backed up once into the repository of ``env``."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "hello.txt").write_text("hello from the backup\n")
    (src / "sub" / "notes.md").write_text("# notes\n" * 100)
    for args in (("init",), ("backup", str(src))):
        r = run_cli(*args, env=env)
        assert r.returncode == 0, r.stderr
    return src


def _in_the_way(target: Path, source: Path) -> Path:
    base = target / source.relative_to("/")
    (base / "sub").mkdir(parents=True)
    (base / "hello.txt").write_text("mine\n")
    return base


def test_default_overwrites_like_restic_and_says_so(
    env: dict[str, str], source: Path, tmp_path: Path
) -> None:
    base = _in_the_way(tmp_path / "t", source)
    r = run_cli("restore", "latest", "--target", str(tmp_path / "t"), env=env)
    assert r.returncode == 0, r.stderr
    assert (base / "hello.txt").read_text() == "hello from the backup\n"
    assert "Already there: 1 overwritten, 0 kept both, 0 skipped; 2 files verified" in r.stdout


def test_keep_both_lists_each_item_with_verbose(env: dict[str, str], source: Path, tmp_path: Path) -> None:
    base = _in_the_way(tmp_path / "t", source)
    r = run_cli(
        "--json", "-v", "restore", "latest", "-t", str(tmp_path / "t"), "--conflict", "keep-both", env=env
    )
    assert r.returncode == 0, r.stderr
    msgs = json_lines(r.stdout)
    items = {m["item"]: m for m in msgs if m["message_type"] == "verbose_status"}
    kept = items[f"{source}/hello.txt"]
    assert kept["action"] == "kept-both" and kept["verified"] is True
    assert Path(kept["target"]).parent == base and Path(kept["target"]).name.startswith("hello (restored ")
    assert Path(kept["target"]).read_text() == "hello from the backup\n"
    assert (base / "hello.txt").read_text() == "mine\n"
    assert items[f"{source}/sub/notes.md"]["action"] == "restored"
    summary = msgs[-1]
    assert summary["message_type"] == "summary"
    assert (summary["files_kept_both"], summary["files_skipped"], summary["files_verified"]) == (1, 0, 2)

    text = run_cli("-v", "restore", "latest", "-t", str(tmp_path / "t"), "--conflict", "skip", env=env)
    assert text.returncode == 0, text.stderr
    assert f"skipped     {source}/hello.txt -> {base / 'hello.txt'}" in text.stdout
    assert "0 overwritten, 0 kept both, 2 skipped" in text.stdout
    assert (base / "hello.txt").read_text() == "mine\n"


def test_into_restores_by_name_and_no_verify(env: dict[str, str], source: Path, tmp_path: Path) -> None:
    target = tmp_path / "usb"
    r = run_cli(
        "--json",
        "restore",
        "latest",
        "-t",
        str(target),
        "--include",
        f"{source}/sub",
        "--into",
        "--no-verify",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert (target / "sub" / "notes.md").read_text() == "# notes\n" * 100
    assert sorted(p.name for p in target.iterdir()) == ["sub"]
    summary = json_lines(r.stdout)[-1]
    assert summary["files_restored"] == 1 and summary["files_verified"] == 0


def test_unknown_policy_is_a_usage_error(env: dict[str, str], source: Path, tmp_path: Path) -> None:
    r = run_cli("restore", "latest", "-t", str(tmp_path / "t"), "--conflict", "ask", env=env)
    assert r.returncode == 2
    assert "--conflict" in r.stderr
