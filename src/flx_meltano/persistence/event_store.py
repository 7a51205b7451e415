"""The append-only event log: a unique (stream_id, version) makes concurrent writers conflict."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from flx_meltano.domain.events import DomainEvent
from flx_meltano.persistence.errors import ConcurrencyConflict
from flx_meltano.persistence.tables import events


def _rows(stream_id: str, expected_version: int, new_events: Sequence[DomainEvent]) -> list[dict[str, Any]]:
    """The rows of ``new_events``, numbered on from ``expected_version``."""
    return [
        {
            "stream_id": stream_id,
            "version": expected_version + offset,
            "type": type(event).__name__,
            "occurred_at": event.occurred_at,
            "payload": event.to_payload(),
        }
        for offset, event in enumerate(new_events, start=1)
    ]


class EventStore:
    """Events of every stream, on one connection (inside the caller's transaction)."""

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection

    def append(
        self,
        stream_id: str,
        expected_version: int,
        new_events: Sequence[DomainEvent],
        *,
        savepoint: bool = True,
    ) -> int:
        """Append after ``expected_version``; ConcurrencyConflict if someone else got there first.

        ``savepoint=False`` skips the savepoint (faster for bulk writers; a conflict then aborts
        the whole transaction, which such writers roll back anyway).
        """
        self._insert(
            _rows(stream_id, expected_version, new_events),
            savepoint=savepoint,
            conflict=f"event stream {stream_id!r} moved past version {expected_version}: "
            "another writer changed it; reload and retry",
        )
        return expected_version + len(new_events)

    def append_batch(self, batch: Sequence[tuple[str, int, Sequence[DomainEvent]]]) -> None:
        """Append to many streams in one statement: (stream id, expected version, events) each.

        All or nothing: if any stream moved past its expected version, the whole batch raises
        ConcurrencyConflict and the transaction must be rolled back (for bulk writers: imports,
        replays, backfills).
        """
        self._insert(
            [
                row
                for stream_id, expected, new_events in batch
                for row in _rows(stream_id, expected, new_events)
            ],
            savepoint=False,
            conflict=f"one of {len(batch)} event streams moved past its expected version",
        )

    def _insert(self, rows: list[dict[str, Any]], *, savepoint: bool, conflict: str) -> None:
        """Insert event rows; a (stream_id, version) clash becomes ConcurrencyConflict(conflict)."""
        if not rows:
            return
        try:
            if savepoint:
                # A savepoint keeps the caller's transaction usable after a conflict.
                with self.connection.begin_nested():
                    self.connection.execute(events.insert(), rows)
            else:
                self.connection.execute(events.insert(), rows)
        except IntegrityError as exc:
            if "events_stream_version" in str(exc.orig):
                raise ConcurrencyConflict(conflict) from exc
            raise

    def read(self, stream_id: str) -> list[DomainEvent]:
        """Every event of one stream, oldest first."""
        query = (
            sa.select(events.c.type, events.c.payload)
            .where(events.c.stream_id == stream_id)
            .order_by(events.c.version)
        )
        return [DomainEvent.from_payload(t, p) for t, p in self.connection.execute(query)]

    def read_streams(self, prefix: str, batch_size: int = 5000) -> Iterator[tuple[str, list[DomainEvent]]]:
        """Every stream whose id starts with ``prefix``, with its events, in stream order."""
        query = (
            sa.select(events.c.stream_id, events.c.type, events.c.payload)
            .where(events.c.stream_id.startswith(prefix, autoescape=True))
            .order_by(events.c.stream_id, events.c.version)
            .execution_options(yield_per=batch_size)
        )
        current: str | None = None
        batch: list[DomainEvent] = []
        for stream_id, type_name, payload in self.connection.execute(query):
            if stream_id != current:
                if current is not None:
                    yield current, batch
                current, batch = stream_id, []
            batch.append(DomainEvent.from_payload(type_name, payload))
        if current is not None:
            yield current, batch

    def count(self) -> int:
        """How many events the log holds."""
        return int(self.connection.execute(sa.select(sa.func.count()).select_from(events)).scalar_one())
