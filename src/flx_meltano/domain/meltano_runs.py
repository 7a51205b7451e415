"""A run Meltano made, as its system database's ``runs`` table records it; the state it left."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

# Meltano's HEARTBEAT_VALID_MINUTES: a RUNNING row without a heartbeat for this long is dead.
HEARTBEAT_VALID = timedelta(minutes=5)


class MeltanoRunStatus(StrEnum):
    """Meltano's job states (``meltano.core.job.job.State``) that a run can be in."""

    IDLE = "IDLE"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAIL = "FAIL"
    DEAD = "DEAD"
    STATE_EDIT = "STATE_EDIT"


@dataclass(frozen=True)
class MeltanoRunRecord:
    """One row of Meltano's ``runs`` table, as flx needs it."""

    row_id: int
    run_id: str
    state_id: str
    status: MeltanoRunStatus
    started_at: datetime
    ended_at: datetime | None
    last_heartbeat_at: datetime | None
    error: str | None
    singer_state: Mapping[str, Any] | None  # the last state this run wrote (None: none)
    complete_state: bool  # singer_state is a whole state (else a partial one, merged in)

    @property
    def is_running(self) -> bool:
        """RUNNING (or not yet started)."""
        return self.status in (MeltanoRunStatus.RUNNING, MeltanoRunStatus.IDLE)

    def heartbeat_lost(self, now: datetime) -> bool:
        """Still RUNNING, but its meltano stopped heartbeating more than 5 minutes ago (killed)."""
        last = self.last_heartbeat_at or self.started_at
        return self.is_running and now - last > HEARTBEAT_VALID

    def state_after(self, before: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The state this run left: its own complete state, or its partial one merged into ``before``."""
        if self.singer_state is None:
            return dict(before) if before is not None else None
        if self.complete_state or before is None:
            return dict(self.singer_state)
        return merge_state(before, self.singer_state)


def state_before(earlier: Iterable[MeltanoRunRecord]) -> dict[str, Any] | None:
    """The state a run started from, given the rows written to its state id before it, newest
    first: the newest complete state, with the partial ones written after it merged in."""
    partials: list[Mapping[str, Any]] = []
    base: Mapping[str, Any] | None = None
    for record in earlier:
        if record.singer_state is None:
            continue
        if record.complete_state:
            base = record.singer_state
            break
        partials.append(record.singer_state)
    if base is None and not partials:
        return None
    merged: dict[str, Any] = dict(base or {})
    for partial in reversed(partials):
        merged = merge_state(merged, partial)
    return merged


def merge_state(base: Mapping[str, Any], partial: Mapping[str, Any]) -> dict[str, Any]:
    """``partial`` deep-merged over ``base`` (Meltano's ``merge`` of incomplete state)."""
    merged: dict[str, Any] = dict(base)
    for key, value in partial.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_state(merged[key], value)
        else:
            merged[key] = value
    return merged
