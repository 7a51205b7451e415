"""Crash reconciliation: is an execution's load dead (by its lease), and its record completed from Meltano.

An execution is alive while its runner's lease is fresh (any host). On the runner's own host two
faster signs are trusted: a live runner process, and the plugin lock its load's processes hold
(``load_lock``): the runner gone and no lock held by its run means the load is gone, whatever the
lease says. A dead execution is then completed from what Meltano kept: the state after (the current
state when it is the newest execution of its pipeline, else the last state its own Meltano run
wrote), per stream the bookmark reached with an unknown count (never 0), and Meltano's own outcome
of the run (a load that succeeded is recorded SUCCEEDED, anything else CRASHED).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from flx_meltano.application.context import AppContext
from flx_meltano.application.state_guard import snapshot_if_changed, state_of
from flx_meltano.domain.execution import PipelineExecution, StreamResult
from flx_meltano.domain.snapshots import SnapshotReason
from flx_meltano.domain.state import BookmarkChange, SingerState, compare_bookmark
from flx_meltano.domain.values import StreamStatus
from flx_meltano.errors import FlxError
from flx_meltano.integration.load_lock import holds_a_lock
from flx_meltano.integration.processes import process_alive, this_host
from flx_meltano.integration.state_access import MeltanoRunRecord

# A Meltano run with no heartbeat for this long is dead (meltano heartbeats every second; Meltano
# itself waits 5 minutes before it calls a run stale).
MELTANO_HEARTBEAT_DEAD_SECONDS = 30.0
RECONCILED_WARNING = "recorded by crash reconciliation"


class StateIdBusy(FlxError, RuntimeError):
    """Another load of the same state id is running: this run is refused, nothing of it ran."""


@dataclass(frozen=True)
class Verdict:
    """Whether an execution's load is alive, and why (said in the record when it is dead)."""

    alive: bool
    why: str


def verdict(
    ctx: AppContext,
    execution: PipelineExecution,
    now: datetime,
    dagster_run_alive: Callable[[str], bool] | None = None,
) -> Verdict:
    """Alive or dead, by the lease (any host), or faster on the runner's own host."""
    runner = f"runner process {execution.runner_pid} on {execution.runner_host}"
    if execution.runner_host == this_host() and execution.runner_pid is not None:
        if process_alive(execution.runner_pid):
            return Verdict(True, f"{runner} is alive")
        if holds_a_lock(ctx.settings.project_dir, execution.id):
            return Verdict(True, f"{runner} is gone but its load still runs")
        return Verdict(False, f"{runner} is gone and its load ended")
    expired = execution.lease_expired(now)
    if expired is None:  # an execution of a runner without a lease: only Dagster can tell
        if execution.dagster_run_id and dagster_run_alive is not None:
            if dagster_run_alive(execution.dagster_run_id):
                return Verdict(True, f"Dagster run {execution.dagster_run_id} is running")
            return Verdict(False, f"Dagster run {execution.dagster_run_id} is no longer running")
        return Verdict(True, f"{runner} has no lease; only its host can tell")
    assert execution.heartbeat_at is not None
    age = (now - execution.heartbeat_at).total_seconds()
    if expired:
        return Verdict(False, f"{runner}: no heartbeat for {age:.0f}s (lease {execution.lease_seconds:g}s)")
    return Verdict(True, f"{runner}: heartbeat {age:.0f}s ago (lease {execution.lease_seconds:g}s)")


def _state_after(
    ctx: AppContext, execution: PipelineExecution, meltano: MeltanoRunRecord | None
) -> SingerState | None:
    """The state the execution's load left (see the module's docstring)."""
    with ctx.unit_of_work() as uow:
        newest = uow.executions.history_of(execution.pipeline_id, limit=1)
    if newest and newest[0].id == execution.id:
        return ctx.state_store.get(execution.pipeline_id)
    if meltano is not None and meltano.state is not None and meltano.complete_state:
        return meltano.state
    return None


