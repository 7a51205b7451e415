"""build_definitions: a complete Dagster code location from a Meltano project directory (Python API)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dagster import DefaultScheduleStatus, DefaultSensorStatus, Definitions, RetryPolicy

from flx_meltano.orchestration.builder import (
    LocationOptions,
    PipelineFilter,
    ResourceOptions,
    build_location,
    freshness_of,
)
from flx_meltano.orchestration.checks import CheckOptions
from flx_meltano.orchestration.dbt_options import DbtOptions
from flx_meltano.orchestration.translator import DagsterMeltanoTranslator

__all__ = ["build_definitions", "freshness_of"]


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
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    dbt: DbtOptions | None = DbtOptions(),  # noqa: B008 - frozen, so one shared default is safe
    checks: CheckOptions | None = CheckOptions(),  # noqa: B008 - frozen too
) -> Definitions:
    """Assets, jobs, schedules, sensors and the ``meltano`` resource for a Meltano project.

    ``include``/``exclude`` pick pipelines by glob on their id or name; ``dbt`` places the dbt
    utility's project (``dbt=None`` keeps dbt command blocks as single command assets); ``checks``
    sets the streams' asset checks (e.g. ``CheckOptions(row_count_history=5)``; None: no checks). The same
    builder serves ``MeltanoProjectComponent``. Reads meltano.yml, the stream catalog and the dbt
    manifest only: no ``meltano`` process, no database access.
    """
    return build_location(
        LocationOptions(
            project_dir=Path(project_dir) if project_dir is not None else None,
            environment=environment,
            pipelines=PipelineFilter(tuple(include), tuple(exclude)),
            translator=translator or DagsterMeltanoTranslator(),
            resource=ResourceOptions(
                meltano_executable=meltano_executable,
                database_url=database_url,
                env=dict(env or {}),
                timeout_seconds=timeout_seconds,
            ),
            dbt=dbt,
            checks=checks,
            retry_policy=retry_policy,
            execution_timezone=execution_timezone,
            default_schedule_status=default_schedule_status,
            default_freshness_hours=default_freshness_hours,
            stale_sensor_status=stale_sensor_status,
            crash_sensor_status=crash_sensor_status,
        )
    )
