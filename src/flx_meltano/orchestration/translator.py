"""DagsterMeltanoTranslator: how a Meltano stream becomes a Dagster AssetSpec (override get_asset_spec)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from dagster import AssetKey, AssetSpec, FreshnessPolicy, TableSchema

from flx_meltano.domain.destinations import UNKNOWN_DESTINATION, StreamDestination
from flx_meltano.domain.plugins import Plugin
from flx_meltano.domain.project import PipelineDefinition
from flx_meltano.domain.stream_schema import StreamSchema
from flx_meltano.orchestration import metadata as md
from flx_meltano.orchestration.column_schema import table_schema

_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")
_NOT_TAG = re.compile(r"[^A-Za-z0-9_.-]")


def dagster_name(text: str) -> str:
    """A valid Dagster op, job, group or schedule name for ``text``."""
    return _NOT_NAME.sub("_", text)


def tag_value(text: str) -> str:
    """A valid Dagster tag value for ``text`` (63 characters, no ':')."""
    return _NOT_TAG.sub(".", text)[:63]


def dagster_meta(plugin: Plugin) -> Mapping[str, Any]:
    """The ``meta: {dagster: {...}}`` extra of a plugin in meltano.yml."""
    meta = plugin.extras.get("meta")
    dagster = meta.get("dagster") if isinstance(meta, Mapping) else None
    return dagster if isinstance(dagster, Mapping) else {}


def pipeline_meta(pipeline: PipelineDefinition) -> dict[str, Any]:
    """``meta.dagster`` of a pipeline: the extractor's, then the loader's (which wins)."""
    return {**dagster_meta(pipeline.extractor), **dagster_meta(pipeline.loader)}


def pipeline_name(pipeline: PipelineDefinition) -> str:
    """The Dagster name of a pipeline's op, job and default group: ``<extractor>_to_<loader>``."""
    return dagster_name(f"{pipeline.extractor.name}_to_{pipeline.loader.name}")


@dataclass(frozen=True)
class MeltanoStream:
    """One selected stream of one extract-load pipeline: what the translator maps to an asset.

    ``schema``: its columns from the known catalog (None when the catalog is not known);
    ``freshness``: how old its newest materialization may be (``meta.dagster.freshness_hours``).
    """

    pipeline: PipelineDefinition
    name: str
    schema: StreamSchema | None = None
    freshness: timedelta | None = None

    @property
    def destination(self) -> StreamDestination:
        """Where the loader puts the stream (a table, a file, or unknown)."""
        return self.pipeline.destinations.get(self.name, UNKNOWN_DESTINATION)

    @property
    def load_schema(self) -> str:
        """The schema the loader puts the stream in, else its target schema, else Meltano's
        load_schema."""
        if self.destination.schema:
            return self.destination.schema
        schema = self.pipeline.loader.config.get("default_target_schema")
        if isinstance(schema, str) and schema and not schema.startswith("$"):
            return schema
        return self.pipeline.extractor.load_schema

    def meta(self) -> dict[str, Any]:
        """The extractor's dagster meta, with the loader's on top."""
        return pipeline_meta(self.pipeline)


