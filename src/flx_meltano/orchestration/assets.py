"""Asset builders: one multi-asset per extract-load pipeline, one asset per command block of a job."""

# No ``from __future__ import annotations`` here: Dagster inspects the ``context`` annotation of
# the decorated functions at definition time and needs the real class, not a string.

from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    AssetsDefinition,
    AssetSpec,
    Backoff,
    MaterializeResult,
    RetryPolicy,
    multi_asset,
)

from flx_meltano.domain.project import Command, PipelineDefinition
from flx_meltano.domain.stream_schema import StreamSchema
from flx_meltano.orchestration import metadata as md
from flx_meltano.orchestration.checks import CheckOptions, check_specs
from flx_meltano.orchestration.resource import MeltanoResource, MeltanoRunConfig
from flx_meltano.orchestration.translator import (
    DagsterMeltanoTranslator,
    MeltanoStream,
    dagster_name,
    pipeline_meta,
    pipeline_name,
    tag_value,
)

RESOURCE_KEY = "meltano"


def pool_for(pipeline: PipelineDefinition) -> str:
    """The Dagster concurrency pool of a pipeline: one per extractor, with a limit of 1.

    That keeps two runs of one state id apart, as asked; it is per extractor rather than per
    state id because Meltano 4.4 shares an extractor's catalog file between concurrent runs of
    the same project (meltano#8763), so any two runs of one tap must not overlap.
    """
    return md.extractor_pool(pipeline.extractor.name)


def retry_policy_for(pipeline: PipelineDefinition, default: RetryPolicy | None = None) -> RetryPolicy | None:
    """``meta.dagster.retry`` of the loader or extractor, else ``default``.

    ``retry: {max_retries: 3, delay_seconds: 30, backoff: exponential}`` in meltano.yml.
    """
    meta = pipeline_meta(pipeline)
    retry = meta.get("retry")
    if not isinstance(retry, Mapping):
        return default
    backoff = str(retry.get("backoff", "")).lower()
    return RetryPolicy(
        max_retries=int(retry.get("max_retries", 1)),
        delay=float(retry["delay_seconds"]) if retry.get("delay_seconds") is not None else None,
        backoff=Backoff.EXPONENTIAL
        if backoff == "exponential"
        else Backoff.LINEAR
        if backoff == "linear"
        else None,
    )


def stream_specs(
    pipeline: PipelineDefinition,
    translator: DagsterMeltanoTranslator,
    schemas: Mapping[str, StreamSchema] | None = None,
    freshness: timedelta | None = None,
) -> dict[str, AssetSpec]:
    """One AssetSpec per selected stream of the pipeline, by stream name."""
    schemas = schemas or {}
    return {
        stream: translator.get_asset_spec(MeltanoStream(pipeline, stream, schemas.get(stream), freshness))
        for stream in pipeline.streams
    }


def meltano_pipeline_assets(
    pipeline: PipelineDefinition,
    *,
    translator: DagsterMeltanoTranslator | None = None,
    retry_policy: RetryPolicy | None = None,
    resource_key: str = RESOURCE_KEY,
    schemas: Mapping[str, StreamSchema] | None = None,
    freshness: timedelta | None = None,
    checks: CheckOptions | None = None,
) -> AssetsDefinition:
    """A subsettable multi-asset for one pipeline: materializing a subset runs only those streams.

    ``schemas``: each stream's columns from the known catalog (its ``dagster/column_schema``);
    ``checks``: the asset checks of every stream (None: none).
    """
    specs = stream_specs(pipeline, translator or DagsterMeltanoTranslator(), schemas, freshness)
    keys = {stream: spec.key for stream, spec in specs.items()}
    checks_of = [c for spec in specs.values() for c in check_specs(spec.key, checks)] if checks else []
    catalog_schemas = {stream: schemas[stream] for stream in keys if schemas and stream in schemas}

    @multi_asset(
        name=pipeline_name(pipeline),
        specs=list(specs.values()),
        check_specs=checks_of or None,
        can_subset=True,
        pool=pool_for(pipeline),
        retry_policy=retry_policy_for(pipeline, retry_policy),
        required_resource_keys={resource_key},
        op_tags={md.TAG_STATE_ID: tag_value(pipeline.id)},
        description=f"Meltano pipeline {pipeline.id}",
    )
    def _pipeline(
        context: AssetExecutionContext, config: MeltanoRunConfig
    ) -> Iterator[MaterializeResult[Any] | AssetObservation | AssetCheckResult]:
        meltano: MeltanoResource = getattr(context.resources, resource_key)
        yield from meltano.run_pipeline(
            context, pipeline, keys, config, checks=checks, schemas=catalog_schemas
        )

    return _pipeline


def meltano_command_asset(
    job_name: str,
    command: Command,
    deps: Sequence[AssetKey],
    *,
    resource_key: str = RESOURCE_KEY,
    group_name: str | None = None,
) -> AssetsDefinition:
    """An asset for a command block of a job (e.g. ``dbt-postgres:run``) after the assets it follows."""
    key = AssetKey(["meltano", dagster_name(job_name), dagster_name(str(command))])
    kind = command.plugin.split("-")[0]
    spec = AssetSpec(
        key=key,
        deps=list(deps),
        group_name=group_name or dagster_name(job_name),
        kinds={"meltano", kind},
        description=f"`meltano run {command}` in job `{job_name}`.",
        metadata={md.COMMAND: str(command), md.JOB: job_name},
    )

    @multi_asset(
        name=dagster_name(f"{job_name}__{command}"), specs=[spec], required_resource_keys={resource_key}
    )
    def _command(context: AssetExecutionContext, config: MeltanoRunConfig) -> MaterializeResult[Any]:
        meltano: MeltanoResource = getattr(context.resources, resource_key)
        meltano.run_command(context, command, config)
        return MaterializeResult(asset_key=key)

    return _command
