"""Queries: read pipelines, executions, per-stream metrics, plugins and config; change nothing."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flx_meltano.application.context import AppContext
from flx_meltano.application.pipelines import all_pipelines
from flx_meltano.application.secrets import MASK, looks_secret
from flx_meltano.domain.errors import InvalidOption, UnknownStream
from flx_meltano.domain.execution import PipelineExecution, StreamResult
from flx_meltano.domain.history import ExecutionFilter
from flx_meltano.domain.plugins import Plugin
from flx_meltano.domain.values import ExecutionStatus
from flx_meltano.errors import UsageError, choices
from flx_meltano.persistence.errors import NotFound


class UnknownPipeline(UsageError, LookupError):
    """No pipeline of meltano.yml, nor any recorded one, has that id."""


class UnknownPlugin(UsageError, LookupError):
    """No plugin in meltano.yml has that name."""


def _status(status: ExecutionStatus | str) -> ExecutionStatus:
    try:
        return ExecutionStatus(str(status).upper())
    except ValueError:
        raise InvalidOption(
            f"status {status!r} is not one of {', '.join(s.value for s in ExecutionStatus)}"
        ) from None


def _positive_limit(limit: int) -> int:
    if limit < 1:
        raise InvalidOption(f"limit {limit}: give at least 1")
    return limit


def _known_pipelines(ctx: AppContext) -> dict[str, tuple[str, ...]]:
    """Pipeline ids with their streams: meltano.yml's (this environment) and every recorded one."""
    with ctx.unit_of_work() as uow:
        known = {pipeline.id: pipeline.streams for pipeline in uow.pipelines.all()}
    known.update(
        {definition.id: definition.streams for definition in all_pipelines(ctx.project, ctx.environment)}
    )
    return known


def check_pipeline(ctx: AppContext, pipeline: str, stream: str | None = None) -> None:
    """UnknownPipeline (UnknownStream) unless ``pipeline`` (and its ``stream``) is known."""
    known = _known_pipelines(ctx)
    if pipeline not in known:
        close = difflib.get_close_matches(pipeline, list(known), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownPipeline(
            f"no pipeline {pipeline!r} in meltano.yml (environment {ctx.environment}) nor in the store; "
            f"{hint}pipelines: {choices(sorted(known))}"
        )
    streams = known[pipeline]
    if stream is not None and streams and stream not in streams:
        raise UnknownStream(f"pipeline {pipeline} has no stream {stream!r}; streams: {choices(streams)}")


@dataclass(frozen=True)
class PipelineStatus:
    """A pipeline with its latest execution."""

    id: str
    extractor: str
    loader: str
    mappings: tuple[str, ...]
    streams: tuple[str, ...]
    jobs: tuple[str, ...]
    last_status: ExecutionStatus | None
    last_started_at: datetime | None
    last_records: int | None  # None: never run, or a count no plugin reported
    last_execution_id: str | None


def list_pipelines(ctx: AppContext) -> list[PipelineStatus]:
    """Every pipeline of the project with its last status."""
    with ctx.unit_of_work() as uow:
        last = uow.executions.last_by_pipeline()
    rows: list[PipelineStatus] = []
    for definition in all_pipelines(ctx.project, ctx.environment):
        execution = last.get(definition.id)
        rows.append(
            PipelineStatus(
                id=definition.id,
                extractor=definition.extractor.name,
                loader=definition.loader.name,
                mappings=definition.mappings,
                streams=definition.streams,
                jobs=definition.jobs,
                last_status=execution.status if execution else None,
                last_started_at=execution.started_at if execution else None,
                last_records=execution.records if execution else None,
                last_execution_id=execution.id if execution else None,
            )
        )
    return rows


def execution_history(
    ctx: AppContext,
    *,
    pipeline: str | None = None,
    status: ExecutionStatus | str | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> list[PipelineExecution]:
    """Executions, newest first, filtered; a filter naming no pipeline is an error, not an empty list."""
    query = ExecutionFilter(
        pipeline_id=pipeline,
        status=_status(status) if status else None,
        since=since,
        limit=_positive_limit(limit),
    )
    with ctx.unit_of_work() as uow:
        found = uow.executions.history(query)
    if not found and pipeline is not None:
        check_pipeline(ctx, pipeline)
    return found


def find_execution(ctx: AppContext, execution_id: str) -> PipelineExecution:
    """An execution by id or unambiguous prefix; NotFound saying where to look."""
    with ctx.unit_of_work() as uow:
        try:
            return uow.executions.find(execution_id)
        except NotFound as exc:
            raise NotFound(f"{exc}; list executions with 'flx-meltano executions'") from None


def get_execution(ctx: AppContext, execution_id: str) -> PipelineExecution:
    """One execution with its stream results (an unambiguous id prefix is enough)."""
    return find_execution(ctx, execution_id)


@dataclass(frozen=True)
class StreamMetric:
    """One stream's result in one execution."""

    started_at: datetime
    execution_id: str
    execution_status: str
    result: StreamResult


def stream_metrics(
    ctx: AppContext, pipeline: str, stream: str | None = None, limit: int = 100
) -> list[StreamMetric]:
    """Per-stream record counts and durations over time, newest first.

    An unknown pipeline (or stream) is an error, not an empty history.
    """
    with ctx.unit_of_work() as uow:
        rows = uow.executions.stream_metrics(pipeline, stream, _positive_limit(limit))
    if not rows:
        check_pipeline(ctx, pipeline, stream)
    return [StreamMetric(*row) for row in rows]


def list_plugins(ctx: AppContext) -> list[Plugin]:
    """Every plugin in meltano.yml."""
    return list(ctx.project.plugins)


def is_secret(plugin: Plugin, name: str) -> bool:
    """Whether a setting of ``plugin`` must never be shown."""
    return name in plugin.secret_setting_names or looks_secret(name)


def redact(plugin: Plugin, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with every secret value replaced (nested mappings too)."""
    redacted: dict[str, Any] = {}
    for key, value in config.items():
        if is_secret(plugin, key) and value not in (None, ""):
            redacted[key] = MASK
        elif isinstance(value, Mapping):
            redacted[key] = redact(plugin, value)
        else:
            redacted[key] = value
    return redacted


def plugin_config(ctx: AppContext, name: str) -> dict[str, Any]:
    """A plugin's configuration from meltano.yml (environment applied), secrets redacted."""
    plugin = next((p for p in ctx.project.plugins if p.name == name), None)
    if plugin is None:
        raise UnknownPlugin(
            f"no plugin {name!r} in {ctx.project.root}/meltano.yml; "
            f"plugins: {choices(p.name for p in ctx.project.plugins)}"
        )
    return redact(plugin, plugin.config)


def last_successes(ctx: AppContext) -> dict[str, datetime]:
    """When each pipeline last succeeded."""
    with ctx.unit_of_work() as uow:
        return uow.executions.last_success_by_pipeline()
