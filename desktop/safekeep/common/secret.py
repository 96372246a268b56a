"""A value that must never appear in logs or reprs."""

from __future__ import annotations


class Secret:
    """Wraps a secret string; ``repr``/``str`` show ``***``. Use :meth:`reveal` to get it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
