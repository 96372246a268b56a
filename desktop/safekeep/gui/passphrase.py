"""Repository passwords: a generated passphrase to offer, and a strength estimate to show.

:func:`generate` makes a passphrase of pronounceable made-up words joined by hyphens
(``bokav-tiruz-melop-dasik-funeb``). Each word is consonant-vowel-consonant-vowel-consonant from
16 consonants and 5 vowels, so its strength is exact: 16·5·16·5·16 = 102 400 words, 16.6 bits
each; five words are 83 bits — beyond any guessing attack on restic's scrypt-protected keys.

:func:`estimate` judges a password a person typed. It cannot know how it was chosen, so it is
deliberately conservative: the size of the alphabet used times the length, minus what repeats,
runs (``abcd``, ``1234``) and well-known passwords give away. The result is a level with words
for the wizard (colour is never the only sign).
"""

from __future__ import annotations

import enum
import itertools
import math
import re
import secrets
import string
from dataclasses import dataclass

CONSONANTS = "bdfghjklmnprstvz"
VOWELS = "aeiou"
WORDS = 5
BITS_PER_WORD = math.log2(len(CONSONANTS) ** 3 * len(VOWELS) ** 2)

_GENERATED_RE = re.compile(
    rf"^[{CONSONANTS}][{VOWELS}][{CONSONANTS}][{VOWELS}][{CONSONANTS}]"
    rf"(-[{CONSONANTS}][{VOWELS}][{CONSONANTS}][{VOWELS}][{CONSONANTS}])+$"
)

_COMMON = frozenset(
    [
        "password",
        "passw0rd",
        "password1",
        "123456",
        "12345678",
        "123456789",
        "1234567890",
        "qwerty",
        "qwertyuiop",
        "abc123",
        "111111",
        "000000",
        "letmein",
        "welcome",
        "admin",
        "administrator",
        "iloveyou",
        "monkey",
        "dragon",
        "sunshine",
        "princess",
        "football",
        "baseball",
        "master",
        "shadow",
        "trustno1",
        "changeme",
        "secret",
        "backup",
        "safekeep",
        "restic",
    ]
)

MINIMUM_BITS = 45.0
"""Below this the wizard does not accept a password."""


class Level(enum.IntEnum):
    WEAK = 0
    FAIR = 1
    STRONG = 2
    VERY_STRONG = 3


@dataclass(frozen=True, slots=True)
class Strength:
    bits: float
    level: Level
    acceptable: bool


def generate(words: int = WORDS) -> str:
    """A new random passphrase of ``words`` pronounceable made-up words."""
    out = []
    for _ in range(words):
        out.append(
            secrets.choice(CONSONANTS)
            + secrets.choice(VOWELS)
            + secrets.choice(CONSONANTS)
            + secrets.choice(VOWELS)
            + secrets.choice(CONSONANTS)
        )
    return "-".join(out)


def _pool(password: str) -> int:
    pool = 0
    if any(c in string.ascii_lowercase for c in password):
        pool += 26
    if any(c in string.ascii_uppercase for c in password):
        pool += 26
    if any(c in string.digits for c in password):
        pool += 10
    if any(c in string.punctuation or c == " " for c in password):
        pool += 33
    if any(ord(c) > 127 for c in password):
        pool += 100
    return max(pool, 1)


def _effective_length(password: str) -> float:
    """Length, counting repeated characters and runs (abc, 321) at a fraction."""
    if not password:
        return 0.0
    length = 1.0
    for prev, cur in itertools.pairwise(password):
        step = ord(cur) - ord(prev)
        if step == 0:
            length += 0.1
        elif abs(step) == 1:
            length += 0.3
        else:
            length += 1.0
    distinct = len(set(password))
    return min(length, distinct * 2.5)


def estimate(password: str) -> Strength:
    if _GENERATED_RE.match(password):
        bits = BITS_PER_WORD * (password.count("-") + 1)
    elif password.lower() in _COMMON or password.lower().rstrip("!1") in _COMMON:
        bits = 0.0
    else:
        bits = _effective_length(password) * math.log2(_pool(password))
    if bits < MINIMUM_BITS:
        level = Level.WEAK
    elif bits < 60:
        level = Level.FAIR
    elif bits < 80:
        level = Level.STRONG
    else:
        level = Level.VERY_STRONG
    return Strength(bits=bits, level=level, acceptable=bits >= MINIMUM_BITS)
