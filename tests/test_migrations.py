"""Migrations: the head matches Alembic's, migrating is concurrent-safe, and data survives each."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from flx_meltano.domain.execution import PipelineExecution
from flx_meltano.domain.snapshots import SnapshotReason
from flx_meltano.domain.state import SingerState
from flx_meltano.domain.values import ExecutionStatus
from flx_meltano.persistence import database
from flx_meltano.persistence.unit_of_work import SqlUnitOfWork


def test_the_known_head_is_alembics_head():
    assert database.head_revision() == database.HEAD_REVISION


def test_migrating_from_many_threads_at_once_is_safe(server):
    import psycopg

    name = "flx_test_migrate_race"
    with psycopg.connect(server.admin_conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server.url(name)
    try:
        engines = [sa.create_engine(url) for _ in range(4)]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(database.migrate, engines))
        assert database.current_revision(engines[0]) == database.HEAD_REVISION
        for engine in engines:
            engine.dispose()
    finally:
        database.engine_for.cache_clear()
        with psycopg.connect(server.admin_conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- 0003: states by reference --------------------------------------------------------------------

STATE_ID = "dev:tap-shopsim-to-target-jsonlines"


def _singer(value: str) -> dict[str, object]:
    return {"singer_state": {"bookmarks": {"orders": {"replication_key_value": value}}}}


def _at(minute: int) -> datetime:
    return datetime(2024, 3, 1, 12, minute, tzinfo=UTC)


@contextmanager
def _database(server: Any, name: str) -> Iterator[sa.Engine]:
    import psycopg

    with psycopg.connect(server.admin_conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    engine = sa.create_engine(server.url(name))
    try:
        yield engine
    finally:
        engine.dispose()
        database.engine_for.cache_clear()
        with psycopg.connect(server.admin_conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _to(engine: sa.Engine, revision: str, *, down: bool = False) -> None:
    from alembic import command

    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS flx"))
        (command.downgrade if down else command.upgrade)(database.alembic_config(conn), revision)


def _seed_0002(conn: sa.Connection) -> int:
    """Two executions as 0002 stored them (payloads in rows and events); one snapshot already
    holding the first run's state before. Returns that snapshot's id."""
    a, b = _singer("a"), _singer("b")
    snapshot_id = conn.execute(
        sa.text(
            "INSERT INTO flx.state_snapshots (state_id, taken_at, reason, checksum, state) "
            "VALUES (:s, :t, 'import', :c, CAST(:p AS jsonb)) RETURNING id"
        ),
        {"s": STATE_ID, "t": _at(0), "c": SingerState.from_payload(a).checksum, "p": json.dumps(a)},
    ).scalar_one()
    conn.execute(
        sa.text(
            "INSERT INTO flx.events (stream_id, version, type, occurred_at, payload) "
            "VALUES (:s, 1, 'StateSnapshotTaken', :t, CAST(:p AS jsonb))"
        ),
        {
            "s": f"state-{STATE_ID}",
            "t": _at(0),
            "p": json.dumps(
                {
                    "state_id": STATE_ID,
                    "at": _at(0).isoformat(),
                    "snapshot_id": snapshot_id,
                    "reason": "import",
                    "checksum": SingerState.from_payload(a).checksum,
                    "label": None,
                }
            ),
        },
    )
    # e1: a -> b (succeeded); e2: b -> b (failed; the state did not change).
    runs = [("e1", a, b, "SUCCEEDED", "ExecutionSucceeded"), ("e2", b, b, "FAILED", "ExecutionFailed")]
    for n, (execution_id, before, after, status, closing) in enumerate(runs):
        started, ended = _at(10 * n + 1), _at(10 * n + 2)
        conn.execute(
            sa.text(
                "INSERT INTO flx.executions (id, pipeline_id, status, trigger, started_at, ended_at, "
                "streams, full_refresh, error, state_before, state_after, warnings, version) VALUES "
                "(:id, :p, :st, 'cli', :s, :e, '[\"orders\"]', false, :err, CAST(:b AS jsonb), "
                "CAST(:a AS jsonb), '[]', 2)"
            ),
            {
                "id": execution_id,
                "p": STATE_ID,
                "st": status,
                "s": started,
                "e": ended,
                "err": "boom" if status == "FAILED" else None,
                "b": json.dumps(before),
                "a": json.dumps(after),
            },
        )
        start_payload = {
            "execution_id": execution_id,
            "at": started.isoformat(),
            "pipeline_id": STATE_ID,
            "trigger": "cli",
            "streams": ["orders"],
            "full_refresh": False,
            "dagster_run_id": None,
            "state_before": before,
            "runner_host": "h",
            "runner_pid": 1,
        }
        close_payload: dict[str, object] = {
            "execution_id": execution_id,
            "at": ended.isoformat(),
            "state_after": after,
            "warnings": [],
        }
        if closing == "ExecutionFailed":
            close_payload |= {"error": "boom", "failed_plugin": None, "exit_code": 1}
        for version, (kind, payload, when) in enumerate(
            [("ExecutionStarted", start_payload, started), (closing, close_payload, ended)], start=1
        ):
            conn.execute(
                sa.text(
                    "INSERT INTO flx.events (stream_id, version, type, occurred_at, payload) "
                    "VALUES (:s, :v, :k, :t, CAST(:p AS jsonb))"
                ),
                {
                    "s": f"execution-{execution_id}",
                    "v": version,
                    "k": kind,
                    "t": when,
                    "p": json.dumps(payload),
                },
            )
    return int(snapshot_id)


def test_0003_turns_carried_states_into_references_to_one_snapshot_each(server):
    with _database(server, "flx_test_migrate_0003") as engine:
        _to(engine, "0002")
        with engine.begin() as conn:
            imported = _seed_0002(conn)
        _to(engine, "head")
        assert database.current_revision(engine) == database.HEAD_REVISION

        with SqlUnitOfWork(engine) as uow:
            snapshots = uow.snapshots.list(STATE_ID)
            e1, e2 = uow.executions.get("e1"), uow.executions.get("e2")
            replayed = {
                e.id: PipelineExecution.replay(uow.events.read(f"execution-{e.id}")) for e in (e1, e2)
            }
            state_events = uow.events.read(f"state-{STATE_ID}")
        # State a was stored already (reused); b, carried three times, is stored once now.
        by_state = {s.state.bookmark_value("orders"): s for s in snapshots}
        assert sorted(by_state) == ["a", "b"]
        assert len(snapshots) == 2
        a, b = by_state["a"], by_state["b"]
        assert a.id == imported
        assert (b.reason, b.execution_id, b.taken_at) == (SnapshotReason.POST_RUN, "e1", _at(2))
        assert b.checksum == SingerState.from_payload(_singer("b")).checksum
        assert [type(e).__name__ for e in state_events] == ["StateSnapshotTaken", "StateSnapshotTaken"]
        assert state_events[-1].snapshot_id == b.id  # type: ignore[attr-defined]
        # Rows and events reference them, and replaying the events gives the rows back.
        assert (e1.state_before, e1.state_after) == (a.ref, b.ref)
        assert (e2.state_before, e2.state_after) == (b.ref, b.ref)
        assert (e1.status, e2.status, e2.error) == (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, "boom")
        for execution in (e1, e2):
            again = replayed[execution.id]
            assert (again.state_before, again.state_after, again.status) == (
                execution.state_before,
                execution.state_after,
                execution.status,
            )
        with engine.connect() as conn:
            carried = conn.execute(
                sa.text("SELECT count(*) FROM flx.events WHERE payload::text LIKE '%singer_state%'")
            ).scalar_one()
            columns = {c["name"] for c in sa.inspect(conn).get_columns("executions", schema="flx")}
        assert carried == 0, "an event still carries a state payload"
        assert {"state_before", "state_after"}.isdisjoint(columns)

        # Down again: the payloads come back from the snapshots.
        _to(engine, "0002", down=True)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id, state_before, state_after FROM flx.executions ORDER BY id")
            ).all()
            started = (
                conn.execute(
                    sa.text(
                        "SELECT payload->'state_before' FROM flx.events WHERE type = 'ExecutionStarted' "
                        "ORDER BY stream_id"
                    )
                )
                .scalars()
                .all()
            )
        assert [(r.state_before, r.state_after) for r in rows] == [
            (_singer("a"), _singer("b")),
            (_singer("b"), _singer("b")),
        ]
        assert started == [_singer("a"), _singer("b")]

        # Up again: the states are found among the snapshots, none is stored twice.
        _to(engine, "head")
        with SqlUnitOfWork(engine) as uow:
            assert sorted(s.id for s in uow.snapshots.list(STATE_ID)) == sorted([a.id, b.id])
            assert uow.executions.get("e1").state_after == b.ref
        # A reference whose snapshot is gone has no payload to put back: down is refused.
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM flx.state_snapshots WHERE id = :id"), {"id": a.id})
        with pytest.raises(RuntimeError, match="reference pruned snapshots"):
            _to(engine, "0002", down=True)
        assert database.current_revision(engine) == database.HEAD_REVISION
