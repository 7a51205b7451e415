"""build_definitions: a complete Dagster code location from a Meltano project directory."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from dagster import (
    AssetKey,
    AssetsDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    RetryPolicy,
    SensorDefinition,
)

from flx_meltano.application.context import AppContext
from flx_meltano.application.pipelines import all_pipelines, unmatched_select_rules
from flx_meltano.domain.project import PipelineDefinition
from flx_meltano.orchestration.assets import RESOURCE_KEY, meltano_pipeline_assets
from flx_meltano.orchestration.resource import MeltanoResource
from flx_meltano.orchestration.schedules import build_jobs, build_schedules, pipeline_job
from flx_meltano.orchestration.sensors import (
    FreshnessRule,
    build_crash_reconciler_sensor,
    build_stale_pipeline_sensor,
)
from flx_meltano.orchestration.translator import DagsterMeltanoTranslator, MeltanoStream, dagster_meta
from flx_meltano.settings import Settings

logger = logging.getLogger(__name__)


def freshness_of(pipeline: PipelineDefinition, default_hours: float | None) -> timedelta | None:
    """``meta.dagster.freshness_hours`` of the loader or extractor, else the default."""
    meta = {**dagster_meta(pipeline.extractor), **dagster_meta(pipeline.loader)}
    hours = meta.get("freshness_hours", default_hours)
    return timedelta(hours=float(hours)) if hours else None


def _check_unique_keys(pipelines: list[PipelineDefinition], translator: DagsterMeltanoTranslator) -> None:
    """Two pipelines mapping a stream to one asset key is a configuration error: say which and how."""
    owner: dict[AssetKey, str] = {}
    for pipeline in pipelines:
        for stream in pipeline.streams:
            key = translator.get_asset_key(MeltanoStream(pipeline, stream))
            if key in owner:
                raise ValueError(
                    f"asset key {key.to_user_string()} comes from both {owner[key]} and {pipeline.id}: "
                    f"set meta: {{dagster: {{key_prefix: [...]}}}} on loader {pipeline.loader.name} in "
                    "meltano.yml, or override DagsterMeltanoTranslator.get_asset_key"
                )
            owner[key] = pipeline.id


def build_definitions(
    project_dir: str | Path | None = None,
    environment: str | None = None,
    *,
    translator: DagsterMeltanoTranslator | None = None,
    database_url: str | None = None,
    meltano_executable: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout_seconds: float | None = None,
    retry_policy: RetryPolicy | None = None,
    execution_timezone: str = "UTC",
    default_schedule_status: DefaultScheduleStatus = DefaultScheduleStatus.STOPPED,
    default_freshness_hours: float | None = None,
    stale_sensor_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED,
    crash_sensor_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
) -> Definitions:
    """Assets, jobs, schedules, sensors and the ``meltano`` resource for a Meltano project.

    Reads meltano.yml and the stream catalog only: no ``meltano`` process, no database access.
    """
    settings_values: dict[str, Any] = {}
    if project_dir is not None:
        settings_values["project_dir"] = Path(project_dir).resolve()
    if environment:
        settings_values["environment"] = environment
    settings = Settings(**settings_values)
    ctx = AppContext(settings=settings)
    project, env_name = ctx.project, ctx.environment
    translator = translator or DagsterMeltanoTranslator()

    pipelines = all_pipelines(project, env_name, {**os.environ, **(env or {})})
    for rule in unmatched_select_rules(project):  # its stream is left out of the assets
        logger.warning("%s; no asset for it", rule)
    _check_unique_keys(pipelines, translator)
    assets: list[AssetsDefinition] = []
    keys: dict[tuple[str, str], list[AssetKey]] = {}
    rules: list[FreshnessRule] = []
    for pipeline in pipelines:
        definition = meltano_pipeline_assets(pipeline, translator=translator, retry_policy=retry_policy)
        assets.append(definition)
        pipeline_keys = list(definition.keys)
        keys[(pipeline.extractor.name, pipeline.loader.name)] = pipeline_keys
        max_age = freshness_of(pipeline, default_freshness_hours)
        if max_age is not None:
            rules.append(FreshnessRule(pipeline.id, tuple(pipeline_keys), max_age))

    built = build_jobs(project.jobs, keys, RESOURCE_KEY)
    by_pair = {(p.extractor.name, p.loader.name): p for p in pipelines}
    legacy_jobs = {
        (s.extract_load.extractor, s.extract_load.loader): pipeline_job(
            by_pair[(s.extract_load.extractor, s.extract_load.loader)],
            keys[(s.extract_load.extractor, s.extract_load.loader)],
        )
        for s in project.schedules
        if s.extract_load is not None
    }
    schedules = build_schedules(
        project.schedules,
        built.jobs,
        legacy_jobs,
        execution_timezone=execution_timezone,
        default_status=default_schedule_status,
    )

    resource = MeltanoResource(
        project_dir=str(settings.project_dir),
        environment=env_name,
        meltano_executable=meltano_executable,
        database_url=database_url,
        env=dict(env or {}),
        timeout_seconds=timeout_seconds,
    )
    sensors: list[SensorDefinition] = [
        build_crash_reconciler_sensor(resource.app_context, default_status=crash_sensor_status)
    ]
    if rules:
        sensors.append(
            build_stale_pipeline_sensor(rules, resource.app_context, default_status=stale_sensor_status)
        )
    return Definitions(
        assets=[*assets, *built.command_assets],
        jobs=[*built.jobs.values(), *legacy_jobs.values()],
        schedules=schedules,
        sensors=sensors,
        resources={RESOURCE_KEY: resource},
    )
