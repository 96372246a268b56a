"""The engine: the one API the GUI and the CLI call, and the jobs it runs.

* :mod:`~safekeep.engine.service` — :class:`~safekeep.engine.service.Service`: destinations,
  plans, "run now", cancel, status, history. It owns the app database, the keyring and the audit
  log, and queues jobs so that one repository runs one job at a time.
* :mod:`~safekeep.engine.jobs` — a job's description (what to back up where, with which
  secrets), sent to a worker as JSON.
* :mod:`~safekeep.engine.worker` — runs one job in a child process (``safekeep run-job``) and
  reports on stdout as JSON lines (:mod:`~safekeep.engine.events`): ``started``, ``progress``
  (numbers), ``file_error``, ``secret`` (a provider rotated a token), ``finished`` with a summary.
  A crash in a job never takes the app down; cancel is a message on stdin, then a signal.
* :mod:`~safekeep.engine.runner` — starts a worker, relays its events, cancels it, and turns a
  worker that died without finishing into an "interrupted" result.
* :mod:`~safekeep.engine.allocator` — sets glibc's allocator up for a process that runs a backup
  (the CLI's ``backup`` and a backup job's worker).
* :mod:`~safekeep.engine.daemon` — the trigger host: the scheduler, the file watchers and the
  external-trigger socket, for ``safekeep daemon`` and the GUI.

A plan runs its destinations one after another; each gets its own result, a failure on one does
not stop the others, and the run's outcome is the worst of them.
"""
