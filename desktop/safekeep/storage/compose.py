"""The one place a backend's wrapper stack is built.

:func:`open_backend` parses a location, asks the registry for the provider and stacks the
wrappers around it, innermost first::

    provider  →  TraceBackend (when trace)
              →  ConnectionLimitBackend (when connections is set)
              →  BandwidthLimitBackend (when upload_limit_kib or download_limit_kib)
              →  RetryBackend (when retry_attempts > 1)  →  ReadOnlyBackend (when read_only)

Tracing sits next to the provider so every attempt (retries included) is logged with its own
duration; the limits sit inside retry so each attempt takes a connection slot and is paced.
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
from safekeep.storage.wrappers.limits import BandwidthLimitBackend, ConnectionLimitBackend, TokenBucket
from safekeep.storage.wrappers.readonly import ReadOnlyBackend
from safekeep.storage.wrappers.retry import (
    DEFAULT_BASE_DELAY,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_DELAY,
    RetryBackend,
)
from safekeep.storage.wrappers.trace import TraceBackend


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
    connections: int | None = None
    """Most concurrent calls to the provider; None = no limit wrapper (consumers still size
    their parallelism by the provider's ``properties.connections``)."""
    upload_limit_kib: int | None = None
    """Upload bandwidth limit in KiB/s; None = unlimited."""
    download_limit_kib: int | None = None
    """Download bandwidth limit in KiB/s; None = unlimited."""
    trace: bool = False
    """Log every storage call at DEBUG (``safekeep.storage.trace``), secrets redacted."""

    def __post_init__(self) -> None:
        if self.retry_attempts < 1:
            raise ValueError("retry_attempts must be at least 1")
        if self.retry_base_delay < 0 or self.retry_max_delay < 0:
            raise ValueError("retry delays must not be negative")
        if self.connections is not None and self.connections < 1:
            raise ValueError("connections must be at least 1")
        for limit in (self.upload_limit_kib, self.download_limit_kib):
            if limit is not None and limit < 1:
                raise ValueError("bandwidth limits must be at least 1 KiB/s")


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
    if options.trace:
        backend = TraceBackend(backend, clock=clock)
    if options.connections is not None:
        backend = ConnectionLimitBackend(backend, options.connections)
    if options.upload_limit_kib is not None or options.download_limit_kib is not None:
        backend = BandwidthLimitBackend(
            backend,
            upload=_bucket(options.upload_limit_kib, clock),
            download=_bucket(options.download_limit_kib, clock),
        )
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


def _bucket(limit_kib: int | None, clock: Clock) -> TokenBucket | None:
    return None if limit_kib is None else TokenBucket(limit_kib * 1024, clock)
