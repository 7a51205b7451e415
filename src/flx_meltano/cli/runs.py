"""``flx-meltano run|pipelines|executions|execution|metrics|plugins|config|cancel|reconcile``."""

from __future__ import annotations

import signal
from datetime import datetime
from types import FrameType
from typing import Annotated

import typer
from rich.markup import escape

from flx_meltano.application import commands, queries
from flx_meltano.application.pipelines import resolve
from flx_meltano.application.run import RunOptions, run_steps
from flx_meltano.cli.context import JsonOption, app_context
from flx_meltano.cli.output import console, count, duration_seconds, print_json, print_table, status_text
from flx_meltano.cli.progress import LiveProgress
from flx_meltano.domain.execution import PipelineExecution
from flx_meltano.domain.values import ExecutionStatus, StateStrategy, Trigger

LimitOption = Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many rows.")]


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _first_line(text: str | None) -> str:
    return text.splitlines()[0] if text else ""


def _execution_rows(executions: list[PipelineExecution]) -> list[list[object]]:
    return [
        [
            e.id[:8],
            e.pipeline_id,
            status_text(str(e.status)),
            str(e.trigger),
            e.started_at,
            str(e.duration) if e.duration else "-",
            count(e.records) if e.results else None,
            _first_line(e.error)[:60] or (_first_line(e.warnings[0])[:60] if e.warnings else ""),
        ]
        for e in executions
    ]


def _as_dict(e: PipelineExecution) -> dict[str, object]:
    return {
        "id": e.id,
        "pipeline_id": e.pipeline_id,
        "status": str(e.status),
        "trigger": str(e.trigger),
        "started_at": e.started_at,
        "ended_at": e.ended_at,
        "duration_seconds": duration_seconds(e.duration),
        "streams": list(e.streams),
        "full_refresh": e.full_refresh,
        "records": e.records,
        "results": [
            {
                "stream": r.stream,
                "records": r.records,
                "status": str(r.status),
                "duration_seconds": duration_seconds(r.duration),
                "bookmark": r.bookmark,
            }
            for r in e.results.values()
        ],
        "error": e.error,
        "failed_plugin": e.failed_plugin,
        "exit_code": e.exit_code,
        "warnings": list(e.warnings),
        "dagster_run_id": e.dagster_run_id,
        "state_before": e.state_before,
        "state_after": e.state_after,
    }


def register(app: typer.Typer) -> None:
    """Add these commands to the root app."""

    @app.command("run")
    def run_command(
        target: Annotated[
            str, typer.Argument(help="A job, or a pipeline: state id, tap-to-target or 'tap target'.")
        ],
        stream: Annotated[
            list[str] | None, typer.Option("--stream", "-s", help="Only this stream (repeatable).")
        ] = None,
        full_refresh: Annotated[bool, typer.Option(help="Ignore saved state.")] = False,
        state_strategy: Annotated[
            StateStrategy | None, typer.Option(case_sensitive=False, help="Meltano's --state-strategy.")
        ] = None,
        force: Annotated[bool, typer.Option(help="Run even if this state id is already running.")] = False,
        timeout: Annotated[
            float | None, typer.Option(help="Cancel after this many seconds (more than 0).")
        ] = None,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every log line.")] = False,
        as_json: JsonOption = False,
    ) -> None:
        """Run a job or pipeline through meltano, recording every execution."""
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
        # Validated before anything is opened: a bad option never leaves a FAILED execution behind.
        options = RunOptions(
            streams=tuple(stream) if stream else None,
            trigger=Trigger.CLI,
            full_refresh=full_refresh,
            state_strategy=state_strategy,
            force=force,
            timeout_seconds=timeout,
        )
        # An error (already recorded as a FAILED execution where one was open) goes to main().
        with app_context() as ctx:
            steps = resolve(ctx.project, target, ctx.environment)  # an unknown target: no progress table
            try:
                if as_json:
                    executions = run_steps(ctx, steps, options)
                else:
                    with LiveProgress(verbose) as progress:
                        executions = run_steps(ctx, steps, options, progress)
            except KeyboardInterrupt:
                console.print("[yellow]cancelled: meltano and its plugins were stopped[/yellow]")
                raise typer.Exit(130) from None
        if as_json:
            print_json([_as_dict(e) for e in executions])
        else:
            print_table(
                "executions",
                ["id", "pipeline", "status", "trigger", "started", "duration", "records", "note"],
                _execution_rows(executions),
            )
        if any(str(e.status) != "SUCCEEDED" for e in executions):
            raise typer.Exit(1)

    @app.command()
    def pipelines(as_json: JsonOption = False) -> None:
        """Every pipeline with its last status."""
        with app_context() as ctx:
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

    @app.command()
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
            rows = queries.execution_history(ctx, pipeline=pipeline, status=status, since=since, limit=limit)
        if as_json:
            print_json([_as_dict(e) for e in rows])
            return
        print_table(
            "executions",
            ["id", "pipeline", "status", "trigger", "started", "duration", "records", "note"],
            _execution_rows(rows),
        )

    @app.command()
    def execution(
        execution_id: Annotated[str, typer.Argument(help="Execution id (a unique prefix is enough).")],
        as_json: JsonOption = False,
    ) -> None:
        """One execution with its per-stream results."""
        with app_context() as ctx:
            e = queries.get_execution(ctx, execution_id)
        if as_json:
            print_json(_as_dict(e))
            return
        console.print(f"[bold]{e.id}[/bold]  {e.pipeline_id}  {status_text(str(e.status))}", highlight=False)
        console.print(
            f"started {e.started_at:%Y-%m-%d %H:%M:%S}  duration {e.duration or '-'}  "
            f"trigger {e.trigger}  full refresh {e.full_refresh}",
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
                    (r.bookmark or {}).get("replication_key_value", "-")
                    if isinstance(r.bookmark, dict)
                    else "-",
                ]
                for r in e.results.values()
            ],
        )

    @app.command()
    def metrics(
        pipeline: Annotated[str, typer.Argument(help="Pipeline (state id).")],
        stream: Annotated[str | None, typer.Option("--stream", "-s")] = None,
        limit: LimitOption = 50,
        as_json: JsonOption = False,
    ) -> None:
        """Per-stream record counts and durations over time."""
        with app_context() as ctx:
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

    @app.command()
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

    @app.command()
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

    @app.command()
    def cancel(
        execution_id: Annotated[str, typer.Argument(help="Execution id (or unique prefix).")],
        as_json: JsonOption = False,
    ) -> None:
        """Cancel a running execution (started by the CLI or API on this host)."""
        with app_context() as ctx:
            outcome = commands.cancel_execution(ctx, execution_id)
        if as_json:
            print_json({"execution_id": execution_id, "outcome": outcome})
        else:
            console.print(outcome, highlight=False)

    @app.command()
    def reconcile(as_json: JsonOption = False) -> None:
        """Complete every RUNNING execution whose load is dead (lease run out, or runner and load gone)."""
        with app_context() as ctx:
            crashed = commands.reconcile_crashed(ctx)
        if as_json:
            print_json({"crashed": [_as_dict(e) for e in crashed]})
        else:
            console.print(
                f"{len(crashed)} execution(s) marked CRASHED" + "".join(f"\n  {e.id}" for e in crashed)
            )
