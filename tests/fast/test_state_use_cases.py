"""restore_previous decisions, backup labels, restore guards and queries, on fakes (milliseconds)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from flx_meltano.application import queries, state_backup
from flx_meltano.application.pipelines import resolve
from flx_meltano.application.run import execute_pipeline, run_pipeline
from flx_meltano.application.state_backup import ExecutionRunning, StateError
from flx_meltano.domain.events import StateRestored
from flx_meltano.domain.snapshots import SnapshotReason
from flx_meltano.domain.state import SingerState
from flx_meltano.domain.values import ExecutionStatus
from flx_meltano.integration.project_reader import read_project
from flx_meltano.persistence.errors import NotFound
from tests.fakes import InMemoryStateStore, Recording, ReplayLauncher, fake_context

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance" / "project"
PLAIN = "test:tap-postgres-to-target-postgres"
OTHER = "test:tap-pipelinewise-postgres-to-target-jsonl"
RUN = "sdk_postgres_to_postgres.jsonl"


def bookmark(value: str) -> SingerState:
    return SingerState.from_payload(
        {"singer_state": {"bookmarks": {"public-events": {"replication_key_value": value}}}}
    )


GOOD, BETTER = bookmark("2024-01-01"), bookmark("2024-02-01")


@pytest.fixture(scope="module")
def project():
    return read_project(CONFORMANCE, "test")


def context(project, *recordings: Recording, states: dict[str, SingerState] | None = None):
    return fake_context(
        project, CONFORMANCE, "test", states=InMemoryStateStore(states), launcher=ReplayLauncher(*recordings)
    )


def run(ctx):
    [step] = resolve(ctx.project, "tap-postgres target-postgres", "test")
    assert step.pipeline is not None
    return run_pipeline(ctx, step.pipeline)


def test_restore_previous_after_a_flagged_run_puts_the_state_before_it_back(project):
    ctx = context(project, Recording(RUN, state_after=SingerState.empty()), states={PLAIN: GOOD})
    flagged = run(ctx)
    assert flagged.regression_warnings

    result = state_backup.restore_previous(ctx, PLAIN)

    assert ctx.state_store.get(PLAIN) == GOOD
    assert result.snapshot.reason is SnapshotReason.PRE_RUN
    assert result.snapshot.execution_id == flagged.id
    assert result.pre_restore_snapshot_id is not None  # the wiped state, kept before overwriting
    with ctx.unit_of_work() as uow:
        wiped = uow.snapshots.get(result.pre_restore_snapshot_id)
    assert wiped.state.is_empty
    events = ctx.adapters.store.data.events[f"state-{PLAIN}"]
    assert isinstance(events[-1], StateRestored)
    assert events[-1].snapshot_id == result.snapshot.id


def test_restore_previous_after_a_good_run_refuses(project):
    ctx = context(project, Recording(RUN, state_after=BETTER), states={PLAIN: GOOD})
    good = run(ctx)
    assert good.status is ExecutionStatus.SUCCEEDED
    with pytest.raises(StateError, match="was not flagged as a state regression"):
        state_backup.restore_previous(ctx, PLAIN)
    assert ctx.state_store.get(PLAIN) == BETTER


def test_restore_previous_with_the_referenced_snapshot_deleted_says_so_and_writes_nothing(project):
    ctx = context(project, Recording(RUN, state_after=SingerState.empty()), states={PLAIN: GOOD})
    flagged = run(ctx)
    assert flagged.state_before is not None
    with ctx.unit_of_work() as uow:
        pre_run = uow.snapshots.get(flagged.state_before.snapshot_id)
        assert (pre_run.reason, pre_run.state) == (SnapshotReason.PRE_RUN, GOOD)
        assert uow.snapshots.delete([pre_run.id]) == 1
        uow.commit()
        left = [s.id for s in uow.snapshots.list(PLAIN)]

    # The execution holds the state only by reference: with its snapshot gone it cannot be put back.
    for dry_run in (True, False):
        with pytest.raises(StateError, match=f"snapshot {pre_run.id}\\) is no longer stored"):
            state_backup.restore_previous(ctx, PLAIN, dry_run=dry_run)
    assert ctx.state_store.get(PLAIN) == SingerState.empty()
    with ctx.unit_of_work() as uow:
        assert [s.id for s in uow.snapshots.list(PLAIN)] == left


def test_prune_keeps_the_snapshots_the_newest_run_references(project):
    ctx = context(project, Recording(RUN, state_after=SingerState.empty()), states={PLAIN: GOOD})
    flagged = run(ctx)
    with ctx.unit_of_work() as uow:
        newest = uow.snapshots.latest(PLAIN)
        assert newest is not None
        for seconds, value in ((1, "x"), (2, "y")):  # taken after the run's snapshots
            at = newest.taken_at + timedelta(seconds=seconds)
            uow.snapshots.add(PLAIN, bookmark(value), reason=SnapshotReason.MANUAL, at=at)
        uow.commit()
        assert uow.executions.newest_state_refs() == {
            flagged.state_before.snapshot_id,
            flagged.state_after.snapshot_id,
        }

    assert state_backup.prune(ctx, keep_last=1) == 1  # "x"; not the run's pre- and post-run snapshots
    with ctx.unit_of_work() as uow:
        kept = [(s.reason, s.state) for s in uow.snapshots.list(PLAIN)]
    assert kept == [
        (SnapshotReason.MANUAL, bookmark("y")),
        (SnapshotReason.POST_RUN, SingerState.empty()),
        (SnapshotReason.PRE_RUN, GOOD),
    ]
    result = state_backup.restore_previous(ctx, PLAIN)
    assert (result.snapshot.id, ctx.state_store.get(PLAIN)) == (flagged.state_before.snapshot_id, GOOD)


def test_restore_previous_with_no_run_takes_the_newest_snapshot_with_bookmarks_unlike_live(project):
    ctx = context(project, states={PLAIN: BETTER})
    with ctx.unit_of_work() as uow:
        uow.snapshots.add(PLAIN, GOOD, reason=SnapshotReason.MANUAL, at=ctx.now())
        uow.snapshots.add(PLAIN, SingerState.empty(), reason=SnapshotReason.MANUAL, at=ctx.now())
        uow.snapshots.add(PLAIN, BETTER, reason=SnapshotReason.MANUAL, at=ctx.now())
        uow.commit()
    result = state_backup.restore_previous(ctx, PLAIN)
    assert result.snapshot.state == GOOD
    assert ctx.state_store.get(PLAIN) == GOOD


def test_restore_previous_with_nothing_to_go_back_to_says_so(project):
    ctx = context(project, states={PLAIN: GOOD})
    with pytest.raises(StateError, match="no earlier good state"):
        state_backup.restore_previous(ctx, PLAIN)


def test_restore_is_refused_while_a_run_is_active_unless_forced(project):
    ctx = context(project, Recording(RUN, state_after=BETTER), states={PLAIN: GOOD})
    with ctx.unit_of_work() as uow:
        snapshot = uow.snapshots.add(PLAIN, GOOD, reason=SnapshotReason.MANUAL, at=ctx.now())
        uow.commit()
    [step] = resolve(ctx.project, "tap-postgres target-postgres", "test")
    updates = execute_pipeline(ctx, step.pipeline)
    next(updates)  # RUNNING, stored
    with pytest.raises(ExecutionRunning, match="RUNNING"):
        state_backup.restore(ctx, snapshot.id)
    with pytest.raises(ExecutionRunning):
        state_backup.restore(ctx, snapshot.id, dry_run=True)
    forced = state_backup.restore(ctx, snapshot.id, force=True)
    assert not forced.dry_run
    updates.close()


def test_backup_snapshots_only_changes_unless_a_new_label_names_the_moment(project):
    ctx = context(project, states={PLAIN: GOOD, OTHER: BETTER})
    first = state_backup.backup(ctx)
    assert sorted(s.state_id for s in first.taken) == [OTHER, PLAIN]
    assert {s.taken_at for s in first.taken} == {ctx.adapters.clock.time}  # the Clock port's time

    again = state_backup.backup(ctx)
    assert (again.taken, again.unchanged) == ([], [OTHER, PLAIN])

    labelled = state_backup.backup(ctx, pattern="*tap-postgres*", label="before-upgrade")
    assert [(s.state_id, s.label) for s in labelled.taken] == [(PLAIN, "before-upgrade")]
    same_label = state_backup.backup(ctx, pattern="*tap-postgres*", label="before-upgrade")
    assert (same_label.taken, same_label.unchanged) == ([], [PLAIN])


def test_prune_keeps_the_newest_per_state_id(project):
    ctx = context(project)
    with ctx.unit_of_work() as uow:
        for value in ("a", "b", "c"):
            uow.snapshots.add(PLAIN, bookmark(value), reason=SnapshotReason.MANUAL, at=ctx.now())
        uow.snapshots.add(OTHER, bookmark("z"), reason=SnapshotReason.MANUAL, at=ctx.now())
        uow.commit()
    assert state_backup.prune(ctx, keep_last=1) == 2
    with ctx.unit_of_work() as uow:
        assert [s.state for s in uow.snapshots.list(PLAIN)] == [bookmark("c")]
        assert len(uow.snapshots.list(OTHER)) == 1


def test_history_and_lookup_queries(project):
    ctx = context(
        project,
        Recording(RUN, state_after=GOOD),
        Recording("mapper_plugin_name_refused.jsonl", exit_code=1),
    )
    ok, failed = run(ctx), run(ctx)
    history = queries.execution_history(ctx, pipeline=PLAIN)
    assert [e.id for e in history] == [failed.id, ok.id]
    assert [e.id for e in queries.execution_history(ctx, status="FAILED")] == [failed.id]
    assert queries.find_execution(ctx, ok.id[:12]).id == ok.id
    with pytest.raises(NotFound, match="flx-meltano executions"):
        queries.find_execution(ctx, "no-such-id")
    statuses = {p.id: p for p in queries.list_pipelines(ctx)}
    assert (statuses[PLAIN].last_status, statuses[PLAIN].last_execution_id) == (
        ExecutionStatus.FAILED,
        failed.id,
    )
    assert statuses[OTHER].last_status is None
    with pytest.raises(queries.UnknownPipeline):
        queries.execution_history(ctx, pipeline="test:tap-nope-to-target-nope")
