"""The tamper-evident audit log: who did what, when, to which plan, destination or snapshot.

The log
    A text file of JSON lines (``audit.jsonl`` in the app's data folder), one :class:`AuditEntry`
    per line: ``seq`` (1, 2, ...), ``time`` (UTC, ISO 8601) and ``unix`` (Unix seconds), ``user``
    (the OS account), ``host`` (the computer's name), ``action`` (see :class:`Action`), ``target``
    (what was acted on, in words with its ids, see :func:`describe`), ``outcome`` (see
    :data:`OUTCOMES`), ``details`` (a small JSON object), ``prev`` and ``hash``.

The chain
    ``hash`` is the SHA-256 of the entry's *canonical form*: the JSON object of every field but
    ``hash``, keys sorted, no spaces, non-ASCII escaped (``json.dumps(obj, sort_keys=True,
    separators=(",", ":"))`` in Python), hex-encoded. ``prev`` is the previous entry's ``hash``
    (:data:`GENESIS` for entry 1). :func:`verify_bytes` therefore finds an entry that was
    ``edited`` (its content no longer matches its hash), ``deleted`` (a number is missing),
    ``reordered`` (numbers out of order), ``inserted`` (an entry that does not follow on from its
    predecessor, or a second entry with the same number) and ``torn`` lines (an incomplete line
    left by a power cut). Entries removed from the *end* leave no trace in the file itself; the
    off-site copy catches that.

    Someone who can write the file and knows this algorithm could rewrite the whole chain after
    an edit. The off-site copy is the anchor against that: it is encrypted and authenticated with
    the repository's key, so it cannot be rewritten without the repository password, and
    :func:`compare` shows every entry where the local log and the copy disagree (``diverged``)
    and entries only the copy still has (``truncated``).

Writing
    :meth:`AuditLog.append` is one call, safe across processes (the GUI, the daemon, CLI commands
    and job workers append to the same file): an exclusive lock on the file (``flock`` on POSIX,
    ``msvcrt.locking`` on Windows), read the last entry, write one line, flush and fsync. An
    incomplete last line found there is closed with a newline and kept (verification reports it
    as ``torn``); it is never silently dropped.

The off-site copy
    :func:`upload_copy` stores the whole log, encrypted with the repository's master key in
    restic's envelope for unpacked files, beside the repository in Safekeep's own folder
    (``FileType.APP``, which restic ignores) as ``audit-<host id>-<last seq>-<digest>``. Storage
    files are immutable (see :mod:`safekeep.storage.base`), so each upload is a new file named
    after its content; older copies of the same computer are removed only after the new one is
    saved, and only when the new copy contains every entry they hold. A reader therefore always
    finds at least one complete copy, and a local log that lost or changed entries never erases
    the copy that proves it. :func:`local_host_id` names the computer without revealing anything
    about it (a keyed hash of the OS's machine id).
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import enum
import getpass
import hashlib
import hmac
import json
import logging
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol, TextIO

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.clock import SYSTEM_CLOCK, Clock
from safekeep.common.errors import SafekeepError
from safekeep.core.crypto import AuthenticationFailed, MasterKey
from safekeep.core.format import unpacked
from safekeep.state import paths
from safekeep.state.model import Outcome
from safekeep.storage.base import Backend, FileType, Handle
from safekeep.storage.errors import NotFound, StorageError

if sys.platform == "win32":
    import msvcrt
    import winreg
else:
    import fcntl

log = logging.getLogger(__name__)

LOG_FILE_NAME = "audit.jsonl"
GENESIS = "0" * 64
"""The ``prev`` of entry 1."""

FIELDS = ("seq", "time", "unix", "user", "host", "action", "target", "outcome", "details", "prev", "hash")
"""Every field of an entry, in the order they are written."""

MAX_DETAILS_BYTES = 16 * 1024
MAX_LISTED = 20  # entries listed one by one when comparing with a copy; the rest are counted
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HOST_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_COPY_NAME = re.compile(r"^audit-(?P<host>[0-9A-Za-z_-]{1,64})-(?P<seq>\d{12})-(?P<digest>[0-9a-f]{16})$")
_HOST_ID_KEY = b"safekeep audit host id"
_ENTRY_START = b'{"seq":'  # how every written line begins
_TAIL_BLOCK = 64 * 1024
_WIN_LOCK_OFFSET = 0x7FFFFFF0  # a byte far past the end: locking it never blocks reads or writes
_WIN_LOCK_ROUNDS = 6  # msvcrt's LK_LOCK tries for about 10 s per round


class Action(enum.StrEnum):
    """What an entry records. New actions may be added; readers accept any text."""

    BACKUP = "backup"
    RESTORE = "restore"
    CHECK = "check"
    RESTORE_DRILL = "restore-drill"
    FORGET = "forget"  # snapshots removed by a plan's retention rules
    SNAPSHOT_DELETE = "snapshot-delete"  # a snapshot deleted by a person
    PRUNE = "prune"
    SETTINGS_CHANGE = "settings-change"
    DESTINATION_ADD = "destination-add"
    DESTINATION_CHANGE = "destination-change"
    DESTINATION_REMOVE = "destination-remove"
    PLAN_ADD = "plan-add"
    PLAN_CHANGE = "plan-change"
    PLAN_REMOVE = "plan-remove"
    PASSWORD_CHANGE = "password-change"  # noqa: S105 - an action name, not a password
    KEY_ADD = "key-add"  # another password for a repository (its key file's ID is recorded)
    KEY_REMOVE = "key-remove"
    SIGN_IN = "sign-in"  # a cloud account connected (OAuth)
    SIGN_OUT = "sign-out"
    AUDIT_EXPORT = "audit-export"


OUTCOMES = ("success", "warning", "failed", "cancelled", "interrupted")
"""How an action ended (the final values of :class:`~safekeep.state.model.Outcome`)."""


class ProblemKind(enum.StrEnum):
    EDITED = "edited"
    DELETED = "deleted"
    REORDERED = "reordered"
    INSERTED = "inserted"
    TORN = "torn"
    TRUNCATED = "truncated"  # the off-site copy has entries after the local log's end
    DIVERGED = "diverged"  # an entry differs between the local log and the off-site copy
    DAMAGED = "damaged"  # an off-site copy that cannot be read back


# ------------------------------------------------------------------ errors


class AuditError(SafekeepError):
    """Base class for audit log errors."""


class AuditLogError(AuditError):
    """The log file could not be read or written."""


class AuditCopyError(AuditError):
    """An off-site copy is missing, ambiguous or cannot be read."""


class EntryFormatError(ValueError):
    """A line is JSON but not a valid entry."""


# ------------------------------------------------------------------ entries


def canonical(obj: Mapping[str, Any]) -> bytes:
    """The bytes an entry's hash covers: sorted keys, no spaces, ASCII only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode(
        "ascii"
    )


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    time: str
    unix: int
    user: str
    host: str
    action: str
    target: str
    outcome: str
    details: Mapping[str, Any]
    prev: str
    hash: str

    def body(self) -> dict[str, Any]:
        """Every field but ``hash``: what the hash covers."""
        return {
            "seq": self.seq,
            "time": self.time,
            "unix": self.unix,
            "user": self.user,
            "host": self.host,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "details": dict(self.details),
            "prev": self.prev,
        }

    def computed_hash(self) -> str:
        return hashlib.sha256(canonical(self.body())).hexdigest()

    @property
    def intact(self) -> bool:
        return self.computed_hash() == self.hash

    def to_dict(self) -> dict[str, Any]:
        return {**self.body(), "hash": self.hash}

    def to_line(self) -> bytes:
        """The entry as written: one JSON object in field order, UTF-8, ending in a newline.

        A lone surrogate (a file name that was not valid UTF-8) is written as its ``\\udcXX``
        escape, which JSON reads back as the same character."""
        text = json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8", "backslashreplace") + b"\n"

    def summary(self) -> str:
        """A short description for messages: ``backup at 2026-01-03 09:30:00 UTC by alice``."""
        when = self.time.replace("T", " ").split(".")[0].rstrip("Z")
        return f"{self.action} at {when} UTC by {self.user}"

    @classmethod
    def from_obj(cls, obj: object) -> AuditEntry:
        if not isinstance(obj, dict):
            raise EntryFormatError("not a JSON object")
        keys = set(obj)
        if keys != set(FIELDS):
            missing, extra = sorted(set(FIELDS) - keys), sorted(keys - set(FIELDS))
            raise EntryFormatError(f"fields missing {missing}, unexpected {extra}")
        seq, unix, details = obj["seq"], obj["unix"], obj["details"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise EntryFormatError(f"bad seq {seq!r}")
        if not isinstance(unix, int) or isinstance(unix, bool):
            raise EntryFormatError(f"bad unix time {unix!r}")
        if not isinstance(details, dict):
            raise EntryFormatError("details is not an object")
        texts = {k: obj[k] for k in ("time", "user", "host", "action", "target", "outcome", "prev", "hash")}
        for k, v in texts.items():
            if not isinstance(v, str):
                raise EntryFormatError(f"{k} is not text")
        if not _HEX64.match(texts["prev"]) or not _HEX64.match(texts["hash"]):
            raise EntryFormatError("prev or hash is not a SHA-256 in hex")
        return cls(seq=seq, unix=unix, details=details, **texts)


def describe(kind: str, name: str = "", id: str = "") -> str:
    """A target in words with its id: ``plan "Office files" (3f2a9c1b7d0e)``.

    Join several with ``"; "``: ``describe("plan", ...) + "; " + describe("destination", ...)``.
    """
    text = kind
    if name:
        text += f' "{name}"'
    if id:
        text += f" ({id})"
    return text


def _outcome_text(outcome: Outcome | str) -> str:
    value = outcome.value if isinstance(outcome, Outcome) else str(outcome)
    if value not in OUTCOMES:
        raise ValueError(f"an audit outcome is one of {', '.join(OUTCOMES)}, not {value!r}")
    return value


def _details_obj(details: Mapping[str, Any] | None) -> dict[str, Any]:
    obj = dict(details or {})
    if any(not isinstance(k, str) for k in obj):
        raise ValueError("audit details keys must be strings")
    try:
        size = len(canonical(obj))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"audit details must be plain JSON values: {exc}") from exc
    if size > MAX_DETAILS_BYTES:
        raise ValueError(f"audit details are {size} bytes; keep them under {MAX_DETAILS_BYTES}")
    parsed: dict[str, Any] = json.loads(canonical(obj))  # tuples become lists: what a reader sees
    return parsed


