"""Dagster partitions of a partitioned extractor's pipeline (``meta.dagster.partitions``)."""

from __future__ import annotations

from dagster import (
    DailyPartitionsDefinition,
    HourlyPartitionsDefinition,
    MonthlyPartitionsDefinition,
    PartitionsDefinition,
    StaticPartitionsDefinition,
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
