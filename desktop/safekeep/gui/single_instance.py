"""One app per user: a second launch asks the running one to show its window, then exits.

The running app listens on a local socket (a named pipe on Windows) whose name includes the
user's name (and, with ``SAFEKEEP_HOME``, a digest of that folder: a portable install is an app
of its own); a new launch that can connect sends ``show`` and quits. A socket left behind by a
crashed app is removed before listening.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import re

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from safekeep.state import paths

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_MS = 1000


def server_name(suffix: str = "") -> str:
    user = re.sub(r"[^A-Za-z0-9_.-]", "_", getpass.getuser())
    home = paths.home_override()
    if home is not None:
        user += "-" + hashlib.sha256(str(home).encode()).hexdigest()[:10]
    return f"safekeep-{user}{suffix}"


def notify_running(name: str) -> bool:
    """True when an app is already listening on ``name`` (it was told to show itself)."""
    socket = QLocalSocket()
    socket.connectToServer(name)
    if not socket.waitForConnected(CONNECT_TIMEOUT_MS):
        return False
    socket.write(b"show\n")
    socket.waitForBytesWritten(CONNECT_TIMEOUT_MS)
    socket.disconnectFromServer()
    return True


class SingleInstance(QObject):
    """Listens for later launches; :attr:`show_requested` fires when one asks."""

    show_requested = Signal()

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self._server = QLocalServer(self)
        self._server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self._server.newConnection.connect(self._connection)
        self._sockets: set[QLocalSocket] = set()

    def listen(self) -> bool:
        QLocalServer.removeServer(self.name)  # left behind by a crashed app
        ok = self._server.listen(self.name)
        if not ok:
            log.warning("cannot listen on %s: %s", self.name, self._server.errorString())
        return ok

    def _connection(self) -> None:
        while (socket := self._server.nextPendingConnection()) is not None:
            self._sockets.add(socket)
            socket.readyRead.connect(self._read)
            socket.disconnected.connect(self._disconnected)

    def _read(self) -> None:
        for socket in list(self._sockets):
            if socket.bytesAvailable() and b"show" in bytes(socket.readAll().data()):
                self.show_requested.emit()

    def _disconnected(self) -> None:
        for socket in [
            s for s in self._sockets if s.state() == QLocalSocket.LocalSocketState.UnconnectedState
        ]:
            self._sockets.discard(socket)
            socket.deleteLater()

    def close(self) -> None:
        for socket in list(self._sockets):
            socket.readyRead.disconnect(self._read)
            socket.disconnected.disconnect(self._disconnected)
            socket.abort()
        self._sockets.clear()
        self._server.close()
