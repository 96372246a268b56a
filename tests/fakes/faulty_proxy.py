"""A TCP proxy on 127.0.0.1 that injects network and HTTP faults between a client and a server.

:class:`FaultyProxy` accepts connections and, for each new one, either forwards it to the
upstream server or applies the next fault of its schedule. Faults are applied to one connection
in every ``every`` (so retries can get through) until the schedule is used up; after that
everything is forwarded. The faults:

- ``drop``   — read the start of the request, then close the connection (a normal FIN).
- ``reset``  — read the start of the request, then close with ``SO_LINGER`` 0 (a TCP RST).
- ``500``, ``503``, ``429`` — answer the request with that HTTP status (``Retry-After`` on 503
  and 429) instead of forwarding it, then close.
- ``stall``  — accept, say nothing for ``stall_seconds`` (bounded), then close.
- ``cut``    — forward, but cut the connection with a reset after ``cut_after`` bytes from the
  client (a failure in the middle of an upload).

HTTP clients keep connections alive, so while faults remain, a forwarded connection is recycled
(closed) once it has been idle for ``idle_recycle`` seconds after an answer, so that new
connections — and so new chances for a fault — happen. ``applied`` records the faults used, for assertions.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable

FAULTS = frozenset({"drop", "reset", "500", "503", "429", "stall", "cut"})
_STATUS = {
    "500": "500 Internal Server Error",
    "503": "503 Service Unavailable",
    "429": "429 Too Many Requests",
}


class FaultyProxy:
    """Listens on 127.0.0.1:``port``; forwards to ``upstream`` with scheduled faults."""

    def __init__(
        self,
        upstream: tuple[str, int],
        faults: Iterable[str],
        *,
        every: int = 2,
        stall_seconds: float = 0.3,
        cut_after: int = 64 * 1024,
        idle_recycle: float = 0.05,
        retry_after: int = 0,
    ) -> None:
        schedule = list(faults)
        unknown = set(schedule) - FAULTS
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}")
        self.upstream = upstream
        self._faults = deque(schedule)
        self.every = max(1, every)
        self.stall_seconds = min(stall_seconds, 5.0)
        self.cut_after = cut_after
        self.idle_recycle = idle_recycle
        self.retry_after = retry_after
        self.applied: Counter[str] = Counter()
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._accept_thread = threading.Thread(target=self._accept_loop, name="faulty-proxy", daemon=True)
        self._accept_thread.start()

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._faults)

    def close(self) -> None:
        self._stop.set()
        self._accept_thread.join(timeout=5)
        self._sock.close()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> FaultyProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------

    def _next_action(self) -> str:
        with self._lock:
            self.connections += 1
            if self._faults and self.connections % self.every == 0:
                fault = self._faults.popleft()
                self.applied[fault] += 1
                return fault
            return "forward"

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            action = self._next_action()
            t = threading.Thread(target=self._handle, args=(client, action), daemon=True)
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
            t.start()

    def _handle(self, client: socket.socket, action: str) -> None:
        try:
            client.settimeout(10)
            if action == "forward":
                self._forward(client, limit=None)
            elif action == "cut":
                self._forward(client, limit=self.cut_after)
            elif action == "stall":
                self._stop.wait(self.stall_seconds)
            elif action in ("drop", "reset"):
                self._read_head(client)
                if action == "reset":
                    _reset(client)
            else:
                self._read_head(client)
                extra = f"Retry-After: {self.retry_after}\r\n" if action in ("503", "429") else ""
                head = f"HTTP/1.1 {_STATUS[action]}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
                client.sendall(head.encode())
                with contextlib.suppress(OSError):
                    client.shutdown(socket.SHUT_WR)
                self._drain(client)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                client.close()

    @staticmethod
    def _read_head(client: socket.socket) -> None:
        data = b""
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in data and len(data) < 65536 and time.monotonic() < deadline:
            chunk = client.recv(4096)
            if not chunk:
                return
            data += chunk

    @staticmethod
    def _drain(client: socket.socket) -> None:
        client.settimeout(0.5)
        with contextlib.suppress(OSError):
            for _ in range(10000):
                if not client.recv(65536):
                    return

    def _forward(self, client: socket.socket, *, limit: int | None) -> None:
        upstream = socket.create_connection(self.upstream, timeout=10)
        sent = 0
        answered = False  # upstream has sent something since the client last did
        try:
            socks = [client, upstream]
            while not self._stop.is_set():
                readable, _, _ = select.select(socks, [], [], self.idle_recycle)
                if not readable:
                    if answered and self.remaining:
                        return  # idle after an answer: recycle so a new connection is made
                    continue
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is client:
                        sent += len(data)
                        answered = False
                        if limit is not None and sent > limit:
                            _reset(client)
                            return
                        upstream.sendall(data)
                    else:
                        client.sendall(data)
                        answered = True
        finally:
            with contextlib.suppress(OSError):
                upstream.close()


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP RST instead of a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
