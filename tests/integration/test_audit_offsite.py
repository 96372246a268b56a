"""The audit log's off-site copy in real repositories: a local folder (checked by restic) and S3.

The copy lives in the repository location's ``safekeep/`` folder, encrypted with the repository's
key. restic must still pass ``check --read-data`` with it there; the copy must download and verify;
a tampered copy, a copy rewritten by someone who has the key, and a local log that lost its last
entries must each be found.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.servers.s3 import MotoS3

from safekeep.cli import audit_cmd
from safekeep.cli.context import CliContext, GlobalOptions
from safekeep.cli.output import Output
from safekeep.common.cancel import CancelToken
from safekeep.common.clock import FakeClock
from safekeep.common.errors import SafekeepError
from safekeep.core.archiver import backup
from safekeep.core.format import unpacked
from safekeep.core.format.keys import KDFParams
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.state.audit import (
    Action,
    AuditLog,
    ProblemKind,
    describe,
    download_copy,
    list_copies,
    upload_copy,
    verify_copies,
)
from safekeep.storage.base import FileType, Handle
from safekeep.storage.compose import StorageOptions, open_backend
from safekeep.storage.errors import PermissionDenied
from safekeep.storage.providers.memory import MemoryBackend
from safekeep.storage.registry import ProviderSettings

PW = "pw"


def make_log(path: Path, n: int, clock: FakeClock | None = None) -> AuditLog:
    log = AuditLog(path, clock=clock or FakeClock(), user="alice", host="office-pc", host_id="pc1")
    add(log, n)
    return log


def add(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append(
            Action.BACKUP if i % 2 == 0 else Action.SNAPSHOT_DELETE,
            target=describe("plan", "Parish office", f"p{i}"),
            details={"i": i},
        )


def copies_on_disk(repo_dir: Path) -> list[str]:
    folder = repo_dir / FileType.APP.value
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def cli(env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    """``safekeep [-r REPO] audit ...`` through the command's own parser and context."""
    parser = argparse.ArgumentParser(prog="safekeep")
    parser.add_argument("-r", "--repo")
    sub = parser.add_subparsers(dest="command")
    audit_cmd.register(sub)
    args = parser.parse_args(argv)
    stdout, stderr = io.StringIO(), io.StringIO()
    out = Output(stdout=stdout, stderr=stderr)
    ctx = CliContext(GlobalOptions(repo=args.repo, no_cache=True), out, CancelToken(), env=env)
    try:
        code: int = args.run(ctx, args)
    except SafekeepError as exc:
        out.warn(f"safekeep: {exc.message}")
        code = exc.exit_code
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture()
def repo_with_backup(tmp_path: Path, sk_repo: Any) -> tuple[Path, Repository]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "minutes.txt").write_text("Minutes of the council meeting\n" * 50)
    repo_dir = tmp_path / "repo"
    repo: Repository = sk_repo(repo_dir)
    backup(repo, [str(src)])
    return repo_dir, repo


@pytest.mark.restic
def test_copy_is_encrypted_restic_checks_the_repository_and_the_copy_verifies(
    tmp_path: Path, repo_with_backup: tuple[Path, Repository], restic: Any
) -> None:
    repo_dir, repo = repo_with_backup
    log = make_log(tmp_path / "audit.jsonl", 5)
    result = upload_copy(repo, log)
    assert result.uploaded and result.entries == 5 and not result.problems
    assert result.name is not None and result.name.startswith("audit-pc1-000000000005-")
    assert copies_on_disk(repo_dir) == [result.name]

    stored = (repo_dir / "safekeep" / result.name).read_bytes()
    for secret in (b"alice", b"Parish office", b"snapshot-delete", b"office-pc"):
        assert secret not in stored  # names of people and files stay private
    assert unpacked.decode_plaintext(repo.key.open(stored)) == log.path.read_bytes()

    checked = restic(repo_dir, "check", "--read-data")
    assert b"no errors were found" in checked.stdout

    copy = download_copy(repo, "pc1")
    assert copy.data == log.path.read_bytes()
    assert copy.report.ok and copy.report.count == 5
    [v] = verify_copies(repo, log.verify(), "pc1")
    assert v.ok and v.comparison == ()


def test_a_new_upload_replaces_the_old_copy_and_an_unchanged_log_is_not_sent_again(
    tmp_path: Path, repo_with_backup: tuple[Path, Repository]
) -> None:
    repo_dir, repo = repo_with_backup
    log = make_log(tmp_path / "audit.jsonl", 3)
    first = upload_copy(repo, log)
    add(log, 2)
    second = upload_copy(repo, log)
    assert second.uploaded and second.removed == (first.name,) and second.kept == ()
    assert copies_on_disk(repo_dir) == [second.name]
    again = upload_copy(repo, log)
    assert again.name == second.name and not again.uploaded
    assert download_copy(repo).report.count == 5  # the only computer's copy by default
    empty = upload_copy(repo, AuditLog(tmp_path / "none.jsonl", host_id="pc2"))
    assert empty.name is None and not empty.uploaded


