"""Domain errors: each names the thing at fault (all part of the FlxError tree)."""

from __future__ import annotations

from flx_meltano.errors import FlxError, UsageError


class DomainError(FlxError):
    """Base class of every error the domain raises."""


class InvalidStateId(DomainError, UsageError, ValueError):
    """A string is not a Meltano state id of the form <env>:<tap>-to-<target>[:<suffix>]."""


class IllegalTransition(DomainError):
    """An execution was asked to move to a status it cannot reach from where it is."""


class ExecutionAlreadyRunning(DomainError):
    """A pipeline already has a running execution and the new one was not forced."""


class UnknownStream(DomainError, UsageError):
    """A stream was named that the pipeline does not have."""


class InvalidState(DomainError, ValueError):
    """A Singer state does not have the shape {"singer_state": {"bookmarks": {...}}}."""


class InvalidOption(DomainError, UsageError, ValueError):
    """An option has a value it does not allow (a timeout of 0 s, an unknown state strategy)."""
