"""Opt-in request tracing: one DEBUG log line per storage call, with secrets redacted.

:class:`TraceBackend` logs, for every call, the operation, the file (its repository path, e.g.
``data/ab/ab12...``), the sizes involved (bytes sent, bytes received, offset and length of a
ranged read, entries listed), how long it took (from the injected clock) and the outcome: ``ok``,
or the error's class and its message passed through :func:`redact`. File *contents* are never
logged. It logs to the ``safekeep.storage.trace`` logger at DEBUG, so it costs nothing unless
the user turned tracing on (``StorageOptions.trace``) and DEBUG logging is enabled.

:func:`redact` removes anything that looks like a credential from free text (exception messages
from SDKs sometimes quote request URLs or headers): ``key=value`` pairs whose name suggests a
secret (password, token, key, secret, signature, ``sig``, credential, ...), ``Authorization``
header values, passwords in URLs (``scheme://user:password@host``), AWS access key ids, JWTs and
long base64 strings (account keys). 64-character hex names (repository file ids) are kept: they
are not secret and are what a person debugging needs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import TypeVar

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.clock import Clock
from safekeep.storage.base import Backend, FileInfo, FileType, Handle
from safekeep.storage.wrappers.delegate import Wrapper

T = TypeVar("T")

log = logging.getLogger("safekeep.storage.trace")

REDACTED = "***"

_SECRET_NAMES = (  # names of secrets, not a secret
    r"(?:[A-Za-z0-9_.-]*(?:password|passwd|pwd|pass|secret|token|api[_-]?key|access[_-]?key|"  # noqa: S105
    r"account[_-]?key|private[_-]?key|credential|signature|session[_-]?key)[A-Za-z0-9_.-]*|"
    r"sig|se|sv|key|auth|x-amz-security-token|x-amz-signature|x-goog-signature)"
)
_PATTERNS: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    # Authorization: Basic/Bearer/SharedKey ... (header or repr of a headers dict)
    (
        re.compile(
            r"(?i)(\b(?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)"
            r"(?:(?:basic|bearer|digest|sharedkey|aws4-hmac-sha256|token)\s+)?[^'\"\r\n,}]+"
        ),
        lambda m: m.group(1) + REDACTED,
    ),
    # scheme://user:password@host
    (
        re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+(@)"),
        lambda m: m.group(1) + REDACTED + m.group(2),
    ),
    # name=value / name: value / "name": "value" for names that suggest a secret
    (
        re.compile(r"(?i)(?<![A-Za-z0-9])(" + _SECRET_NAMES + r")(['\"]?\s*[=:]\s*['\"]?)([^\s&'\",;}]+)"),
        lambda m: m.group(1) + m.group(2) + REDACTED,
    ),
    # JWTs
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
    # AWS access key ids
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), REDACTED),
    # long base64 (account keys, secret keys): must mix upper case, lower case and digits, so
    # hex ids and repository paths survive
    (
        re.compile(
            r"(?<![A-Za-z0-9+/])(?=[A-Za-z0-9+/]*[a-z])(?=[A-Za-z0-9+/]*[A-Z])(?=[A-Za-z0-9+/]*[0-9])"
            r"[A-Za-z0-9+/]{32,}={0,2}"
        ),
        REDACTED,
    ),
]


def redact(text: str) -> str:
    """``text`` with anything that looks like a password, key or token replaced by ``***``."""
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class TraceBackend(Wrapper):
    """Logs every call of ``inner`` at DEBUG (see the module docstring)."""

    def __init__(self, inner: Backend, *, clock: Clock, logger: logging.Logger = log) -> None:
        super().__init__(inner)
        self._clock = clock
        self._log = logger

    def _traced(self, op: str, what: str, detail: str, fn: Callable[[], T], size: Callable[[T], str]) -> T:
        if not self._log.isEnabledFor(logging.DEBUG):
            return fn()
        start = self._clock.monotonic()
        try:
            result = fn()
        except BaseException as exc:
            self._log.debug(
                "%s %s%s failed after %.3fs: %s: %s",
                op,
                what,
                detail,
                self._clock.monotonic() - start,
                type(exc).__name__,
                redact(str(exc)),
            )
            raise
        self._log.debug(
            "%s %s%s%s ok in %.3fs", op, what, detail, size(result), self._clock.monotonic() - start
        )
        return result

    def create(self, *, cancel: CancelToken = NEVER) -> None:
        self._traced("create", "", "", lambda: self._inner.create(cancel=cancel), lambda _: "")

    def save(self, h: Handle, data: bytes | bytearray | memoryview, *, cancel: CancelToken = NEVER) -> None:
        n = memoryview(data).nbytes
        self._traced(
            "save", h.path(), f" sent={n}", lambda: self._inner.save(h, data, cancel=cancel), lambda _: ""
        )

    def load(
        self, h: Handle, offset: int = 0, length: int | None = None, *, cancel: CancelToken = NEVER
    ) -> bytes:
        detail = f" offset={offset} length={length}" if offset or length is not None else ""
        return self._traced(
            "load",
            h.path(),
            detail,
            lambda: self._inner.load(h, offset, length, cancel=cancel),
            lambda data: f" received={len(data)}",
        )

    def stat(self, h: Handle, *, cancel: CancelToken = NEVER) -> FileInfo:
        return self._traced(
            "stat", h.path(), "", lambda: self._inner.stat(h, cancel=cancel), lambda fi: f" size={fi.size}"
        )

    def list(self, type: FileType, *, cancel: CancelToken = NEVER) -> Iterator[FileInfo]:
        if not self._log.isEnabledFor(logging.DEBUG):
            yield from self._inner.list(type, cancel=cancel)
            return
        start = self._clock.monotonic()
        count = 0
        try:
            for info in self._inner.list(type, cancel=cancel):
                count += 1
                yield info
        except BaseException as exc:
            self._log.debug(
                "list %s failed after %d entries and %.3fs: %s: %s",
                type.value,
                count,
                self._clock.monotonic() - start,
                exc.__class__.__name__,
                redact(str(exc)),
            )
            raise
        self._log.debug("list %s entries=%d ok in %.3fs", type.value, count, self._clock.monotonic() - start)

    def remove(self, h: Handle, *, cancel: CancelToken = NEVER) -> None:
        self._traced("remove", h.path(), "", lambda: self._inner.remove(h, cancel=cancel), lambda _: "")