def test_a_tampered_copy_is_detected(tmp_path: Path, repo_with_backup: tuple[Path, Repository]) -> None:
    repo_dir, repo = repo_with_backup
    log = make_log(tmp_path / "audit.jsonl", 4)
    name = upload_copy(repo, log).name
    assert name is not None
    path = repo_dir / "safekeep" / name
    data = bytearray(path.read_bytes())
    data[40] ^= 0x01
    path.chmod(0o600)
    path.write_bytes(bytes(data))

    [v] = verify_copies(repo, log.verify(), "pc1")
    assert not v.ok and v.report is None
    assert [p.kind for p in v.comparison] == [ProblemKind.DAMAGED]
    assert "fails authentication" in v.comparison[0].message

    env = {"SAFEKEEP_PASSWORD": PW, "SAFEKEEP_HOME": str(tmp_path / "home")}
    code, out, err = cli(env, "audit", "verify", "--log", str(log.path), "-r", str(repo_dir))
    assert code == 1
    assert "4 entries, the chain is intact" in out  # the local log itself is fine
    assert "problem: The off-site audit copy" in out and "fails authentication" in out
    # the next upload keeps the damaged copy as evidence beside the new one
    add(log, 1)
    result = upload_copy(repo, log)
    assert result.kept == (name,) and [p.kind for p in result.problems] == [ProblemKind.DAMAGED]
    assert len(copies_on_disk(repo_dir)) == 2


def test_a_copy_rewritten_with_the_key_is_caught_by_its_chain(
    tmp_path: Path, repo_with_backup: tuple[Path, Repository]
) -> None:
    """Someone with the repository password replaces the copy with an edited log."""
    repo_dir, repo = repo_with_backup
    log = make_log(tmp_path / "audit.jsonl", 4)
    name = upload_copy(repo, log).name
    assert name is not None
    lines = log.path.read_bytes().splitlines(keepends=True)
    entry = json.loads(lines[1])
    entry["outcome"] = "failed"
    forged = b"".join([lines[0], json.dumps(entry).encode() + b"\n", *lines[2:]])
    os.chmod(repo_dir / "safekeep" / name, 0o600)
    repo.backend.remove(Handle(FileType.APP, name))
    repo.backend.save(Handle(FileType.APP, name), unpacked.seal(repo.key, forged, version=repo.version))

    [v] = verify_copies(repo, log.verify(), "pc1")
    assert v.report is not None
    kinds = sorted({p.kind for p in v.report.problems})
    assert ProblemKind.EDITED in kinds  # the copy's own chain: entry 2 no longer matches its hash
    assert [(p.kind, p.seq) for p in v.comparison] == [(ProblemKind.DIVERGED, 2)]
    assert "the copy says: snapshot-delete" in v.comparison[0].message


def test_a_local_log_that_lost_its_last_entries_is_detected_against_the_copy(
    tmp_path: Path, repo_with_backup: tuple[Path, Repository]
) -> None:
    repo_dir, repo = repo_with_backup
    log = make_log(tmp_path / "audit.jsonl", 6)
    first = upload_copy(repo, log).name
    lines = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(b"".join(lines[:4]))  # the last two entries removed on this computer
    assert log.verify().ok  # the file alone cannot show it

    [v] = verify_copies(repo, log.verify(), "pc1")
    assert v.report is not None and v.report.ok
    assert [(p.kind, p.seq) for p in v.comparison] == [(ProblemKind.TRUNCATED, 5)]
    assert "2 entries were removed from the end of the local log" in v.comparison[0].message
    assert "snapshot-delete" in v.comparison[0].message

    env = {"SAFEKEEP_PASSWORD": PW, "SAFEKEEP_HOME": str(tmp_path / "home")}
    code, out, _ = cli(env, "-r", str(repo_dir), "audit", "verify", "--log", str(log.path))
    assert code == 1 and "problem:" in out and "removed from the end" in out

    # new entries are written and uploaded: the copy that proves the loss is kept
    add(log, 3)
    result = upload_copy(repo, log)
    assert result.uploaded and result.kept == (first,) and result.removed == ()
    assert {p.kind for p in result.problems} == {ProblemKind.DIVERGED}
    found = verify_copies(repo, log.verify(), "pc1")
    assert first is not None and result.name is not None
    assert [c.info.name for c in found] == sorted([first, result.name])
    assert not found[0].ok and found[1].ok


