"""The outside-runs sensor: executions Dagster did not run (CLI, API, bare ``meltano run``) become
materializations of their stream assets, once each, with the metadata a Dagster run gives.

Each tick first records the bare ``meltano run``s from Meltano's system database (``sync``), then
reads the executions closed since its cursor, in the order the store's event log recorded them,
and returns one runless ``AssetMaterialization`` per stream each one synced. The cursor is the
log position read up to, plus the ids reported in the last ``WINDOW`` positions: a transaction
that took its position earlier but committed later is still found, and never reported twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dagster import (
    AssetKey,
    AssetMaterialization,
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from flx_meltano.application.closed_executions import closed_after, latest_position
from flx_meltano.application.context import AppContext
from flx_meltano.application.sync import sync_meltano_runs
from flx_meltano.domain.execution import PipelineExecution
from flx_meltano.domain.project import PipelineDefinition
from flx_meltano.domain.values import StreamStatus
from flx_meltano.errors import FlxError
from flx_meltano.orchestration.resource import stream_metadata

# Event-log positions re-read behind the cursor, for transactions that committed late.
WINDOW = 1000
# New closed executions read per tick (the rest on the next tick).
BATCH = 500


@dataclass
class OutsideCursor:
    """Read up to ``position``; ``reported``: execution id -> position, of the last WINDOW."""

    position: int
    reported: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> OutsideCursor | None:
        """The cursor a previous tick left (None: first tick, or a cursor of another shape)."""
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(int(data["position"]), {str(k): int(v) for k, v in data.get("reported", {}).items()})
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def dump(self) -> str:
        """As stored by Dagster, pruned to the window."""
        floor = self.position - WINDOW
        kept = {k: v for k, v in self.reported.items() if v > floor}
        return json.dumps({"position": self.position, "reported": kept}, sort_keys=True)


@dataclass(frozen=True)
class StreamAssets:
    """A pipeline as built, and its stream -> asset key mapping."""

    pipeline: PipelineDefinition
    keys: Mapping[str, AssetKey]


def materializations(execution: PipelineExecution, known: StreamAssets | None) -> list[AssetMaterialization]:
    """One materialization per stream the execution synced; none for Dagster's own runs."""
    if known is None or execution.dagster_run_id is not None:
        return []
    return [
        AssetMaterialization(
            asset_key=known.keys[result.stream],
            metadata=stream_metadata(known.pipeline, execution, result),
        )
        for result in execution.results.values()
        if result.status is StreamStatus.SUCCEEDED and result.stream in known.keys
    ]


def build_outside_runs_sensor(
    pipelines: Mapping[str, StreamAssets],
    app_context: Callable[[], AppContext],
    *,
    name: str = "meltano_outside_runs",
    minimum_interval_seconds: int = 30,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
) -> SensorDefinition:
    """Report executions run outside Dagster as materializations (and record bare meltano runs)."""

    @sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            "Records bare `meltano run`s from Meltano's system database and reports executions run "
            "outside Dagster (flx-meltano CLI, Python API, meltano) as materializations of their streams."
        ),
    )
    def _outside(context: SensorEvaluationContext) -> SensorResult:
        ctx = app_context()
        try:
            try:
                synced = sync_meltano_runs(ctx)
                for execution_id in synced.recorded:
                    context.log.info(f"recorded bare meltano run {execution_id}")
            except FlxError as exc:  # the store part still works: report what it has
                context.log.warning(f"bare meltano runs not synced: {exc}")
            cursor = OutsideCursor.parse(context.cursor)
            if cursor is None:
                start = OutsideCursor(latest_position(ctx))
                return SensorResult(
                    skip_reason=f"reporting executions closed from event log position {start.position} on",
                    cursor=start.dump(),
                )
            closed = closed_after(ctx, max(0, cursor.position - WINDOW), limit=WINDOW + BATCH)
        finally:
            ctx.close()
        events: list[AssetMaterialization] = []
        for position, execution in closed:
            if execution.id in cursor.reported:
                continue
            cursor.reported[execution.id] = position
            cursor.position = max(cursor.position, position)
            events.extend(materializations(execution, pipelines.get(execution.pipeline_id)))
        if not events:
            return SensorResult(skip_reason="no execution closed outside Dagster", cursor=cursor.dump())
        return SensorResult(asset_events=events, cursor=cursor.dump())

    return _outside
