"""Storage errors: permanent vs transient.

Providers translate their SDK's exceptions into these, chaining the original as ``__cause__``.
Only :class:`TransientStorageError` is retried (by the retry wrapper, nowhere else).
"""

from __future__ import annotations

from safekeep.common.errors import SafekeepError


class StorageError(SafekeepError):
    """Any failure talking to storage."""


class PermanentStorageError(StorageError):
    """Retrying will not help."""


class NotFound(PermanentStorageError):
    """The file does not exist."""


class AlreadyExists(PermanentStorageError):
    """A file that must not be overwritten already exists."""


class PermissionDenied(PermanentStorageError):
    """The credentials do not allow this operation."""


class QuotaExceeded(PermanentStorageError):
    """The destination is full or over its quota."""


class InvalidLocation(PermanentStorageError):
    """The repository location string cannot be understood or does not exist."""


class TransientStorageError(StorageError):
    """A failure that may go away when retried (timeout, reset, 5xx, 429)."""

    def __init__(self, message: str, *, hint: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after
