"""Monitoring figures of the whole store, per pipeline and per stream, in a handful of aggregate queries.

Read at scrape time by the Prometheus exporter: counts are totals over the store's whole history
(so they only grow), durations come as cumulative histogram buckets, as Prometheus expects them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONPATH
from sqlalchemy.engine import Engine

from flx_meltano.domain.values import ExecutionStatus, StreamStatus
from flx_meltano.persistence.execution_repository import NEWEST_FIRST
from flx_meltano.persistence.tables import executions, stream_results
from flx_meltano.persistence.tables import pipelines as pipelines_table

# A warning the regression guard puts on an execution starts with this (application/state_guard.py).
REGRESSION = sa.cast(sa.literal('$[*] ? (@ starts with "state regression")'), JSONPATH)
_FINISHED = [str(s) for s in ExecutionStatus if s.is_terminal]


@dataclass(frozen=True)
class Histogram:
    """Cumulative counts of observations at or below each bound, their number and their sum."""

    buckets: tuple[tuple[float, int], ...]
    count: int
    total: float


@dataclass
class PipelineFigures:
    """One pipeline: executions by status, the newest success, durations, regressions flagged."""

    pipeline_id: str
    executions_by_status: dict[str, int] = field(default_factory=dict)
    last_success: datetime | None = None
    duration: Histogram | None = None
    state_regressions: int = 0


@dataclass
class StreamFigures:
    """One stream of one pipeline: results by status, records loaded, newest success, durations."""

    pipeline_id: str
    stream: str
    results_by_status: dict[str, int] = field(default_factory=dict)
    records_loaded: int = 0
    last_records: int | None = None
    last_success: datetime | None = None
    duration: Histogram | None = None


@dataclass(frozen=True)
class StoreFigures:
    """Everything the exporter shows, read in one snapshot of the store."""

    pipelines: list[PipelineFigures]
    streams: list[StreamFigures]


# Only the newest executions of a pipeline are searched for a stream's newest record count.
NEWEST_EXECUTIONS_SEARCHED = 100


def _bucket(value: sa.ColumnElement[Any], bounds: Sequence[float]) -> sa.ColumnElement[Any]:
    """The index of the first bound ``value`` is at or below (``len(bounds)`` above them all)."""
    return sa.case(*((value <= bound, i) for i, bound in enumerate(bounds)), else_=len(bounds))


class _HistogramCounts:
    """Observations per bucket index, folded into a cumulative Histogram."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.per_bucket = [0] * (len(bounds) + 1)
        self.total = 0.0

    def add(self, bucket: int | None, count: int, total: float | None) -> None:
        if bucket is not None:
            self.per_bucket[bucket] += count
            self.total += total or 0.0

    def histogram(self) -> Histogram:
        cumulative, running = [], 0
        for bound, count in zip(self.bounds, self.per_bucket, strict=False):
            running += count
            cumulative.append((bound, running))
        return Histogram(tuple(cumulative), sum(self.per_bucket), self.total)


def _latest(current: datetime | None, candidate: datetime | None) -> datetime | None:
    if candidate is None:
        return current
    return candidate if current is None or candidate > current else current


def _newest_counts(pipeline_ids: list[str]) -> sa.Select[Any]:
    """Each stream's records in the newest of its pipeline's recent executions that has it."""
    e, r = executions.c, stream_results.c
    ids = sa.values(sa.column("pipeline_id", sa.Text), name="p").data([(i,) for i in pipeline_ids])
    recent = (
        sa.select(e.id, e.pipeline_id, e.started_at)
        .where(e.pipeline_id == ids.c.pipeline_id)
        .order_by(*NEWEST_FIRST)
        .limit(NEWEST_EXECUTIONS_SEARCHED)
        .lateral("x")
    )
    return (
        sa.select(recent.c.pipeline_id, r.stream, r.records)
        .select_from(ids.join(recent, sa.true()))
        .join(stream_results, r.execution_id == recent.c.id)
        .distinct(recent.c.pipeline_id, r.stream)
        .order_by(recent.c.pipeline_id, r.stream, recent.c.started_at.desc(), recent.c.id.desc())
    )


