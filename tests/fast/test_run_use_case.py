"""run/_close outcomes on fakes: recorded Meltano logs replayed, the store and the state in memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from flx_meltano.application.pipelines import resolve
from flx_meltano.application.reconcile import MELTANO_HEARTBEAT_DEAD_SECONDS, StateIdBusy
from flx_meltano.application.run import (
    CANCELLED_REASON,
    ExecutionUpdate,
    LogUpdate,
    RunOptions,
    StreamUpdate,
    execute_pipeline,
    run_pipeline,
)
from flx_meltano.domain.errors import ExecutionAlreadyRunning
from flx_meltano.domain.snapshots import SnapshotReason
from flx_meltano.domain.state import SingerState
from flx_meltano.domain.values import ExecutionStatus, StreamStatus, Trigger
from flx_meltano.integration.project_reader import read_project
from flx_meltano.integration.state_access import MeltanoRunRecord
from tests.fakes import FakeAdapters, InMemoryStateStore, Recording, ReplayLauncher, fake_context

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance" / "project"
PLAIN = "test:tap-postgres-to-target-postgres"
AFTER = SingerState.from_payload(
    {
        "singer_state": {
            "bookmarks": {
                "public-customers": {},
                "public-events": {
                    "replication_key": "updated_at",
                    "replication_key_value": "2024-01-01T16:40:00.000000+00:00",
                },
            }
        }
    }
)
BEFORE = SingerState.from_payload(
    {
        "singer_state": {
            "bookmarks": {
                "public-events": {
                    "replication_key": "updated_at",
                    "replication_key_value": "2024-01-01T00:00:00.000000+00:00",
                }
            }
        }
    }
)


@pytest.fixture(scope="module")
def project():
    return read_project(CONFORMANCE, "test")


def context(project, *recordings: Recording, states: dict[str, SingerState] | None = None):
    store = InMemoryStateStore(states)
    ctx = fake_context(project, CONFORMANCE, "test", states=store, launcher=ReplayLauncher(*recordings))
    [step] = resolve(ctx.project, "tap-postgres target-postgres", "test")
    assert step.pipeline is not None
    return ctx, step.pipeline


def adapters(ctx) -> FakeAdapters:
    return ctx.adapters


def test_a_recorded_first_run_succeeds_with_its_counts_state_and_snapshot(project):
    ctx, definition = context(project, Recording("sdk_postgres_to_postgres.jsonl", state_after=AFTER))
    updates, statuses = [], []
    for update in execute_pipeline(ctx, definition, RunOptions(trigger=Trigger.CLI)):
        updates.append(update)
        if isinstance(update, ExecutionUpdate):
            statuses.append(update.execution.status)

    assert statuses == [ExecutionStatus.RUNNING, ExecutionStatus.SUCCEEDED]
    closed = updates[-1]
    assert isinstance(closed, ExecutionUpdate)
    assert closed.execution.status is ExecutionStatus.SUCCEEDED
    confirmed = {u.result.stream: u.result.records for u in updates if isinstance(u, StreamUpdate)}
    assert confirmed == {"public-events": 1000, "public-customers": 50}
    assert any(isinstance(u, LogUpdate) and u.plugin == "tap-postgres" for u in updates)

    with ctx.unit_of_work() as uow:
        stored = uow.executions.get(closed.execution.id)
        snapshots = uow.snapshots.list(PLAIN)
        assert stored.state_after is not None
        after = uow.snapshots.get(stored.state_after.snapshot_id)
    assert stored.status is ExecutionStatus.SUCCEEDED
    assert stored.trigger is Trigger.CLI
    # The state after by reference: the post-run snapshot, holding exactly the state meltano left.
    assert stored.state_after == after.ref
    assert (after.state, after.reason, after.execution_id) == (AFTER, SnapshotReason.POST_RUN, stored.id)
    assert stored.state_before is None
    assert {r.stream: r.status for r in stored.results.values()} == {
        "public-events": StreamStatus.SUCCEEDED,
        "public-customers": StreamStatus.SUCCEEDED,
    }
    # No state before the run: only the post-run snapshot, of the new state.
    assert [(s.reason, s.checksum) for s in snapshots] == [(SnapshotReason.POST_RUN, AFTER.checksum)]
    # The launch: spawned (behind the gate) before the execution opened, the run id is the execution id.
    [run] = adapters(ctx).launcher.runs
    assert run.spawned
    assert run.started
    assert run.force is False  # no other run of the state id: no --force
    assert run.request.run_id == closed.execution.id
    assert run.request.blocks == ("tap-postgres", "target-postgres")
    # The lease: opened with the execution, renewed by the heartbeat on the store's clock.
    assert stored.lease_seconds == ctx.settings.lease_seconds
    assert stored.heartbeat_at is not None
    # The log kept with the execution: complete, its last line says how it ended.
    with ctx.unit_of_work() as uow:
        kept = uow.logs.kept(stored.id)
        lines = [line for chunk in uow.logs.chunks(stored.id) for line in chunk.lines]
    assert kept is not None
    assert kept.complete
    assert (kept.dropped_lines, kept.pruned_at) == (0, None)
    assert any(line.plugin == "tap-postgres" for line in lines)
    assert (lines[-1].level, lines[-1].message) == ("info", "execution SUCCEEDED")


def test_a_run_with_state_before_snapshots_it_pre_run(project):
    ctx, definition = context(
        project,
        Recording("sdk_postgres_to_postgres_incremental.jsonl", state_after=AFTER),
        states={PLAIN: BEFORE},
    )
    execution = run_pipeline(ctx, definition)
    assert execution.status is ExecutionStatus.SUCCEEDED
    with ctx.unit_of_work() as uow:
        pre_run, post_run = reversed(uow.snapshots.list(PLAIN))
    assert (pre_run.reason, pre_run.state, pre_run.execution_id) == (
        SnapshotReason.PRE_RUN,
        BEFORE,
        execution.id,
    )
    assert (post_run.reason, post_run.state) == (SnapshotReason.POST_RUN, AFTER)
    # The execution references both snapshots (and so do its opening and closing events).
    assert (execution.state_before, execution.state_after) == (pre_run.ref, post_run.ref)
    events = ctx.adapters.store.data.events[f"execution-{execution.id}"]
    assert (events[0].state_before, events[-1].state_after) == (pre_run.ref, post_run.ref)


def test_meltano_refusing_the_chain_is_failed_with_its_error_and_exit_code(project):
    ctx, definition = context(project, Recording("mapper_plugin_name_refused.jsonl", exit_code=1))
    execution = run_pipeline(ctx, definition)
    assert execution.status is ExecutionStatus.FAILED
    assert execution.exit_code == 1
    assert execution.error
    assert "meltano-map-transformer" in execution.error


def test_an_exit_without_the_block_result_is_failed_naming_the_exit_code(project):
    ctx, definition = context(project, Recording("mapper_plugin_name_refused.jsonl", exit_code=3))
    execution = run_pipeline(ctx, definition)
    assert execution.status is ExecutionStatus.FAILED
    assert execution.exit_code == 3


def test_a_wiped_state_succeeds_with_a_regression_warning(project):
    ctx, definition = context(
        project,
        Recording("sdk_postgres_to_postgres.jsonl", state_after=SingerState.empty()),
        states={PLAIN: BEFORE},
    )
    execution = run_pipeline(ctx, definition)
    assert execution.status is ExecutionStatus.SUCCEEDED
    assert any("no bookmarks" in w for w in execution.warnings)


def test_a_full_refresh_does_not_warn_about_a_wiped_state(project):
    ctx, definition = context(
        project,
        Recording("sdk_postgres_to_postgres.jsonl", state_after=SingerState.empty()),
        states={PLAIN: BEFORE},
    )
    execution = run_pipeline(ctx, definition, RunOptions(full_refresh=True))
    assert not any("no bookmarks" in w for w in execution.warnings)
    [run] = adapters(ctx).launcher.runs
    assert run.request.full_refresh


def test_closing_the_consumer_cancels_meltano_and_records_cancelled(project):
    ctx, definition = context(project, Recording("sdk_postgres_to_postgres.jsonl", state_after=AFTER))
    updates = execute_pipeline(ctx, definition)
    opened = next(updates)
    assert isinstance(opened, ExecutionUpdate)
    next(updates)
    updates.close()
    [run] = adapters(ctx).launcher.runs
    assert run.cancelled
    with ctx.unit_of_work() as uow:
        stored = uow.executions.get(opened.execution.id)
    assert stored.status is ExecutionStatus.CANCELLED
    assert stored.error == CANCELLED_REASON


def test_the_launcher_breaking_mid_run_is_failed_with_the_error_and_unconfirmed_streams(project):
    ctx, definition = context(project, Recording("sdk_postgres_to_postgres.jsonl", fail_at_line=8))
    updates = execute_pipeline(ctx, definition)
    opened = next(updates)
    with pytest.raises(RuntimeError, match="replay broke at line 8"):
        list(updates)
    with ctx.unit_of_work() as uow:
        stored = uow.executions.get(opened.execution.id)
    assert stored.status is ExecutionStatus.FAILED
    assert stored.error == "RuntimeError: replay broke at line 8"
    assert adapters(ctx).launcher.runs[0].cancelled


def test_a_second_run_of_a_running_pipeline_is_refused_before_writing(project):
    ctx, definition = context(
        project,
        Recording("sdk_postgres_to_postgres.jsonl", state_after=AFTER),
        Recording("sdk_postgres_to_postgres.jsonl", state_after=AFTER),
    )
    first = execute_pipeline(ctx, definition)
    next(first)
    with pytest.raises(ExecutionAlreadyRunning):
        run_pipeline(ctx, definition)
    second_run = adapters(ctx).launcher.runs[1]
    assert second_run.aborted  # spawned behind the gate, then aborted: meltano never ran
    with ctx.unit_of_work() as uow:
        assert len(uow.executions.history_of(PLAIN)) == 1
    first.close()


@pytest.mark.parametrize(
    ("job", "log", "records"),
    [
        # Recorded after the incremental change: the SDK tap re-reads the bookmark row (1,001).
        ("mapped", "mapped.jsonl", {"public-events": 1001, "public-customers": 50}),
        # singer-python plugins: counts with empty tags, so unknown (None), never a made-up 0.
        ("pipelinewise", "pipelinewise_to_jsonl.jsonl", {"public-events": None, "public-customers": None}),
    ],
)
def test_the_conformance_jobs_record_exact_counts_from_their_plugins_logs(project, job, log, records):
    store = InMemoryStateStore()
    ctx = fake_context(project, CONFORMANCE, "test", states=store, launcher=ReplayLauncher(Recording(log)))
    [step] = resolve(ctx.project, job, "test")
    assert step.pipeline is not None
    execution = run_pipeline(ctx, step.pipeline)
    assert execution.status is ExecutionStatus.SUCCEEDED
    assert {r.stream: r.records for r in execution.results.values()} == records
    [run] = adapters(ctx).launcher.runs
    assert run.request.blocks == step.pipeline.blocks


def meltano_row(run_id: str, status: str, heartbeat_age_seconds: float | None) -> MeltanoRunRecord:
    return MeltanoRunRecord(run_id, PLAIN, status, heartbeat_age_seconds, None, False)


def test_meltano_keeps_its_row_of_the_run_with_the_state_it_wrote(project):
    ctx, definition = context(project, Recording("sdk_postgres_to_postgres.jsonl", state_after=AFTER))
    execution = run_pipeline(ctx, definition)
    assert ctx.state_store.run(execution.id) == MeltanoRunRecord(
        execution.id, PLAIN, "SUCCESS", 0.0, AFTER, True
    )
    assert ctx.state_store.runs(PLAIN, running_only=True) == []


def test_a_bare_meltano_run_left_running_without_a_heartbeat_is_forced_past(project):
    ctx, definition = context(project, Recording("sdk_postgres_to_postgres.jsonl", state_after=AFTER))
    ctx.state_store.meltano_runs = [
        meltano_row("killed-bare-run", "RUNNING", MELTANO_HEARTBEAT_DEAD_SECONDS + 1)
    ]
    execution = run_pipeline(ctx, definition)
    assert execution.status is ExecutionStatus.SUCCEEDED
    [run] = adapters(ctx).launcher.runs
    assert run.force is True  # Meltano would refuse the run without --force for 5 minutes
    assert not run.request.force


def test_a_live_bare_meltano_run_of_the_state_id_refuses_the_run_before_meltano_starts(project):
    ctx, definition = context(project, Recording("sdk_postgres_to_postgres.jsonl", state_after=AFTER))
    ctx.state_store.meltano_runs = [meltano_row("live-bare-run", "RUNNING", 1.0)]
    updates = execute_pipeline(ctx, definition, RunOptions(force=True))  # --force does not override it
    opened = next(updates)
    with pytest.raises(StateIdBusy, match=f"state id {PLAIN} is being loaded by run live-bare-run"):
        list(updates)
    [run] = adapters(ctx).launcher.runs
    assert (run.started, run.aborted, run.force) == (False, True, None)
    with ctx.unit_of_work() as uow:
        stored = uow.executions.get(opened.execution.id)
    assert stored.status is ExecutionStatus.FAILED
    assert "live-bare-run" in (stored.error or "")
    assert ctx.state_store.get(PLAIN) is None  # nothing ran, nothing written


def test_the_plugin_lock_held_by_a_running_load_of_the_state_id_refuses_unless_forced(project):
    holder = meltano_row("holder-run", "RUNNING", MELTANO_HEARTBEAT_DEAD_SECONDS + 1)
    ctx, definition = context(
        project,
        Recording("sdk_postgres_to_postgres.jsonl", state_after=AFTER, held_by="holder-run"),
        Recording("sdk_postgres_to_postgres.jsonl", state_after=AFTER, held_by="holder-run"),
    )
    ctx.state_store.meltano_runs = [holder]
    with pytest.raises(StateIdBusy, match="its load holds the plugin lock on this host"):
        run_pipeline(ctx, definition)
    refused = adapters(ctx).launcher.runs[0]
    assert (refused.started, refused.aborted, refused.waits) == (False, True, [])

    # Forced: it waits for the lock instead (and says so), then passes --force past the dead row.
    updates = list(execute_pipeline(ctx, definition, RunOptions(force=True)))
    closed = updates[-1]
    assert isinstance(closed, ExecutionUpdate)
    assert closed.execution.status is ExecutionStatus.SUCCEEDED
    waited = adapters(ctx).launcher.runs[1]
    assert waited.waits == ["waiting for the plugin lock held by run holder-run"]
    assert LogUpdate("info", None, waited.waits[0]) in updates
    # --force from the dead row alone: the option only lets the run wait behind the lock.
    assert (waited.force, waited.request.force) == (True, False)
