"""Wrappers: cross-cutting behaviour around a :class:`~safekeep.storage.base.Backend`.

A wrapper implements the same interface and delegates to an inner backend, adding one concern.
Each extends ``delegate.Wrapper``, which holds the inner backend and passes through its
properties and ``close``:

- ``retry``    — :class:`RetryBackend` retries :class:`~safekeep.storage.errors.TransientStorageError`
  (and only that) with exponential backoff, full jitter and ``retry_after``, sleeping through the
  injected :class:`~safekeep.common.clock.Clock` and stopping early when cancelled.
- ``readonly`` — :class:`ReadOnlyBackend` refuses ``save`` and ``remove`` (used by restore, check
  and browsing, so they can never change a repository).
- ``limits``   — :class:`ConnectionLimitBackend` caps concurrent calls; :class:`BandwidthLimitBackend`
  paces uploads and downloads to the user's KiB/s limits with a token bucket on the injected clock.
- ``trace``    — :class:`TraceBackend` logs every call (operation, handle, sizes, duration,
  outcome) at DEBUG with secrets redacted; opt-in.

Wrappers are stacked in exactly one place, ``safekeep.storage.compose.open_backend``; nothing
else wraps a backend.
"""
