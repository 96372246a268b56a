"""The range helpers every provider's load uses."""

from __future__ import annotations

import pytest

from safekeep.storage.base import check_range, http_range


@pytest.mark.parametrize(("offset", "length"), [(-1, None), (0, -1), (-5, 3)])
def test_negative_ranges_are_refused(offset: int, length: int | None) -> None:
    with pytest.raises(ValueError, match="invalid range"):
        check_range(offset, length)


def test_valid_ranges_pass() -> None:
    for offset, length in [(0, None), (0, 0), (10, 5), (7, None)]:
        check_range(offset, length)


@pytest.mark.parametrize(
    ("offset", "length", "header"),
    [(0, None, None), (0, 10, "bytes=0-9"), (100, None, "bytes=100-"), (100, 1, "bytes=100-100")],
)
def test_http_range_header(offset: int, length: int | None, header: str | None) -> None:
    assert http_range(offset, length) == header
