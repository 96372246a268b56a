"""Exclusion patterns, in the style of restic's ``--exclude``.

- A pattern without ``/`` matches any single path component: ``*.tmp``, ``node_modules``,
  ``~$*`` (an Office lock file) exclude that file or folder wherever it is.
- A pattern containing ``/`` is matched against the whole absolute path, anchored at the start
  and extended to children: ``/home/*/Downloads`` excludes those folders and everything in them.
  ``*`` and ``?`` never cross ``/``; ``**`` crosses any number of folders.
- ``[...]`` character classes work as in shell globs. Patterns are case-sensitive, as on Linux;
  on Windows and macOS they ignore case.
- A pattern starting with ``!`` re-includes what an earlier pattern excluded.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass

_CASE_INSENSITIVE = sys.platform in ("win32", "darwin")


def _translate(pattern: str) -> str:
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if i < n and pattern[i] == "/":
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 2)
            if j == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class _Rule:
    regex: re.Pattern[str]
    component: bool
    negate: bool


class Excluder:
    def __init__(self, patterns: list[str]) -> None:
        self.patterns = [p for p in (p.strip() for p in patterns) if p and not p.startswith("#")]
        flags = re.IGNORECASE if _CASE_INSENSITIVE else 0
        rules = []
        for p in self.patterns:
            negate = p.startswith("!")
            body = p[1:] if negate else p
            body = body.rstrip("/") or body
            component = "/" not in body
            regex = _translate(body) if component else _translate(body) + "(?:/.*)?"
            rules.append(_Rule(re.compile(regex + r"\Z", flags | re.DOTALL), component, negate))
        self._rules = rules

    def __bool__(self) -> bool:
        return bool(self._rules)

    def excluded(self, path: str | bytes) -> bool:
        """Whether the absolute ``path`` is excluded."""
        if not self._rules:
            return False
        text = os.fsdecode(path)
        name = text.rsplit("/", 1)[-1]
        result = False
        for rule in self._rules:
            target = name if rule.component else text
            if rule.regex.match(target):
                result = not rule.negate
        return result
