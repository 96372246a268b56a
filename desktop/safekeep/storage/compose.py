"""The one place a backend's wrapper stack is built.

:func:`open_backend` parses a location, asks the registry for the provider and stacks the
wrappers around it, innermost first::

    provider  →  RetryBackend (when retry_attempts > 1)  →  ReadOnlyBackend (when read_only)

Read-only sits outermost so a refused write fails at once instead of being retried. Nothing else
in Safekeep wraps a backend; a new cross-cutting concern (bandwidth limit, logging, ...) is added
here, with its option in :class:`StorageOptions`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from safekeep.common.clock import SYSTEM_CLOCK, Clock
from safekeep.storage.base import Backend
from safekeep.storage.registry import DEFAULT_SETTINGS, ProviderSettings, create_backend, parse_location
from safekeep.storage.wrappers.readonly import ReadOnlyBackend
from safekeep.storage.wrappers.retry import (
    DEFAULT_BASE_DELAY,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_DELAY,
    RetryBackend,
)


@dataclass(frozen=True, slots=True)
class StorageOptions:
    """How a backend is opened. Every default lives here and only here.

    ``retry_attempts`` counts attempts, not retries: 1 disables the retry wrapper.
    """

    read_only: bool = False
    retry_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry_base_delay: float = DEFAULT_BASE_DELAY
    retry_max_delay: float = DEFAULT_MAX_DELAY
    retry_seed: int | None = None
    """Seed for the backoff jitter (tests); None draws from the system."""
    provider: ProviderSettings = DEFAULT_SETTINGS
    """Credentials source and provider options handed to the provider's factory."""

    def __post_init__(self) -> None:
        if self.retry_attempts < 1:
            raise ValueError("retry_attempts must be at least 1")
        if self.retry_base_delay < 0 or self.retry_max_delay < 0:
            raise ValueError("retry delays must not be negative")


DEFAULT_OPTIONS = StorageOptions()


def open_backend(
    location: str, *, options: StorageOptions = DEFAULT_OPTIONS, clock: Clock = SYSTEM_CLOCK
) -> Backend:
    """Open the repository storage at ``location`` with the full wrapper stack.

    Raises :class:`~safekeep.storage.errors.InvalidLocation` when the string cannot be understood
    or its provider is not available. Nothing is contacted yet: the first call does that.
    """
    backend: Backend = create_backend(parse_location(location), options.provider)
    return wrap(backend, options=options, clock=clock)


def wrap(
    backend: Backend, *, options: StorageOptions = DEFAULT_OPTIONS, clock: Clock = SYSTEM_CLOCK
) -> Backend:
    """Stack the wrappers ``options`` asks for around an already-made provider."""
    if options.retry_attempts > 1:
        backend = RetryBackend(
            backend,
            clock=clock,
            max_attempts=options.retry_attempts,
            base_delay=options.retry_base_delay,
            max_delay=options.retry_max_delay,
            rng=random.Random(options.retry_seed),
        )
    if options.read_only:
        backend = ReadOnlyBackend(backend)
    return backend
