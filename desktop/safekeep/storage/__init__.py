"""Storage: where repository files live.

Concepts:

- :class:`~safekeep.storage.base.Backend` — the one small interface every provider implements
  (save, load, stat, list, remove, plus create/close). Its docstring is the contract; the suite in
  ``tests/contract/`` checks every provider against it.
- :class:`~safekeep.storage.base.Handle` — a repository file: its kind (:class:`FileType`) and
  name (the hex SHA-256 of its stored bytes, or ``config``).
- Errors: permanent ones (:class:`NotFound`, :class:`PermissionDenied`, :class:`QuotaExceeded`,
  :class:`InvalidLocation`) and :class:`TransientStorageError`. Only the retry wrapper retries,
  and only transient errors.
- Wrappers (``wrappers/``) add cross-cutting behaviour around a backend. ``compose.open_backend``
  is the one place the stack is built.
- ``registry`` turns a location string in restic's style (``/path``, ``local:/path``, ...) into
  a provider.
"""
