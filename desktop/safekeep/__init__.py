"""Safekeep: desktop backup for small organisations.

Safekeep keeps an organisation's files backed up into repositories in the restic repository
format (version 2), so the independent ``restic`` program can check and restore everything
Safekeep writes, and Safekeep can read what restic wrote.

Packages, from the bottom of the import stack up (enforced by import-linter):

- ``common``  — errors, cancellation, progress protocols, the clock; no I/O, no third-party imports.
- ``storage`` — the ``Backend`` protocol every provider implements, the providers, and the wrappers
  (retry, ...) stacked in ``storage.compose``.
- ``core``    — the repository engine: crypto, the on-disk format, backup, restore, check, locks.
- ``cli``     — the ``safekeep`` command line, one module per command.
"""

__version__ = "0.1.0"
