"""The removable-disk poller: appear, disappear, another disk at the same place, the real probe."""

from __future__ import annotations

import os
from pathlib import Path

from safekeep.triggers.removable import RemovablePoller, repository_probe


class Disks:
    """A probe whose answers the test sets: path -> device id (absent paths are missing)."""

    def __init__(self) -> None:
        self.devices: dict[str, int] = {}

    def __call__(self, path: str) -> int | None:
        return self.devices.get(path)


def test_reports_a_disk_once_when_it_appears() -> None:
    disks = Disks()
    connected: list[str] = []
    poller = RemovablePoller(connected.append, probe=disks)
    poller.set_locations({"usb": "/media/usb/backup", "other": "/media/other"})
    assert poller.poll() == []
    disks.devices["/media/usb/backup"] = 42
    assert poller.poll() == ["usb"]
    assert poller.poll() == []
    assert poller.is_present("usb") and not poller.is_present("other")
    del disks.devices["/media/usb/backup"]
    assert poller.poll() == []
    assert not poller.is_present("usb")
    disks.devices["/media/usb/backup"] = 42
    assert poller.poll() == ["usb"]
    disks.devices["/media/usb/backup"] = 43  # another disk mounted at the same place
    assert poller.poll() == ["usb"]
    assert connected == ["usb", "usb", "usb"]


def test_disks_present_at_the_first_poll_are_reported() -> None:
    disks = Disks()
    disks.devices["/mnt/a"] = 1
    connected: list[str] = []
    poller = RemovablePoller(connected.append, probe=disks)
    poller.set_locations({"a": "/mnt/a"})
    assert poller.poll() == ["a"]
    assert connected == ["a"]


def test_a_failing_probe_or_callback_does_not_stop_the_poller() -> None:
    def probe(path: str) -> int | None:
        if path == "/bad":
            raise OSError("I/O error")
        return 7

    def on_connected(key: str) -> None:
        raise RuntimeError("engine busy")

    poller = RemovablePoller(on_connected, probe=probe)
    poller.set_locations({"bad": "/bad", "good": "/good"})
    assert poller.poll() == ["good"]


def test_removed_locations_are_forgotten() -> None:
    disks = Disks()
    disks.devices["/mnt/a"] = 1
    poller = RemovablePoller(lambda key: None, probe=disks)
    poller.set_locations({"a": "/mnt/a"})
    assert poller.poll() == ["a"]
    poller.set_locations({})
    assert poller.poll() == []
    poller.set_locations({"a": "/mnt/a"})
    assert poller.poll() == ["a"]


def test_repository_probe_needs_a_repository_config(tmp_path: Path) -> None:
    repo = tmp_path / "backup"
    assert repository_probe(str(repo)) is None
    repo.mkdir()
    assert repository_probe(str(repo)) is None  # an empty mount point is not the disk
    (repo / "config").write_bytes(b"x")
    assert repository_probe(str(repo)) == os.stat(repo).st_dev
    (tmp_path / "file").write_bytes(b"")
    assert repository_probe(str(tmp_path / "file")) is None
