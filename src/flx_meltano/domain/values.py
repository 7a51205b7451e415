"""Value objects: execution status with its legal transitions, durations, triggers, stream status,
state strategies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from flx_meltano.domain.errors import IllegalTransition, InvalidOption


class ExecutionStatus(StrEnum):
    """Where an execution is in its life."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"

    @property
    def is_terminal(self) -> bool:
        """True once nothing more can happen to the execution."""
        return self in _TERMINAL

    @property
    def is_active(self) -> bool:
        """True while the execution may still be writing state."""
        return self in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)

    def can_become(self, target: ExecutionStatus) -> bool:
        """Whether moving from this status to ``target`` is legal."""
        return target in _TRANSITIONS[self]

    def check_transition(self, target: ExecutionStatus) -> None:
        """Raise IllegalTransition unless ``target`` is reachable from here."""
        if not self.can_become(target):
            raise IllegalTransition(f"an execution cannot go from {self} to {target}")


_TERMINAL = frozenset(
    {
        ExecutionStatus.SUCCEEDED,
        ExecutionStatus.FAILED,
        ExecutionStatus.CANCELLED,
        ExecutionStatus.CRASHED,
    }
)
_TRANSITIONS: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    ExecutionStatus.PENDING: frozenset(
        {ExecutionStatus.RUNNING, ExecutionStatus.CANCELLED, ExecutionStatus.FAILED}
    ),
    ExecutionStatus.RUNNING: _TERMINAL,
    **{status: frozenset() for status in _TERMINAL},
}


class StreamStatus(StrEnum):
    """How one stream of an execution ended."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    # Selected, but the tap never emitted it (e.g. a select rule naming a stream its catalog lacks).
    MISSING = "MISSING"


class StateStrategy(StrEnum):
    """How Meltano combines a run's new state with the saved one (``meltano run --state-strategy``)."""

    AUTO = "auto"
    MERGE = "merge"
    OVERWRITE = "overwrite"

    @classmethod
    def parse(cls, text: str) -> StateStrategy:
        """The strategy called ``text`` (any case); InvalidOption listing the valid ones otherwise."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            valid = ", ".join(member.value for member in cls)
            raise InvalidOption(f"state strategy {text!r} is not one of {valid}") from None


class Trigger(StrEnum):
    """Who started an execution."""

    MANUAL = "manual"
    CLI = "cli"
    DAGSTER = "dagster"
    SCHEDULE = "schedule"
    SENSOR = "sensor"
    API = "api"
    MELTANO = "meltano"  # a bare `meltano run`, read from Meltano's system database


@dataclass(frozen=True, order=True)
class Duration:
    """A non-negative length of time in seconds."""

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError(f"a duration cannot be negative: {self.seconds}")

    @classmethod
    def between(cls, start: datetime, end: datetime) -> Duration:
        """The time from ``start`` to ``end`` (never negative, clocks notwithstanding)."""
        return cls(max((end - start).total_seconds(), 0.0))

    @property
    def timedelta(self) -> timedelta:
        """As a ``datetime.timedelta``."""
        return timedelta(seconds=self.seconds)

    def __str__(self) -> str:
        if self.seconds < 1:
            return f"{self.seconds * 1000:.0f}ms"
        if self.seconds < 60:
            return f"{self.seconds:.1f}s"
        minutes, seconds = divmod(round(self.seconds), 60)
        hours, minutes = divmod(minutes, 60)
        return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"