class DagsterMeltanoTranslator:
    """Maps Meltano streams to Dagster asset specs. Subclass and override ``get_asset_spec``.

    Defaults: key ``[<schema>, <table>]`` where the loader writes the stream to a table whose
    naming flx knows (so a dbt source on that table lines up), else ``[<load schema>, <stream>]``,
    unless ``meta.dagster.key_prefix`` is set on the loader or extractor; group per pipeline; kinds
    ``meltano``, ``singer`` and the loader; tags for extractor, loader, environment and state id;
    owners and metadata from ``meta.dagster``.
    """

    def get_asset_key(self, stream: MeltanoStream) -> AssetKey:
        """The asset key of a stream."""
        prefix = stream.meta().get("key_prefix")
        if isinstance(prefix, str):
            prefix = [prefix]
        if isinstance(prefix, Sequence) and prefix:
            return AssetKey([*map(str, prefix), stream.name])
        destination = stream.destination
        if destination.table and destination.schema:
            return AssetKey([destination.schema, destination.table])
        return AssetKey([stream.load_schema, stream.name])

    def get_group_name(self, stream: MeltanoStream) -> str:
        """One group per pipeline."""
        group = stream.meta().get("group_name")
        if isinstance(group, str) and group:
            return dagster_name(group)
        return pipeline_name(stream.pipeline)

    def get_kinds(self, stream: MeltanoStream) -> set[str]:
        """``meltano``, ``singer`` and the loader's kind (``postgres`` for target-postgres,
        ``snowflake`` for pipelinewise-target-snowflake)."""
        loader_kind = stream.pipeline.loader.name.rsplit("target-", 1)[-1].split("-")[0]
        return {"meltano", "singer", loader_kind}

    def get_description(self, stream: MeltanoStream) -> str:
        """A sentence people can read in the UI."""
        p = stream.pipeline
        return (
            f"Stream `{stream.name}` extracted by `{p.extractor.name}` and loaded by `{p.loader.name}` "
            f"(Meltano state id `{p.id}`)."
        )

    def get_tags(self, stream: MeltanoStream) -> dict[str, str]:
        """Tags to filter by in the UI."""
        p = stream.pipeline
        return {
            md.TAG_EXTRACTOR: tag_value(p.extractor.name),
            md.TAG_LOADER: tag_value(p.loader.name),
            md.TAG_ENVIRONMENT: tag_value(p.state_id.environment),
            md.TAG_STATE_ID: tag_value(p.id),
        }

    def get_metadata(self, stream: MeltanoStream) -> dict[str, Any]:
        """Definition metadata: state id, stream, plugins, mappings, and the table or file the
        loader writes."""
        p = stream.pipeline
        metadata: dict[str, Any] = {
            md.STATE_ID: p.id,
            md.STREAM: stream.name,
            md.EXTRACTOR: p.extractor.name,
            md.LOADER: p.loader.name,
        }
        if p.mappings:
            metadata[md.MAPPINGS] = ", ".join(p.mappings)
        destination = stream.destination
        if destination.qualified_table:
            metadata[md.TABLE_NAME] = destination.qualified_table
        elif destination.path:
            metadata[md.PATH] = destination.path
        elif p.loader.config.get("default_target_schema"):
            metadata[md.TABLE_NAME] = f"{stream.load_schema}.{stream.name}"
        column_schema = self.get_column_schema(stream)
        if column_schema is not None:
            metadata[md.COLUMN_SCHEMA] = column_schema
        extra = stream.meta().get("metadata")
        if isinstance(extra, Mapping):
            metadata.update({str(k): v for k, v in extra.items()})
        return metadata

    def get_column_schema(self, stream: MeltanoStream) -> TableSchema | None:
        """``dagster/column_schema`` from the catalog: types, nullability, primary and replication key."""
        return table_schema(stream.schema) if stream.schema is not None else None

    def get_freshness_policy(self, stream: MeltanoStream) -> FreshnessPolicy | None:
        """Dagster's time-window freshness from ``meta.dagster.freshness_hours`` (or the default)."""
        return FreshnessPolicy.time_window(fail_window=stream.freshness) if stream.freshness else None

    def get_owners(self, stream: MeltanoStream) -> list[str]:
        """Owners from ``meta.dagster.owners``."""
        owners = stream.meta().get("owners")
        return (
            [str(o) for o in owners] if isinstance(owners, Sequence) and not isinstance(owners, str) else []
        )

    def get_asset_spec(self, stream: MeltanoStream) -> AssetSpec:
        """The whole spec; override this one method to change anything."""
        return AssetSpec(
            key=self.get_asset_key(stream),
            group_name=self.get_group_name(stream),
            kinds=self.get_kinds(stream),
            description=self.get_description(stream),
            tags=self.get_tags(stream),
            metadata=self.get_metadata(stream),
            owners=self.get_owners(stream),
            freshness_policy=self.get_freshness_policy(stream),
            skippable=True,
        )
