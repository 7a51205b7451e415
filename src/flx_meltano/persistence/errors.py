"""Errors of the store (all part of the FlxError tree)."""

from __future__ import annotations

from flx_meltano.errors import FlxError, UsageError


class StoreError(FlxError):
    """Base class of store errors."""


class ConcurrencyConflict(StoreError):
    """Another writer appended to the same event stream first; reload and retry."""


class NotFound(StoreError, UsageError, KeyError):
    """No row with that id (the id was given by the user: a usage error)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class StoreUnreachable(StoreError):
    """The store's PostgreSQL server did not answer (message: its URL, password masked, and why)."""


class InvalidStoreUrl(StoreError, UsageError):
    """FLX_DATABASE_URL is not a PostgreSQL URL SQLAlchemy can use."""
