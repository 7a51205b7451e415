"""The one builder of a Meltano code location, behind both build_definitions and the dg component."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster import (
    AssetKey,
    AssetsDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    PartitionsDefinition,
    RetryPolicy,
    SensorDefinition,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from flx_meltano.application.pipelines import all_pipelines, stream_schemas, unmatched_select_rules
from flx_meltano.bootstrap import app_context
from flx_meltano.domain.project import Job, PipelineDefinition, ProjectModel, Schedule
from flx_meltano.orchestration import metadata as md
from flx_meltano.orchestration.assets import RESOURCE_KEY, meltano_pipeline_assets
from flx_meltano.orchestration.checks import CheckOptions
from flx_meltano.orchestration.dbt_options import DbtOptions, is_dbt_plugin
from flx_meltano.orchestration.outside_runs import StreamAssets, build_outside_runs_sensor
from flx_meltano.orchestration.partitions import partitions_for
from flx_meltano.orchestration.resource import MeltanoResource
from flx_meltano.orchestration.schedules import build_jobs, build_schedules, pipeline_job
from flx_meltano.orchestration.sensors import (
    FreshnessRule,
    build_crash_reconciler_sensor,
    build_stale_pipeline_sensor,
)
from flx_meltano.orchestration.translator import DagsterMeltanoTranslator, pipeline_meta
from flx_meltano.settings import Settings

if TYPE_CHECKING:
    from flx_meltano.orchestration.dbt import DbtJobTarget

logger = logging.getLogger(__name__)


def freshness_of(pipeline: PipelineDefinition, default_hours: float | None) -> timedelta | None:
    """``meta.dagster.freshness_hours`` of the loader or extractor, else the default."""
    meta = pipeline_meta(pipeline)
    hours = meta.get("freshness_hours", default_hours)
    return timedelta(hours=float(hours)) if hours else None


@dataclass(frozen=True)
class PipelineFilter:
    """Which pipelines become assets: glob patterns on the pipeline id or its name.

    ``dev:tap-shopsim-to-target-jsonlines`` is matched by ``dev:*``, ``tap-shopsim-to-*`` or
    ``*-to-target-jsonlines``. No ``include`` means every pipeline; ``exclude`` wins.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def selects(self, pipeline: PipelineDefinition) -> bool:
        """Whether ``pipeline`` is in."""
        names = (pipeline.id, pipeline.id.split(":", 1)[-1])

        def matches(patterns: Sequence[str]) -> bool:
            return any(fnmatchcase(name, pattern) for pattern in patterns for name in names)

        return (not self.include or matches(self.include)) and not matches(self.exclude)


@dataclass(frozen=True)
class ResourceOptions:
    """Settings of the ``meltano`` resource (see MeltanoResource); unset ones fall back to FLX_*."""

    meltano_executable: str | None = None
    database_url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: float | None = None
    full_refresh: bool = False
    state_strategy: str | None = None


@dataclass(frozen=True)
class LocationOptions:
    """Everything a Meltano code location is built from, checked when built.

    Attributes:
        project_dir: the Meltano project (default: FLX_PROJECT_DIR, else the nearest meltano.yml).
        environment: the Meltano environment (default: FLX_ENVIRONMENT, else default_environment).
        pipelines: which pipelines become assets.
        translator: how a stream becomes an AssetSpec.
        resource: the ``meltano`` resource's settings.
        dbt: how the dbt utility's project becomes assets; None keeps dbt commands opaque.
        checks: the asset checks of every stream; None: no checks.
        retry_policy: default retry of pipeline steps (``meta.dagster.retry`` wins).
        execution_timezone: of the schedules.
        default_schedule_status: of the schedules.
        default_freshness_hours: for pipelines without ``meta.dagster.freshness_hours``.
        stale_sensor_status: of ``meltano_stale_pipelines``.
        crash_sensor_status: of ``meltano_crash_reconciler``.
        outside_runs_sensor_status: of ``meltano_outside_runs`` (runs from outside Dagster).
    """

    project_dir: Path | None = None
    environment: str | None = None
    pipelines: PipelineFilter = field(default_factory=PipelineFilter)
    translator: DagsterMeltanoTranslator = field(default_factory=DagsterMeltanoTranslator)
    resource: ResourceOptions = field(default_factory=ResourceOptions)
    dbt: DbtOptions | None = field(default_factory=DbtOptions)
    checks: CheckOptions | None = field(default_factory=CheckOptions)
    retry_policy: RetryPolicy | None = None
    execution_timezone: str = "UTC"
    default_schedule_status: DefaultScheduleStatus = DefaultScheduleStatus.STOPPED
    default_freshness_hours: float | None = None
    stale_sensor_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED
    crash_sensor_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING
    outside_runs_sensor_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING

    def __post_init__(self) -> None:
        if self.default_freshness_hours is not None and self.default_freshness_hours <= 0:
            raise ValueError(f"default_freshness_hours must be positive, not {self.default_freshness_hours}")
        if self.resource.timeout_seconds is not None and self.resource.timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive, not {self.resource.timeout_seconds}")

    def settings(self) -> Settings:
        """Settings for the application layer."""
        values: dict[str, Any] = {}
        if self.project_dir is not None:
            values["project_dir"] = Path(self.project_dir).resolve()
        if self.environment:
            values["environment"] = self.environment
        return Settings(**values)


