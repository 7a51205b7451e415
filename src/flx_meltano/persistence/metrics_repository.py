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

from flx_meltano.domain.values import ExecutionStatus
from flx_meltano.persistence.tables import executions, stream_results

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


def _histogram_columns(column: sa.ColumnElement[Any], bounds: Sequence[float]) -> list[sa.Label[Any]]:
    observed = column.is_not(None)
    return [
        *(
            sa.func.count().filter(observed & (column <= bound)).label(f"le_{i}")
            for i, bound in enumerate(bounds)
        ),
        sa.func.count().filter(observed).label("observed"),
        sa.func.coalesce(sa.func.sum(column), 0.0).label("total"),
    ]


def _histogram(row: sa.Row[Any], bounds: Sequence[float]) -> Histogram:
    return Histogram(
        buckets=tuple((bound, int(row._mapping[f"le_{i}"])) for i, bound in enumerate(bounds)),
        count=int(row.observed),
        total=float(row.total),
    )


def read_figures(engine: Engine, duration_bounds: Sequence[float]) -> StoreFigures:
    """Every pipeline's and stream's figures, from one consistent snapshot (REPEATABLE READ)."""
    pipelines: dict[str, PipelineFigures] = {}
    streams: dict[tuple[str, str], StreamFigures] = {}

    def pipeline(pipeline_id: str) -> PipelineFigures:
        return pipelines.setdefault(pipeline_id, PipelineFigures(pipeline_id))

    def stream(pipeline_id: str, name: str) -> StreamFigures:
        return streams.setdefault((pipeline_id, name), StreamFigures(pipeline_id, name))

    e, r = executions.c, stream_results.c
    finished = e.status.in_(_FINISHED)
    succeeded = e.status == str(ExecutionStatus.SUCCEEDED)
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        by_status = sa.select(e.pipeline_id, e.status, sa.func.count()).group_by(e.pipeline_id, e.status)
        for pipeline_id, status, count in conn.execute(by_status):
            pipeline(pipeline_id).executions_by_status[status] = int(count)

        per_pipeline = sa.select(
            e.pipeline_id,
            sa.func.max(e.ended_at).filter(succeeded).label("last_success"),
            sa.func.count().filter(sa.func.jsonb_path_exists(e.warnings, REGRESSION)).label("regressions"),
            *_histogram_columns(sa.case((finished, e.duration_seconds)), duration_bounds),
        ).group_by(e.pipeline_id)
        for row in conn.execute(per_pipeline):
            figures = pipeline(row.pipeline_id)
            figures.last_success = row.last_success
            figures.state_regressions = int(row.regressions)
            figures.duration = _histogram(row, duration_bounds)

        stream_ok = r.status == "SUCCEEDED"
        per_stream = (
            sa.select(
                e.pipeline_id,
                r.stream,
                sa.func.coalesce(sa.func.sum(r.records), 0).label("records"),
                sa.func.max(sa.func.coalesce(r.finished_at, e.ended_at))
                .filter(stream_ok)
                .label("last_success"),
                *_histogram_columns(sa.case((finished, r.duration_seconds)), duration_bounds),
            )
            .join(executions, e.id == r.execution_id)
            .group_by(e.pipeline_id, r.stream)
        )
        for row in conn.execute(per_stream):
            of_stream = stream(row.pipeline_id, row.stream)
            of_stream.records_loaded = int(row.records)
            of_stream.last_success = row.last_success
            of_stream.duration = _histogram(row, duration_bounds)

        stream_by_status = (
            sa.select(e.pipeline_id, r.stream, r.status, sa.func.count())
            .join(executions, e.id == r.execution_id)
            .group_by(e.pipeline_id, r.stream, r.status)
        )
        for pipeline_id, name, status, count in conn.execute(stream_by_status):
            stream(pipeline_id, name).results_by_status[status] = int(count)

        newest = (
            sa.select(e.pipeline_id, r.stream, r.records)
            .join(executions, e.id == r.execution_id)
            .distinct(e.pipeline_id, r.stream)
            .order_by(e.pipeline_id, r.stream, e.started_at.desc(), e.id.desc())
        )
        for pipeline_id, name, records in conn.execute(newest):
            stream(pipeline_id, name).last_records = None if records is None else int(records)
    return StoreFigures(
        pipelines=[pipelines[k] for k in sorted(pipelines)],
        streams=[streams[k] for k in sorted(streams)],
    )