def _new_entry(
    *,
    seq: int,
    now: datetime,
    user: str,
    host: str,
    action: str,
    target: str,
    outcome: str,
    details: Mapping[str, Any],
    prev: str,
) -> AuditEntry:
    """A new entry with its hash computed."""
    e = AuditEntry(
        seq, _utc_text(now), int(now.timestamp()), user, host, action, target, outcome, details, prev, ""
    )
    return AuditEntry(**{**e.body(), "hash": e.computed_hash()})


def _utc_text(now: datetime) -> str:
    return now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ------------------------------------------------------------------ verification


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """One finding. ``line`` is the 1-based line in the file checked (None: not about one line)."""

    kind: ProblemKind
    message: str
    line: int | None = None
    seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "line": self.line, "seq": self.seq, "message": self.message}


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The result of checking one log (local file or off-site copy)."""

    source: str
    entries: tuple[AuditEntry, ...]  # the readable entries, in file order
    problems: tuple[AuditProblem, ...] = ()  # signs of tampering or loss
    warnings: tuple[AuditProblem, ...] = ()  # benign: an incomplete line after a power cut

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def count(self) -> int:
        return len(self.entries)

    @property
    def last_seq(self) -> int:
        return max((e.seq for e in self.entries), default=0)

    def by_seq(self) -> dict[int, AuditEntry]:
        """The first entry with each number."""
        out: dict[int, AuditEntry] = {}
        for e in self.entries:
            out.setdefault(e.seq, e)
        return out

    def with_problems(self, extra: Sequence[AuditProblem]) -> AuditReport:
        return AuditReport(self.source, self.entries, (*self.problems, *extra), self.warnings)

    def summary_text(self) -> str:
        if self.ok:
            return f"{self.source}: {self.count} entries, the chain is intact"
        return f"{self.source}: {self.count} entries, {len(self.problems)} problem(s) found"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ok": self.ok,
            "entries": self.count,
            "last_seq": self.last_seq,
            "problems": [p.to_dict() for p in self.problems],
            "warnings": [w.to_dict() for w in self.warnings],
        }


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise EntryFormatError(f"the field {k!r} appears twice")
        out[k] = v
    return out


def _parse_line(raw: bytes) -> AuditEntry:
    """Raises ``ValueError`` (JSON or UTF-8) for an unreadable line, ``EntryFormatError`` for a bad entry."""
    return AuditEntry.from_obj(json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys))


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _entries_span(first: int, last: int) -> str:
    return f"Entry {first} was" if first == last else f"Entries {first} to {last} were"


def _entries_name(first: int, last: int) -> str:
    return f"entry {first}" if first == last else f"entries {first} to {last}"


def verify_bytes(data: bytes, *, source: str = "audit log") -> AuditReport:
    """Check a whole log's content: every entry's hash, the numbering and the links."""
    raw_lines = data.split(b"\n")
    unterminated = not data.endswith(b"\n")
    if not unterminated:
        raw_lines.pop()  # the empty piece after the final newline
    entries: list[AuditEntry] = []
    lines: list[int] = []  # line number of each entry
    unreadable: list[int] = []  # not JSON: torn, or damaged
    invalid: dict[int, str] = {}  # JSON, but not an entry: changed by hand
    problems: list[AuditProblem] = []
    warnings: list[AuditProblem] = []
    for n, raw in enumerate(raw_lines, 1):
        if not raw.strip():
            warnings.append(AuditProblem(ProblemKind.TORN, f"Line {n} is empty.", line=n))
            continue
        try:
            entry = _parse_line(raw)
        except EntryFormatError as exc:
            invalid[n] = str(exc)
            continue
        except ValueError:
            unreadable.append(n)
            continue
        entries.append(entry)
        lines.append(n)
    line_of = dict(zip(map(id, entries), lines, strict=True))
    intact = {id(e): e.intact for e in entries}

    def where(e: AuditEntry, *, cap: bool = False) -> str:
        return f"{'E' if cap else 'e'}ntry {e.seq} (line {line_of[id(e)]})"

    # 1. content: each entry against its own hash
    for e in entries:
        if not intact[id(e)]:
            problems.append(
                AuditProblem(
                    ProblemKind.EDITED,
                    f"{where(e, cap=True)} was changed after it was written: its content no longer "
                    "matches its fingerprint.",
                    line=line_of[id(e)],
                    seq=e.seq,
                )
            )

    # 2. one genuine entry per number; the others were added later
    by_seq: dict[int, list[AuditEntry]] = {}
    for e in entries:
        by_seq.setdefault(e.seq, []).append(e)
    successor_prevs: dict[int, set[str]] = {}
    for e in entries:
        successor_prevs.setdefault(e.seq - 1, set()).add(e.prev)
    genuine: dict[int, AuditEntry] = {}
    for s in sorted(by_seq):
        group = by_seq[s]
        chosen = group[0]
        if len(group) > 1:
            pred = genuine.get(s - 1)
            pred_hash = GENESIS if s == 1 else pred.hash if pred else None
            ranked = sorted(
                group,
                key=lambda e: (
                    e.hash not in successor_prevs.get(s, set()),
                    not intact[id(e)],
                    e.prev != pred_hash,
                    line_of[id(e)],
                ),
            )
            chosen = ranked[0]
            for other in ranked[1:]:
                if other.hash == chosen.hash and intact[id(other)] and intact[id(chosen)]:
                    msg = (
                        f"{where(other, cap=True)} is a second copy of {where(chosen)}: "
                        "it was added after the log was written."
                    )
                else:
                    msg = (
                        f"Line {line_of[id(other)]} holds a second entry numbered {s} that is not part "
                        f"of the chain (the real one is on line {line_of[id(chosen)]}): it was added "
                        "after the log was written."
                    )
                problems.append(AuditProblem(ProblemKind.INSERTED, msg, line=line_of[id(other)], seq=s))
        genuine[s] = chosen
    chain = [e for e in entries if genuine.get(e.seq) is e]  # file order

    # 3. order: entries outside the longest run of increasing numbers were moved
    in_order = _longest_increasing([e.seq for e in chain])
    prev_in, next_in = [-1] * len(chain), [-1] * len(chain)  # nearest in-order neighbours
    for i in range(1, len(chain)):
        prev_in[i] = i - 1 if i - 1 in in_order else prev_in[i - 1]
    for i in range(len(chain) - 2, -1, -1):
        next_in[i] = i + 1 if i + 1 in in_order else next_in[i + 1]
    for i, e in enumerate(chain):
        if i in in_order:
            continue
        after = chain[next_in[i]] if next_in[i] >= 0 else None
        before = chain[prev_in[i]] if prev_in[i] >= 0 else None
        if after is not None and after.seq < e.seq:
            rel = f"it comes before entry {after.seq}"
        elif before is not None and before.seq > e.seq:
            rel = f"it comes after entry {before.seq}"
        else:
            rel = "it is not in its place"
        problems.append(
            AuditProblem(
                ProblemKind.REORDERED,
                f"{where(e, cap=True)} is out of order ({rel}): entries were moved after they were written.",
                line=line_of[id(e)],
                seq=e.seq,
            )
        )

    # 4. numbers: missing ones were deleted (or sit on an unreadable line)
    present = set(genuine)
    hashes = {e.hash: e for e in entries}
    for e in chain:
        # an edited entry whose number was changed still holds its slot if its successor links to it
        linked = hashes.get(e.prev)
        if linked is not None and not intact[id(linked)]:
            present.add(e.seq - 1)
    top = max(present, default=0)
    missing = sorted(set(range(1, top + 1)) - present)
    explained: set[int] = set()
    readable_lines = sorted(zip(lines, entries, strict=True), key=lambda p: p[0])
    for n in sorted([*unreadable, *invalid]):
        before_e = next((e for ln, e in reversed(readable_lines) if ln < n), None)
        after_e = next((e for ln, e in readable_lines if ln > n), None)
        lo = before_e.seq if before_e else 0
        hi = after_e.seq if after_e else None
        gap = [s for s in missing if lo < s and (hi is None or s < hi)] if hi is None or hi > lo else []
        if n in invalid:
            held = f": it held {_entries_name(gap[0], gap[-1])}" if gap and hi is not None else ""
            explained.update(gap if hi is not None else [])
            problems.append(
                AuditProblem(
                    ProblemKind.EDITED,
                    f"Line {n} is not a valid log entry ({invalid[n]}){held}; it was changed after it "
                    "was written.",
                    line=n,
                    seq=gap[0] if held else None,
                )
            )
        elif not raw_lines[n - 1].startswith(_ENTRY_START):
            # an interrupted write leaves the start of an entry; anything else was put there
            explained.update(gap if hi is not None else [])
            problems.append(
                AuditProblem(
                    ProblemKind.EDITED,
                    f"Line {n} cannot be read: it is not a log entry"
                    + (f" (it held {_entries_name(gap[0], gap[-1])})" if gap and hi is not None else "")
                    + "; it was changed after it was written.",
                    line=n,
                    seq=gap[0] if gap and hi is not None else None,
                )
            )
        elif after_e is None:
            warnings.append(
                AuditProblem(
                    ProblemKind.TORN,
                    f"The last line ({n}) is incomplete: the computer probably stopped while it was being "
                    "written, so the action it was recording is not in the log.",
                    line=n,
                )
            )
        elif gap and hi is not None:
            explained.update(gap)
            problems.append(
                AuditProblem(
                    ProblemKind.EDITED,
                    f"Line {n} cannot be read: it held {_entries_name(gap[0], gap[-1])}, which was damaged "
                    "or changed.",
                    line=n,
                    seq=gap[0],
                )
            )
        else:
            warnings.append(
                AuditProblem(
                    ProblemKind.TORN,
                    f"Line {n} is incomplete: the computer probably stopped while it was being written. "
                    "The entries around it link up, so no recorded entry is missing.",
                    line=n,
                )
            )
    gaps = [s for s in missing if s not in explained]
    chain_seqs = sorted(genuine)
    for first, last in _ranges(gaps):
        k = bisect.bisect_right(chain_seqs, last)
        nxt = genuine[chain_seqs[k]] if k < len(chain_seqs) else None
        at = f" (before line {line_of[id(nxt)]})" if nxt is not None else ""
        problems.append(
            AuditProblem(
                ProblemKind.DELETED,
                f"{_entries_span(first, last)} deleted from the log{at}.",
                line=line_of[id(nxt)] if nxt is not None else None,
                seq=first,
            )
        )

    # 5. links: each entry follows on from the one before it
    for e in chain:
        if e.seq == 1:
            if e.prev != GENESIS:
                problems.append(
                    AuditProblem(
                        ProblemKind.INSERTED,
                        f"{where(e, cap=True)} does not start the chain: it was added or replaced "
                        "after the log was written.",
                        line=line_of[id(e)],
                        seq=e.seq,
                    )
                )
            continue
        pred = genuine.get(e.seq - 1)
        if pred is None or e.prev == pred.hash:
            continue  # a missing predecessor is reported above
        problems.append(
            AuditProblem(
                ProblemKind.INSERTED,
                f"{where(e, cap=True)} does not follow on from {where(pred)}: one of them was added "
                "or replaced after the log was written.",
                line=line_of[id(e)],
                seq=e.seq,
            )
        )

    problems.sort(key=lambda p: (p.line if p.line is not None else 1 << 62, p.kind.value))
    return AuditReport(source, tuple(entries), tuple(problems), tuple(warnings))


def _longest_increasing(values: Sequence[int]) -> set[int]:
    """Indices of one longest strictly increasing subsequence (patience sorting)."""
    tails: list[int] = []
    tail_values: list[int] = []
    parent = [-1] * len(values)
    for i, v in enumerate(values):
        k = bisect.bisect_left(tail_values, v)
        if k:
            parent[i] = tails[k - 1]
        if k == len(tails):
            tails.append(i)
            tail_values.append(v)
        else:
            tails[k] = i
            tail_values[k] = v
    out: set[int] = set()
    i = tails[-1] if tails else -1
    while i >= 0:
        out.add(i)
        i = parent[i]
    return out


def _ranges(values: Sequence[int]) -> Iterator[tuple[int, int]]:
    start = prev = None
    for v in values:
        if start is None:
            start = prev = v
        elif prev is not None and v == prev + 1:
            prev = v
        else:
            assert prev is not None
            yield start, prev
            start = prev = v
    if start is not None and prev is not None:
        yield start, prev


def compare(local: AuditReport, copy: AuditReport) -> list[AuditProblem]:
    """What the off-site copy shows about the local log: changed entries and lost ones.

    Entries the local log has beyond the copy's end are normal (not uploaded yet)."""
    diverged: list[AuditProblem] = []
    mine, theirs = local.by_seq(), copy.by_seq()
    for s in sorted(theirs):
        other = theirs[s]
        here = mine.get(s)
        if here is None:
            continue
        if here.hash != other.hash or here.computed_hash() != other.computed_hash():
            diverged.append(
                AuditProblem(
                    ProblemKind.DIVERGED,
                    f"Entry {s} differs between {local.source} and {copy.source} "
                    f"(the copy says: {other.summary()}, {other.outcome}).",
                    seq=s,
                )
            )
    lost = [s for s in sorted(theirs) if s not in mine]
    local_last = local.last_seq
    deleted = [
        AuditProblem(
            ProblemKind.DELETED,
            f"Entry {s} ({theirs[s].summary()}) is in {copy.source} but missing from {local.source}.",
            seq=s,
        )
        for s in lost
        if s <= local_last
    ]
    problems = _capped(diverged, "differ between the two logs") + _capped(deleted, "are missing locally")
    tail = [s for s in lost if s > local_last]
    if tail:
        last = theirs[tail[-1]]
        problems.append(
            AuditProblem(
                ProblemKind.TRUNCATED,
                f"{_cap(local.source)} ends at entry {local_last}, but {copy.source} goes on to "
                f"entry {tail[-1]}: {len(tail)} entr{'y was' if len(tail) == 1 else 'ies were'} removed from "
                f"the end of the local log (the last one: {last.summary()}, {last.outcome}).",
                seq=tail[0],
            )
        )
    return problems