def _check_unique_keys(assets: Sequence[tuple[PipelineDefinition, AssetsDefinition]]) -> None:
    """Two pipelines mapping a stream to one asset key is a configuration error: say which and how."""
    owner: dict[AssetKey, str] = {}
    for pipeline, definition in assets:
        for key in definition.keys:
            if key in owner:
                raise ValueError(
                    f"asset key {key.to_user_string()} comes from both {owner[key]} and {pipeline.id}: "
                    f"set meta: {{dagster: {{key_prefix: [...]}}}} on loader {pipeline.loader.name} in "
                    "meltano.yml, or override DagsterMeltanoTranslator.get_asset_key"
                )
            owner[key] = pipeline.id


def _jobs_of(project: ProjectModel, included: set[tuple[str, str]]) -> list[Job]:
    """The Meltano jobs whose every extract-load pipeline is included (others are left out whole)."""
    kept = []
    for job in project.jobs:
        pairs = {(b.extractor, b.loader) for task in job.tasks for b in task.extract_loads}
        if pairs <= included:
            kept.append(job)
        else:
            logger.info("Meltano job %s left out: some of its pipelines are excluded", job.name)
    return kept


def _schedules_of(
    project: ProjectModel, jobs: Sequence[Job], included: set[tuple[str, str]]
) -> list[Schedule]:
    job_names = {job.name for job in jobs}
    return [
        s
        for s in project.schedules
        if (s.job is not None and s.job in job_names)
        or (s.extract_load is not None and (s.extract_load.extractor, s.extract_load.loader) in included)
    ]


def _dbt_target(
    project: ProjectModel, options: DbtOptions, stream_assets: Sequence[AssetsDefinition]
) -> DbtJobTarget | None:
    """The dbt assets of the project's dbt utility, when it has one with a dbt project."""
    if not options.utility and not any(is_dbt_plugin(p) for p in project.plugins):
        return None
    # Imported here: dagster-dbt costs about a second of import, for projects that use dbt only.
    from flx_meltano.orchestration.dbt import (
        DbtJobTarget,
        MeltanoDbtTranslator,
        StreamTables,
        find_dbt,
        load_manifest,
        meltano_dbt_assets,
    )

    setup = find_dbt(project, options)
    if setup is None:
        return None
    manifest = load_manifest(setup)
    specs = [spec for asset in stream_assets for spec in asset.specs]
    translator = MeltanoDbtTranslator(StreamTables(specs), setup)
    assets = meltano_dbt_assets(setup, manifest, translator, resource_key=RESOURCE_KEY)
    return DbtJobTarget(setup, assets, manifest, translator)


def _stream_assets(pipeline: PipelineDefinition, definition: AssetsDefinition) -> StreamAssets:
    """A pipeline's stream -> asset key, from the specs' ``meltano/stream`` metadata."""
    keys = {
        str(spec.metadata[md.STREAM]): spec.key for spec in definition.specs if md.STREAM in spec.metadata
    }
    return StreamAssets(pipeline, keys)


def _keys_and_freshness(
    built: Sequence[tuple[PipelineDefinition, AssetsDefinition]], default_hours: float | None
) -> tuple[dict[tuple[str, str], list[AssetKey]], list[FreshnessRule]]:
    """The asset keys of each (extractor, loader) pair, and the freshness rule of each pipeline
    that has one (not of partitioned pipelines: their runs are per window, asked by schedules
    and backfills, and never move the main state id the stale sensor watches)."""
    keys: dict[tuple[str, str], list[AssetKey]] = {}
    rules: list[FreshnessRule] = []
    for pipeline, definition in built:
        pipeline_keys = list(definition.keys)
        keys[(pipeline.extractor.name, pipeline.loader.name)] = pipeline_keys
        max_age = freshness_of(pipeline, default_hours)
        if max_age is not None and pipeline.extractor.partitions is not None:
            logger.info("%s is partitioned: the stale-pipeline sensor leaves it out", pipeline.id)
        elif max_age is not None:
            rules.append(FreshnessRule(pipeline.id, tuple(pipeline_keys), max_age))
    return keys, rules


def _legacy_jobs(
    schedules: Sequence[Schedule],
    pipelines: Sequence[PipelineDefinition],
    keys: Mapping[tuple[str, str], list[AssetKey]],
) -> dict[tuple[str, str], UnresolvedAssetJobDefinition]:
    """A job per pipeline that an extractor/loader schedule (not a job schedule) runs."""
    by_pair = {(p.extractor.name, p.loader.name): p for p in pipelines}
    return {
        (s.extract_load.extractor, s.extract_load.loader): pipeline_job(
            by_pair[(s.extract_load.extractor, s.extract_load.loader)],
            keys[(s.extract_load.extractor, s.extract_load.loader)],
        )
        for s in schedules
        if s.extract_load is not None
    }


