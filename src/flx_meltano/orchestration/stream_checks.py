"""The checks of a pipeline step's streams, evaluated as the run reports them (see checks.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetCheckKey, AssetCheckResult, AssetExecutionContext, AssetKey, MetadataValue

from flx_meltano.application.pipelines import run_stream_schemas
from flx_meltano.domain.execution import PipelineExecution, StreamResult
from flx_meltano.domain.project import PipelineDefinition, ProjectModel
from flx_meltano.domain.stream_schema import StreamSchema
from flx_meltano.domain.values import StreamStatus
from flx_meltano.orchestration import metadata as md
from flx_meltano.orchestration.checks import (
    BOOKMARK_REGRESSION,
    ROW_COUNT_ANOMALY,
    SCHEMA_DRIFT,
    CheckOptions,
    bookmark_regression_result,
    row_count_result,
    schema_drift_result,
    stream_regressions,
)
from flx_meltano.orchestration.column_schema import stream_schema_of, table_schema


@dataclass
class StreamChecks:
    """Evaluates the selected checks of one step: per stream as it is confirmed, the regression
    check once the run's new state is known."""

    context: AssetExecutionContext
    project: ProjectModel
    pipeline: PipelineDefinition
    options: CheckOptions | None
    catalog: Mapping[str, StreamSchema] = field(default_factory=dict)
    _run_schemas: Mapping[str, StreamSchema] | None = None

    def _selected(self, key: AssetKey, name: str) -> bool:
        return AssetCheckKey(key, name) in self.context.selected_asset_check_keys

    def run_schema(self, stream: str) -> StreamSchema | None:
        """The columns the tap was given for ``stream`` in this run (read once, when first asked)."""
        if self._run_schemas is None:
            self._run_schemas = run_stream_schemas(self.project, self.pipeline.extractor.name)
        return self._run_schemas.get(stream)

    def _previous(self, key: AssetKey, limit: int) -> list[Mapping[str, Any]]:
        """Metadata of the newest materializations of ``key`` before this run."""
        records = self.context.instance.fetch_materializations(key, limit=limit + 1).records
        return [
            r.asset_materialization.metadata
            for r in records
            if r.asset_materialization is not None and r.run_id != self.context.run.run_id
        ][:limit]

    def on_stream(self, key: AssetKey, result: StreamResult) -> tuple[dict[str, Any], list[AssetCheckResult]]:
        """Extra materialization metadata (the run's column schema) and the stream's check results."""
        run = self.run_schema(result.stream)
        metadata: dict[str, Any] = (
            {md.COLUMN_SCHEMA: MetadataValue.table_schema(table_schema(run))} if run else {}
        )
        options = self.options
        if options is None:
            return metadata, []
        drift = options.schema_drift and self._selected(key, SCHEMA_DRIFT)
        rows = options.row_count_history and self._selected(key, ROW_COUNT_ANOMALY)
        if not (drift or rows):
            return metadata, []
        previous = self._previous(key, max(options.row_count_history, 1))
        results = []
        if drift:
            before = next(
                (s for m in previous if (s := stream_schema_of(_value(m.get(md.COLUMN_SCHEMA)))) is not None),
                None,
            )
            results.append(
                schema_drift_result(
                    key, run, self.catalog.get(result.stream), before, options.schema_drift_severity
                )
            )
        if rows:
            counts = [int(c) for m in previous if isinstance(c := _value(m.get(md.ROW_COUNT)), int)]
            results.append(row_count_result(key, result.records, counts, options.row_count_history))
        return metadata, results

    def at_end(
        self, execution: PipelineExecution, keys: Mapping[str, AssetKey]
    ) -> Iterator[AssetCheckResult]:
        """The bookmark-regression result of every stream the run confirmed."""
        if self.options is None or not self.options.bookmark_regression:
            return
        for stream, key in keys.items():
            result = execution.results.get(stream)
            if (
                result is not None
                and result.status is StreamStatus.SUCCEEDED
                and self._selected(key, BOOKMARK_REGRESSION)
            ):
                yield bookmark_regression_result(
                    key,
                    execution.pipeline_id,
                    execution.id,
                    stream_regressions(stream, execution.regression_warnings),
                )


def _value(entry: Any) -> Any:
    """A stored metadata entry's plain value (a TableSchema, an int...)."""
    return getattr(entry, "value", entry)
