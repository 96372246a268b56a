"""``local_go_time``: the cached hourly UTC offsets agree with ``localtime`` across zone changes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from safekeep.core.fs import nodes


@pytest.fixture()
def zone(request: pytest.FixtureRequest) -> Iterator[str]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()  # forgets the offsets cached for the previous zone
    yield request.param
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.mark.parametrize(
    ("zone", "transition"),
    [
        ("Europe/Berlin", 1711846800),  # 2024-03-31 01:00 UTC, +01:00 -> +02:00
        ("Europe/Berlin", 1729990800),  # 2024-10-27 01:00 UTC, +02:00 -> +01:00
        ("Australia/Lord_Howe", 1712415600),  # 2024-04-06 15:00 UTC, a 30-minute change
        ("Asia/Kolkata", 1700000000),  # no change, a half-hour offset
    ],
    indirect=["zone"],
)
def test_offsets_match_localtime_around_a_change(zone: str, transition: int) -> None:
    changes = time.localtime(transition - 1).tm_gmtoff != time.localtime(transition).tm_gmtoff
    assert changes == (zone != "Asia/Kolkata")  # the zone data really has the change tested
    # twice over: the first pass fills the cache, the second reads it
    for _ in range(2):
        for sec in range(transition - 7300, transition + 7300, 97):
            for ns in (sec * 10**9, sec * 10**9 + 999_999_999):
                got = nodes.local_go_time(ns)
                assert got.ns == ns
                assert got.offset == time.localtime(sec).tm_gmtoff, (zone, sec)
