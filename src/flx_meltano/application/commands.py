"""Commands that change executions from outside the run: cancel, reconcile crashed ones."""

from __future__ import annotations

from collections.abc import Callable

from flx_meltano.application import reconcile
from flx_meltano.application.context import AppContext
from flx_meltano.domain.execution import PipelineExecution
from flx_meltano.domain.values import Trigger
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
    if execution.trigger is Trigger.MELTANO:
        raise CannotCancel(
            f"execution {execution.id} is a bare 'meltano run' flx did not launch (recorded from "
            "Meltano's system database): stop that meltano process itself; the next sync closes it"
        )
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
    """Complete every RUNNING execution whose load is dead, from what Meltano kept (``reconcile``).

    Dead means its runner's lease ran out (any host), or, on the runner's own host, the runner
    process and every process of its load are gone. ``dagster_run_alive(run_id)`` is asked only
    about executions without a lease (their runners predate leases).
    """
    return reconcile.reconcile(ctx, dagster_run_alive)
