"""The Python API over runs and queries (re-exported from ``flx_meltano``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flx_meltano.application import commands, queries
from flx_meltano.application.doctor import Check, run_doctor
from flx_meltano.application.run import RunOptions
from flx_meltano.application.run import run as _run
from flx_meltano.bootstrap import open_context
from flx_meltano.domain.execution import PipelineExecution
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


def doctor(*, settings: Settings | None = None) -> list[Check]:
    """Check the project, plugin installs, meltano and the store."""
    return run_doctor(settings or Settings())
