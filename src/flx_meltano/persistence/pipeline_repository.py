"""Pipelines: registered definitions, loaded as aggregates with their active executions, locked."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from flx_meltano.domain.identifiers import StateId
from flx_meltano.domain.pipeline import Pipeline
from flx_meltano.persistence.execution_repository import ExecutionRepository, upsert
from flx_meltano.persistence.tables import pipelines

UPSERT_PIPELINE = upsert(pipelines, ("id",), keep=("registered_at",))


class PipelineRepository:
    """Pipelines on one connection, inside the unit of work's transaction."""

    def __init__(self, connection: sa.Connection, executions: ExecutionRepository) -> None:
        self.connection = connection
        self.executions = executions

    def register(self, pipeline: Pipeline, definition: dict[str, Any] | None = None) -> None:
        """Insert or refresh the pipeline's row (its definition as read from meltano.yml)."""
        row = {
            "id": pipeline.id,
            "environment": pipeline.state_id.environment,
            "extractor": pipeline.extractor,
            "loader": pipeline.loader,
            "definition": definition
            or {"mappings": list(pipeline.mappings), "streams": list(pipeline.streams)},
        }
        self.connection.execute(UPSERT_PIPELINE, row)

    def lock(self, pipeline: Pipeline) -> Pipeline:
        """Register the pipeline, lock its row for this transaction, and load its active executions.

        The row lock serialises two processes starting the same pipeline: the second sees the
        first's RUNNING execution once the first commits.
        """
        self.register(pipeline)
        self.connection.execute(
            sa.select(pipelines.c.id).where(pipelines.c.id == pipeline.id).with_for_update()
        )
        pipeline.active = self.executions.active(pipeline.id)
        return pipeline

    def all(self) -> list[Pipeline]:
        """Every registered pipeline."""
        rows = self.connection.execute(sa.select(pipelines).order_by(pipelines.c.id))
        return [
            Pipeline(
                state_id=StateId.parse(row.id),
                extractor=row.extractor,
                loader=row.loader,
                # Rows registered before mappings were named kept them under "mappers".
                mappings=tuple(row.definition.get("mappings", row.definition.get("mappers", ()))),
                streams=tuple(row.definition.get("streams", ())),
            )
            for row in rows
        ]
