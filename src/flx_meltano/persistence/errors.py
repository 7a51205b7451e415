"""Errors of the store."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of store errors."""


class ConcurrencyConflict(StoreError):
    """Another writer appended to the same event stream first; reload and retry."""


class NotFound(StoreError, KeyError):
    """No row with that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"
