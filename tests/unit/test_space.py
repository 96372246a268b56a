"""Low-space warnings: thresholds, fractions, unknown totals, the expected size of the next backup."""

from __future__ import annotations

import pytest

from safekeep.triggers.space import (
    GIB,
    MIB,
    SpaceReading,
    SpaceThreshold,
    check_space,
    format_bytes,
    local_space,
)


def test_plenty_of_space_gives_no_warning() -> None:
    assert check_space("USB disk", SpaceReading(50 * GIB, 100 * GIB)) is None


def test_below_the_absolute_minimum() -> None:
    warning = check_space("USB disk", SpaceReading(812 * MIB, 10 * GIB), SpaceThreshold(GIB, 0.0))
    assert warning is not None
    assert warning.threshold_bytes == GIB
    assert warning.message == "Only 812 MiB is free on “USB disk” (8% of 10 GiB)."
    assert "retention" in warning.hint


def test_fraction_of_a_large_disk_wins_over_the_minimum() -> None:
    threshold = SpaceThreshold(min_free_bytes=GIB, min_free_fraction=0.05)
    assert threshold.bytes_for(2000 * GIB) == 100 * GIB
    assert check_space("NAS", SpaceReading(90 * GIB, 2000 * GIB), threshold) is not None
    assert check_space("NAS", SpaceReading(110 * GIB, 2000 * GIB), threshold) is None


def test_unknown_total_uses_the_minimum_and_no_reading_means_no_check() -> None:
    assert check_space("cloud", SpaceReading(500 * MIB, None)) is not None
    assert check_space("cloud", SpaceReading(5 * GIB, None)) is None
    assert check_space("cloud", None) is None


def test_configured_mib_threshold() -> None:
    threshold = SpaceThreshold.from_mib(4096)
    assert threshold == SpaceThreshold(4 * GIB, 0.0)
    assert check_space("d", SpaceReading(3 * GIB, 1000 * GIB), threshold) is not None
    assert check_space("d", SpaceReading(5 * GIB, 1000 * GIB), threshold) is None
    assert SpaceThreshold.from_mib(None) == SpaceThreshold()
    assert check_space("d", SpaceReading(0, 10 * GIB), SpaceThreshold.from_mib(0)) is None


def test_next_backup_not_fitting_warns_before_the_threshold() -> None:
    warning = check_space(
        "d", SpaceReading(30 * GIB, 1000 * GIB), SpaceThreshold(GIB, 0.0), expected_bytes=20 * GIB
    )
    assert warning is not None
    assert warning.message.endswith("The next backup may add about 20 GiB.")
    assert (
        check_space(
            "d", SpaceReading(50 * GIB, 1000 * GIB), SpaceThreshold(GIB, 0.0), expected_bytes=20 * GIB
        )
        is None
    )


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (812 * MIB, "812 MiB"),
        (3 * GIB + GIB // 2, "3.5 GiB"),
        (5000 * GIB, "4.9 TiB"),
    ],
)
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text


def test_local_space_reads_the_file_system(tmp_path: object) -> None:
    reading = local_space(str(tmp_path))
    assert reading.total_bytes is not None and 0 <= reading.free_bytes <= reading.total_bytes
