"""Guard Singer state: snapshot only what changed, flag runs that wiped or rewound bookmarks."""

from __future__ import annotations

from datetime import UTC, datetime

from flx_meltano.application.ports import UnitOfWork
from flx_meltano.domain.execution import REGRESSION_WARNING
from flx_meltano.domain.snapshots import SnapshotReason, StateRef
from flx_meltano.domain.state import BookmarkChange, SingerState, diff_states
from flx_meltano.persistence.errors import NotFound


def snapshot_if_changed(
    uow: UnitOfWork,
    state_id: str,
    state: SingerState,
    reason: SnapshotReason,
    execution_id: str | None = None,
    *,
    at: datetime | None = None,
) -> StateRef:
    """A snapshot holding ``state``: the newest one if identical (stored once), else a new one
    (taken ``at``, default now)."""
    newest = uow.snapshots.latest_ref(state_id)
    if newest is not None and newest.checksum == state.checksum:
        return newest
    return uow.snapshots.add(
        state_id, state, reason=reason, at=at or datetime.now(UTC), execution_id=execution_id
    ).ref


def state_of(uow: UnitOfWork, ref: StateRef | None) -> SingerState | None:
    """The state a reference names; None without one, or when its snapshot was pruned since."""
    if ref is None:
        return None
    try:
        return uow.snapshots.get(ref.snapshot_id).state
    except NotFound:
        return None


def regression_warnings(
    before: SingerState | None, after: SingerState | None, *, full_refresh: bool
) -> list[str]:
    """Why the new state looks like a regression (empty, or a bookmark moved backward)."""
    if full_refresh or before is None or before.is_empty:
        return []
    if after is None or after.is_empty:
        return [
            f"{REGRESSION_WARNING} the new state has no bookmarks (before: {len(before.bookmarks)} streams); "
            "restore_previous() puts the last good state back"
        ]
    return [
        f"{REGRESSION_WARNING} bookmark of {d.stream} moved backward "
        f"({before.bookmark_value(d.stream)} -> {after.bookmark_value(d.stream)})"
        for d in diff_states(before, after)
        if d.change is BookmarkChange.BACKWARD
    ]
