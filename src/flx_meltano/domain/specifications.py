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
        return self.since(last.ended_at if last else None, now)

    def since(self, last_success_ended: datetime | None, now: datetime) -> bool:
        """The same, given when the newest success ended (None: never)."""
        return last_success_ended is None or now - last_success_ended > self.max_age


def last_success(history: Sequence[PipelineExecution]) -> PipelineExecution | None:
    """The newest SUCCEEDED execution of a newest-first history."""
    return next((e for e in history if e.status is ExecutionStatus.SUCCEEDED), None)
