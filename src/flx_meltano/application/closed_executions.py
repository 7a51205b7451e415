"""Executions as they close, in the order the store recorded them (for reporting them elsewhere)."""

from __future__ import annotations

from flx_meltano.application.context import AppContext
from flx_meltano.domain.execution import PipelineExecution


def latest_position(ctx: AppContext) -> int:
    """Where the store's event log ends now: report what closes after this."""
    with ctx.unit_of_work() as uow:
        return uow.executions.last_position()


def closed_after(ctx: AppContext, position: int, limit: int = 500) -> list[tuple[int, PipelineExecution]]:
    """Executions closed after ``position`` of the event log, oldest first: (position, execution)."""
    with ctx.unit_of_work() as uow:
        return uow.executions.closed_after(position, limit)
