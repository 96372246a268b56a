"""Byte-exact encodings of restic's repository objects (format version 2).

``keys`` (key files + scrypt), ``config``, ``unpacked`` (the outer form of index, snapshot and
lock files: optional zstd, then the crypto envelope), ``pack`` (pack files and their headers),
``index``, ``snapshot``, ``tree`` (Go-JSON-exact tree blobs) and ``gojson`` helpers.
"""
