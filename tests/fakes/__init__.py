"""Fakes and fault injectors used by the tests (no production code imports them)."""
