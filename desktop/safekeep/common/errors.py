"""Typed exceptions with a user-facing message and a hint.

Every error Safekeep shows a person derives from :class:`SafekeepError`. ``str(err)`` is the
message, ``err.hint`` says what to do about it. The technical cause is chained with
``raise ... from exc`` so logs keep it.
"""

from __future__ import annotations


class SafekeepError(Exception):
    """Base class: ``message`` is for a person, ``hint`` says what to do next."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def user_text(self) -> str:
        """The message and, if there is one, the hint, as a person should read them."""
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class Cancelled(SafekeepError):
    """The operation was cancelled by the user; the repository was left valid."""

    exit_code = 130

    def __init__(self, message: str = "The operation was cancelled.") -> None:
        super().__init__(message)


class UsageError(SafekeepError):
    """The command or its options were given wrongly."""

    exit_code = 2
