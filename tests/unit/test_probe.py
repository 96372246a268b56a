"""The connection probe (``safekeep.storage.validate``) against the in-memory provider."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from safekeep.common.cancel import CancelToken
from safekeep.common.clock import FakeClock
from safekeep.common.errors import Cancelled
from safekeep.storage.base import FileType, Handle
from safekeep.storage.compose import StorageOptions, wrap
from safekeep.storage.errors import NotFound, PermissionDenied, TransientStorageError
from safekeep.storage.providers.memory import MemoryBackend
from safekeep.storage.validate import ProbeStep, Status, probe

STEPS = ["connect", "write", "read", "range-read", "list", "size", "delete", "clock", "free-space"]


class ReportingBackend(MemoryBackend):
    def __init__(self, server: datetime | None, free: int | None) -> None:
        super().__init__()
        self._server = server
        self._free = free

    def server_time(self) -> datetime | None:
        return self._server

    def free_space(self) -> int | None:
        return self._free


class CorruptingBackend(MemoryBackend):
    def load(self, h, offset=0, length=None, *, cancel=None):  # type: ignore[no-untyped-def, override]
        data = super().load(h, offset, length)
        return bytes([data[0] ^ 1]) + data[1:] if data else data


def run(backend: MemoryBackend, clock: FakeClock | None = None) -> tuple[dict[str, ProbeStep], list[str]]:
    seen: list[str] = []
    result = probe(backend, clock=clock or FakeClock(), report=lambda s: seen.append(s.name))
    return {s.name: s for s in result.steps}, seen


def test_all_steps_pass_and_are_reported_in_order() -> None:
    backend = MemoryBackend()
    steps, seen = run(backend)
    assert seen == STEPS
    assert all(steps[n].status is Status.OK for n in STEPS[:7])
    assert steps["clock"].status is Status.SKIPPED and "does not report" in steps["clock"].message
    assert steps["free-space"].status is Status.SKIPPED
    assert backend.files == {}  # the test file was removed
    assert "no repository here yet" in steps["connect"].message


def test_no_delete_permission_is_a_warning_not_a_failure() -> None:
    backend = MemoryBackend()
    backend.fail_next("remove", PermissionDenied("AccessDenied on DeleteObject"))
    result = probe(backend, clock=FakeClock())
    delete = result.step("delete")
    assert delete.status is Status.WARNING
    assert "cannot delete" in delete.message and "Object Lock" in delete.message
    assert result.ok


def test_read_mismatch_fails() -> None:
    result = probe(CorruptingBackend(), clock=FakeClock())
    assert result.step("read").status is Status.FAILED
    assert "differs" in result.step("read").message
    assert result.step("range-read").status is Status.FAILED
    assert not result.ok


def test_unreachable_storage_fails_connect_and_skips_the_rest() -> None:
    backend = MemoryBackend()
    backend.fail_next("list", PermissionDenied("The password was refused.", hint="Use an app password."))
    result = probe(backend, clock=FakeClock())
    connect = result.step("connect")
    assert connect.status is Status.FAILED
    assert "password was refused" in connect.message and connect.hint == "Use an app password."
    assert all(result.step(n).status is Status.SKIPPED for n in STEPS[1:])
    assert backend.calls["save"] == 0


def test_write_failure_skips_the_dependent_steps() -> None:
    backend = MemoryBackend()
    backend.fail_next("save", NotFound("bucket missing"))
    result = probe(backend, clock=FakeClock())
    assert result.step("write").status is Status.FAILED
    assert [result.step(n).status for n in ["read", "range-read", "list", "size", "delete"]] == [
        Status.SKIPPED
    ] * 5


def test_clock_skew_and_free_space() -> None:
    clock = FakeClock()
    skewed = ReportingBackend(clock.now() - timedelta(minutes=20), free=10 << 40)
    result = probe(wrap(skewed, options=StorageOptions(retry_attempts=2, connections=2)), clock=clock)
    assert result.step("clock").status is Status.WARNING
    assert "1200 seconds ahead" in result.step("clock").message
    assert result.step("free-space").status is Status.OK
    fine = ReportingBackend(clock.now() + timedelta(seconds=3), free=100)
    result = probe(fine, clock=clock)
    assert result.step("clock").status is Status.OK
    assert result.step("free-space").status is Status.WARNING


def test_transient_errors_are_retried_through_the_stack() -> None:
    inner = MemoryBackend()
    inner.fail_next("save", TransientStorageError("503"), count=2)
    clock = FakeClock()
    result = probe(wrap(inner, options=StorageOptions(retry_attempts=4)), clock=clock)
    assert result.ok and result.step("write").status is Status.OK


def test_cancel_stops_the_probe_and_cleans_up() -> None:
    token = CancelToken()
    backend = MemoryBackend()

    def report(step: ProbeStep) -> None:
        if step.name == "read":
            token.cancel()

    with pytest.raises(Cancelled):
        probe(backend, clock=FakeClock(), cancel=token, report=report)
    assert backend.files == {}
    assert Handle(FileType.PACK, "x") not in backend.files
    _ = datetime.now(UTC)
