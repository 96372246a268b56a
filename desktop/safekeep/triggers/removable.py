"""Noticing that a removable destination (a USB disk) has been connected.

:class:`RemovablePoller` checks a set of destination folders every few seconds with a *probe*.
The default probe, :func:`repository_probe`, says a destination is present when its folder exists
and holds a repository (its ``config`` file), and identifies it by the device it lives on: an
empty mount-point folder left behind when the disk is unplugged does not count, and a different
disk mounted at the same place counts as a new connection.

A destination that goes from absent (or another device) to present is reported once through
``on_connected(key)``; the engine maps the key (a destination id) to the plans using it and calls
:meth:`~safekeep.triggers.scheduler.Scheduler.disk_connected` for each. Destinations already
present at the first poll are reported too, since the disk may have been plugged in while
Safekeep was not running (the scheduler only runs plans whose last backup is older than their
schedule).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Callable, Mapping

from safekeep.common.cancel import CancelToken

log = logging.getLogger(__name__)

Probe = Callable[[str], int | None]
"""``probe(path)``: an identity of the device holding a present destination, or None if absent."""


def repository_probe(path: str) -> int | None:
    """The device id of ``path`` if it is a folder holding a repository's ``config`` file."""
    try:
        st = os.stat(path)
        if not stat.S_ISDIR(st.st_mode) or not os.path.isfile(os.path.join(path, "config")):
            return None
    except OSError:
        return None
    return st.st_dev


class RemovablePoller:
    """Reports destinations that appear. Thread-safe; poll from one thread."""

    def __init__(
        self,
        on_connected: Callable[[str], None],
        *,
        probe: Probe = repository_probe,
        interval: float = 5.0,
    ) -> None:
        self._on_connected = on_connected
        self._probe = probe
        self.interval = interval
        self._locations: dict[str, str] = {}
        self._seen: dict[str, int | None] = {}
        self._lock = threading.Lock()

    def set_locations(self, locations: Mapping[str, str]) -> None:
        """The removable destinations to watch: key (destination id) -> folder path."""
        with self._lock:
            self._locations = dict(locations)
            self._seen = {k: v for k, v in self._seen.items() if k in self._locations}

    def poll(self) -> list[str]:
        """Probe every location once; report and return the keys that have just appeared."""
        with self._lock:
            locations = dict(self._locations)
        appeared: list[str] = []
        for key, path in locations.items():
            try:
                device = self._probe(path)
            except Exception:
                log.exception("checking whether %s is connected failed", path)
                device = None
            with self._lock:
                if key not in self._locations:
                    continue
                before = self._seen.get(key)
                self._seen[key] = device
            if device is not None and device != before:
                log.info("destination %s appeared at %s", key, path)
                appeared.append(key)
            elif device is None and before is not None:
                log.info("destination %s at %s was disconnected", key, path)
        for key in appeared:
            try:
                self._on_connected(key)
            except Exception:
                log.exception("handling the connection of %s failed", key)
        return appeared

    def is_present(self, key: str) -> bool:
        """Whether the last poll found the destination."""
        with self._lock:
            return self._seen.get(key) is not None

    def run_forever(self, cancel: CancelToken) -> None:
        """Poll every ``interval`` seconds until ``cancel``."""
        while not cancel.cancelled:
            self.poll()
            if cancel.wait(self.interval):
                return
