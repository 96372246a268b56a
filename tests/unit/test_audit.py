"""The audit log's hash chain: appends, tamper detection, concurrent writers, CSV and the CLI.

Each kind of tampering an auditor cares about (an edited, deleted, reordered or inserted entry,
a torn line after a power cut) is its own test on a real log file, and each checks the exact
finding: kind, line and entry number.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from safekeep.cli import audit_cmd
from safekeep.cli.context import CliContext, GlobalOptions
from safekeep.cli.output import Output
from safekeep.common.cancel import CancelToken
from safekeep.common.clock import FakeClock
from safekeep.common.errors import SafekeepError
from safekeep.state.audit import (
    CSV_COLUMNS,
    GENESIS,
    Action,
    AuditEntry,
    AuditLog,
    AuditReport,
    ProblemKind,
    canonical,
    compare,
    default_log_path,
    describe,
    export_csv,
    local_host_id,
    verify_bytes,
)
from safekeep.state.model import Outcome

START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def make_log(path: Path, n: int, *, clock: FakeClock | None = None) -> AuditLog:
    clock = clock or FakeClock(START)
    log = AuditLog(path, clock=clock, user="alice", host="office-pc", host_id="pc1")
    actions = [Action.BACKUP, Action.CHECK, Action.RESTORE, Action.SNAPSHOT_DELETE, Action.SETTINGS_CHANGE]
    for i in range(n):
        log.append(
            actions[i % len(actions)],
            target=describe("plan", "Office files", f"plan{i:03d}"),
            outcome=Outcome.SUCCESS,
            details={"files": i},
        )
        clock.advance(60)
    return log


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def forge(seq: int, prev: str, *, user: str = "mallory", action: str = "backup") -> bytes:
    """A well-formed entry with a correct hash of its own, as a forger would write it."""
    body = {
        "seq": seq,
        "time": "2026-03-02T10:00:00.000Z",
        "unix": 1772445600,
        "user": user,
        "host": "office-pc",
        "action": action,
        "target": "",
        "outcome": "success",
        "details": {},
        "prev": prev,
    }
    import hashlib

    entry = AuditEntry.from_obj({**body, "hash": hashlib.sha256(canonical(body)).hexdigest()})
    return entry.to_line()


def findings(report: AuditReport) -> list[tuple[str, int | None, int | None]]:
    return [(p.kind.value, p.line, p.seq) for p in report.problems]


# ------------------------------------------------------------------ the chain


def test_appends_form_a_chain(tmp_path: Path) -> None:
    log = make_log(tmp_path / "audit.jsonl", 5)
    report = log.verify()
    assert report.ok and report.count == 5 and not report.warnings
    entries = report.entries
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev == GENESIS
    for before, after in itertools.pairwise(entries):
        assert after.prev == before.hash
    for e in entries:
        assert e.intact and len(e.hash) == 64
    first = entries[0]
    assert first.time == "2026-03-02T09:30:00.000Z"
    assert first.unix == int(START.timestamp())
    assert (first.user, first.host, first.action, first.outcome) == (
        "alice",
        "office-pc",
        "backup",
        "success",
    )
    assert first.target == 'plan "Office files" (plan000)'
    assert entries[1].time == "2026-03-02T09:31:00.000Z"
    # one JSON object per line, fields in their documented order
    raw = json.loads(lines_of(log.path)[0])
    assert list(raw) == ["seq", "time", "unix", "user", "host", "action", "target", "outcome", "details"] + [
        "prev",
        "hash",
    ]


def test_hash_is_sha256_of_the_canonical_form(tmp_path: Path) -> None:
    """An auditor can recompute a hash with nothing but the documented recipe."""
    import hashlib

    log = make_log(tmp_path / "audit.jsonl", 1)
    obj = json.loads(lines_of(log.path)[0])
    stored = obj.pop("hash")
    recipe = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    assert hashlib.sha256(recipe).hexdigest() == stored


def test_names_that_are_not_valid_utf8_survive(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", clock=FakeClock(START), user="zoë", host="büro")
    odd = "/home/zoë/caf\udce9.txt"  # a file name with a byte that is not UTF-8
    log.append(Action.RESTORE, target=describe("path", odd), details={"path": odd})
    report = log.verify()
    assert report.ok
    assert report.entries[0].details["path"] == odd
    assert report.entries[0].user == "zoë"


def test_bad_outcome_or_details_are_refused(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", clock=FakeClock(START))
    with pytest.raises(ValueError, match="outcome"):
        log.append(Action.BACKUP, outcome=Outcome.RUNNING)
    with pytest.raises(ValueError, match="plain JSON"):
        log.append(Action.BACKUP, details={"when": datetime.now(UTC)})
    with pytest.raises(ValueError, match="under"):
        log.append(Action.BACKUP, details={"big": "x" * 20_000})
    assert not log.path.exists()


def test_a_missing_log_verifies_as_empty(tmp_path: Path) -> None:
    report = AuditLog(tmp_path / "nothing.jsonl").verify()
    assert report.ok and report.count == 0


def test_default_path_is_in_the_data_folder(tmp_path: Path) -> None:
    assert default_log_path({"SAFEKEEP_HOME": str(tmp_path)}) == tmp_path / "data" / "audit.jsonl"


# ------------------------------------------------------------------ tampering, one kind per test


def test_edited_entry_is_detected(tmp_path: Path) -> None:
    log = make_log(tmp_path / "audit.jsonl", 8)
    lines = lines_of(log.path)
    entry = json.loads(lines[4])
    entry["outcome"] = "failed"  # the hash field is left as it was
    lines[4] = json.dumps(entry).encode() + b"\n"
    log.path.write_bytes(b"".join(lines))
    report = log.verify()
    assert not report.ok
    assert findings(report) == [("edited", 5, 5)]
    assert "Entry 5 (line 5) was changed after it was written" in report.problems[0].message


def test_edited_entry_with_a_recomputed_hash_breaks_the_link(tmp_path: Path) -> None:
    log = make_log(tmp_path / "audit.jsonl", 8)
    lines = lines_of(log.path)
    entry = json.loads(lines[4])
    lines[4] = forge(5, entry["prev"], user="alice", action="check")  # rewritten with a valid hash
    log.path.write_bytes(b"".join(lines))
    report = log.verify()
    assert findings(report) == [("inserted", 6, 6)]
    assert "does not follow on from entry 5" in report.problems[0].message


def test_deleted_entry_is_detected(tmp_path: Path) -> None:
    log = make_log(tmp_path / "audit.jsonl", 8)
    lines = lines_of(log.path)
    del lines[3]
    log.path.write_bytes(b"".join(lines))
    report = log.verify()
    assert findings(report) == [("deleted", 4, 4)]
    assert report.problems[0].message == "Entry 4 was deleted from the log (before line 4)."


def test_deleted_run_of_entries_and_first_entry_are_detected(tmp_path: Path) -> None:
    log = make_log(tmp_path / "audit.jsonl", 10)
    lines = lines_of(log.path)
    log.path.write_bytes(b"".join(lines[1:4] + lines[7:]))
    report = log.verify()
    assert findings(report) == [("deleted", 1, 1), ("deleted", 4, 5)]
    assert report.problems[1].message == "Entries 5 to 7 were deleted from the log (before line 4)."


def test_reordered_entries_are_detected(tmp_path: Path) -> None:
    log = make_log(tmp_path / "audit.jsonl", 8)
    lines = lines_of(log.path)
    lines[4], lines[5] = lines[5], lines[4]
    log.path.write_bytes(b"".join(lines))
    report = log.verify()
    assert findings(report) == [("reordered", 5, 6)]
    assert "out of order (it comes before entry 5)" in report.problems[0].message


def test_entry_moved_to_the_start_is_the_one_reported(tmp_path: Path) -> None:
    log = make_log(tmp_path / "audit.jsonl", 8)
    lines = lines_of(log.path)
    log.path.write_bytes(b"".join([lines[7], *lines[:7]]))
    assert findings(log.verify()) == [("reordered", 1, 8)]


def test_inserted_entry_is_detected(tmp_path: Path) -> None:
    """A forged entry numbered to fit (no gap) whose ``prev`` does not match."""
    log = make_log(tmp_path / "audit.jsonl", 8)
    lines = lines_of(log.path)
    lines[5] = forge(6, "1" * 64)  # entry 6 replaced by a forgery with its own valid hash
    log.path.write_bytes(b"".join(lines))
    report = log.verify()
    assert findings(report) == [("inserted", 6, 6), ("inserted", 7, 7)]


def test_inserted_extra_entry_is_detected(tmp_path: Path) -> None:
    """A forged extra entry that links correctly to its predecessor is still a dead branch."""
    log = make_log(tmp_path / "audit.jsonl", 8)
    lines = lines_of(log.path)
    prev = json.loads(lines[4])["hash"]
    lines.insert(5, forge(6, prev))
    log.path.write_bytes(b"".join(lines))
    report = log.verify()
    assert findings(report) == [("inserted", 6, 6)]
    assert "second entry numbered 6" in report.problems[0].message
    assert "the real one is on line 7" in report.problems[0].message


def test_copied_entry_is_detected(tmp_path: Path) -> None:
    log = make_log(tmp_path / "audit.jsonl", 6)
    lines = lines_of(log.path)
    lines.insert(6, lines[2])
    log.path.write_bytes(b"".join(lines))
    report = log.verify()
    assert findings(report) == [("inserted", 7, 3)]
    assert "second copy of entry 3 (line 3)" in report.problems[0].message


def test_invalid_entry_and_unreadable_line_are_detected(tmp_path: Path) -> None:
    log = make_log(tmp_path / "audit.jsonl", 6)
    lines = lines_of(log.path)
    obj = json.loads(lines[1])
    lines[1] = lines[1].replace(b'"outcome":', b'"outcome":"success","outcome":', 1)  # duplicate field
    lines[3] = b"this line was overwritten\n"
    log.path.write_bytes(b"".join(lines))
    report = log.verify()
    assert obj["seq"] == 2
    assert findings(report) == [("edited", 2, 2), ("edited", 4, 4)]
    assert "appears twice" in report.problems[0].message
    assert "it held entry 2" in report.problems[0].message
    assert report.problems[1].message == (
        "Line 4 cannot be read: it is not a log entry (it held entry 4); it was changed after it was written."
    )


def test_damaged_line_and_added_text_are_detected(tmp_path: Path) -> None:
    log = make_log(tmp_path / "audit.jsonl", 6)
    lines = lines_of(log.path)
    lines[2] = lines[2][:40] + b"\x00\xff" + lines[2][42:]  # bytes damaged in the middle of entry 3
    lines.insert(5, b"note: nothing happened today\n")  # text added between entries 5 and 6
    log.path.write_bytes(b"".join(lines))
    report = log.verify()
    assert findings(report) == [("edited", 3, 3), ("edited", 6, None)]
    assert (
        report.problems[0].message == "Line 3 cannot be read: it held entry 3, which was damaged or changed."
    )
    assert report.problems[1].message.startswith("Line 6 cannot be read: it is not a log entry;")


def test_torn_last_line_is_reported_then_kept_by_the_next_append(tmp_path: Path) -> None:
    log = make_log(tmp_path / "audit.jsonl", 4)
    complete = log.path.read_bytes()
    with open(log.path, "ab") as f:
        f.write(b'{"seq":5,"time":"2026-03-02T09:3')  # the power went off here
    report = log.verify()
    assert report.ok and report.count == 4
    assert [(w.kind, w.line) for w in report.warnings] == [(ProblemKind.TORN, 5)]
    assert "incomplete" in report.warnings[0].message

    entry = log.append(Action.CHECK)
    assert entry.seq == 5  # the torn entry was never written, so its number is used again
    data = log.path.read_bytes()
    assert data.startswith(complete + b'{"seq":5,"time":"2026-03-02T09:3\n')  # kept, not dropped
    report = log.verify()
    assert report.ok and report.count == 5
    assert [(w.kind, w.line) for w in report.warnings] == [(ProblemKind.TORN, 5)]
    assert "no recorded entry is missing" in report.warnings[0].message


def test_entries_removed_from_the_end_show_only_against_a_copy(tmp_path: Path) -> None:
    log = make_log(tmp_path / "audit.jsonl", 6)
    full = log.verify()
    lines = lines_of(log.path)
    cut = verify_bytes(b"".join(lines[:4]), source="the local log")
    assert cut.ok  # nothing in the file itself shows it
    problems = compare(cut, AuditReport("the copy", full.entries))
    assert [(p.kind, p.seq) for p in problems] == [(ProblemKind.TRUNCATED, 5)]
    assert "ends at entry 4, but the copy goes on to entry 6: 2 entries were removed" in problems[0].message


def test_compare_finds_diverged_and_deleted_entries(tmp_path: Path) -> None:
    log = make_log(tmp_path / "audit.jsonl", 6)
    copy = log.verify()
    lines = lines_of(log.path)
    edited = json.loads(lines[1])
    edited["target"] = "something else"
    local = verify_bytes(b"".join([lines[0], json.dumps(edited).encode() + b"\n", *lines[3:]]))
    problems = compare(local, AuditReport("the copy", copy.entries))
    assert [(p.kind, p.seq) for p in problems] == [(ProblemKind.DIVERGED, 2), (ProblemKind.DELETED, 3)]
    # a local log that is ahead of the copy is normal
    assert compare(copy, AuditReport("the copy", copy.entries[:3])) == []


def test_compare_lists_a_long_divergence_briefly(tmp_path: Path) -> None:
    original = make_log(tmp_path / "a.jsonl", 30).verify()
    rewritten = make_log(tmp_path / "b.jsonl", 30, clock=FakeClock(START.replace(hour=11))).verify()
    problems = compare(rewritten, AuditReport("the copy", original.entries))
    assert len(problems) == 21 and all(p.kind is ProblemKind.DIVERGED for p in problems)
    assert problems[-1].message == "10 more entries differ between the two logs (up to entry 30)."


# ------------------------------------------------------------------ several processes


def _append_many(path: str, worker: int, count: int) -> None:
    log = AuditLog(path, clock=FakeClock(START), user=f"worker{worker}", host="office-pc", host_id="pc1")
    for i in range(count):
        log.append(Action.BACKUP, target=f"job {worker}.{i}", details={"worker": worker, "i": i})


def test_concurrent_appends_from_several_processes_keep_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    procs = [multiprocessing.Process(target=_append_many, args=(str(path), w, 50)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    report = AuditLog(path).verify()
    assert report.ok, [p.message for p in report.problems]
    assert report.count == 200 and not report.warnings
    assert [e.seq for e in report.entries] == list(range(1, 201))
    per_worker = {w: [e.details["i"] for e in report.entries if e.details["worker"] == w] for w in range(4)}
    assert all(v == list(range(50)) for v in per_worker.values())


# ------------------------------------------------------------------ CSV


def test_csv_export_has_every_entry_and_column(tmp_path: Path) -> None:
    log = make_log(tmp_path / "audit.jsonl", 3)
    log.append(Action.PLAN_CHANGE, target='=HYPERLINK("http://x")', details={"name": "Büro, 2"})
    buf = io.StringIO()
    report = log.export_csv(buf)
    assert report.ok
    rows = list(csv.reader(io.StringIO(buf.getvalue())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 5
    assert rows[1][:7] == ["1", "2026-03-02T09:30:00.000Z", "alice", "office-pc", "backup"] + [
        'plan "Office files" (plan000)',
        "success",
    ]
    assert json.loads(rows[1][7]) == {"files": 0}
    assert rows[1][8] == report.entries[0].hash
    assert rows[4][5] == '\'=HYPERLINK("http://x")'  # a spreadsheet shows it, never runs it
    assert json.loads(rows[4][7]) == {"name": "Büro, 2"}


def test_export_of_a_damaged_log_still_lists_every_readable_entry(tmp_path: Path) -> None:
    log = make_log(tmp_path / "audit.jsonl", 4)
    lines = lines_of(log.path)
    log.path.write_bytes(b"".join([lines[0], lines[2], lines[3]]))
    buf = io.StringIO()
    report = log.verify()
    export_csv(report, buf)
    assert [r[0] for r in csv.reader(io.StringIO(buf.getvalue()))][1:] == ["1", "3", "4"]
    assert not report.ok


# ------------------------------------------------------------------ the computer's id


def test_host_id_is_stable_and_opaque() -> None:
    a, b = local_host_id(), local_host_id()
    assert a == b and len(a) == 16 and all(c in "0123456789abcdef" for c in a)
    machine_id = Path("/etc/machine-id")
    if machine_id.exists():
        assert machine_id.read_text().strip()[:16] != a


def test_host_id_override_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="host id"):
        AuditLog(tmp_path / "a.jsonl", host_id="bad/id")


# ------------------------------------------------------------------ the command


def cli(env: dict[str, str], *argv: str, json_mode: bool = False) -> tuple[int, str, str]:
    """Run ``safekeep audit ...`` through the command's own parser and context."""
    parser = argparse.ArgumentParser(prog="safekeep")
    parser.add_argument("-r", "--repo")
    sub = parser.add_subparsers(dest="command")
    audit_cmd.register(sub)
    args = parser.parse_args(argv)
    stdout, stderr = io.StringIO(), io.StringIO()
    out = Output(json_mode=json_mode, stdout=stdout, stderr=stderr)
    ctx = CliContext(GlobalOptions(repo=args.repo, json=json_mode), out, CancelToken(), env=env)
    try:
        code: int = args.run(ctx, args)
    except SafekeepError as exc:
        out.warn(f"safekeep: {exc.message}")
        code = exc.exit_code
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture()
def home(tmp_path: Path) -> dict[str, str]:
    return {"SAFEKEEP_HOME": str(tmp_path / "home")}


