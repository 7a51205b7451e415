"""State snapshots: stored copies of a pipeline's Singer state, and why they were taken."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from flx_meltano.domain.state import SingerState


class SnapshotReason(StrEnum):
    """Why a snapshot was taken."""

    MANUAL = "manual"
    PRE_RUN = "pre-run"
    POST_RUN = "post-run"
    PRE_RESTORE = "pre-restore"
    PRE_IMPORT = "pre-import"
    IMPORT = "import"


@dataclass(frozen=True)
class StateRef:
    """A stored snapshot by reference: what executions and their events point at, never the payload."""

    snapshot_id: int
    checksum: str


@dataclass(frozen=True)
class StateSnapshot:
    """One stored copy of a state id's Singer state."""

    id: int
    state_id: str
    taken_at: datetime
    reason: SnapshotReason
    checksum: str
    state: SingerState
    label: str | None = None
    execution_id: str | None = None

    @property
    def ref(self) -> StateRef:
        """This snapshot by reference."""
        return StateRef(self.id, self.checksum)
