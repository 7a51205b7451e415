"""``flx-meltano run|cancel|reconcile``: start a run, stop one, close the ones whose runner died."""

from __future__ import annotations

import signal
from contextlib import closing
from types import FrameType
from typing import Annotated

import typer

from flx_meltano.application import commands
from flx_meltano.application.pipelines import resolve
from flx_meltano.application.run import ExecutionUpdate, RunOptions, execute, executions_of
from flx_meltano.cli.context import JsonOption, app_context
from flx_meltano.cli.output import console, print_json, print_table
from flx_meltano.cli.progress import LiveProgress
from flx_meltano.cli.views import EXECUTION_COLUMNS, as_dict, execution_rows
from flx_meltano.domain.values import ExecutionStatus, StateStrategy, Trigger


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


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
    partition: Annotated[
        str | None,
        typer.Option(help="Run one partition (e.g. 2024-01-02) of a partitioned extractor."),
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
        partition=partition,
    )
    # An error (already recorded as a FAILED execution where one was open) goes to main().
    with app_context() as ctx:
        steps = resolve(ctx.project, target, ctx.environment)  # an unknown target: no progress table
        try:
            if as_json:
                executions = executions_of(execute(ctx, steps, options))
            else:
                executions = []
                with LiveProgress(verbose) as progress, closing(execute(ctx, steps, options)) as updates:
                    for update in updates:
                        progress.show(update)
                        if isinstance(update, ExecutionUpdate) and update.execution.status.is_terminal:
                            executions.append(update.execution)
        except KeyboardInterrupt:
            console.print("[yellow]cancelled: meltano and its plugins were stopped[/yellow]")
            raise typer.Exit(130) from None
    if as_json:
        print_json([as_dict(e) for e in executions])
    else:
        print_table(
            "executions",
            EXECUTION_COLUMNS,
            execution_rows(executions),
        )
    if any(e.status is not ExecutionStatus.SUCCEEDED for e in executions):
        raise typer.Exit(1)


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


def reconcile(as_json: JsonOption = False) -> None:
    """Close every RUNNING execution whose load is dead (its lease ran out, or its runner and load
    are gone on this host), completing its record from Meltano's state."""
    with app_context() as ctx:
        crashed = commands.reconcile_crashed(ctx)
    if as_json:
        print_json({"crashed": [as_dict(e) for e in crashed]})
    else:
        console.print(
            f"{len(crashed)} execution(s) of dead loads closed"
            + "".join(f"\n  {e.id} {e.status}" for e in crashed),
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    """Add these commands to the root app."""
    app.command("run")(run_command)
    app.command()(cancel)
    app.command()(reconcile)
