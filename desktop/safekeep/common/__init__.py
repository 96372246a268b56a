"""Vocabulary shared by every layer: errors, cancellation, progress, time.

- ``errors``   — ``SafekeepError`` (a message a person understands plus a hint saying what to do)
  and the typed exceptions built on it. Code raises these; nothing returns ``{'ok': False}``.
- ``cancel``   — ``CancelToken``: every long operation takes one and stops at the next safe point.
- ``progress`` — progress reporting as numbers and paths through small protocols with no-op
  defaults; ``Throttle`` limits how often a producer reports.
- ``clock``    — ``Clock``: time is injected so schedules and retries are tested with a fake clock.
- ``secret``   — ``Secret``: a string whose ``repr`` is ``***``.

This package performs no I/O and imports nothing outside the standard library.
"""
