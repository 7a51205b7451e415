"""Dagster jobs from Meltano jobs (task order kept) and schedules from Meltano schedules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dagster import (
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    DefaultScheduleStatus,
    ScheduleDefinition,
    define_asset_job,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from flx_meltano.domain.project import Command, ExtractLoad, Job, PipelineDefinition, Schedule
from flx_meltano.orchestration.assets import meltano_command_asset
from flx_meltano.orchestration.translator import dagster_name, tag_value


@dataclass
class JobBuild:
    """What building the jobs produced: jobs, extra command assets, and job name per Meltano job."""

    jobs: dict[str, UnresolvedAssetJobDefinition] = field(default_factory=dict)
    command_assets: list[AssetsDefinition] = field(default_factory=list)


def build_jobs(
    meltano_jobs: Sequence[Job],
    keys_by_pipeline: Mapping[tuple[str, str], Sequence[AssetKey]],
    resource_key: str,
) -> JobBuild:
    """One asset job per Meltano job; command blocks become assets depending on what precedes them."""
    build = JobBuild()
    for job in meltano_jobs:
        selected: list[AssetKey] = []
        preceding: list[AssetKey] = []
        for task in job.tasks:
            for block in task.blocks:
                if isinstance(block, ExtractLoad):
                    keys = list(keys_by_pipeline.get((block.extractor, block.loader), ()))
                    selected.extend(keys)
                    preceding.extend(keys)
                elif isinstance(block, Command):
                    asset = meltano_command_asset(job.name, block, list(preceding), resource_key=resource_key)
                    build.command_assets.append(asset)
                    command_keys = list(asset.keys)
                    selected.extend(command_keys)
                    preceding = [*preceding, *command_keys]
        build.jobs[job.name] = define_asset_job(
            name=dagster_name(job.name),
            selection=AssetSelection.assets(*selected),
            description=f"Meltano job `{job.name}`: " + "; ".join(task.text for task in job.tasks),
            tags={"meltano/job": tag_value(job.name)},
        )
    return build


def pipeline_job(pipeline: PipelineDefinition, keys: Sequence[AssetKey]) -> UnresolvedAssetJobDefinition:
    """A job running one pipeline (for legacy extractor/loader schedules)."""
    return define_asset_job(
        name=dagster_name(f"{pipeline.extractor.name}_to_{pipeline.loader.name}"),
        selection=AssetSelection.assets(*keys),
        tags={"meltano/state_id": tag_value(pipeline.id)},
    )


def build_schedules(
    schedules: Sequence[Schedule],
    jobs: Mapping[str, UnresolvedAssetJobDefinition],
    pipeline_jobs: Mapping[tuple[str, str], UnresolvedAssetJobDefinition],
    *,
    execution_timezone: str = "UTC",
    default_status: DefaultScheduleStatus = DefaultScheduleStatus.STOPPED,
) -> list[ScheduleDefinition]:
    """A Dagster schedule per Meltano schedule with a clock (``@manual``/``@once``/``@none`` skipped)."""
    built: list[ScheduleDefinition] = []
    for schedule in schedules:
        cron = schedule.cron
        if cron is None:
            continue
        if schedule.job is not None:
            job = jobs[schedule.job]
        elif schedule.extract_load is not None:
            job = pipeline_jobs[(schedule.extract_load.extractor, schedule.extract_load.loader)]
        else:
            continue
        built.append(
            ScheduleDefinition(
                name=dagster_name(schedule.name),
                cron_schedule=cron,
                job=job,
                execution_timezone=execution_timezone,
                default_status=default_status,
                description=f"Meltano schedule `{schedule.name}` ({schedule.interval})",
                tags={"meltano/schedule": tag_value(schedule.name)},
            )
        )
    return built