def default_log(env: dict[str, str], n: int) -> AuditLog:
    path = default_log_path(env)
    path.parent.mkdir(parents=True)
    return make_log(path, n)


def test_cli_verify_intact_log(home: dict[str, str]) -> None:
    default_log(home, 3)
    code, out, err = cli(home, "audit", "verify")
    assert code == 0, err
    assert "3 entries, the chain is intact" in out


def test_cli_verify_lists_problems_and_fails(home: dict[str, str]) -> None:
    log = default_log(home, 5)
    lines = lines_of(log.path)
    del lines[2]
    log.path.write_bytes(b"".join(lines))
    code, out, err = cli(home, "audit", "verify")
    assert code == 1
    assert "problem: Entry 3 was deleted from the log (before line 3)." in out
    assert "signs of tampering" in err
    code, out, _ = cli(home, "audit", "verify", json_mode=True)
    msgs = [json.loads(line) for line in out.splitlines()]
    assert code == 1
    assert msgs[0] == {
        "message_type": "problem",
        "source": f"the audit log {log.path}",
        "kind": "deleted",
        "line": 3,
        "seq": 3,
        "message": "Entry 3 was deleted from the log (before line 3).",
    }
    assert msgs[-1]["message_type"] == "summary" and msgs[-1]["ok"] is False
    assert msgs[-1]["log"]["entries"] == 4