def complete(ctx: AppContext, execution_id: str, why: str) -> PipelineExecution:
    """Close a dead, still-running execution from what Meltano kept (see the module's docstring)."""
    meltano = ctx.state_store.run(execution_id)
    with ctx.unit_of_work() as uow:
        execution = uow.executions.get(execution_id)
    if not execution.status.is_active:
        return execution
    state_after = _state_after(ctx, execution, meltano)
    succeeded = meltano is not None and meltano.status == "SUCCESS"
    now = datetime.now(UTC)
    moved: list[str] = []
    with ctx.unit_of_work() as uow:
        execution = uow.executions.get(execution_id, for_update=True)
        if not execution.status.is_active:
            return execution
        before = state_of(uow, execution.state_before)
        for stream in execution.streams:
            if stream in execution.results:
                continue
            bookmark = state_after.bookmarks.get(stream) if state_after else None
            after = state_after.bookmark_value(stream) if state_after else None
            if (
                after is not None
                and compare_bookmark(before.bookmark_value(stream) if before else None, after)
                is not BookmarkChange.UNCHANGED
            ):
                moved.append(stream)
            execution.record_stream(
                StreamResult(
                    stream=stream,
                    records=None,  # nobody saw the counts: unknown, never 0
                    status=StreamStatus.SUCCEEDED if succeeded else StreamStatus.FAILED,
                    bookmark=bookmark or None,
                    finished_at=now,
                ),
                at=now,
            )
        after_ref = (
            snapshot_if_changed(
                uow, execution.pipeline_id, state_after, SnapshotReason.POST_RUN, execution.id
            )
            if state_after is not None
            else None
        )
        kept = (
            (f"bookmarks moved for {', '.join(moved)}" if moved else "no bookmark moved")
            if state_after
            else "Meltano kept no state of it"
        )
        note = f"{RECONCILED_WARNING}: {why}; {kept}; record counts unknown"
        if succeeded:
            execution.succeed(at=now, state_after=after_ref, warnings=(note,))
        else:
            meltano_said = f"; Meltano's run is {meltano.status}" if meltano is not None else ""
            execution.crash(f"{note}{meltano_said}", at=now, state_after=after_ref)
        uow.executions.save(execution)
        uow.commit()
    return execution


def reconcile(
    ctx: AppContext, dagster_run_alive: Callable[[str], bool] | None = None
) -> list[PipelineExecution]:
    """Complete every running execution whose load is dead; leave every live one alone."""
    with ctx.unit_of_work() as uow:
        active = uow.executions.active()
        now = uow.executions.now()
    closed: list[PipelineExecution] = []
    for execution in active:
        found = verdict(ctx, execution, now, dagster_run_alive)
        if not found.alive:
            closed.append(complete(ctx, execution.id, found.why))
    return closed


def refuse_if_loading(ctx: AppContext, execution: PipelineExecution, holder: str) -> None:
    """The plugin lock of ``execution``'s load is held by run ``holder``: StateIdBusy when that
    is a run of the same state id Meltano has RUNNING (rather than waiting behind it)."""
    if not holder or holder == execution.id:
        return
    running = {row.run_id for row in ctx.state_store.runs(execution.pipeline_id, running_only=True)}
    if holder in running:
        raise busy(execution.pipeline_id, holder, "its load holds the plugin lock on this host")


def guard_state_id(ctx: AppContext, execution: PipelineExecution) -> bool:
    """Before a load of ``execution``'s state id starts (its plugin locks held): whether Meltano's
    ``--force`` is needed, established safe; StateIdBusy when another load of it still runs.

    Meltano refuses a run while another run of the state id is RUNNING in its system database;
    a run killed without closing its row keeps it so for 5 minutes. ``--force`` is passed only
    when every such run is established dead: one of this host (the locks held now prove its load
    ended), or of another host whose flx lease ran out, or a bare meltano run without a heartbeat
    for ``MELTANO_HEARTBEAT_DEAD_SECONDS``. flx executions of the state id left RUNNING by a dead
    runner are completed on the way.
    """
    state_id = execution.pipeline_id
    with ctx.unit_of_work() as uow:
        others = [e for e in uow.executions.active(state_id) if e.id != execution.id]
        now = uow.executions.now()
    for other in others:
        found = verdict(ctx, other, now)
        if not found.alive:
            complete(ctx, other.id, found.why)
    rows = [row for row in ctx.state_store.runs(state_id, running_only=True) if row.run_id != execution.id]
    if not rows:
        return False
    with ctx.unit_of_work() as uow:
        active = {e.id: e for e in uow.executions.active(state_id)}
    for row in rows:
        known = active.get(row.run_id)
        if known is not None:
            # Of this host, the lock held now proves its load ended; of another, its lease tells.
            found = verdict(ctx, known, now)
            if known.runner_host != this_host() and found.alive:
                raise busy(state_id, row.run_id, found.why)
        elif not _flx_closed(ctx, row.run_id):
            age = row.heartbeat_age_seconds
            if age is not None and age < MELTANO_HEARTBEAT_DEAD_SECONDS:
                raise busy(state_id, row.run_id, f"Meltano's heartbeat of it is {age:.0f}s old")
    return True


def _flx_closed(ctx: AppContext, run_id: str) -> bool:
    """Whether ``run_id`` is an flx execution that is closed (its load ended)."""
    from flx_meltano.persistence.errors import NotFound

    with ctx.unit_of_work() as uow:
        try:
            return not uow.executions.get(run_id).status.is_active
        except NotFound:
            return False


def busy(state_id: str, run_id: str, why: str) -> StateIdBusy:
    """The refusal naming the state id and the run that holds it."""
    return StateIdBusy(
        f"state id {state_id} is being loaded by run {run_id} ({why}); two loads of one state id "
        f"would both write its state: wait for it to end, or stop it (flx-meltano cancel {run_id})"
    )
