"""What every command needs: where the repository is, its password, opening it, locking it.

Sources, first found wins (restic's conventions, with restic's variable names as fallbacks):

- location: ``-r/--repo``, ``$SAFEKEEP_REPOSITORY``, ``$RESTIC_REPOSITORY``;
- password: ``--password-file``, ``$SAFEKEEP_PASSWORD_FILE``, ``$RESTIC_PASSWORD_FILE``,
  ``$SAFEKEEP_PASSWORD``, ``$RESTIC_PASSWORD``, else a prompt when stdin is a terminal. A password
  file is read like restic reads it: surrounding whitespace (the trailing newline) is stripped.

Browsing, restore and check open the storage read-only (``StorageOptions(read_only=True)``), so
they can never change a repository; their lock, when they take one, is written through a second,
writable handle. ``--no-lock`` skips locking altogether.

``$SAFEKEEP_TEST_KDF="N,r,p"`` is **for tests only**: ``init``, ``key add`` and ``key passwd`` then
derive new keys with these cheap scrypt parameters instead of calibrating ~0.5 s of work. Never
set it for real repositories: it makes the password much easier to guess.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from safekeep.cli.credentials import read_password_file, repository_location, stored_password
from safekeep.cli.early_key import EarlyKey
from safekeep.cli.output import Output
from safekeep.common.cancel import CancelToken
from safekeep.common.clock import SYSTEM_CLOCK, Clock
from safekeep.common.errors import Cancelled, SafekeepError, UsageError
from safekeep.common.secret import Secret
from safekeep.core.errors import RepositoryLocked
from safekeep.core.format.keys import KDFParams
from safekeep.core.locks import Lock
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.state import paths
from safekeep.storage.base import Backend
from safekeep.storage.compose import StorageOptions, open_backend

if TYPE_CHECKING:
    from safekeep.engine.service import Service

log = logging.getLogger(__name__)

ENV_TEST_KDF = "SAFEKEEP_TEST_KDF"
ENV_CACHE_DIR = "SAFEKEEP_CACHE_DIR"

CREDENTIAL_SOURCES_HINT = (
    "Give it with --password-file FILE, the environment variable SAFEKEEP_PASSWORD_FILE or "
    "SAFEKEEP_PASSWORD, or run the command in a terminal to be asked for it."
)


@dataclass(frozen=True, slots=True)
class GlobalOptions:
    """The options that come before the command (``safekeep -r REPO --json backup ...``)."""

    repo: str | None = None
    password_file: str | None = None
    json: bool = False
    quiet: bool = False
    verbose: int = 0
    no_lock: bool = False
    cache_dir: str | None = None
    no_cache: bool = False


class CliContext:
    """Global options plus the environment, shared by every command of one invocation."""

    def __init__(
        self,
        options: GlobalOptions,
        out: Output,
        cancel: CancelToken,
        *,
        env: Mapping[str, str] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        early_key: EarlyKey | None = None,
    ) -> None:
        """``early_key``: the key being unlocked since before the command loaded, if it was."""
        self.options = options
        self._early_key = early_key
        self.clock = clock
        self.out = out
        self.cancel = cancel
        self.env: Mapping[str, str] = os.environ if env is None else env
        self._service: Service | None = None

    # -------------------------------------------------------------- location

    def location(self) -> str:
        loc = repository_location(self.options.repo, self.env)
        if not loc:
            raise UsageError(
                "No repository was given.",
                hint="Use -r/--repo LOCATION or set the environment variable SAFEKEEP_REPOSITORY.",
            )
        return loc

    # -------------------------------------------------------------- passwords

    def password(self, *, new_repository: bool = False) -> Secret:
        """The repository password from an option, a file, the environment or a prompt."""
        stored = stored_password(self.options.password_file, self.env)
        if stored is not None:
            return stored
        if not _stdin_is_tty():
            raise SafekeepError("No repository password was given.", hint=CREDENTIAL_SOURCES_HINT)
        if new_repository:
            return self._prompt_twice("enter password for new repository: ")
        return Secret(getpass.getpass("enter password for repository: ", stream=sys.stderr))

    def new_password(self, password_file: str | None) -> Secret:
        """A new password for ``key add``/``key passwd``: from a file, or asked twice."""
        if password_file:
            return read_password_file(password_file)
        if not _stdin_is_tty():
            raise SafekeepError(
                "No new password was given.",
                hint="Give it with --new-password-file FILE, or run the command in a terminal to be asked.",
            )
        return self._prompt_twice("enter new password: ")

    def _prompt_twice(self, prompt: str) -> Secret:
        first = getpass.getpass(prompt, stream=sys.stderr)
        second = getpass.getpass("enter password again: ", stream=sys.stderr)
        if first != second:
            raise SafekeepError("The passwords do not match.", hint="Type the same password twice.")
        if not first:
            raise SafekeepError("An empty password is not allowed.", hint="Choose a password.")
        return Secret(first)

    def test_kdf(self) -> KDFParams | None:
        """Cheap scrypt parameters from ``$SAFEKEEP_TEST_KDF`` (tests only), else None."""
        raw = self.env.get(ENV_TEST_KDF)
        if not raw:
            return None
        try:
            n, r, p = (int(x) for x in raw.split(","))
            params = KDFParams(n, r, p)
        except ValueError as exc:
            raise UsageError(f"{ENV_TEST_KDF} must be 'N,r,p' (for tests only): {exc}") from exc
        log.warning("using test scrypt parameters from %s: N=%d r=%d p=%d", ENV_TEST_KDF, n, r, p)
        return params

    def service(self) -> Service:
        """The app's service (plans, destinations, history), opened on first use."""
        if self._service is None:
            from safekeep.engine.service import Service  # noqa: PLC0415 - only the commands using it pay

            self._service = Service.open()
        return self._service

    def audit(self, action: str, repo: Repository, outcome: str, **details: object) -> None:
        """Record a change made to ``repo`` in the app's audit log. A log that cannot be written is
        a warning: the change already happened and is not undone."""
        try:
            self.service().audit_event(action, f"repository {repo.location}", outcome, **details)
        except (SafekeepError, OSError) as exc:
            log.warning("audit log not written: %s", exc)
            self.out.warn(f"warning: the audit log could not record this: {exc}")

    def close(self) -> None:
        if self._service is not None:
            self._service.close()
            self._service = None

    def cache_dir(self) -> str | None:
        """Root of the local repository cache (remote repositories only), or None for none."""
        if self.options.no_cache:
            return None
        return (
            self.options.cache_dir
            or self.env.get(ENV_CACHE_DIR)
            or str(paths.cache_dir(self.env) / "repositories")
        )

    # -------------------------------------------------------------- opening

    def open_backend(self, *, read_only: bool) -> Backend:
        return open_backend(self.location(), options=StorageOptions(read_only=read_only))

    def repository_options(self) -> RepositoryOptions:
        return RepositoryOptions(kdf=self.test_kdf())

    @contextlib.contextmanager
    def repository(self, *, read_only: bool, new_keys: bool = False) -> Iterator[Repository]:
        """Open the repository with the password; closed again when the block ends."""
        backend = self.open_backend(read_only=read_only)
        try:
            password = self.password()
            options = self.repository_options() if new_keys else RepositoryOptions()
            options = dataclasses.replace(options, cache_dir=self.cache_dir())
            early, self._early_key = self._early_key, None  # used once
            unlocked = early.take(self.location(), password, self.cancel) if early is not None else None
            repo = Repository.open(
                backend, password.reveal(), options=options, cancel=self.cancel, unlocked=unlocked
            )
            log.info("repository %s opened (version %d)", repo.config.id[:8], repo.version)
            try:
                yield repo
            finally:
                repo.close()
        finally:
            backend.close()

    @contextlib.contextmanager
    def locked(self, repo: Repository, *, exclusive: bool, read_only: bool) -> Iterator[None]:
        """Hold a repository lock (restic's protocol) for the block, unless ``--no-lock``.

        The block starts as soon as our lock file is written: restic's 200 ms wait before the
        second look for conflicting locks overlaps with the block's first reads (the index, the
        files to back up). The second look runs in the background; ``repo`` refuses to write
        until it passed, and a conflict it finds stops the block (the command then fails with
        "the repository is in use", never with a half-checked result).

        ``read_only``: ``repo``'s storage refuses writes, so the lock goes through a second,
        writable handle on the same location.
        """
        if self.options.no_lock:
            yield
            return
        lock_repo = repo
        backend: Backend | None = None
        if read_only:
            backend = self.open_backend(read_only=False)
            lock_repo = Repository(backend, repo.key, repo.config, key_id=repo.key_id)
        try:
            lock = Lock(lock_repo, exclusive=exclusive, clock=self.clock)
            lock.acquire(cancel=self.cancel, confirm_later=True)
            checker = threading.Thread(target=self._confirm, args=(lock,), name="safekeep-lock-check")
            checker.start()
            repo.set_write_guard(lock.confirm)
            try:
                yield
                checker.join()
                lock.confirm()  # a conflict found in the background fails the command
            except Cancelled:
                checker.join()
                lock.confirm()  # when the cancel came from a conflict, report the conflict
                raise
            finally:
                repo.set_write_guard(None)
                checker.join()
                lock.release()
        finally:
            if backend is not None:
                lock_repo.close()
                backend.close()

    def _confirm(self, lock: Lock) -> None:
        """Confirm ``lock`` in the background; on a conflict, stop the command."""
        try:
            lock.confirm()
        except RepositoryLocked:
            if not self.cancel.cancelled:
                self.cancel.cancel("the repository is in use")
        except Exception as exc:  # e.g. the storage failed; the guard reports it on the next write
            log.debug("lock confirmation failed in the background: %s", exc)


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        return False
