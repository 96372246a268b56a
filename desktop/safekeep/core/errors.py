"""Errors raised by the repository engine, each with a message a person understands."""

from __future__ import annotations

from safekeep.common.errors import SafekeepError


class RepositoryError(SafekeepError):
    """Something is wrong with the repository itself."""


class RepositoryNotFound(RepositoryError):
    def __init__(self, location: str) -> None:
        super().__init__(
            f"There is no repository at {location}.",
            hint="Check the location, or create a new repository there with 'safekeep init'.",
        )


class NotARepository(RepositoryError):
    def __init__(self, location: str, detail: str = "") -> None:
        super().__init__(
            f"{location} is not a Safekeep/restic repository" + (f" ({detail})." if detail else "."),
            hint="Choose the folder that contains the repository's 'config' file and 'keys' folder.",
        )


class RepositoryExists(RepositoryError):
    def __init__(self, location: str) -> None:
        super().__init__(
            f"A repository already exists at {location}.",
            hint="Connect to it with its password instead of creating a new one, or choose another folder.",
        )


class WrongPassword(RepositoryError):
    exit_code = 12

    def __init__(self) -> None:
        super().__init__(
            "Wrong password: none of the repository's keys opens with it.",
            hint="Check the password (it is case-sensitive). "
            "If it was lost, the backups cannot be decrypted.",
        )


class UnsupportedVersion(RepositoryError):
    def __init__(self, version: object) -> None:
        super().__init__(
            f"This repository uses format version {version!r}, which this Safekeep does not understand.",
            hint="Update Safekeep, or use a restic release that supports this repository version.",
        )


class IntegrityError(RepositoryError):
    """Data failed its MAC or hash check: the repository is damaged or was tampered with."""

    def __init__(self, message: str, *, pack: str = "", blob: str = "") -> None:
        super().__init__(
            message,
            hint="Run 'safekeep check --read-data' to see which files are affected.",
        )
        self.pack = pack
        self.blob = blob


class RepositoryLocked(RepositoryError):
    exit_code = 11

    def __init__(self, message: str) -> None:
        super().__init__(
            message,
            hint="Wait for the other backup to finish. If that process no longer runs, its lock "
            "expires after 30 minutes ('safekeep unlock' removes stale locks now).",
        )
