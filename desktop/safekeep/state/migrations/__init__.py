"""The app database's schema, one numbered SQL file per version: ``NNNN_name.sql``.

``0001_initial.sql`` is the first release's schema; each later file moves a database from the
previous version to its own number. :mod:`safekeep.state.db` applies the missing files in order,
each in one transaction that also sets ``PRAGMA user_version``, after copying the database to
``<db>.before-v<N>.bak``. A file, once released, is never edited: a change is a new file.

Conventions: one statement per line end (a statement ends with ``;`` at the end of a line), JSON
in ``TEXT`` columns for opaque values, Unix times as ``REAL``.
"""
