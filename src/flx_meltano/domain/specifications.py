"""Specifications as plain predicates over a pipeline's execution history (newest first)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from flx_meltano.domain.execution import PipelineExecution
from flx_meltano.domain.values import ExecutionStatus


@dataclass(frozen=True)
class IsStale:
    """No successful execution ended within ``max_age`` of ``now``."""

    max_age: timedelta

    def __call__(self, history: Sequence[PipelineExecution], now: datetime) -> bool:
        last = last_success(history)
        return last is None or last.ended_at is None or now - last.ended_at > self.max_age


@dataclass(frozen=True)
class IsFailing:
    """The ``consecutive`` newest finished executions all failed or crashed."""

    consecutive: int

    def __call__(self, history: Sequence[PipelineExecution]) -> bool:
        finished = [e for e in history if e.status.is_terminal]
        recent = finished[: self.consecutive]
        return len(recent) == self.consecutive and all(
            e.status in (ExecutionStatus.FAILED, ExecutionStatus.CRASHED) for e in recent
        )


def last_success(history: Sequence[PipelineExecution]) -> PipelineExecution | None:
    """The newest SUCCEEDED execution of a newest-first history."""
    return next((e for e in history if e.status is ExecutionStatus.SUCCEEDED), None)
