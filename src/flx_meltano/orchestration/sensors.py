"""Sensors: re-run stale pipelines (once per staleness), and mark crashed executions CRASHED."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from flx_meltano.application import commands, queries
from flx_meltano.application.context import AppContext
from flx_meltano.domain.specifications import IsStale
from flx_meltano.orchestration import metadata as md
from flx_meltano.orchestration.translator import tag_value

ALIVE_RUN_STATUSES = frozenset(
    {
        DagsterRunStatus.QUEUED,
        DagsterRunStatus.NOT_STARTED,
        DagsterRunStatus.STARTING,
        DagsterRunStatus.STARTED,
        DagsterRunStatus.CANCELING,
        DagsterRunStatus.MANAGED,
    }
)


@dataclass(frozen=True)
class FreshnessRule:
    """A pipeline, its asset keys, and how old its last success may get."""

    pipeline_id: str
    asset_keys: tuple[AssetKey, ...]
    max_age: timedelta


def stale_run_key(pipeline_id: str, last_success: datetime | None) -> str:
    """One run per pipeline per staleness: the key changes only when the pipeline succeeds again."""
    return f"stale:{pipeline_id}:{last_success.isoformat() if last_success else 'never'}"


def build_stale_pipeline_sensor(
    rules: Sequence[FreshnessRule],
    app_context: Callable[[], AppContext],
    *,
    name: str = "meltano_stale_pipelines",
    minimum_interval_seconds: int = 300,
    default_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED,
) -> SensorDefinition:
    """Request a run of a pipeline's assets when its last success is older than its freshness."""

    @sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        asset_selection=AssetSelection.assets(*(key for rule in rules for key in rule.asset_keys)),
        description="Runs a Meltano pipeline whose last success is older than meta.dagster.freshness_hours.",
    )
    def _stale(context: SensorEvaluationContext) -> SensorResult | SkipReason:
        ctx = app_context()
        try:
            last_success = queries.last_successes(ctx)
        finally:
            ctx.close()
        now = datetime.now(UTC)
        requests = []
        for rule in rules:
            last = last_success.get(rule.pipeline_id)
            if IsStale(rule.max_age).since(last, now):
                requests.append(
                    RunRequest(
                        run_key=stale_run_key(rule.pipeline_id, last),
                        asset_selection=list(rule.asset_keys),
                        tags={md.TAG_STATE_ID: tag_value(rule.pipeline_id), md.TAG_REASON: "stale"},
                    )
                )
        if not requests:
            return SkipReason(f"all {len(rules)} pipelines with a freshness setting are fresh")
        return SensorResult(run_requests=requests)

    return _stale


def dagster_run_alive(instance: DagsterInstance, run_id: str) -> bool:
    """Whether Dagster still counts the run as queued or running."""
    run = instance.get_run_by_id(run_id)
    return run is not None and run.status in ALIVE_RUN_STATUSES


def build_crash_reconciler_sensor(
    app_context: Callable[[], AppContext],
    *,
    name: str = "meltano_crash_reconciler",
    minimum_interval_seconds: int = 60,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
) -> SensorDefinition:
    """Complete every RUNNING execution whose load is dead: its runner's lease ran out (any host),
    or its runner and load are gone (the runner's host); Dagster's run status is asked only about
    executions without a lease. A run worker killed while its step loads on is left alone."""

    @sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Completes the Meltano executions still RUNNING whose runner's lease ran out.",
    )
    def _reconcile(context: SensorEvaluationContext) -> SkipReason:
        def alive(run_id: str) -> bool:
            return dagster_run_alive(context.instance, run_id)

        ctx = app_context()
        try:
            crashed = commands.reconcile_crashed(ctx, alive)
        finally:
            ctx.close()
        if crashed:
            for execution in crashed:
                context.log.warning(f"marked execution {execution.id} of {execution.pipeline_id} CRASHED")
            return SkipReason(
                f"marked {len(crashed)} execution(s) CRASHED: {', '.join(e.id for e in crashed)}"
            )
        return SkipReason("no crashed executions")

    return _reconcile
