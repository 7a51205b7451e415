"""Which executions a history query asks for: a value the application builds and the store answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flx_meltano.domain.values import ExecutionStatus


@dataclass(frozen=True)
class ExecutionFilter:
    """Which executions a history query returns (newest first)."""

    pipeline_id: str | None = None
    status: ExecutionStatus | None = None
    since: datetime | None = None
    limit: int = 50
