"""The repository engine: the restic repository format (v2), backup, restore, check, locks.

Concepts (restic's vocabulary, so a restic user recognises them):

- **Repository** — a set of immutable files in a :class:`~safekeep.storage.base.Backend`:
  ``config``, ``keys/``, ``data/`` (pack files), ``index/``, ``snapshots/``, ``locks/``.
- **Master key** — AES-256 + Poly1305-AES keys that encrypt everything. Each key file holds the
  master key encrypted with a key derived from one password by scrypt (``format.keys``).
- **Blob** — a chunk of file content (data blob) or a directory listing (tree blob), identified by
  the SHA-256 of its plaintext, stored compressed (zstd) and encrypted inside a **pack** file.
- **Index** — which pack holds which blob, at which offset (``format.index``).
- **Snapshot** — points at the root tree of one backup, plus time, host, paths and tags.
- **Lock** — a small file announcing that a process is using the repository (``locks``).

Modules: ``crypto`` (the envelope), ``format/`` (byte-exact encodings), ``chunker``,
``repository`` (open/init, blob and file I/O, index), ``archiver`` (backup), ``restorer``,
``checker``, ``locks``, ``fs/`` (file metadata read from and written to the OS).

Write order is always packs → index → snapshot, so an interrupted run leaves a valid repository.
"""
