"""``flx-meltano pipelines|executions|execution|metrics|plugins|config``: what was run and how."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.markup import escape

from flx_meltano.application import queries
from flx_meltano.application.logs import LogFilter, execution_logs
from flx_meltano.cli.context import JsonOption, app_context
from flx_meltano.cli.logs import LAST_LOG_LINES, line_dict, show_last_lines
from flx_meltano.cli.output import console, count, duration_seconds, print_json, print_table, status_text
from flx_meltano.cli.sync import sync_before_listing
from flx_meltano.cli.views import EXECUTION_COLUMNS, as_dict, execution_rows
from flx_meltano.domain.values import ExecutionStatus

LimitOption = Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many rows.")]


def pipelines(as_json: JsonOption = False) -> None:
    """Every pipeline with its last status."""
    with app_context() as ctx:
        sync_before_listing(ctx)
        rows = queries.list_pipelines(ctx)
    if as_json:
        print_json(rows)
        return
    print_table(
        "pipelines",
        ["pipeline", "mappings", "streams", "jobs", "last status", "last run", "records", "execution"],
        [
            [
                r.id,
                ", ".join(r.mappings),
                ", ".join(r.streams),
                ", ".join(r.jobs),
                status_text(str(r.last_status)) if r.last_status else "never run",
                r.last_started_at,
                count(r.last_records) if r.last_status else None,
                (r.last_execution_id or "")[:8],
            ]
            for r in rows
        ],
    )


def executions(
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", "-p", help="Only this pipeline (state id).")
    ] = None,
    status: Annotated[
        ExecutionStatus | None, typer.Option("--status", case_sensitive=False, help="Only this status.")
    ] = None,
    since: Annotated[datetime | None, typer.Option(help="Only executions started since.")] = None,
    limit: LimitOption = 20,
    as_json: JsonOption = False,
) -> None:
    """Execution history, newest first."""
    with app_context() as ctx:
        sync_before_listing(ctx)
        rows = queries.execution_history(ctx, pipeline=pipeline, status=status, since=since, limit=limit)
    if as_json:
        print_json([as_dict(e) for e in rows])
        return
    print_table(
        "executions",
        EXECUTION_COLUMNS,
        execution_rows(rows),
    )


def execution(
    execution_id: Annotated[str, typer.Argument(help="Execution id (a unique prefix is enough).")],
    as_json: JsonOption = False,
) -> None:
    """One execution with its per-stream results."""
    with app_context() as ctx:
        sync_before_listing(ctx)
        e = queries.get_execution(ctx, execution_id)
        log = execution_logs(ctx, e.id, LogFilter(tail=LAST_LOG_LINES))
    if as_json:
        print_json({**as_dict(e), "last_log_lines": [line_dict(line) for line in log.lines]})
        return
    console.print(f"[bold]{e.id}[/bold]  {e.pipeline_id}  {status_text(str(e.status))}", highlight=False)
    console.print(
        f"started {e.started_at:%Y-%m-%d %H:%M:%S}  duration {e.duration or '-'}  "
        f"trigger {e.trigger}  full refresh {e.full_refresh}"
        + (f"  partition {e.partition}" if e.partition else ""),
        highlight=False,
    )
    if e.error:
        summary, *tail = e.error.splitlines()
        console.print(
            f"[red]error: {escape(summary)}[/red] (plugin {e.failed_plugin}, exit code {e.exit_code})",
            highlight=False,
        )
        for line in tail:  # the failing plugin's last lines, as stored with the error
            console.print(f"  {line}", style="dim", highlight=False, markup=False)
    for warning in e.warnings:
        console.print(f"[yellow]warning: {escape(warning)}[/yellow]", highlight=False)
    print_table(
        None,
        ["stream", "status", "records", "duration", "bookmark"],
        [
            [
                r.stream,
                status_text(str(r.status)),
                count(r.records),
                str(r.duration) if r.duration else "-",
                (r.bookmark or {}).get("replication_key_value", "-") if isinstance(r.bookmark, dict) else "-",
            ]
            for r in e.results.values()
        ],
    )
    show_last_lines(log)


def metrics(
    pipeline: Annotated[str, typer.Argument(help="Pipeline (state id).")],
    stream: Annotated[str | None, typer.Option("--stream", "-s")] = None,
    limit: LimitOption = 50,
    as_json: JsonOption = False,
) -> None:
    """Per-stream record counts and durations over time."""
    with app_context() as ctx:
        sync_before_listing(ctx)
        rows = queries.stream_metrics(ctx, pipeline, stream, limit)
    if as_json:
        print_json(
            [
                {
                    "started_at": m.started_at,
                    "execution_id": m.execution_id,
                    "execution_status": m.execution_status,
                    "result": {
                        "stream": m.result.stream,
                        "records": m.result.records,
                        "status": str(m.result.status),
                        "duration_seconds": duration_seconds(m.result.duration),
                        "bookmark": m.result.bookmark,
                        "finished_at": m.result.finished_at,
                    },
                }
                for m in rows
            ]
        )
        return
    print_table(
        f"{pipeline} streams over time",
        ["started", "execution", "stream", "status", "records", "duration"],
        [
            [
                m.started_at,
                m.execution_id[:8],
                m.result.stream,
                status_text(str(m.result.status)),
                count(m.result.records),
                str(m.result.duration) if m.result.duration else "-",
            ]
            for m in rows
        ],
    )


def plugins(as_json: JsonOption = False) -> None:
    """Plugins of the project."""
    with app_context() as ctx:
        rows = queries.list_plugins(ctx)
    if as_json:
        print_json(
            [
                {
                    "name": p.name,
                    "type": p.type.singular,
                    "namespace": p.namespace,
                    "pip_url": p.pip_url,
                    "executable": p.executable,
                    "capabilities": list(p.capabilities),
                    "mappings": list(p.mappings),
                }
                for p in rows
            ]
        )
        return
    print_table(
        "plugins",
        ["name", "type", "namespace", "pip_url", "executable", "capabilities", "mappings"],
        [
            [
                p.name,
                p.type.singular,
                p.namespace,
                p.pip_url,
                p.executable,
                ", ".join(p.capabilities),
                ", ".join(p.mappings),
            ]
            for p in rows
        ],
    )


def config(
    plugin: Annotated[str, typer.Argument(help="Plugin name.")],
    as_json: JsonOption = False,
) -> None:
    """A plugin's configuration, secrets redacted."""
    with app_context() as ctx:
        values = queries.plugin_config(ctx, plugin)
    if as_json:
        print_json(values)
        return
    print_table(plugin, ["setting", "value"], [[k, v] for k, v in values.items()])


def register(app: typer.Typer) -> None:
    """Add these commands to the root app."""
    app.command()(pipelines)
    app.command()(executions)
    app.command()(execution)
    app.command()(metrics)
    app.command()(plugins)
    app.command()(config)
