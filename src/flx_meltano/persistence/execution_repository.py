"""Executions: saved as events plus the rows they describe, in one transaction; read back by query."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from flx_meltano.domain.events import ExecutionEvent
from flx_meltano.domain.execution import PipelineExecution, StreamResult
from flx_meltano.domain.history import ExecutionFilter
from flx_meltano.domain.snapshots import StateRef
from flx_meltano.domain.values import Duration, ExecutionStatus, StreamStatus, Trigger
from flx_meltano.persistence.errors import NotFound
from flx_meltano.persistence.event_store import EventStore
from flx_meltano.persistence.tables import events, executions, stream_results

EXECUTION_STREAM_PREFIX = "execution-"
# The events that close an execution (its type names in the event log).
CLOSING_EVENTS = ("ExecutionSucceeded", "ExecutionFailed", "ExecutionCancelled", "ExecutionCrashed")


def upsert(table: sa.Table, keys: tuple[str, ...], keep: tuple[str, ...] = ()) -> sa.Insert:
    """INSERT ... ON CONFLICT (keys) DO UPDATE the rest (but ``keep``); built once, compiled once."""
    statement = insert(table)
    return statement.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys],
        set_={c.name: statement.excluded[c.name] for c in table.columns if c.name not in (*keys, *keep)},
    )


# The heartbeat is written by the runner's heartbeat alone (``heartbeat``), never by a save.
UPSERT_EXECUTION = upsert(executions, ("id",), keep=("heartbeat_at",))
# Newest first; executions started at the same instant come back in a stable order (id, descending).
# The started_at indexes still serve it: PostgreSQL walks one in order and only sorts each group of
# equal started_at by id (an incremental sort), so no index on (..., started_at, id) is needed.
NEWEST_FIRST = (executions.c.started_at.desc(), executions.c.id.desc())
UPSERT_STREAM_RESULT = upsert(stream_results, ("execution_id", "stream"))


def _row(execution: PipelineExecution) -> dict[str, Any]:
    duration = execution.duration
    return {
        "id": execution.id,
        "pipeline_id": execution.pipeline_id,
        "status": str(execution.status),
        "trigger": str(execution.trigger),
        "started_at": execution.started_at,
        "ended_at": execution.ended_at,
        "duration_seconds": duration.seconds if duration else None,
        "streams": list(execution.streams),
        "full_refresh": execution.full_refresh,
        "partition": execution.partition,
        "error": execution.error,
        "failed_plugin": execution.failed_plugin,
        "exit_code": execution.exit_code,
        "dagster_run_id": execution.dagster_run_id,
        "runner_host": execution.runner_host,
        "runner_pid": execution.runner_pid,
        "state_before_snapshot_id": execution.state_before.snapshot_id if execution.state_before else None,
        "state_before_checksum": execution.state_before.checksum if execution.state_before else None,
        "state_after_snapshot_id": execution.state_after.snapshot_id if execution.state_after else None,
        "state_after_checksum": execution.state_after.checksum if execution.state_after else None,
        "lease_seconds": execution.lease_seconds,
        "heartbeat_at": execution.heartbeat_at,
        "warnings": list(execution.warnings),
        "version": execution.version,
    }


def _result_row(execution_id: str, result: StreamResult) -> dict[str, Any]:
    return {
        "execution_id": execution_id,
        "stream": result.stream,
        "status": str(result.status),
        "records": result.records,
        "duration_seconds": result.duration.seconds if result.duration else None,
        "bookmark": result.bookmark,
        "finished_at": result.finished_at,
    }


def _result_from_row(row: sa.Row[Any], status: str) -> StreamResult:
    return StreamResult(
        stream=row.stream,
        records=row.records,
        status=StreamStatus(status),
        duration=Duration(row.duration_seconds) if row.duration_seconds is not None else None,
        bookmark=row.bookmark,
        finished_at=row.finished_at,
    )


def _ref(snapshot_id: int | None, checksum: str | None) -> StateRef | None:
    """A state reference from its two columns (both NULL: no state)."""
    if snapshot_id is None or checksum is None:
        return None
    return StateRef(snapshot_id, checksum)


def _from_rows(row: sa.Row[Any], results: Iterable[sa.Row[Any]]) -> PipelineExecution:
    return PipelineExecution(
        id=row.id,
        pipeline_id=row.pipeline_id,
        status=ExecutionStatus(row.status),
        trigger=Trigger(row.trigger),
        started_at=row.started_at,
        ended_at=row.ended_at,
        streams=tuple(row.streams),
        full_refresh=row.full_refresh,
        partition=row.partition,
        dagster_run_id=row.dagster_run_id,
        runner_host=row.runner_host,
        runner_pid=row.runner_pid,
        state_before=_ref(row.state_before_snapshot_id, row.state_before_checksum),
        state_after=_ref(row.state_after_snapshot_id, row.state_after_checksum),
        lease_seconds=row.lease_seconds,
        heartbeat_at=row.heartbeat_at,
        error=row.error,
        failed_plugin=row.failed_plugin,
        exit_code=row.exit_code,
        warnings=tuple(row.warnings),
        results={r.stream: _result_from_row(r, r.status) for r in results},
        version=row.version,
    )


class ExecutionRepository:
    """Executions on one connection, inside the unit of work's transaction."""

    def __init__(self, connection: sa.Connection, event_store: EventStore) -> None:
        self.connection = connection
        self.events = event_store

    def save(self, execution: PipelineExecution) -> None:
        """Append the execution's new events (conflicting on a stale version), then its rows."""
        pending: Sequence[ExecutionEvent] = execution.pending_events
        if not pending:
            return
        new_version = self.events.append(
            f"{EXECUTION_STREAM_PREFIX}{execution.id}", execution.version, pending
        )
        execution.version = new_version
        self._write_rows(execution)
        execution.pending_events = []

    def _write_rows(self, execution: PipelineExecution) -> None:
        self.connection.execute(UPSERT_EXECUTION, _row(execution))
        if execution.results:
            self.connection.execute(
                UPSERT_STREAM_RESULT, [_result_row(execution.id, r) for r in execution.results.values()]
            )

    def heartbeat(self, execution_id: str) -> bool:
        """Renew the lease of a running execution (the server's clock, so hosts agree); whether
        it is still running."""
        result = self.connection.execute(
            sa.update(executions)
            .where(executions.c.id == execution_id)
            .where(executions.c.status.in_([str(ExecutionStatus.PENDING), str(ExecutionStatus.RUNNING)]))
            .values(heartbeat_at=sa.func.now())
        )
        return bool(result.rowcount)

    def now(self) -> datetime:
        """The store's clock (leases are measured on it, whatever the host's clock says)."""
        now: datetime = self.connection.execute(sa.select(sa.func.now())).scalar_one()
        return now

    def get(self, execution_id: str, *, for_update: bool = False) -> PipelineExecution:
        """One execution with its stream results; NotFound naming the id."""
        query = sa.select(executions).where(executions.c.id == execution_id)
        if for_update:
            query = query.with_for_update()
        row = self.connection.execute(query).one_or_none()
        if row is None:
            raise NotFound(f"no execution {execution_id!r}")
        results = self.connection.execute(
            sa.select(stream_results)
            .where(stream_results.c.execution_id == execution_id)
            .order_by(stream_results.c.stream)
        )
        return _from_rows(row, results)

    def find(self, prefix: str) -> PipelineExecution:
        """An execution by id or unambiguous id prefix (as people type them)."""
        rows = self.connection.execute(
            sa.select(executions.c.id).where(executions.c.id.startswith(prefix, autoescape=True)).limit(2)
        ).all()
        if not rows:
            raise NotFound(f"no execution {prefix!r}")
        if len(rows) > 1:
            raise NotFound(f"execution id prefix {prefix!r} is ambiguous; give more characters")
        return self.get(rows[0].id)

    def history(self, query: ExecutionFilter) -> list[PipelineExecution]:
        """History, newest first, with stream results (one more indexed query for the page)."""
        statement = sa.select(executions).order_by(*NEWEST_FIRST).limit(query.limit)
        if query.pipeline_id:
            statement = statement.where(executions.c.pipeline_id == query.pipeline_id)
        if query.status:
            statement = statement.where(executions.c.status == str(query.status))
        if query.since:
            statement = statement.where(executions.c.started_at >= query.since)
        return self._with_results(list(self.connection.execute(statement)))

    def _with_results(self, rows: list[sa.Row[Any]]) -> list[PipelineExecution]:
        """Executions for these rows with their stream results (one more indexed query)."""
        results: dict[str, list[sa.Row[Any]]] = {row.id: [] for row in rows}
        if rows:
            for result in self.connection.execute(
                sa.select(stream_results)
                .where(stream_results.c.execution_id.in_(list(results)))
                .order_by(stream_results.c.stream)
            ):
                results[result.execution_id].append(result)
        return [_from_rows(row, results[row.id]) for row in rows]

    def history_of(self, pipeline_id: str, limit: int = 20) -> list[PipelineExecution]:
        """The newest executions of one pipeline."""
        return self.history(ExecutionFilter(pipeline_id=pipeline_id, limit=limit))

    def covering(self, pipeline_id: str, at: datetime, *, exclude_trigger: str) -> str | None:
        """The id of an execution of ``pipeline_id`` running at ``at`` (not of ``exclude_trigger``)."""
        statement = (
            sa.select(executions.c.id)
            .where(
                executions.c.pipeline_id == pipeline_id,
                executions.c.trigger != exclude_trigger,
                executions.c.started_at <= at,
                sa.or_(executions.c.ended_at.is_(None), executions.c.ended_at >= at),
            )
            .order_by(*NEWEST_FIRST)
            .limit(1)
        )
        return self.connection.execute(statement).scalar()

    def active(self, pipeline_id: str | None = None) -> list[PipelineExecution]:
        """Executions still PENDING or RUNNING (of one pipeline, or all)."""
        statement = sa.select(executions).where(
            executions.c.status.in_([str(ExecutionStatus.PENDING), str(ExecutionStatus.RUNNING)])
        )
        if pipeline_id:
            statement = statement.where(executions.c.pipeline_id == pipeline_id)
        return [_from_rows(row, ()) for row in self.connection.execute(statement)]

    def last_by_pipeline(self) -> dict[str, PipelineExecution]:
        """The newest execution of every pipeline, with its stream results."""
        statement = (
            sa.select(executions)
            .distinct(executions.c.pipeline_id)
            .order_by(executions.c.pipeline_id, *NEWEST_FIRST)
        )
        return {e.pipeline_id: e for e in self._with_results(list(self.connection.execute(statement)))}

    def newest_state_refs(self) -> set[int]:
        """The snapshot ids the newest finished execution of every pipeline references."""
        terminal = [str(s) for s in ExecutionStatus if s.is_terminal]
        newest = (
            sa.select(executions.c.state_before_snapshot_id, executions.c.state_after_snapshot_id)
            .where(executions.c.status.in_(terminal))
            .distinct(executions.c.pipeline_id)
            .order_by(executions.c.pipeline_id, *NEWEST_FIRST)
        )
        return {ref for row in self.connection.execute(newest) for ref in row if ref is not None}

    def last_success_by_pipeline(self) -> dict[str, datetime]:
        """When each pipeline last succeeded."""
        statement = (
            sa.select(executions.c.pipeline_id, sa.func.max(executions.c.ended_at))
            .where(executions.c.status == str(ExecutionStatus.SUCCEEDED))
            .group_by(executions.c.pipeline_id)
        )
        return {pipeline_id: ended for pipeline_id, ended in self.connection.execute(statement)}

    def stream_metrics(
        self, pipeline_id: str, stream: str | None = None, limit: int = 100
    ) -> list[tuple[datetime, str, str, StreamResult]]:
        """Per-stream results over time: (started_at, execution id, status, result), newest first."""
        statement = (
            sa.select(executions.c.started_at, executions.c.id, executions.c.status, stream_results)
            .join(stream_results, stream_results.c.execution_id == executions.c.id)
            .where(executions.c.pipeline_id == pipeline_id)
            .order_by(*NEWEST_FIRST, stream_results.c.stream)
            .limit(limit)
        )
        if stream:
            statement = statement.where(stream_results.c.stream == stream)
        rows = self.connection.execute(statement)
        return [
            (
                row.started_at,
                row.id,
                row.status,
                _result_from_row(row, row.status_1),
            )
            for row in rows
        ]

    def last_position(self) -> int:
        """The newest position of the event log (0: empty)."""
        return int(self.connection.execute(sa.select(sa.func.max(events.c.position))).scalar() or 0)

    def closed_after(self, position: int, limit: int = 500) -> list[tuple[int, PipelineExecution]]:
        """Executions whose closing event came after ``position`` in the event log, oldest first,
        with their stream results: (position of the closing event, execution)."""
        closing = (
            sa.select(events.c.position, events.c.stream_id)
            .where(
                events.c.position > position,
                events.c.type.in_(CLOSING_EVENTS),
                events.c.stream_id.startswith(EXECUTION_STREAM_PREFIX, autoescape=True),
            )
            .order_by(events.c.position)
            .limit(limit)
        )
        found = [
            (p, stream_id.removeprefix(EXECUTION_STREAM_PREFIX))
            for p, stream_id in self.connection.execute(closing)
        ]
        if not found:
            return []
        rows = list(
            self.connection.execute(sa.select(executions).where(executions.c.id.in_([i for _, i in found])))
        )
        by_id = {e.id: e for e in self._with_results(rows)}
        return [(p, by_id[i]) for p, i in found if i in by_id]

    def replay_all(self) -> int:
        """Rebuild every execution row from the event log; returns how many were rebuilt."""
        rebuilt = 0
        for _, stream_events in self.events.read_streams(EXECUTION_STREAM_PREFIX):
            execution = PipelineExecution.replay([e for e in stream_events if isinstance(e, ExecutionEvent)])
            self._write_rows(execution)
            rebuilt += 1
        return rebuilt
