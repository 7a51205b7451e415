"""Dagster jobs from Meltano jobs (task order kept) and schedules from Meltano schedules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from dagster import (
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    DefaultScheduleStatus,
    PartitionsDefinition,
    ScheduleDefinition,
    define_asset_job,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from flx_meltano.domain.project import Command, ExtractLoad, Job, PipelineDefinition, Schedule
from flx_meltano.orchestration import metadata as md
from flx_meltano.orchestration.assets import meltano_command_asset
from flx_meltano.orchestration.partitions import partitioned_schedule_fn
from flx_meltano.orchestration.translator import dagster_name, pipeline_name, tag_value


class CommandAssets(Protocol):
    """Assets that stand for some command blocks (dbt's), instead of one opaque asset per block."""

    def handles(self, command: Command) -> bool:
        """Whether these assets run ``command``."""
        ...

    def selection(self, commands: Sequence[Command]) -> AssetSelection:
        """What a job with these command blocks selects."""
        ...

    def keys(self) -> Sequence[AssetKey]:
        """The asset keys later command blocks depend on."""
        ...

    def tags(self, commands: Sequence[Command]) -> Mapping[str, str]:
        """Job tags that tell the assets what to run."""
        ...


@dataclass
class JobBuild:
    """What building the jobs produced: jobs, extra command assets, and job name per Meltano job."""

    jobs: dict[str, UnresolvedAssetJobDefinition] = field(default_factory=dict)
    command_assets: list[AssetsDefinition] = field(default_factory=list)


def build_jobs(
    meltano_jobs: Sequence[Job],
    keys_by_pipeline: Mapping[tuple[str, str], Sequence[AssetKey]],
    resource_key: str,
    command_assets: CommandAssets | None = None,
) -> JobBuild:
    """One asset job per Meltano job; command blocks become assets depending on what precedes them.

    Command blocks that ``command_assets`` handles (dbt's ``run``, ``build``...) select those
    assets instead; their order comes from the assets' own dependencies (dbt sources on streams).
    """
    build = JobBuild()
    for job in meltano_jobs:
        selected: list[AssetKey] = []
        preceding: list[AssetKey] = []
        handled: list[Command] = []
        for task in job.tasks:
            for block in task.blocks:
                if isinstance(block, ExtractLoad):
                    keys = list(keys_by_pipeline.get((block.extractor, block.loader), ()))
                    selected.extend(keys)
                    preceding.extend(keys)
                elif command_assets is not None and command_assets.handles(block):
                    handled.append(block)
                    preceding = [*preceding, *command_assets.keys()]
                elif isinstance(block, Command):
                    asset = meltano_command_asset(job.name, block, list(preceding), resource_key=resource_key)
                    build.command_assets.append(asset)
                    command_keys = list(asset.keys)
                    selected.extend(command_keys)
                    preceding = [*preceding, *command_keys]
        selection: AssetSelection = AssetSelection.assets(*selected)
        tags = {md.TAG_JOB: tag_value(job.name)}
        if command_assets is not None and handled:
            selection = selection | command_assets.selection(handled)
            tags.update(command_assets.tags(handled))
        build.jobs[job.name] = define_asset_job(
            name=dagster_name(job.name),
            selection=selection,
            description=f"Meltano job `{job.name}`: " + "; ".join(task.text for task in job.tasks),
            tags=tags,
        )
    return build


def pipeline_job(pipeline: PipelineDefinition, keys: Sequence[AssetKey]) -> UnresolvedAssetJobDefinition:
    """A job running one pipeline (for legacy extractor/loader schedules)."""
    return define_asset_job(
        name=pipeline_name(pipeline),
        selection=AssetSelection.assets(*keys),
        tags={md.TAG_STATE_ID: tag_value(pipeline.id)},
    )


def build_schedules(
    schedules: Sequence[Schedule],
    jobs: Mapping[str, UnresolvedAssetJobDefinition],
    pipeline_jobs: Mapping[tuple[str, str], UnresolvedAssetJobDefinition],
    *,
    execution_timezone: str = "UTC",
    default_status: DefaultScheduleStatus = DefaultScheduleStatus.STOPPED,
    partitions: Mapping[str, PartitionsDefinition[str]] | None = None,
) -> list[ScheduleDefinition]:
    """A Dagster schedule per Meltano schedule with a clock (``@manual``/``@once``/``@none`` skipped).

    ``partitions``: of the jobs (by Dagster job name) that run partitioned pipelines; their
    schedules run the last window that has ended (every key of static partitions).
    """
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
        tags = {md.TAG_SCHEDULE: tag_value(schedule.name)}
        job_partitions = (partitions or {}).get(job.name)
        built.append(
            ScheduleDefinition(
                name=dagster_name(schedule.name),
                cron_schedule=cron,
                job=job,
                execution_timezone=execution_timezone,
                default_status=default_status,
                description=f"Meltano schedule `{schedule.name}` ({schedule.interval})",
                **(
                    {"execution_fn": partitioned_schedule_fn(job_partitions, tags)}
                    if job_partitions is not None
                    else {"tags": tags}
                ),
            )
        )
    return built
