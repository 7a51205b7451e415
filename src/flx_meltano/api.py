"""The Python API over runs and queries (re-exported from ``flx_meltano``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from flx_meltano.application import commands, queries
from flx_meltano.application import logs as logs_use_case
from flx_meltano.application.doctor import Check, run_doctor
from flx_meltano.application.run import RunOptions
from flx_meltano.application.run import run as _run
from flx_meltano.bootstrap import open_context
from flx_meltano.domain.execution import PipelineExecution
from flx_meltano.domain.logs import LogLine
from flx_meltano.domain.plugins import Plugin
from flx_meltano.settings import Settings


def run(
    target: str,
    options: RunOptions | None = None,
    *,
    settings: Settings | None = None,
) -> list[PipelineExecution]:
    """Run a job or pipeline through meltano and return its recorded executions."""
    with open_context(settings) as ctx:
        return _run(ctx, target, options)


def pipelines(*, settings: Settings | None = None) -> list[queries.PipelineStatus]:
    """Every pipeline with its last status."""
    with open_context(settings) as ctx:
        return queries.list_pipelines(ctx)


def executions(
    pipeline: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
    *,
    settings: Settings | None = None,
) -> list[PipelineExecution]:
    """Execution history, newest first."""
    with open_context(settings) as ctx:
        return queries.execution_history(ctx, pipeline=pipeline, status=status, since=since, limit=limit)


def execution(execution_id: str, *, settings: Settings | None = None) -> PipelineExecution:
    """One execution with its stream results."""
    with open_context(settings) as ctx:
        return queries.get_execution(ctx, execution_id)


def metrics(
    pipeline: str, stream: str | None = None, limit: int = 100, *, settings: Settings | None = None
) -> list[queries.StreamMetric]:
    """Per-stream results over time."""
    with open_context(settings) as ctx:
        return queries.stream_metrics(ctx, pipeline, stream, limit)


def plugins(*, settings: Settings | None = None) -> list[Plugin]:
    """Plugins of the project."""
    with open_context(settings) as ctx:
        return queries.list_plugins(ctx)


def plugin_config(name: str, *, settings: Settings | None = None) -> dict[str, Any]:
    """A plugin's configuration, secrets redacted."""
    with open_context(settings) as ctx:
        return queries.plugin_config(ctx, name)


def cancel(execution_id: str, *, settings: Settings | None = None) -> str:
    """Cancel a running execution started on this host."""
    with open_context(settings) as ctx:
        return commands.cancel_execution(ctx, execution_id)


def reconcile(*, settings: Settings | None = None) -> list[PipelineExecution]:
    """Complete every running execution whose load is dead (its lease ran out, or its runner and
    load are gone on this host) from what Meltano kept; returns the executions it closed."""
    with open_context(settings) as ctx:
        return commands.reconcile_crashed(ctx)


def doctor(*, settings: Settings | None = None) -> list[Check]:
    """Check the project, plugin installs, meltano and the store."""
    return run_doctor(settings or Settings())


def logs(
    execution_id: str,
    *,
    plugin: str | None = None,
    level: str | None = None,
    since: datetime | None = None,
    tail: int | None = None,
    settings: Settings | None = None,
) -> logs_use_case.ExecutionLog:
    """An execution's stored log (secrets masked), filtered; ``available``/``reason`` say if there is none."""
    query = logs_use_case.LogFilter(plugin=plugin, level=level, since=since, tail=tail)
    with open_context(settings) as ctx:
        return logs_use_case.execution_logs(ctx, execution_id, query)


def follow_logs(
    execution_id: str,
    *,
    plugin: str | None = None,
    level: str | None = None,
    settings: Settings | None = None,
) -> Iterator[LogLine]:
    """An execution's log lines as the store receives them, until the execution ends."""
    query = logs_use_case.LogFilter(plugin=plugin, level=level)
    with open_context(settings) as ctx:
        yield from logs_use_case.follow_execution_logs(ctx, execution_id, query)


def prune_logs(older_than: timedelta | None = None, *, settings: Settings | None = None) -> list[str]:
    """Delete the logs of executions that ended longer ago than ``older_than`` (default: the
    retention setting); the ids of the executions whose logs were pruned."""
    with open_context(settings) as ctx:
        return logs_use_case.prune_logs(ctx, older_than).execution_ids
