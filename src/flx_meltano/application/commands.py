"""Commands that change executions from outside the run: cancel, reconcile crashed ones."""

from __future__ import annotations

from collections.abc import Callable

from flx_meltano.application.context import AppContext
from flx_meltano.domain.execution import PipelineExecution
from flx_meltano.errors import FlxError
from flx_meltano.integration.processes import ask_to_stop, process_alive, this_host
from flx_meltano.persistence.errors import NotFound


class CannotCancel(FlxError, RuntimeError):
    """The execution is not running here, or is not running at all."""


def cancel_execution(ctx: AppContext, execution_id: str) -> str:
    """Stop a running execution started by a CLI or API runner on this host.

    The runner receives SIGTERM, stops meltano and every process it started, and records
    CANCELLED itself. An execution whose runner is already gone is marked CRASHED.
    """
    with ctx.unit_of_work() as uow:
        try:
            execution = uow.executions.find(execution_id)
        except NotFound as exc:
            raise NotFound(
                f"{exc}; list running ones with 'flx-meltano executions --status RUNNING'"
            ) from None
    if not execution.status.is_active:
        raise CannotCancel(f"execution {execution.id} is already {execution.status}: nothing to cancel")
    if execution.dagster_run_id:
        raise CannotCancel(
            f"execution {execution.id} belongs to Dagster run {execution.dagster_run_id}: "
            "terminate that run in Dagster (UI or GraphQL) and the execution is recorded CANCELLED"
        )
    if execution.runner_host != this_host() or execution.runner_pid is None:
        raise CannotCancel(f"execution {execution.id} runs on {execution.runner_host}; cancel it there")
    if ask_to_stop(execution.runner_pid) and process_alive(execution.runner_pid):
        return f"asked runner {execution.runner_pid} to cancel execution {execution.id}"
    crashed = mark_crashed(ctx, execution.id, "its runner process was gone when cancel was asked")
    return f"execution {execution.id} had no runner left: marked {crashed.status}"


def mark_crashed(ctx: AppContext, execution_id: str, reason: str) -> PipelineExecution:
    """Close a still-running execution as CRASHED."""
    with ctx.unit_of_work() as uow:
        execution = uow.executions.get(execution_id, for_update=True)
        if execution.status.is_active:
            execution.crash(reason, at=ctx.now())
            uow.executions.save(execution)
            uow.commit()
        return execution


def reconcile_crashed(
    ctx: AppContext, dagster_run_alive: Callable[[str], bool] | None = None
) -> list[PipelineExecution]:
    """Mark CRASHED every RUNNING execution whose runner is gone.

    A Dagster-launched execution is alive while ``dagster_run_alive(run_id)`` says so (the
    orchestration layer asks Dagster); any other one while its runner pid lives on this host.
    Executions of other hosts without a Dagster run are left alone: only their host can tell.
    """
    with ctx.unit_of_work() as uow:
        active = uow.executions.active()
    crashed: list[PipelineExecution] = []
    for execution in active:
        local_runner = execution.runner_host == this_host() and execution.runner_pid is not None
        if local_runner and not process_alive(execution.runner_pid or 0):
            # A killed run worker can leave Dagster believing the run is STARTED: trust the pid.
            why = f"runner process {execution.runner_pid} on {execution.runner_host} is gone"
        elif execution.dagster_run_id and dagster_run_alive is not None:
            if dagster_run_alive(execution.dagster_run_id):
                continue
            why = f"Dagster run {execution.dagster_run_id} is no longer running"
        else:
            continue
        crashed.append(mark_crashed(ctx, execution.id, why))
    return crashed
