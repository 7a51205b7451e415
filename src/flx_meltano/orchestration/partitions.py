"""Dagster partitions of a partitioned extractor's pipeline (``meta.dagster.partitions``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime

from dagster import (
    DailyPartitionsDefinition,
    HourlyPartitionsDefinition,
    MonthlyPartitionsDefinition,
    PartitionsDefinition,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    StaticPartitionsDefinition,
    TimeWindowPartitionsDefinition,
)

from flx_meltano.domain.partitions import KEY_FORMATS, PartitionKind, PartitionScheme
from flx_meltano.domain.project import PipelineDefinition


def partitions_definition(scheme: PartitionScheme) -> PartitionsDefinition[str]:
    """The Dagster partitions of a scheme; their keys are the keys ``PartitionScheme.window`` reads."""
    if scheme.kind is PartitionKind.STATIC:
        return StaticPartitionsDefinition(list(scheme.keys))
    assert scheme.start is not None
    start = scheme.start.strftime(KEY_FORMATS[scheme.kind])
    fmt = KEY_FORMATS[scheme.kind]
    if scheme.kind is PartitionKind.DAILY:
        return DailyPartitionsDefinition(start_date=start, fmt=fmt)
    if scheme.kind is PartitionKind.HOURLY:
        return HourlyPartitionsDefinition(start_date=start, fmt=fmt)
    return MonthlyPartitionsDefinition(start_date=start, fmt=fmt)


def partitions_for(pipeline: PipelineDefinition) -> PartitionsDefinition[str] | None:
    """The partitions of a pipeline's assets: its extractor's, or None (not partitioned)."""
    scheme = pipeline.extractor.partitions
    return partitions_definition(scheme) if scheme is not None else None


def scheduled_partitions(partitions: PartitionsDefinition[str], at: datetime) -> list[str]:
    """The partitions a schedule tick at ``at`` runs: the last window that has ended (time
    partitions), or every key (static partitions)."""
    if isinstance(partitions, TimeWindowPartitionsDefinition):
        ended = partitions.get_partition_keys(current_time=at)
        return list(ended[-1:])
    return list(partitions.get_partition_keys())


def partitioned_schedule_fn(
    partitions: PartitionsDefinition[str], tags: Mapping[str, str]
) -> Callable[[ScheduleEvaluationContext], Iterator[RunRequest | SkipReason]]:
    """A schedule's evaluation for a partitioned job: one run request per partition it runs
    (its run key is the partition's, so a tick evaluated twice launches it once)."""

    def evaluate(context: ScheduleEvaluationContext) -> Iterator[RunRequest | SkipReason]:
        keys = scheduled_partitions(partitions, context.scheduled_execution_time)
        if not keys:
            yield SkipReason("no partition has ended yet")
        for key in keys:
            yield RunRequest(run_key=key, partition_key=key, tags=dict(tags))

    return evaluate