def _capped(problems: list[AuditProblem], what: str) -> list[AuditProblem]:
    """The first :data:`MAX_LISTED` problems of one kind, then one line for the rest."""
    if len(problems) <= MAX_LISTED:
        return problems
    rest = problems[MAX_LISTED:]
    more = AuditProblem(
        rest[0].kind, f"{len(rest)} more entries {what} (up to entry {rest[-1].seq}).", seq=rest[0].seq
    )
    return [*problems[:MAX_LISTED], more]


# ------------------------------------------------------------------ the local file


@contextlib.contextmanager
def _locked(f: IO[bytes], *, exclusive: bool) -> Iterator[None]:
    """Hold a lock on the open log for the block; other processes wait for it."""
    if sys.platform == "win32":
        # byte-range locks are mandatory on Windows: lock a byte past the end so the lock never
        # blocks reading or appending, only other lockers. There are no shared locks.
        for _ in range(_WIN_LOCK_ROUNDS):
            f.seek(_WIN_LOCK_OFFSET)
            try:
                msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)
                break
            except OSError:
                continue
        else:
            raise AuditLogError(
                f"The audit log {f.name} stayed locked by another program for over a minute.",
                hint="Close other Safekeep windows or commands that may be stuck, then try again.",
            )
        try:
            yield
        finally:
            f.seek(_WIN_LOCK_OFFSET)
            msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _read_tail(f: IO[bytes]) -> tuple[AuditEntry | None, bool]:
    """The last readable entry of the open log and whether the file ends with a newline."""
    size = f.seek(0, os.SEEK_END)
    if size == 0:
        return None, True
    f.seek(size - 1)
    ends_clean = f.read(1) == b"\n"
    pos, rest = size, b""
    while pos > 0:
        step = min(_TAIL_BLOCK, pos)
        pos -= step
        f.seek(pos)
        pieces = (f.read(step) + rest).split(b"\n")
        rest = pieces[0] if pos > 0 else b""
        for raw in reversed(pieces[1:] if pos > 0 else pieces):
            if not raw.strip():
                continue
            try:
                return _parse_line(raw), ends_clean
            except ValueError:
                continue
    return None, ends_clean