def test_cli_verify_and_download_through_a_repository(
    tmp_path: Path, repo_with_backup: tuple[Path, Repository]
) -> None:
    repo_dir, repo = repo_with_backup
    log = make_log(tmp_path / "audit.jsonl", 3)
    upload_copy(repo, log)
    add(log, 1)
    env = {"SAFEKEEP_PASSWORD": PW, "SAFEKEEP_HOME": str(tmp_path / "home")}
    code, out, err = cli(env, "audit", "verify", "--log", str(log.path), "-r", str(repo_dir))
    assert code == 0, out + err
    assert "the off-site copy safekeep/audit-pc1-000000000003-" in out
    assert "its 1 newer entry is uploaded after the next backup" in out

    # the computer is lost: the copy comes back as a log file that verifies
    target = tmp_path / "recovered.jsonl"
    code, out, err = cli(env, "audit", "download", "-r", str(repo_dir), "--output", str(target))
    assert code == 0, out + err
    assert target.read_bytes() == b"".join(log.path.read_bytes().splitlines(keepends=True)[:3])
    code, out, _ = cli(env, "audit", "verify", "--log", str(target))
    assert code == 0 and "3 entries, the chain is intact" in out


def test_copies_of_several_computers_need_a_choice(
    tmp_path: Path, repo_with_backup: tuple[Path, Repository]
) -> None:
    _, repo = repo_with_backup
    upload_copy(repo, make_log(tmp_path / "a.jsonl", 2))
    other = AuditLog(tmp_path / "b.jsonl", clock=FakeClock(), user="bob", host="front-desk", host_id="pc2")
    add(other, 3)
    upload_copy(repo, other)
    assert [(c.host_id, c.last_seq) for c in list_copies(repo)] == [("pc1", 2), ("pc2", 3)]
    with pytest.raises(SafekeepError, match="2 computers"):
        download_copy(repo)
    assert download_copy(repo, "pc2").report.entries[0].user == "bob"


def test_storage_that_refuses_deletes_keeps_old_copies_and_readers_take_the_newest(tmp_path: Path) -> None:
    """Append-only keys: the old copy stays, the upload still succeeds, the newest is read."""
    backend = MemoryBackend()
    repo = Repository.init(backend, PW, options=RepositoryOptions(kdf=KDFParams(1024, 8, 1)))
    try:
        log = make_log(tmp_path / "audit.jsonl", 2)
        first = upload_copy(repo, log)
        add(log, 2)
        backend.fail_next("remove", PermissionDenied("this key may not delete"))
        second = upload_copy(repo, log)
        assert second.uploaded and second.removed == () and second.kept == () and not second.problems
        assert [c.name for c in list_copies(repo, host_id="pc1")] == [first.name, second.name]
        newest = download_copy(repo, "pc1")
        assert newest.info.name == second.name and newest.report.count == 4
        assert all(v.ok for v in verify_copies(repo, log.verify(), "pc1"))
        # the next upload (deletes allowed again) tidies both up
        add(log, 1)
        third = upload_copy(repo, log)
        assert set(third.removed) == {first.name, second.name}
        assert [c.name for c in list_copies(repo)] == [third.name]
    finally:
        repo.close()


@pytest.mark.restic
def test_copy_through_s3(moto_s3: MotoS3, tmp_path: Path, restic_bin: str) -> None:
    location = moto_s3.location(moto_s3.plain_bucket)
    opts = StorageOptions(provider=ProviderSettings(env=moto_s3.env()))
    repo = Repository.init(
        open_backend(location, options=opts), PW, options=RepositoryOptions(kdf=KDFParams(1024, 8, 1))
    )
    src = tmp_path / "src"
    src.mkdir()
    (src / "ledger.csv").write_text("date,amount\n" * 100)
    backup(repo, [str(src)])
    log = make_log(tmp_path / "audit.jsonl", 4)
    result = upload_copy(repo, log)
    add(log, 2)
    second = upload_copy(repo, log)
    assert second.removed == (result.name,)
    repo.close()

    prefix = location.rsplit("/", 1)[1]
    client = moto_s3.client()
    keys = [
        o["Key"]
        for o in client.list_objects_v2(Bucket=moto_s3.plain_bucket, Prefix=f"{prefix}/safekeep/")["Contents"]
    ]
    assert keys == [f"{prefix}/safekeep/{second.name}"]

    env = dict(os.environ, **moto_s3.env(RESTIC_PASSWORD=PW, RESTIC_CACHE_DIR=str(tmp_path / "restic-cache")))
    proc = subprocess.run(
        [restic_bin, "-r", location, "check", "--read-data"],
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()

    reopened = Repository.open(open_backend(location, options=opts), PW)
    try:
        copy = download_copy(reopened, "pc1")
        assert copy.data == log.path.read_bytes() and copy.report.ok and copy.report.count == 6
        [v] = verify_copies(reopened, log.verify(), "pc1")
        assert v.ok
        # tampered in the bucket: found
        key = f"{prefix}/safekeep/{second.name}"
        body = bytearray(client.get_object(Bucket=moto_s3.plain_bucket, Key=key)["Body"].read())
        body[-1] ^= 0x80
        client.put_object(Bucket=moto_s3.plain_bucket, Key=key, Body=bytes(body))
        [v] = verify_copies(reopened, log.verify(), "pc1")
        assert [p.kind for p in v.comparison] == [ProblemKind.DAMAGED]
    finally:
        reopened.close()
