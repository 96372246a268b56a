"""The ``safekeep`` command line: one module per command, text and JSON output.

Concepts:

- ``main``      — the parser, global options (``-r``, ``--password-file``, ``--json``, ``-q``,
  ``-v``, ``--no-lock``), dispatch, and the one place errors become exit codes (the table is in
  its docstring and in ``safekeep --help``).
- ``context``   — :class:`~safekeep.cli.context.CliContext`: where the repository is, its password
  (option, file, environment or prompt), opening it with the right storage options, and locks.
- ``output``    — :class:`~safekeep.cli.output.Output`: human text on stdout, diagnostics on stderr,
  or one JSON object per line on stdout with ``--json``; number and time formatting.
- ``progress``  — the text (stderr, TTY only) and JSON-lines implementations of
  :class:`~safekeep.common.progress.ProgressSink`, and the per-item error printer.
- ``interrupt`` — Ctrl-C handling: the first press cancels the operation's
  :class:`~safekeep.common.cancel.CancelToken` cleanly, the second exits at once.
- ``treewalk``  — walking a snapshot's trees (used by ``ls`` and ``cat tree``).
- One module per command: ``init``, ``backup``, ``snapshots``, ``ls``, ``restore``, ``check``,
  ``cat``, ``key``, ``unlock``, ``version``. Each has ``register(subparsers)`` and a ``run(ctx, args)``
  returning an exit code; errors are raised as :class:`~safekeep.common.errors.SafekeepError`.

Commands follow restic's names, options and output conventions where they fit, so a restic user
feels at home and the repositories stay interchangeable.
"""
