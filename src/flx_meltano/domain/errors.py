"""Domain errors: each names the thing at fault."""

from __future__ import annotations


class DomainError(Exception):
    """Base class of every error the domain raises."""


class InvalidStateId(DomainError, ValueError):
    """A string is not a Meltano state id of the form <env>:<tap>-to-<target>[:<suffix>]."""


class IllegalTransition(DomainError):
    """An execution was asked to move to a status it cannot reach from where it is."""


class ExecutionAlreadyRunning(DomainError):
    """A pipeline already has a running execution and the new one was not forced."""


class UnknownStream(DomainError):
    """A stream was named that the pipeline does not have."""


class InvalidState(DomainError, ValueError):
    """A Singer state does not have the shape {"singer_state": {"bookmarks": {...}}}."""
