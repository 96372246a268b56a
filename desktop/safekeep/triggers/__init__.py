"""Triggers: deciding *when* a plan runs.

Nothing here runs a backup; these modules decide that one should start and say why. The engine
feeds them plans and state, starts the runs they ask for and reports back how each run ended.

- **Rules** (:mod:`.rules`): pure schedule maths. A plan's schedule trigger (``interval``,
  ``daily``, ``weekly``, ``monthly``, ``cron``) is parsed into a :class:`~.rules.Rule` whose
  *slots* are the instants it should run. ``next_after`` and ``previous_slot`` move between slots
  in local time with daylight-saving changes handled: a wall-clock time skipped by a spring-forward
  change runs once at the first instant after the gap, a time repeated by a fall-back change runs
  once, at its first occurrence.
- **Scheduler** (:mod:`.scheduler`): given each plan's rules and its small persisted
  :class:`~.scheduler.ScheduleState`, starts runs that are due. A run is *on time* when it starts
  within a short tolerance of its slot; when slots were missed (sleep, shutdown, a long run) exactly
  one *catch-up* run starts, never one per missed slot. It also handles retries after failure
  (backoff, then an alert), pauses, waiting for the network and removable disks appearing.
- **Watcher** (:mod:`.watcher`): watches a plan's source folders with watchdog and turns a stream
  of file events into runs: a run starts after a quiet period without changes, but no later than a
  maximum delay after the first change, so bursts coalesce and a folder that never goes quiet is
  still backed up. Network shares are polled, and the watcher says so.
- **Removable disks** (:mod:`.removable`) and **free space** (:mod:`.space`): a poller that notices a
  destination disk being connected, and the pure check that warns before a destination fills up.

Every run records why it started: :class:`~.reasons.RunReason` mirrors the app's run reasons
(schedule, catch-up, retry, change, disk connected) by value.
"""