def _job_partitions(
    jobs: Sequence[Job],
    built: Mapping[str, UnresolvedAssetJobDefinition],
    legacy: Mapping[tuple[str, str], UnresolvedAssetJobDefinition],
    pipelines: Sequence[PipelineDefinition],
) -> dict[str, PartitionsDefinition[str]]:
    """The partitions of each Dagster job that runs a partitioned pipeline, by job name."""
    by_pair = {(p.extractor.name, p.loader.name): partitions_for(p) for p in pipelines}
    found: dict[str, PartitionsDefinition[str]] = {}
    for job in jobs:
        pairs = [(b.extractor, b.loader) for task in job.tasks for b in task.extract_loads]
        partitioned = [found_def for pair in pairs if (found_def := by_pair.get(pair)) is not None]
        if partitioned:  # Dagster refuses a job over two different partitions definitions
            found[built[job.name].name] = partitioned[0]
    for pair, legacy_job in legacy.items():
        pair_partitions = by_pair.get(pair)
        if pair_partitions is not None:
            found[legacy_job.name] = pair_partitions
    return found


def _resource(options: LocationOptions, settings: Settings, environment: str) -> MeltanoResource:
    """The ``meltano`` resource of the location."""
    return MeltanoResource(
        project_dir=str(settings.project_dir),
        environment=environment,
        meltano_executable=options.resource.meltano_executable,
        database_url=options.resource.database_url,
        env=dict(options.resource.env),
        timeout_seconds=options.resource.timeout_seconds,
        full_refresh=options.resource.full_refresh,
        state_strategy=options.resource.state_strategy,
    )


def _sensors(
    options: LocationOptions,
    resource: MeltanoResource,
    rules: Sequence[FreshnessRule],
    built: Sequence[tuple[PipelineDefinition, AssetsDefinition]],
) -> list[SensorDefinition]:
    """The crash reconciler, the outside-runs sensor, and the stale-pipeline sensor when a
    pipeline has a freshness."""
    sensors: list[SensorDefinition] = [
        build_crash_reconciler_sensor(resource.app_context, default_status=options.crash_sensor_status),
        build_outside_runs_sensor(
            {p.id: _stream_assets(p, d) for p, d in built},
            resource.app_context,
            default_status=options.outside_runs_sensor_status,
        ),
    ]
    if rules:
        sensors.append(
            build_stale_pipeline_sensor(
                list(rules), resource.app_context, default_status=options.stale_sensor_status
            )
        )
    return sensors


def build_location(options: LocationOptions) -> Definitions:
    """Assets, jobs, schedules, sensors and the ``meltano`` resource of a Meltano project.

    Reads meltano.yml, the stream catalog and (with a dbt utility) the dbt manifest: no
    ``meltano`` process, no database access.
    """
    settings = options.settings()
    ctx = app_context(settings)
    project, env_name = ctx.project, ctx.environment

    run_env = {**os.environ, **options.resource.env}  # where loaders write may depend on it
    pipelines = [p for p in all_pipelines(project, env_name, run_env) if options.pipelines.selects(p)]
    for rule in unmatched_select_rules(project):  # its stream is left out of the assets
        logger.warning("%s; no asset for it", rule)
    built = [
        (
            p,
            meltano_pipeline_assets(
                p,
                translator=options.translator,
                retry_policy=options.retry_policy,
                schemas=stream_schemas(project, p.extractor.name),
                freshness=freshness_of(p, options.default_freshness_hours),
                checks=options.checks,
            ),
        )
        for p in pipelines
    ]
    _check_unique_keys(built)
    keys, rules = _keys_and_freshness(built, options.default_freshness_hours)

    stream_assets = [definition for _, definition in built]
    dbt = _dbt_target(project, options.dbt, stream_assets) if options.dbt is not None else None
    included = set(keys)
    jobs = _jobs_of(project, included)
    job_build = build_jobs(jobs, keys, RESOURCE_KEY, command_assets=dbt)
    schedules_in = _schedules_of(project, jobs, included)
    legacy_jobs = _legacy_jobs(schedules_in, pipelines, keys)
    schedules = build_schedules(
        schedules_in,
        job_build.jobs,
        legacy_jobs,
        execution_timezone=options.execution_timezone,
        default_status=options.default_schedule_status,
        partitions=_job_partitions(jobs, job_build.jobs, legacy_jobs, pipelines),
    )
    resource = _resource(options, settings, env_name)
    return Definitions(
        assets=[*stream_assets, *([dbt.assets] if dbt else []), *job_build.command_assets],
        jobs=[*job_build.jobs.values(), *legacy_jobs.values()],
        schedules=schedules,
        sensors=_sensors(options, resource, rules, built),
        resources={RESOURCE_KEY: resource},
    )