def read_figures(engine: Engine, duration_bounds: Sequence[float]) -> StoreFigures:
    """Every pipeline's and stream's figures, from one consistent snapshot (REPEATABLE READ).

    One pass over the executions, one over the stream results joined to them (grouped by
    status and duration bucket, folded here), and an index walk for each stream's newest count.
    """
    pipelines: dict[str, PipelineFigures] = {}
    streams: dict[tuple[str, str], StreamFigures] = {}
    pipeline_durations: dict[str, _HistogramCounts] = {}
    stream_durations: dict[tuple[str, str], _HistogramCounts] = {}

    def pipeline(pipeline_id: str) -> PipelineFigures:
        return pipelines.setdefault(pipeline_id, PipelineFigures(pipeline_id))

    def stream(key: tuple[str, str]) -> StreamFigures:
        return streams.setdefault(key, StreamFigures(*key))

    e, r = executions.c, stream_results.c
    finished = e.status.in_(_FINISHED)
    no_bucket = sa.null()
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        for row in conn.execute(sa.select(pipelines_table.c.id)):
            pipeline(row.id)

        execution_bucket = sa.case((finished, _bucket(e.duration_seconds, duration_bounds)), else_=no_bucket)
        per_execution = sa.select(
            e.pipeline_id,
            e.status,
            sa.case((e.duration_seconds.is_(None), no_bucket), else_=execution_bucket).label("bucket"),
            sa.func.count().label("n"),
            sa.func.sum(e.duration_seconds).label("total"),
            sa.func.max(e.ended_at).label("ended"),
            sa.func.count().filter(sa.func.jsonb_path_exists(e.warnings, REGRESSION)).label("regressions"),
        ).group_by(e.pipeline_id, e.status, sa.literal_column("bucket"))
        for row in conn.execute(per_execution):
            figures = pipeline(row.pipeline_id)
            by_status = figures.executions_by_status
            by_status[row.status] = by_status.get(row.status, 0) + row.n
            figures.state_regressions += row.regressions
            if row.status == str(ExecutionStatus.SUCCEEDED):
                figures.last_success = _latest(figures.last_success, row.ended)
            durations = pipeline_durations.setdefault(row.pipeline_id, _HistogramCounts(duration_bounds))
            durations.add(row.bucket, row.n, row.total)

        result_bucket = sa.case((finished, _bucket(r.duration_seconds, duration_bounds)), else_=no_bucket)
        per_result = (
            sa.select(
                e.pipeline_id,
                r.stream,
                r.status,
                sa.case((r.duration_seconds.is_(None), no_bucket), else_=result_bucket).label("bucket"),
                sa.func.count().label("n"),
                sa.func.sum(r.records).label("records"),
                sa.func.sum(r.duration_seconds).label("total"),
                sa.func.max(sa.func.coalesce(r.finished_at, e.ended_at)).label("finished"),
            )
            .join(executions, e.id == r.execution_id)
            .group_by(e.pipeline_id, r.stream, r.status, sa.literal_column("bucket"))
        )
        for row in conn.execute(per_result):
            key = (row.pipeline_id, row.stream)
            of_stream = stream(key)
            results = of_stream.results_by_status
            results[row.status] = results.get(row.status, 0) + row.n
            of_stream.records_loaded += int(row.records or 0)
            if StreamStatus(row.status) is StreamStatus.SUCCEEDED:
                of_stream.last_success = _latest(of_stream.last_success, row.finished)
            durations = stream_durations.setdefault(key, _HistogramCounts(duration_bounds))
            durations.add(row.bucket, row.n, row.total)

        if pipelines:
            for pipeline_id, name, records in conn.execute(_newest_counts(sorted(pipelines))):
                stream((pipeline_id, name)).last_records = None if records is None else int(records)
    for pipeline_id, counts in pipeline_durations.items():
        pipelines[pipeline_id].duration = counts.histogram()
    for key, counts in stream_durations.items():
        streams[key].duration = counts.histogram()
    return StoreFigures(
        pipelines=[pipelines[k] for k in sorted(pipelines)],
        streams=[streams[k] for k in sorted(streams)],
    )
