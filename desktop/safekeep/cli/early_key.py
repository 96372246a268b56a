"""Unlocking the repository's key while the command loads.

Deriving the key from the password (scrypt: about half a second by design, restic's calibration)
is the slowest step of opening a repository, and it needs only the location and the password.
When both are known without asking (``-r`` or the environment, and a password file or variable),
:func:`start` begins it in a background thread before the command's modules are imported;
scrypt releases the GIL, so the imports go on beside it. :meth:`CliContext.repository
<safekeep.cli.context.CliContext.repository>` then takes the result with :meth:`EarlyKey.take`
— only for the same location and password.

The attempt follows :meth:`Repository.unlock <safekeep.core.repository.Repository.unlock>`, the
first half of opening, so a failure it meets (no repository there, wrong password) is the one the
usual path would meet; it is raised where the command opens the repository. Anything unexpected
makes the command open the repository the usual way, and so does a repository that is not in
a local folder (a second connection could refresh a sign-in the command's own one then lacks).

This module imports little: it runs before the heavy modules load.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from safekeep.cli.credentials import repository_location, stored_password
from safekeep.common.cancel import CancelToken
from safekeep.common.errors import SafekeepError
from safekeep.common.secret import Secret

if TYPE_CHECKING:
    from safekeep.core.repository import Unlocked

log = logging.getLogger(__name__)

# the commands that open a repository with its password (``--plan`` runs go through the app's
# service, which unlocks on its own)
OPENING_COMMANDS = frozenset(
    {"backup", "restore", "check", "snapshots", "ls", "cat", "find", "versions", "diff"}
)


class EarlyKey:
    """One background attempt to unlock the repository at ``location`` with ``password``."""

    def __init__(self, location: str, password: Secret) -> None:
        self.location = location
        self._password = password
        self._result: Unlocked | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self.deriving = threading.Event()  # set once scrypt runs (or the attempt ended)
        threading.Thread(target=self._run, name="safekeep-early-key", daemon=True).start()

    def _run(self) -> None:
        try:
            from safekeep.core.repository import Repository  # noqa: PLC0415 - imported in this thread
            from safekeep.storage.compose import StorageOptions, open_backend  # noqa: PLC0415
            from safekeep.storage.registry import parse_location  # noqa: PLC0415

            if parse_location(self.location).scheme != "local":
                # a remote provider may open a session or refresh a sign-in (some providers
                # rotate refresh tokens): only the command's own connection talks to it
                return
            backend = open_backend(self.location, options=StorageOptions(read_only=True))
            self.deriving.set()
            try:
                self._result = Repository.unlock(backend, self._password.reveal())
            finally:
                backend.close()
        except BaseException as exc:  # handed to take(); a daemon thread must not print it
            self._error = exc
        finally:
            self.deriving.set()
            self._done.set()

    def take(self, location: str, password: Secret, cancel: CancelToken) -> Unlocked | None:
        """The unlocked key when this attempt was for ``location`` and ``password`` (waiting for
        it); its failure is raised when it is one the usual path meets too. None: open the
        repository the usual way."""
        if location != self.location or password != self._password:
            return None
        while not self._done.wait(0.1):
            cancel.raise_if_cancelled()
        if isinstance(self._error, SafekeepError):
            raise self._error
        if self._error is not None:
            log.debug("unlocking early failed, opening the usual way: %r", self._error)
            return None
        return self._result


def start(
    command: str | None,
    repo_option: str | None,
    password_file: str | None,
    argv: Sequence[str],
    env: Mapping[str, str],
) -> EarlyKey | None:
    """Begin unlocking for ``command`` when it opens a repository and the location and password
    are known without asking; None otherwise (or when reading them fails: the command then
    reports that itself)."""
    if command not in OPENING_COMMANDS or "--plan" in argv:
        return None
    location = repository_location(repo_option, env)
    if not location:
        return None
    try:
        password = stored_password(password_file, env)
    except SafekeepError:
        return None
    if password is None:
        return None
    early = EarlyKey(location, password)
    # its imports would only compete with the command's for the GIL: let it reach scrypt first
    early.deriving.wait(0.5)
    return early
