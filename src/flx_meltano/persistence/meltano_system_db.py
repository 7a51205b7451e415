"""Meltano's system database (SQLite or PostgreSQL), read-only: its ``runs`` rows as records.

Plain SQLAlchemy on Meltano's own URL: milliseconds, where importing Meltano costs seconds.
Meltano's column types are mirrored by hand: GUIDs are 32 hex digits on SQLite and ``uuid`` on
PostgreSQL, date-times are naive UTC, the payload is JSON text.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from flx_meltano.domain.meltano_runs import MeltanoRunRecord, MeltanoRunStatus
from flx_meltano.domain.state import SINGER_STATE_KEY
from flx_meltano.persistence.errors import StoreError

# Meltano's Job.payload_flags: 1 = the payload holds a complete state, 2 = an incomplete one.
_COMPLETE_STATE = 1

_runs = sa.table(
    "runs",
    sa.column("id", sa.Integer),
    sa.column("job_name", sa.String),
    sa.column("run_id", sa.String),
    sa.column("state", sa.String),
    sa.column("started_at", sa.DateTime),
    sa.column("last_heartbeat_at", sa.DateTime),
    sa.column("ended_at", sa.DateTime),
    sa.column("payload", sa.Text),
    sa.column("payload_flags", sa.Integer),
)


class MeltanoDatabaseUnreadable(StoreError):
    """Meltano's system database could not be read (its URL, password masked, is named)."""


def _utc(value: Any) -> datetime | None:
    """Meltano stores naive UTC date-times (DateTimeUTC); SQLite may return them as text."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _run_id(value: Any) -> str:
    """Meltano's GUID as text with dashes (SQLite keeps 32 hex digits, PostgreSQL a uuid)."""
    try:
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
    except ValueError:
        return str(value)


def _record(row: sa.Row[Any]) -> MeltanoRunRecord:
    payload: Any = row.payload
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            payload = {}
    payload = payload if isinstance(payload, Mapping) else {}
    singer = payload.get(SINGER_STATE_KEY)
    try:
        status = MeltanoRunStatus(row.state)
    except ValueError:
        status = MeltanoRunStatus.FAIL
    return MeltanoRunRecord(
        row_id=int(row.id),
        run_id=_run_id(row.run_id),
        state_id=str(row.job_name),
        status=status,
        started_at=_utc(row.started_at) or datetime.now(UTC),
        ended_at=_utc(row.ended_at),
        last_heartbeat_at=_utc(row.last_heartbeat_at),
        error=str(payload["error"]) if payload.get("error") else None,
        singer_state=singer if isinstance(singer, Mapping) else None,
        complete_state=int(row.payload_flags or 0) & _COMPLETE_STATE == _COMPLETE_STATE,
    )


def source_label(uri: str) -> str:
    """The system database as stored beside the runs read from it: its URL without a password."""
    url = make_url(uri)
    if url.get_backend_name() == "sqlite" and url.database:
        return f"sqlite:///{Path(url.database).resolve()}"
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


class MeltanoSystemDb:
    """Meltano's system database of one project, read-only.

    Args:
        uri: Meltano's ``database_uri`` (SQLite or PostgreSQL).
        redact: masks secrets in the messages of the errors this raises.
    """

    def __init__(self, uri: str, redact: Callable[[str], str] | None = None) -> None:
        self.uri = uri
        self._redact = redact or (lambda text: text)
        try:
            self.source = source_label(uri)
        except sa.exc.ArgumentError:
            raise MeltanoDatabaseUnreadable(
                self._redact(f"Meltano's database_uri {uri!r} is not a database URL")
            ) from None
        self._engine: Engine | None = None

    def _connect(self) -> Engine | None:
        """The engine, or None when there is no system database yet (meltano never ran)."""
        if self._engine is None:
            url = make_url(self.uri)
            if url.get_backend_name() == "sqlite":
                if not url.database or not Path(url.database).is_file():
                    return None
                self._engine = sa.create_engine(
                    f"sqlite:///file:{Path(url.database).resolve()}?mode=ro&uri=true",
                    poolclass=sa.pool.NullPool,
                )
            else:
                if url.drivername in ("postgresql", "postgres"):
                    url = url.set(drivername="postgresql+psycopg")
                self._engine = sa.create_engine(
                    url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 10}
                )
        return self._engine

    def _query(self, statement: sa.Select[Any]) -> list[MeltanoRunRecord]:
        engine = self._connect()
        if engine is None:
            return []
        try:
            with engine.connect() as connection:
                if not engine.dialect.has_table(connection, "runs"):
                    return []
                return [_record(row) for row in connection.execute(statement)]
        except sa.exc.SQLAlchemyError as exc:
            first = str(exc).splitlines()[0]
            raise MeltanoDatabaseUnreadable(
                self._redact(f"reading Meltano's runs from {self.source} failed: {first}")
            ) from None

    def runs_after(self, row_id: int, also: Iterable[str] = ()) -> list[MeltanoRunRecord]:
        """Run rows (not state edits) newer than ``row_id``, and those of the run ids ``also``."""
        engine = self._connect()
        sqlite = engine is not None and engine.dialect.name == "sqlite"
        followed: list[Any] = []
        for run_id in also:
            try:
                followed.append(uuid.UUID(run_id).hex if sqlite else uuid.UUID(run_id))
            except ValueError:
                continue
        newer = _runs.c.id > row_id
        statement = (
            sa.select(_runs)
            .where(sa.or_(newer, _runs.c.run_id.in_(followed)) if followed else newer)
            .where(_runs.c.state != MeltanoRunStatus.STATE_EDIT.value)
            .order_by(_runs.c.id)
        )
        return self._query(statement)

    def earlier_states(self, record: MeltanoRunRecord) -> list[MeltanoRunRecord]:
        """The rows that wrote state to a run's state id before it (runs and edits), newest first."""
        return self._query(
            sa.select(_runs)
            .where(_runs.c.job_name == record.state_id, _runs.c.id < record.row_id)
            .where(_runs.c.payload.like(f"%{SINGER_STATE_KEY}%"))
            .order_by(_runs.c.id.desc())
        )

    def close(self) -> None:
        """Release the engine."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
