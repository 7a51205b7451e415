"""The one error tree: every error a user can cause is an FlxError; usage errors are UsageErrors.

Each layer keeps its own base class under FlxError (DomainError, IntegrationError, StoreError,
StateError, ...). A message names the thing at fault (file:line, plugin, job, state id, snapshot
id, execution id) and a way out. The CLI prints ``error: <message>`` and exits 2 for a
UsageError (the command asked for something that does not exist or is not allowed), 1 for any
other FlxError (the work itself failed). This module imports nothing, so every layer may use it.
"""

from __future__ import annotations

from collections.abc import Iterable

USAGE_EXIT_CODE = 2
FAILURE_EXIT_CODE = 1
# Listing every valid choice helps only while there are few of them.
MAX_CHOICES_SHOWN = 12


class FlxError(Exception):
    """Base class of every error a user can cause; not a UsageError means the work failed (exit 1)."""


class UsageError(FlxError):
    """The command named something that does not exist, or gave a value it does not allow (exit 2)."""


def exit_code(error: FlxError) -> int:
    """The process exit code for ``error``: 2 for usage errors, 1 for failed work."""
    return USAGE_EXIT_CODE if isinstance(error, UsageError) else FAILURE_EXIT_CODE


def choices(names: Iterable[str], *, limit: int = MAX_CHOICES_SHOWN) -> str:
    """``names`` as a short comma-separated list for a message ("none" when empty)."""
    listed = list(dict.fromkeys(names))
    if not listed:
        return "none"
    if len(listed) <= limit:
        return ", ".join(listed)
    return ", ".join(listed[:limit]) + f", ... ({len(listed) - limit} more)"