def _fsync_dir(path: Path) -> None:
    if sys.platform == "win32":
        return  # directories cannot be opened for fsync on Windows
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def default_log_path(env: Mapping[str, str] | None = None) -> Path:
    """The app's audit log: ``<data folder>/audit.jsonl`` (``SAFEKEEP_HOME`` moves it)."""
    return paths.data_dir(env) / LOG_FILE_NAME


class AuditLog:
    """The audit log file; every method opens it afresh, so instances are cheap and shareable."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock = SYSTEM_CLOCK,
        user: str | None = None,
        host: str | None = None,
        host_id: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.user = user if user is not None else _os_user()
        self.host = host if host is not None else socket.gethostname()
        if host_id is not None and not _HOST_ID.match(host_id):
            raise ValueError(f"a host id has 1 to 64 characters 0-9 A-Z a-z _ -, not {host_id!r}")
        self._host_id = host_id

    @classmethod
    def default(cls, *, clock: Clock = SYSTEM_CLOCK, env: Mapping[str, str] | None = None) -> AuditLog:
        return cls(default_log_path(env), clock=clock)

    @property
    def host_id(self) -> str:
        """This computer's name for its off-site copies (see :func:`local_host_id`)."""
        if self._host_id is None:
            self._host_id = local_host_id()
        return self._host_id

    def append(
        self,
        action: Action | str,
        *,
        target: str = "",
        outcome: Outcome | str = "success",
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Record one action; returns the entry written (durable when this returns).

        Raises ``ValueError`` for a bad outcome or details (a programming error) and
        :class:`AuditLogError` when the file cannot be written."""
        action_text = str(action.value if isinstance(action, Action) else action)
        if not action_text:
            raise ValueError("an audit entry needs an action")
        outcome_text = _outcome_text(outcome)
        details_obj = _details_obj(details)
        created = not self.path.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as f, _locked(f, exclusive=True):
                last, ends_clean = _read_tail(f)
                if not ends_clean:
                    log.warning(
                        "the audit log %s ends in an incomplete line; it is kept and closed", self.path
                    )
                entry = _new_entry(
                    seq=last.seq + 1 if last else 1,
                    now=self.clock.now(),
                    user=self.user,
                    host=self.host,
                    action=action_text,
                    target=target,
                    outcome=outcome_text,
                    details=details_obj,
                    prev=last.hash if last else GENESIS,
                )
                f.write((b"" if ends_clean else b"\n") + entry.to_line())
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise AuditLogError(
                f"Cannot write to the audit log {self.path}: {exc.strerror or exc}.",
                hint="Check that the disk is not full and that you may write to this folder.",
            ) from exc
        if created:
            _fsync_dir(self.path.parent)
        log.debug("audit entry %d: %s %s", entry.seq, entry.action, entry.outcome)
        return entry

    def read_bytes(self) -> bytes:
        """The whole file as it is between two appends (empty when there is no log yet)."""
        try:
            with open(self.path, "rb") as f, _locked(f, exclusive=False):
                f.seek(0)
                return f.read()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise AuditLogError(
                f"Cannot read the audit log {self.path}: {exc.strerror or exc}.",
                hint="Check that the file exists and that you may read it.",
            ) from exc

    def verify(self) -> AuditReport:
        return verify_bytes(self.read_bytes(), source=f"the audit log {self.path}")

    def export_csv(self, out: TextIO) -> AuditReport:
        """Write every entry as CSV; returns the verification of what was exported."""
        report = self.verify()
        export_csv(report, out)
        return report


CSV_COLUMNS = ("seq", "time", "user", "host", "action", "target", "outcome", "details", "hash")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_text(value: str) -> str:
    # a spreadsheet runs a cell that starts like a formula; an apostrophe keeps it text
    return "'" + value if value.startswith(_FORMULA_START) else value


def export_csv(report: AuditReport, out: TextIO) -> None:
    """The entries of ``report`` as CSV (:data:`CSV_COLUMNS`), in file order.

    Text cells that a spreadsheet would run as a formula get a leading apostrophe."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for e in report.entries:
        details = json.dumps(dict(e.details), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        writer.writerow(
            [
                e.seq,
                e.time,
                _csv_text(e.user),
                _csv_text(e.host),
                _csv_text(e.action),
                _csv_text(e.target),
                _csv_text(e.outcome),
                _csv_text(details),
                e.hash,
            ]
        )


# ------------------------------------------------------------------ the computer's id


def _machine_identity() -> str:
    """The operating system's stable id of this installation, or a fallback."""
    if sys.platform == "win32":
        try:
            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SOFTWARE\Microsoft\Cryptography") as k:
                value, _ = winreg.QueryValueEx(k, "MachineGuid")
                if value:
                    return str(value)
        except OSError:
            pass
    elif sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["/usr/sbin/ioreg", "-rd1", "-c", "IOPlatformExpertDevice"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout
            m = re.search(r'"IOPlatformUUID"\s*=\s*"([^"]+)"', out)
            if m:
                return m.group(1)
        except (OSError, subprocess.SubprocessError):
            pass
    else:
        for candidate in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
            try:
                value = Path(candidate).read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError):
                continue
            if value:
                return value
    node = uuid.getnode()
    if not node & (1 << 40):  # a real hardware address, not a random stand-in
        return f"node:{node:012x}"
    return f"host:{socket.gethostname()}"


def local_host_id() -> str:
    """This computer's id for off-site copies: 16 hex digits, the same on every run.

    A keyed hash of the OS's machine id (``/etc/machine-id``, Windows' ``MachineGuid``, the Mac's
    platform UUID), as the machine-id documentation recommends: it tells copies of different
    computers apart and reveals nothing else about the computer."""
    return hmac.new(_HOST_ID_KEY, _machine_identity().encode("utf-8"), hashlib.sha256).hexdigest()[:16]


# ------------------------------------------------------------------ the off-site copy


class SealingRepository(Protocol):
    """What the off-site copy needs of a repository: its storage, its master key, its version."""

    @property
    def backend(self) -> Backend: ...

    @property
    def key(self) -> MasterKey: ...

    @property
    def version(self) -> int: ...


@dataclass(frozen=True, slots=True)
class CopyInfo:
    """One stored copy: ``audit-<host_id>-<last_seq>-<digest>`` in the repository's app folder."""

    name: str
    host_id: str
    last_seq: int
    digest: str  # the first 16 hex digits of the SHA-256 of the plain log
    size: int

    @property
    def where(self) -> str:
        return f"{FileType.APP.value}/{self.name}"

    @staticmethod
    def parse(name: str, size: int = 0) -> CopyInfo | None:
        m = _COPY_NAME.match(name)
        if not m:
            return None
        return CopyInfo(name, m["host"], int(m["seq"]), m["digest"], size)


@dataclass(frozen=True, slots=True)
class OffsiteCopy:
    info: CopyInfo
    data: bytes  # the plain log, as the local file was when it was uploaded
    report: AuditReport  # its own verification, plus a name that does not match its content


@dataclass(frozen=True, slots=True)
class UploadResult:
    name: str | None  # the copy that now holds the log (None: the log is empty)
    uploaded: bool  # False: that copy was already there
    entries: int
    removed: tuple[str, ...] = ()  # older copies replaced by this one
    kept: tuple[str, ...] = ()  # older copies kept: they disagree with the local log
    problems: tuple[AuditProblem, ...] = ()  # what the kept copies show (or why they are unreadable)


UPLOAD_COMPARE_COPIES = 3
"""How many of the newest older copies :func:`upload_copy` reads, compares and may replace."""


def _copy_name(host_id: str, data: bytes, last_seq: int) -> str:
    return f"audit-{host_id}-{last_seq:012d}-{hashlib.sha256(data).hexdigest()[:16]}"


def list_copies(
    repo: SealingRepository, *, host_id: str | None = None, cancel: CancelToken = NEVER
) -> list[CopyInfo]:
    """The stored copies (of one computer if ``host_id``), by computer then oldest first."""
    found = []
    for info in repo.backend.list(FileType.APP, cancel=cancel):
        c = CopyInfo.parse(info.name, info.size)
        if c is not None and (host_id is None or c.host_id == host_id):
            found.append(c)
    return sorted(found, key=lambda c: (c.host_id, c.last_seq, c.name))


def load_copy(repo: SealingRepository, info: CopyInfo, *, cancel: CancelToken = NEVER) -> OffsiteCopy:
    """Download, decrypt and verify one copy. Raises :class:`AuditCopyError` if it is unreadable."""
    try:
        sealed = repo.backend.load(Handle(FileType.APP, info.name), cancel=cancel)
    except NotFound as exc:
        raise AuditCopyError(f"The off-site audit copy {info.where} has disappeared.") from exc
    try:
        data = unpacked.decode_plaintext(repo.key.open(sealed))
    except AuthenticationFailed as exc:
        raise AuditCopyError(
            f"The off-site audit copy {info.where} fails authentication: it was damaged or changed.",
            hint="Keep the damaged file for the investigation; the next backup uploads a new copy.",
        ) from exc
    except unpacked.UnpackedFormatError as exc:
        raise AuditCopyError(f"The off-site audit copy {info.where} cannot be read: {exc}.") from exc
    report = verify_bytes(data, source=f"the off-site copy {info.where}")
    extra = []
    if hashlib.sha256(data).hexdigest()[:16] != info.digest or report.last_seq != info.last_seq:
        extra.append(
            AuditProblem(
                ProblemKind.EDITED,
                f"The off-site copy {info.where} does not hold what its name says (it ends at entry "
                f"{report.last_seq}): the file was renamed or replaced.",
            )
        )
    return OffsiteCopy(info, data, report.with_problems(extra))


def _choose_host(repo: SealingRepository, host_id: str | None, cancel: CancelToken) -> list[CopyInfo]:
    copies = list_copies(repo, cancel=cancel)
    location = repo.backend.properties.location
    if not copies:
        raise AuditCopyError(
            f"There is no off-site copy of the audit log at {location}.",
            hint="It is uploaded after each backup to this destination.",
        )
    hosts = sorted({c.host_id for c in copies})
    if host_id is None:
        mine = local_host_id()
        if mine in hosts:
            host_id = mine
        elif len(hosts) == 1:
            host_id = hosts[0]
        else:
            raise AuditCopyError(
                f"{location} holds the audit logs of {len(hosts)} computers: {', '.join(hosts)}.",
                hint="Choose one with --host-id.",
            )
    chosen = [c for c in copies if c.host_id == host_id]
    if not chosen:
        raise AuditCopyError(
            f"There is no off-site audit copy of the computer {host_id} at {location}.",
            hint=f"Copies found: {', '.join(hosts)}.",
        )
    return chosen


def download_copy(
    repo: SealingRepository, host_id: str | None = None, *, cancel: CancelToken = NEVER
) -> OffsiteCopy:
    """The newest copy of one computer's log (this computer's, or the only one, by default)."""
    return load_copy(repo, _choose_host(repo, host_id, cancel)[-1], cancel=cancel)


@dataclass(frozen=True, slots=True)
class CopyVerification:
    info: CopyInfo
    report: AuditReport | None  # None: the copy could not be read
    comparison: tuple[AuditProblem, ...]  # against the local log (and why it could not be read)

    @property
    def ok(self) -> bool:
        return self.report is not None and self.report.ok and not self.comparison

    def to_dict(self) -> dict[str, Any]:
        return {
            "copy": self.info.where,
            "host_id": self.info.host_id,
            "ok": self.ok,
            "report": self.report.to_dict() if self.report else None,
            "comparison": [p.to_dict() for p in self.comparison],
        }


def verify_copies(
    repo: SealingRepository,
    local: AuditReport | None,
    host_id: str | None = None,
    *,
    cancel: CancelToken = NEVER,
) -> list[CopyVerification]:
    """Verify every stored copy of one computer's log, each against ``local`` when given."""
    out = []
    for info in _choose_host(repo, host_id, cancel):
        try:
            copy = load_copy(repo, info, cancel=cancel)
        except AuditCopyError as exc:
            out.append(CopyVerification(info, None, (AuditProblem(ProblemKind.DAMAGED, exc.message),)))
            continue
        comparison = tuple(compare(local, copy.report)) if local is not None else ()
        out.append(CopyVerification(info, copy.report, comparison))
    return out


def upload_copy(repo: SealingRepository, audit_log: AuditLog, *, cancel: CancelToken = NEVER) -> UploadResult:
    """Store the log's current content as this computer's off-site copy in ``repo``.

    The new copy is saved first; older copies are removed afterwards, and only those whose every
    entry is in the new copy unchanged. A copy that shows entries the local log lost or changed
    is kept and reported in ``problems`` (the caller should alert). Storage errors propagate."""
    data = audit_log.read_bytes()
    local = verify_bytes(data, source="the audit log on this computer")
    if not local.entries:
        return UploadResult(None, False, 0)
    host_id = audit_log.host_id
    name = _copy_name(host_id, data, local.last_seq)
    existing = list_copies(repo, host_id=host_id, cancel=cancel)
    if any(c.name == name for c in existing):
        return UploadResult(name, False, local.count)
    removable: list[str] = []
    kept: list[str] = []
    problems: list[AuditProblem] = []
    # normally there is one older copy; where storage refuses deletes (append-only keys) they pile
    # up, so only the newest few are read: the others are left alone, never removed unread
    for info in existing[-UPLOAD_COMPARE_COPIES:]:
        try:
            older = load_copy(repo, info, cancel=cancel)
        except AuditCopyError as exc:
            kept.append(info.name)
            problems.append(AuditProblem(ProblemKind.DAMAGED, exc.message))
            continue
        found = compare(local, older.report)
        if found or older.report.last_seq > local.last_seq:
            kept.append(info.name)
            problems.extend(found)
        else:
            removable.append(info.name)
    sealed = unpacked.seal(repo.key, data, version=repo.version)
    repo.backend.save(Handle(FileType.APP, name), sealed, cancel=cancel)
    removed = []
    for old in removable:
        try:
            repo.backend.remove(Handle(FileType.APP, old), cancel=cancel)
            removed.append(old)
        except NotFound:
            removed.append(old)  # another upload removed it first
        except StorageError as exc:
            log.warning("could not remove the older audit copy %s: %s", old, exc)
    for p in problems:
        log.warning("off-site audit copy: %s", p.message)
    log.info("audit log uploaded as %s (%d entries)", name, local.count)
    return UploadResult(name, True, local.count, tuple(removed), tuple(kept), tuple(problems))


__all__ = [
    "CSV_COLUMNS",
    "GENESIS",
    "OUTCOMES",
    "Action",
    "AuditCopyError",
    "AuditEntry",
    "AuditError",
    "AuditLog",
    "AuditLogError",
    "AuditProblem",
    "AuditReport",
    "CopyInfo",
    "CopyVerification",
    "OffsiteCopy",
    "ProblemKind",
    "UploadResult",
    "compare",
    "default_log_path",
    "describe",
    "download_copy",
    "export_csv",
    "list_copies",
    "load_copy",
    "local_host_id",
    "upload_copy",
    "verify_bytes",
    "verify_copies",
]