def test_cli_verify_other_file_and_missing_file(tmp_path: Path, home: dict[str, str]) -> None:
    make_log(tmp_path / "other.jsonl", 2)
    code, out, _ = cli(home, "audit", "verify", "--log", str(tmp_path / "other.jsonl"))
    assert code == 0 and "2 entries" in out
    code, out, _ = cli(home, "audit", "verify")
    assert code == 0 and "There is no audit log" in out


def test_cli_export_csv_to_a_file_records_the_export(tmp_path: Path, home: dict[str, str]) -> None:
    log = default_log(home, 3)
    target = tmp_path / "audit.csv"
    code, out, err = cli(home, "audit", "export", "--csv", "--output", str(target))
    assert code == 0, err
    assert f"exported 3 entries to {target}" in out and "intact" in out
    rows = list(csv.reader(io.StringIO(target.read_text(encoding="utf-8-sig"))))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 4
    last = log.verify().entries[-1]
    assert (last.seq, last.action, last.details["entries"]) == (4, "audit-export", 3)


def test_cli_export_csv_to_stdout_keeps_the_status_on_stderr(home: dict[str, str]) -> None:
    default_log(home, 2)
    code, out, err = cli(home, "audit", "export", "--csv")
    assert code == 0
    assert out.splitlines()[0] == ",".join(CSV_COLUMNS) and len(out.splitlines()) == 3
    assert "exported 2 entries to standard output" in err


def test_cli_show_last(home: dict[str, str]) -> None:
    default_log(home, 6)
    code, out, _ = cli(home, "audit", "show", "--last", "2")
    assert code == 0
    assert "2 of 6 entries" in out
    rows = [line.split()[0] for line in out.splitlines()[2:4]]
    assert rows == ["5", "6"]
    code, out, _ = cli(home, "audit", "show", "--last", "2", json_mode=True)
    assert [e["seq"] for e in json.loads(out)] == [5, 6]


def test_cli_download_needs_a_repository(home: dict[str, str], tmp_path: Path) -> None:
    code, _, err = cli(home, "audit", "download", "--output", str(tmp_path / "x.jsonl"))
    assert code == 2 and "needs the repository" in err
