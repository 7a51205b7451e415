"""State snapshots, each recorded with a StateSnapshotTaken event in the same transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from flx_meltano.domain.events import DomainEvent, StateSnapshotTaken
from flx_meltano.domain.snapshots import SnapshotReason, StateRef, StateSnapshot
from flx_meltano.domain.state import SingerState
from flx_meltano.persistence.errors import ConcurrencyConflict, NotFound
from flx_meltano.persistence.event_store import EventStore
from flx_meltano.persistence.tables import events, state_snapshots

STATE_APPEND_ATTEMPTS = 5


def _snapshot(row: sa.Row[Any]) -> StateSnapshot:
    return StateSnapshot(
        id=row.id,
        state_id=row.state_id,
        taken_at=row.taken_at,
        reason=SnapshotReason(row.reason),
        checksum=row.checksum,
        state=SingerState.from_payload(row.state, where=f"snapshot {row.id}"),
        label=row.label,
        execution_id=row.execution_id,
    )


class SnapshotRepository:
    """Snapshots on one connection, inside the unit of work's transaction."""

    def __init__(self, connection: sa.Connection, event_store: EventStore) -> None:
        self.connection = connection
        self.events = event_store

    def stream_version(self, stream_id: str) -> int:
        """The newest version of an event stream (0 when empty)."""
        query = sa.select(sa.func.coalesce(sa.func.max(events.c.version), 0)).where(
            events.c.stream_id == stream_id
        )
        return int(self.connection.execute(query).scalar_one())

    def append_state_events(
        self, state_id: str, new_events: Sequence[DomainEvent], version: int | None = None
    ) -> None:
        """Append events to a state id's stream, after whatever is there.

        Unlike an execution's events, these are independent facts (a snapshot was taken, a state
        restored): when another writer got there first, read the new version and append again.
        """
        stream = f"state-{state_id}"
        for attempt in range(STATE_APPEND_ATTEMPTS):
            try:
                expected = version if version is not None and attempt == 0 else self.stream_version(stream)
                self.events.append(stream, expected, new_events)
                return
            except ConcurrencyConflict:
                if attempt == STATE_APPEND_ATTEMPTS - 1:
                    raise

    def add(
        self,
        state_id: str,
        state: SingerState,
        *,
        reason: SnapshotReason,
        at: datetime,
        label: str | None = None,
        execution_id: str | None = None,
    ) -> StateSnapshot:
        """Store a snapshot and its StateSnapshotTaken event."""
        [snapshot] = self.add_many(
            {state_id: state}, reason=reason, at=at, label=label, execution_id=execution_id
        )
        return snapshot

    def add_many(
        self,
        states: Mapping[str, SingerState],
        *,
        reason: SnapshotReason,
        at: datetime,
        label: str | None = None,
        execution_id: str | None = None,
    ) -> list[StateSnapshot]:
        """Store snapshots and their events in a few statements (backups of thousands of ids)."""
        if not states:
            return []
        ordered = sorted(states.items())
        rows = [
            {
                "state_id": state_id,
                "taken_at": at,
                "reason": str(reason),
                "label": label,
                "checksum": state.checksum,
                "state": state.payload(),
                "execution_id": execution_id,
            }
            for state_id, state in ordered
        ]
        ids = (
            self.connection.execute(
                state_snapshots.insert().returning(state_snapshots.c.id, sort_by_parameter_order=True), rows
            )
            .scalars()
            .all()
        )
        streams = [f"state-{state_id}" for state_id, _ in ordered]
        versions: dict[str, int] = {
            stream_id: version
            for stream_id, version in self.connection.execute(
                sa.select(events.c.stream_id, sa.func.max(events.c.version))
                .where(events.c.stream_id.in_(streams))
                .group_by(events.c.stream_id)
            )
        }
        taken: list[StateSnapshot] = []
        pending: list[tuple[str, int, DomainEvent]] = []
        for snapshot_id, (state_id, state) in zip(ids, ordered, strict=True):
            event = StateSnapshotTaken(
                state_id,
                at,
                snapshot_id=snapshot_id,
                reason=str(reason),
                checksum=state.checksum,
                label=label,
            )
            pending.append((state_id, versions.get(f"state-{state_id}", 0), event))
            taken.append(
                StateSnapshot(snapshot_id, state_id, at, reason, state.checksum, state, label, execution_id)
            )
        self._append_state_batch(pending)
        return taken

    def _append_state_batch(self, pending: Sequence[tuple[str, int, DomainEvent]]) -> None:
        """One event per state id (at its known version) in one INSERT.

        If another writer moved one of the streams on meanwhile, the savepoint keeps the
        transaction usable and each event is appended on its own, retried at the stream's new
        version as ``append_state_events`` does.
        """
        try:
            with self.connection.begin_nested():
                self.events.append_batch(
                    [(f"state-{state_id}", version, [event]) for state_id, version, event in pending]
                )
        except ConcurrencyConflict:
            for state_id, _, event in pending:
                self.append_state_events(state_id, [event])

    def get(self, snapshot_id: int) -> StateSnapshot:
        """One snapshot; NotFound naming the id."""
        row = self.connection.execute(
            sa.select(state_snapshots).where(state_snapshots.c.id == snapshot_id)
        ).one_or_none()
        if row is None:
            raise NotFound(f"no snapshot {snapshot_id}")
        return _snapshot(row)

    def latest(self, state_id: str) -> StateSnapshot | None:
        """The newest snapshot of a state id."""
        row = self.connection.execute(
            sa.select(state_snapshots)
            .where(state_snapshots.c.state_id == state_id)
            .order_by(state_snapshots.c.taken_at.desc(), state_snapshots.c.id.desc())
            .limit(1)
        ).one_or_none()
        return _snapshot(row) if row else None

    def latest_ref(self, state_id: str) -> StateRef | None:
        """The newest snapshot of a state id by reference (its payload is not read)."""
        row = self.connection.execute(
            sa.select(state_snapshots.c.id, state_snapshots.c.checksum)
            .where(state_snapshots.c.state_id == state_id)
            .order_by(state_snapshots.c.taken_at.desc(), state_snapshots.c.id.desc())
            .limit(1)
        ).one_or_none()
        return StateRef(row.id, row.checksum) if row else None

    def latest_checksums(self, state_ids: Sequence[str] | None = None) -> dict[str, str]:
        """The newest snapshot's checksum per state id (all state ids, or those given)."""
        query = (
            sa.select(state_snapshots.c.state_id, state_snapshots.c.checksum)
            .distinct(state_snapshots.c.state_id)
            .order_by(
                state_snapshots.c.state_id,
                state_snapshots.c.taken_at.desc(),
                state_snapshots.c.id.desc(),
            )
        )
        if state_ids is not None:
            query = query.where(state_snapshots.c.state_id.in_(list(state_ids)))
        return {state_id: checksum for state_id, checksum in self.connection.execute(query)}

    def list(
        self,
        state_id: str | None = None,
        *,
        since: datetime | None = None,
        label: str | None = None,
        limit: int | None = None,
    ) -> list[StateSnapshot]:
        """Snapshots, newest first."""
        query = sa.select(state_snapshots).order_by(
            state_snapshots.c.taken_at.desc(), state_snapshots.c.id.desc()
        )
        if state_id:
            query = query.where(state_snapshots.c.state_id == state_id)
        if since:
            query = query.where(state_snapshots.c.taken_at >= since)
        if label:
            query = query.where(state_snapshots.c.label == label)
        if limit:
            query = query.limit(limit)
        return [_snapshot(row) for row in self.connection.execute(query)]

    def delete(self, snapshot_ids: Sequence[int]) -> int:
        """Remove snapshots by id; how many went."""
        if not snapshot_ids:
            return 0
        result = self.connection.execute(
            state_snapshots.delete().where(state_snapshots.c.id.in_(list(snapshot_ids)))
        )
        return int(result.rowcount)
