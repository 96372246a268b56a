"""Storage providers: one module per kind of place a repository can live.

Each provider implements :class:`~safekeep.storage.base.Backend` and nothing more; retries,
read-only mode and the like are wrappers (``safekeep.storage.wrappers``) stacked by
``safekeep.storage.compose.open_backend``.

- ``local``  — a folder on this computer, a mounted NAS share or a USB drive, in restic's exact
  on-disk layout (``config``, ``data/<2 hex>/<64 hex>``, ``index/``, ``keys/``, ``locks/``,
  ``snapshots/``), so the ``restic`` program can use the same folder.
- ``memory`` — an in-memory provider with fault injection, for tests.
- ``s3`` (+ ``s3_presets``, ``s3_policy``) — any S3-compatible service, with Object Lock.
- ``sftp`` (+ ``sftp_keys``) — SSH servers, with known-hosts checking.
- ``webdav`` — Nextcloud/ownCloud (chunked upload), Seafile, pCloud and generic WebDAV.
- ``azure`` — Azure Blob Storage. ``gs`` — Google Cloud Storage.
- ``ftp`` — FTPS (plain FTP only on explicit opt-in).
- ``rclone`` (+ ``rclone_config``) — everything rclone reaches, through ``rclone serve restic``.

A provider translates its own failures (``OSError``, SDK exceptions) into the typed errors of
``safekeep.storage.errors`` and chains the original as ``__cause__``. A provider that needs an
optional third-party SDK imports it only in its own module, so a missing SDK never breaks the
others; it makes itself known with ``safekeep.storage.registry.register_provider``.
"""
