"""What the app remembers: the admin's set-up, what has happened, and the secrets.

* :mod:`~safekeep.state.model` — the records (destinations, plans, runs), pure data.
* :mod:`~safekeep.state.db` — the SQLite app database in the platform's data folder, with
  numbered migrations (a copy of the database is kept before each migration).
* :mod:`~safekeep.state.secrets` — repository passwords and provider credentials in the OS
  keyring; the database keeps only references.
* :mod:`~safekeep.state.audit` — the hash-chained, tamper-evident audit log.

The repository is the truth and this state is a convenience: losing it never loses a backup.
"""
