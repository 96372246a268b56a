"""End-to-end tests of the ``safekeep`` command line, run as subprocesses (``python -m safekeep``).

Repositories are created with cheap scrypt parameters (``SAFEKEEP_TEST_KDF``, honoured only by
``init`` and ``key add``/``passwd``, for tests only) so each test stays fast.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from safekeep.core.format.config import Config
from safekeep.core.format.keys import KDFParams
from safekeep.core.locks import Lock
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.storage.base import Handle
from safekeep.storage.providers.local import LocalBackend

PASSWORD = "correct horse battery staple"
TEST_KDF = "1024,8,1"


def run_cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "safekeep", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This environment without Safekeep's and restic's variables, plus the repository
    ``tmp_path/repo``, its password, the cheap test scrypt parameters and ``extra``."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SAFEKEEP_", "RESTIC_"))}
    e.update(
        SAFEKEEP_REPOSITORY=str(tmp_path / "repo"),
        SAFEKEEP_PASSWORD=PASSWORD,
        SAFEKEEP_TEST_KDF=TEST_KDF,
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return e


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "hello.txt").write_text("hello, world\n")
    (src / "empty").write_bytes(b"")
    (src / "sub" / "random.bin").write_bytes(os.urandom(300_000))
    (src / "sub" / "deeper" / "notes.md").write_text("# notes\n" * 100)
    (src / "link").symlink_to("hello.txt")
    return src


@pytest.fixture
def repo(env: dict[str, str]) -> Path:
    r = run_cli("init", env=env)
    assert r.returncode == 0, r.stderr
    return Path(env["SAFEKEEP_REPOSITORY"])


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def assert_same_tree(a: Path, b: Path) -> None:
    names_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*"))
    names_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*"))
    assert names_a == names_b
    for rel in names_a:
        pa, pb = a / rel, b / rel
        if pa.is_symlink():
            assert pb.is_symlink() and os.readlink(pa) == os.readlink(pb)
        elif pa.is_file():
            assert pa.read_bytes() == pb.read_bytes(), rel


def test_no_arguments_without_a_display_prints_help(env: dict[str, str]) -> None:
    env = {k: v for k, v in env.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    r = run_cli(env=env)
    assert r.returncode == 0
    assert "usage: safekeep" in r.stdout
    assert "exit status" in r.stdout


def test_usage_error_exit_2(env: dict[str, str]) -> None:
    r = run_cli("frobnicate", env=env)
    assert r.returncode == 2
    assert r.stderr.startswith("safekeep: ")
    assert "Traceback" not in r.stderr


def test_version(env: dict[str, str]) -> None:
    r = run_cli("version", env=env)
    assert r.returncode == 0
    assert r.stdout.startswith("safekeep ")


def test_init_prints_id_and_reminder(env: dict[str, str], tmp_path: Path) -> None:
    r = run_cli("init", env=env)
    assert r.returncode == 0, r.stderr
    assert "created repository" in r.stdout
    assert "password" in r.stdout and "irrecoverably lost" in r.stdout
    assert (tmp_path / "repo" / "config").exists()
    again = run_cli("init", env=env)
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_init_json_and_version_1(env: dict[str, str], tmp_path: Path) -> None:
    r = run_cli("-r", str(tmp_path / "v1"), "--json", "init", "--repo-version", "1", env=env)
    assert r.returncode == 0, r.stderr
    msg = json_lines(r.stdout)[-1]
    assert msg["message_type"] == "initialized" and len(msg["id"]) == 64
    cat = run_cli("-r", str(tmp_path / "v1"), "cat", "config", env=env)
    assert json.loads(cat.stdout)["version"] == 1


def test_roundtrip_backup_snapshots_ls_restore(
    env: dict[str, str], repo: Path, source: Path, tmp_path: Path
) -> None:
    r = run_cli("backup", str(source), "--tag", "plan:office", env=env)
    assert r.returncode == 0, r.stderr
    assert "snapshot" in r.stdout and "saved" in r.stdout

    # a second backup uses the first as parent and reads nothing again
    r2 = run_cli("--json", "backup", str(source), env=env)
    assert r2.returncode == 0, r2.stderr
    summary = json_lines(r2.stdout)[-1]
    assert summary["message_type"] == "summary"
    assert summary["files_unmodified"] == 4 and summary["files_new"] == 0
    assert summary["parent"]

    snaps = run_cli("snapshots", env=env)
    assert snaps.returncode == 0
    assert "2 snapshots" in snaps.stdout and "plan:office" in snaps.stdout
    listed = json.loads(run_cli("--json", "snapshots", "--tag", "plan:office", env=env).stdout)
    assert len(listed) == 1 and listed[0]["paths"] == [str(source)]
    snap_id = listed[0]["id"]
    assert listed[0]["short_id"] == snap_id[:8]

    ls = run_cli("ls", snap_id[:10], env=env)
    assert ls.returncode == 0, ls.stderr
    lines = ls.stdout.splitlines()
    for rel in ("hello.txt", "sub/random.bin", "sub/deeper/notes.md", "link"):
        assert f"{source}/{rel}" in lines
    long = run_cli("ls", "-l", "latest", str(source), env=env)
    assert any(ln.startswith("-rw") and ln.endswith("/hello.txt") for ln in long.stdout.splitlines())
    assert any(ln.endswith("link -> hello.txt") for ln in long.stdout.splitlines())
    assert not any("notes.md" in ln for ln in long.stdout.splitlines())  # not recursive with PATH
    nodes = json_lines(run_cli("--json", "ls", "latest", env=env).stdout)
    assert nodes[0]["message_type"] == "snapshot"
    assert {n["path"] for n in nodes[1:]} >= {f"{source}/sub/random.bin"}

    target = tmp_path / "restored"
    rs = run_cli("restore", "latest", "--target", str(target), env=env)
    assert rs.returncode == 0, rs.stderr
    assert_same_tree(source, target / source.relative_to("/"))

    partial = tmp_path / "partial"
    rp = run_cli(
        "--json", "restore", snap_id, "--target", str(partial), "--include", f"{source}/sub/deeper", env=env
    )
    assert rp.returncode == 0, rp.stderr
    assert json_lines(rp.stdout)[-1]["message_type"] == "summary"
    restored = partial / source.relative_to("/")
    assert (restored / "sub" / "deeper" / "notes.md").read_text() == "# notes\n" * 100
    assert not (restored / "hello.txt").exists()


def test_backup_json_lines_end_with_summary(env: dict[str, str], repo: Path, source: Path) -> None:
    r = run_cli("--json", "backup", str(source), env=env)
    assert r.returncode == 0, r.stderr
    msgs = json_lines(r.stdout)  # every line parses
    assert msgs[-1]["message_type"] == "summary"
    assert {m["message_type"] for m in msgs} <= {"status", "error", "summary"}
    s = msgs[-1]
    assert s["files_new"] == 4 and s["error_count"] == 0 and len(s["snapshot_id"]) == 64
    assert s["total_bytes_processed"] > 300_000


def test_missing_path_exit_3_and_error_counted(env: dict[str, str], repo: Path, source: Path) -> None:
    missing = source.parent / "does-not-exist"
    r = run_cli("--json", "backup", str(source), str(missing), env=env)
    assert r.returncode == 3, r.stderr
    msgs = json_lines(r.stdout)
    errors = [m for m in msgs if m["message_type"] == "error"]
    assert len(errors) == 1 and errors[0]["item"] == str(missing)
    assert msgs[-1]["message_type"] == "summary" and msgs[-1]["error_count"] == 1
    text = run_cli("backup", str(source), str(missing), env=env)
    assert text.returncode == 3
    assert str(missing) in text.stderr


def test_nothing_to_back_up_is_a_failure(env: dict[str, str], repo: Path, tmp_path: Path) -> None:
    r = run_cli("backup", str(tmp_path / "nope"), env=env)
    assert r.returncode == 1
    assert "could be found" in r.stderr
    assert "Traceback" not in r.stderr


def test_wrong_password_exit_12(env: dict[str, str], repo: Path) -> None:
    r = run_cli("snapshots", env={**env, "SAFEKEEP_PASSWORD": "wrong"})
    assert r.returncode == 12
    assert "Wrong password" in r.stderr
    assert "Traceback" not in r.stderr


def test_password_file_and_missing_password(env: dict[str, str], repo: Path, tmp_path: Path) -> None:
    pw = tmp_path / "pw.txt"
    pw.write_text(PASSWORD + "\n")
    no_pw = {k: v for k, v in env.items() if k != "SAFEKEEP_PASSWORD"}
    assert run_cli("--password-file", str(pw), "snapshots", env=no_pw).returncode == 0
    assert run_cli("snapshots", env={**no_pw, "SAFEKEEP_PASSWORD_FILE": str(pw)}).returncode == 0
    r = run_cli("snapshots", env=no_pw)  # stdin is not a terminal: no prompt
    assert r.returncode == 1
    assert "No repository password" in r.stderr and "SAFEKEEP_PASSWORD" in r.stderr


def test_restic_environment_fallbacks(env: dict[str, str], repo: Path) -> None:
    e = {k: v for k, v in env.items() if k not in ("SAFEKEEP_PASSWORD", "SAFEKEEP_REPOSITORY")}
    e.update(RESTIC_PASSWORD=PASSWORD, RESTIC_REPOSITORY=str(repo))
    assert run_cli("snapshots", env=e).returncode == 0


def test_no_repository_exit_10(env: dict[str, str], tmp_path: Path) -> None:
    r = run_cli("-r", str(tmp_path / "missing"), "snapshots", env=env)
    assert r.returncode == 10
    assert "There is no repository" in r.stderr


def test_folder_that_is_not_a_repository(env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "letter.txt").write_text("Dear ...")
    r = run_cli("-r", str(folder), "snapshots", env=env)
    assert r.returncode == 10
    assert f"There is no repository at {folder}" in r.stderr
    assert "Traceback" not in r.stderr
    # a folder with restic's layout but no config is named as damaged, not as missing
    (folder / "keys").mkdir()
    (folder / "keys" / ("ab" * 32)).write_text("{}")
    r2 = run_cli("-r", str(folder), "snapshots", env=env)
    assert r2.returncode == 1
    assert "is not a Safekeep/restic repository" in r2.stderr


def test_unknown_repository_version_exit_1(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "future"
    backend = LocalBackend(str(path))
    repo = Repository.init(backend, PASSWORD, options=RepositoryOptions(kdf=KDFParams(1024, 8, 1)))
    config = Config(99, repo.config.id, repo.config.chunker_polynomial)
    backend.remove(Handle.config())
    backend.save(Handle.config(), repo.key.seal(config.to_json()))
    repo.close()
    r = run_cli("-r", str(path), "snapshots", env=env)
    assert r.returncode == 1
    assert "version" in r.stderr and "99" in r.stderr
    assert "Traceback" not in r.stderr


def test_locked_repository_exit_11(env: dict[str, str], repo: Path, source: Path) -> None:
    opened = Repository.open(LocalBackend(str(repo)), PASSWORD)
    lock = Lock(opened, exclusive=True).acquire()
    try:
        r = run_cli("backup", str(source), env=env)
        assert r.returncode == 11, r.stderr
        assert socket.gethostname() in r.stderr
        assert str(os.getpid()) in r.stderr
        assert "unlock" in r.stderr  # the hint
        # --no-lock skips locking (reading is safe anyway)
        assert run_cli("--no-lock", "check", env=env).returncode == 0
        # a live lock is not stale: plain unlock keeps it
        assert "removed 0 locks" in run_cli("unlock", env=env).stdout
    finally:
        lock.release()
        opened.close()
    assert run_cli("backup", str(source), env=env).returncode == 0


def test_unlock_removes_stale_and_all(env: dict[str, str], repo: Path) -> None:
    opened = Repository.open(LocalBackend(str(repo)), PASSWORD)
    lock = Lock(opened, exclusive=False).acquire()
    try:
        r = run_cli("unlock", "--remove-all", env=env)
        assert r.returncode == 0
        assert "removed 1 locks" in r.stdout
        assert not list((repo / "locks").iterdir())
    finally:
        lock.release()
        opened.close()


def test_key_add_list_remove_passwd(env: dict[str, str], repo: Path, tmp_path: Path) -> None:
    env = {**env, "SAFEKEEP_HOME": str(tmp_path / "home"), "SAFEKEEP_SECRETS": "file"}  # its own audit log
    new_pw = tmp_path / "new.txt"
    new_pw.write_text("second password\n")
    r = run_cli("key", "add", "--new-password-file", str(new_pw), env=env)
    assert r.returncode == 0, r.stderr
    keys = json.loads(run_cli("--json", "key", "list", env=env).stdout)
    assert len(keys) == 2 and sum(k["current"] for k in keys) == 1
    second = next(k["id"] for k in keys if not k["current"])
    first = next(k["id"] for k in keys if k["current"])
    env2 = {**env, "SAFEKEEP_PASSWORD": "second password"}
    assert run_cli("snapshots", env=env2).returncode == 0

    # the key in use cannot be removed
    r = run_cli("key", "remove", first[:8], env=env)
    assert r.returncode == 1 and "in use" in r.stderr
    r = run_cli("key", "remove", second[:8], env=env)
    assert r.returncode == 0, r.stderr
    assert run_cli("snapshots", env=env2).returncode == 12

    third = tmp_path / "third.txt"
    third.write_text("third password")
    r = run_cli("key", "passwd", "--new-password-file", str(third), env=env)
    assert r.returncode == 0, r.stderr
    assert run_cli("snapshots", env=env).returncode == 12
    env3 = {**env, "SAFEKEEP_PASSWORD": "third password"}
    listing = run_cli("key", "list", env=env3)
    assert listing.returncode == 0 and listing.stdout.count("*") == 1
    assert len(json.loads(run_cli("--json", "key", "list", env=env3).stdout)) == 1

    # no new password and no terminal: a clear error
    r = run_cli("key", "add", env=env3)
    assert r.returncode == 1 and "--new-password-file" in r.stderr

    # each change is in the audit log, by key ID; no password is ever written there
    log = next((tmp_path / "home").rglob("audit*.jsonl"))
    text = log.read_text()
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    third_id = json.loads(run_cli("--json", "key", "list", env=env3).stdout)[0]["id"]
    assert [(e["action"], e["outcome"], e["details"]) for e in entries] == [
        ("key-add", "success", {"key": second}),
        ("key-remove", "success", {"key": second}),
        ("password-change", "success", {"key": third_id, "removed": first}),
    ]
    assert all(e["target"] == f"repository {repo}" for e in entries)
    assert "password" not in text.replace("password-change", "")


def test_check_good_repository(env: dict[str, str], repo: Path, source: Path) -> None:
    assert run_cli("backup", str(source), env=env).returncode == 0
    r = run_cli("check", env=env)
    assert r.returncode == 0, r.stderr
    assert "no errors were found" in r.stdout
    r = run_cli("--json", "check", "--read-data", env=env)
    assert r.returncode == 0, r.stderr
    summary = json_lines(r.stdout)[-1]
    assert summary["message_type"] == "summary" and summary["num_errors"] == 0
    assert summary["packs_read"] >= 1
    assert run_cli("check", "--read-data-subset", "1/2", env=env).returncode == 0
    bad = run_cli("check", "--read-data-subset", "lots", env=env)
    assert bad.returncode == 2


def test_check_finds_damage(env: dict[str, str], repo: Path, source: Path) -> None:
    assert run_cli("backup", str(source), env=env).returncode == 0
    packs = [p for p in (repo / "data").rglob("*") if p.is_file()]
    victim = max(packs, key=lambda p: p.stat().st_size)
    victim.chmod(0o600)
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    r = run_cli("check", "--read-data", env=env)
    assert r.returncode == 1
    assert victim.name[:16] in r.stderr


def test_cat(env: dict[str, str], repo: Path, source: Path) -> None:
    assert run_cli("backup", str(source), env=env).returncode == 0
    config = json.loads(run_cli("cat", "config", env=env).stdout)
    assert config["version"] == 2
    snap = json.loads(run_cli("cat", "snapshot", "latest", env=env).stdout)
    assert snap["paths"] == [str(source)]
    tree = json.loads(run_cli("cat", "tree", f"latest:{source}", env=env).stdout)
    names = [n["name"] for n in tree["nodes"]]
    assert names == sorted(["empty", "hello.txt", "link", "sub"])
    hello = next(n for n in tree["nodes"] if n["name"] == "hello.txt")
    blob = run_cli("cat", "blob", hello["content"][0][:12], env=env)
    assert blob.stdout == "hello, world\n"
    index_id = next((repo / "index").iterdir()).name
    index = json.loads(run_cli("cat", "index", index_id[:8], env=env).stdout)
    pack_id = index["packs"][0]["id"]
    header = json.loads(run_cli("cat", "pack", pack_id, env=env).stdout)
    assert {b["id"] for b in header} == {b["id"] for b in index["packs"][0]["blobs"]}
    key_id = next((repo / "keys").iterdir()).name
    assert json.loads(run_cli("cat", "key", key_id, env=env).stdout)["kdf"] == "scrypt"
    refused = run_cli("cat", "masterkey", env=env)
    assert refused.returncode == 2 and "never prints the master key" in refused.stderr


def test_ctrl_c_cancels_cleanly_exit_130(env: dict[str, str], repo: Path, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "data.bin", "wb") as f:
        for _ in range(48):
            f.write(os.urandom(4 << 20))  # 192 MiB of incompressible data: seconds to back up
    proc = subprocess.Popen(
        [sys.executable, "-m", "safekeep", "--json", "backup", str(big)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # the first status line: the backup is under way
    assert json.loads(first)["message_type"] == "status"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "cancelled" in err
    assert not list((repo / "snapshots").iterdir())  # no snapshot was written
    assert not list((repo / "locks").iterdir())  # and the lock was released
    assert run_cli("check", env=env).returncode == 0


def test_storage_test_reports_each_step(tmp_path: Path) -> None:
    env = dict(os.environ)
    folder = tmp_path / "usb"
    folder.mkdir()
    ok = run_cli("storage", "test", str(folder), env=env)
    assert ok.returncode == 0, ok.stderr
    for step in ("write", "read", "range-read", "list", "delete"):
        assert f"[ok] {step}:" in ok.stdout
    assert "works for backups" in ok.stdout
    assert not any(p.is_file() for p in folder.rglob("*")), "the probe must clean up after itself"
    missing = run_cli("storage", "test", str(tmp_path / "not-plugged-in"), env=env)
    assert missing.returncode == 1
    assert "[failed] write" in missing.stdout


def test_storage_policy_prints_a_least_privilege_policy(tmp_path: Path) -> None:
    env = dict(os.environ)
    r = run_cli("storage", "policy", "s3:https://s3.amazonaws.com/church-backups/office", env=env)
    assert r.returncode == 0, r.stderr
    policy = json.loads(r.stdout)
    resources = {s["Resource"] for s in policy["Statement"]}
    assert "arn:aws:s3:::church-backups/office/*" in resources
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert "s3:DeleteObject" in actions and "s3:DeleteBucket" not in actions
    no_delete = json.loads(
        run_cli("storage", "policy", "--no-delete", "s3:host.example/bucket/p", env=env).stdout
    )
    assert "s3:DeleteObject" not in {a for s in no_delete["Statement"] for a in s["Action"]}
    bad = run_cli("storage", "policy", str(tmp_path), env=env)
    assert bad.returncode == 1 and "not an S3 location" in bad.stderr
