"""The store against every available PostgreSQL server: executions, events, pipelines, snapshots,
migrations. Each test gets a fresh migrated database through the ``store_url`` fixture."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from flx_meltano.domain.errors import ExecutionAlreadyRunning
from flx_meltano.domain.events import ExecutionStarted, StateSnapshotTaken, StreamSynced
from flx_meltano.domain.execution import PipelineExecution, StreamResult
from flx_meltano.domain.identifiers import StateId
from flx_meltano.domain.pipeline import Pipeline
from flx_meltano.domain.snapshots import SnapshotReason, StateRef, StateSnapshot
from flx_meltano.domain.state import SingerState
from flx_meltano.domain.values import Duration, ExecutionStatus, StreamStatus, Trigger
from flx_meltano.persistence import database
from flx_meltano.persistence.errors import ConcurrencyConflict, NotFound
from flx_meltano.persistence.execution_repository import ExecutionFilter
from flx_meltano.persistence.tables import events, executions, stream_results
from flx_meltano.persistence.unit_of_work import SqlUnitOfWork

T0 = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
P1 = "dev:tap-shopsim-to-target-jsonlines"
P2 = "prod:tap-shopsim-to-target-postgres"
BLOCK_SECONDS = 0.4


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def singer(**values: object) -> dict[str, object]:
    return {
        "singer_state": {
            "bookmarks": {
                stream: {"replication_key": "updated_at", "replication_key_value": value}
                for stream, value in values.items()
            }
        }
    }


def ref(**values: object) -> StateRef:
    """A reference to the snapshot of ``singer(**values)`` (executions point at snapshots)."""
    checksum = SingerState.from_payload(singer(**values)).checksum
    return StateRef(int(checksum[:6], 16), checksum)


def comparable(execution: PipelineExecution) -> dict[str, object]:
    """Every field of an execution but the in-memory pending events."""
    return {
        f.name: getattr(execution, f.name)
        for f in dataclasses.fields(execution)
        if f.name != "pending_events"
    }


def assert_same_execution(actual: PipelineExecution, expected: PipelineExecution) -> None:
    got, want = comparable(actual), comparable(expected)
    for name in want:
        assert got[name] == want[name], f"field {name!r}: {got[name]!r} != {want[name]!r}"


@pytest.fixture
def engine(store_url: str) -> sa.Engine:
    return database.ready_engine(store_url)


def start(
    execution_id: str,
    pipeline_id: str = P1,
    started: datetime = T0,
    streams: tuple[str, ...] = ("customers", "orders"),
    **kwargs: object,
) -> PipelineExecution:
    return PipelineExecution.start(execution_id, pipeline_id, at=started, streams=streams, **kwargs)  # type: ignore[arg-type]


def full_life(execution_id: str = "exec-1") -> PipelineExecution:
    execution = start(
        execution_id,
        trigger=Trigger.DAGSTER,
        full_refresh=True,
        dagster_run_id="dagster-run-1",
        state_before=ref(customers="2024-01-01T00:00:00Z", orders=10),
        runner_host="worker-7.example",
        runner_pid=31337,
    )
    return execution


def save(engine: sa.Engine, *items: PipelineExecution) -> None:
    with SqlUnitOfWork(engine) as uow:
        for execution in items:
            uow.executions.save(execution)
        uow.commit()


def in_uow(engine: sa.Engine, work: Callable[[SqlUnitOfWork], object]) -> object:
    with SqlUnitOfWork(engine) as uow:
        return work(uow)


# --------------------------------------------------------------------------------------------------
# Executions


def test_execution_saved_through_its_life_reads_back_equal(engine):
    execution = full_life()
    save(engine, execution)
    assert execution.version == 1
    assert execution.pending_events == []
    loaded = in_uow(engine, lambda uow: uow.executions.get("exec-1"))
    assert_same_execution(loaded, execution)
    assert loaded.status is ExecutionStatus.RUNNING

    execution.record_stream(
        StreamResult(
            "customers",
            100,
            StreamStatus.SUCCEEDED,
            Duration(1.234567),
            {"replication_key": "updated_at", "replication_key_value": "2024-01-02T00:00:00Z"},
        ),
        at=at(1),
    )
    save(engine, execution)
    execution.record_stream(StreamResult("orders", 0, StreamStatus.FAILED), at=at(2))
    execution.fail(
        "tap-shopsim exited with code 1: boom",
        at=at(3),
        failed_plugin="tap-shopsim",
        exit_code=1,
        state_after=ref(customers="2024-01-02T00:00:00Z", orders=10),
        warnings=["catalog drift", "slow target"],
    )
    save(engine, execution)
    assert execution.version == 4

    loaded = in_uow(engine, lambda uow: uow.executions.get("exec-1"))
    assert_same_execution(loaded, execution)
    assert loaded.status is ExecutionStatus.FAILED
    assert loaded.trigger is Trigger.DAGSTER
    assert loaded.started_at == T0
    assert loaded.ended_at == at(3)
    assert loaded.duration == Duration(180)
    assert loaded.streams == ("customers", "orders")
    assert loaded.full_refresh is True
    assert loaded.runner_host == "worker-7.example"
    assert loaded.runner_pid == 31337
    assert loaded.dagster_run_id == "dagster-run-1"
    assert loaded.state_before == ref(customers="2024-01-01T00:00:00Z", orders=10)
    assert loaded.state_after == ref(customers="2024-01-02T00:00:00Z", orders=10)
    assert loaded.warnings == ("catalog drift", "slow target")
    assert loaded.error == "tap-shopsim exited with code 1: boom"
    assert loaded.failed_plugin == "tap-shopsim"
    assert loaded.exit_code == 1
    assert loaded.records == 100
    assert loaded.results["customers"] == StreamResult(
        "customers",
        100,
        StreamStatus.SUCCEEDED,
        Duration(1.234567),
        {"replication_key": "updated_at", "replication_key_value": "2024-01-02T00:00:00Z"},
        at(1),
    )
    assert loaded.results["orders"] == StreamResult("orders", 0, StreamStatus.FAILED, None, None, at(2))
    assert loaded.version == 4

    with engine.connect() as conn:
        duration = conn.execute(sa.select(executions.c.duration_seconds)).scalar_one()
    assert duration == pytest.approx(180)


def test_succeeded_execution_round_trip(engine):
    execution = start("exec-ok", streams=("products",))
    execution.record_stream(StreamResult("products", 5, StreamStatus.SUCCEEDED, Duration(0.5), 17), at=at(1))
    execution.succeed(at=at(2), state_after=ref(products=17), warnings=())
    save(engine, execution)
    loaded = in_uow(engine, lambda uow: uow.executions.get("exec-ok"))
    assert_same_execution(loaded, execution)
    assert loaded.results["products"].bookmark == 17
    assert loaded.warnings == ()
    assert loaded.state_before is None


def test_saving_without_pending_events_writes_nothing(engine):
    execution = start("exec-1")
    save(engine, execution)
    save(engine, execution)  # nothing new
    with SqlUnitOfWork(engine) as uow:
        assert uow.events.count() == 1
        assert uow.executions.get("exec-1").version == 1


def test_get_and_find(engine):
    save(engine, start("0a1b2c"), start("0a1b99"), start("ffee00"))
    with SqlUnitOfWork(engine) as uow:
        assert uow.executions.find("ffe").id == "ffee00"
        assert uow.executions.find("0a1b2").id == "0a1b2c"
        with pytest.raises(NotFound, match="ambiguous"):
            uow.executions.find("0a1b")
        with pytest.raises(NotFound, match="nope"):
            uow.executions.find("nope")
        with pytest.raises(NotFound, match="'missing'"):
            uow.executions.get("missing")


def make_history(engine: sa.Engine) -> dict[str, PipelineExecution]:
    """Six executions over two pipelines, of every outcome, started an hour apart."""
    made: dict[str, PipelineExecution] = {}
    plan = [
        ("h0", P1, "succeed"),
        ("h1", P2, "fail"),
        ("h2", P1, "fail"),
        ("h3", P2, "succeed"),
        ("h4", P1, "running"),
        ("h5", P2, "running"),
    ]
    for hour, (execution_id, pipeline_id, outcome) in enumerate(plan):
        execution = start(execution_id, pipeline_id, started=at(60 * hour))
        execution.record_stream(
            StreamResult("customers", 10 * (hour + 1), StreamStatus.SUCCEEDED, Duration(hour + 0.5)),
            at=at(60 * hour + 1),
        )
        if outcome == "succeed":
            execution.succeed(at=at(60 * hour + 2))
        elif outcome == "fail":
            execution.fail("boom", at=at(60 * hour + 2), failed_plugin="tap-shopsim", exit_code=1)
        made[execution_id] = execution
    save(engine, *made.values())
    return made


def test_history_filters_and_orders_newest_first(engine):
    make_history(engine)
    with SqlUnitOfWork(engine) as uow:

        def ids(**kwargs: object) -> list[str]:
            return [e.id for e in uow.executions.history(ExecutionFilter(**kwargs))]  # type: ignore[arg-type]

        assert ids() == ["h5", "h4", "h3", "h2", "h1", "h0"]
        assert ids(pipeline_id=P1) == ["h4", "h2", "h0"]
        assert ids(pipeline_id=P2) == ["h5", "h3", "h1"]
        assert ids(status=ExecutionStatus.FAILED) == ["h2", "h1"]
        assert ids(status=ExecutionStatus.RUNNING, pipeline_id=P2) == ["h5"]
        assert ids(since=at(120)) == ["h5", "h4", "h3", "h2"]
        assert ids(since=at(121)) == ["h5", "h4", "h3"]
        assert ids(limit=2) == ["h5", "h4"]
        assert ids(pipeline_id=P1, limit=2) == ["h4", "h2"]
        assert ids(pipeline_id=P1, status=ExecutionStatus.SUCCEEDED, since=at(1)) == []
        assert ids(pipeline_id="dev:nothing-to-nowhere") == []

        (failed,) = uow.executions.history(ExecutionFilter(pipeline_id=P1, status=ExecutionStatus.FAILED))
        full = uow.executions.get("h2")
        for name in (
            "id",
            "pipeline_id",
            "status",
            "started_at",
            "ended_at",
            "error",
            "exit_code",
            "version",
        ):
            assert getattr(failed, name) == getattr(full, name)


def test_active(engine):
    made = make_history(engine)
    with SqlUnitOfWork(engine) as uow:
        assert sorted(e.id for e in uow.executions.active()) == ["h4", "h5"]
        assert [e.id for e in uow.executions.active(P1)] == ["h4"]
        assert [e.id for e in uow.executions.active(P2)] == ["h5"]
        assert uow.executions.active("dev:nothing-to-nowhere") == []
    made["h4"].crash("gone", at=at(500))
    save(engine, made["h4"])
    with SqlUnitOfWork(engine) as uow:
        assert [e.id for e in uow.executions.active()] == ["h5"]


def test_last_by_pipeline(engine):
    make_history(engine)
    with SqlUnitOfWork(engine) as uow:
        last = uow.executions.last_by_pipeline()
        assert {pipeline: e.id for pipeline, e in last.items()} == {P1: "h4", P2: "h5"}
        assert last[P1].status is ExecutionStatus.RUNNING
        assert uow.executions.last_success_by_pipeline() == {P1: at(2), P2: at(182)}


def test_last_by_pipeline_empty_store(engine):
    with SqlUnitOfWork(engine) as uow:
        assert uow.executions.last_by_pipeline() == {}
        assert uow.executions.history(ExecutionFilter()) == []
        assert uow.executions.active() == []


def test_stream_metrics(engine):
    first = start("m1", started=at(0))
    first.record_stream(StreamResult("customers", 100, StreamStatus.SUCCEEDED, Duration(1.5), 5), at=at(1))
    first.record_stream(StreamResult("orders", 7, StreamStatus.SUCCEEDED, Duration(0.25)), at=at(1))
    first.succeed(at=at(2))
    second = start("m2", started=at(10))
    second.record_stream(StreamResult("customers", 3, StreamStatus.FAILED), at=at(11))
    second.fail("boom", at=at(12))
    other = start("m3", pipeline_id=P2, started=at(20))
    other.record_stream(StreamResult("customers", 999, StreamStatus.SUCCEEDED), at=at(21))
    save(engine, first, second, other)

    with SqlUnitOfWork(engine) as uow:
        metrics = uow.executions.stream_metrics(P1)
        assert [(started, eid, status, r.stream) for started, eid, status, r in metrics] == [
            (at(10), "m2", "FAILED", "customers"),
            (at(0), "m1", "SUCCEEDED", "customers"),
            (at(0), "m1", "SUCCEEDED", "orders"),
        ]
        assert metrics[0][3] == StreamResult("customers", 3, StreamStatus.FAILED, None, None, at(11))
        assert metrics[1][3] == StreamResult(
            "customers", 100, StreamStatus.SUCCEEDED, Duration(1.5), 5, at(1)
        )
        assert metrics[2][3] == StreamResult("orders", 7, StreamStatus.SUCCEEDED, Duration(0.25), None, at(1))

        only_customers = uow.executions.stream_metrics(P1, stream="customers")
        assert [(eid, r.records) for _, eid, _, r in only_customers] == [("m2", 3), ("m1", 100)]
        assert [eid for _, eid, _, _ in uow.executions.stream_metrics(P1, limit=1)] == ["m2"]
        assert [r.records for _, _, _, r in uow.executions.stream_metrics(P2)] == [999]
        assert uow.executions.stream_metrics("dev:nothing-to-nowhere") == []


# --------------------------------------------------------------------------------------------------
# Events and rows share one transaction


def count_rows(engine: sa.Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (executions, stream_results, events)
        )


def test_rolled_back_unit_of_work_leaves_neither_rows_nor_events(engine):
    execution = start("exec-1")
    execution.record_stream(StreamResult("customers", 1, StreamStatus.SUCCEEDED), at=at(1))
    with SqlUnitOfWork(engine) as uow:
        uow.executions.save(execution)
        # Inside the transaction both are there...
        assert uow.events.count() == 2
        assert uow.executions.get("exec-1").results["customers"].records == 1
        # ...and nobody else sees them yet.
        assert count_rows(engine) == (0, 0, 0)
    # Leaving without commit rolls back.
    assert count_rows(engine) == (0, 0, 0)

    with SqlUnitOfWork(engine) as uow:
        uow.executions.save(start("exec-2"))
        uow.rollback()
        assert uow.events.count() == 0
        with pytest.raises(NotFound):
            uow.executions.get("exec-2")
        # The unit of work is usable after a rollback.
        uow.executions.save(start("exec-3"))
        uow.commit()
    assert count_rows(engine) == (1, 0, 1)


def test_exception_inside_unit_of_work_rolls_back(engine):
    def fail_midway() -> None:
        with SqlUnitOfWork(engine) as uow:
            uow.executions.save(start("exec-1"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_midway()
    assert count_rows(engine) == (0, 0, 0)


def test_commit_makes_rows_and_events_durable_together(engine):
    execution = start("exec-1")
    execution.record_stream(StreamResult("customers", 1, StreamStatus.SUCCEEDED), at=at(1))
    execution.succeed(at=at(2))
    save(engine, execution)
    assert count_rows(engine) == (1, 1, 3)
    with SqlUnitOfWork(engine) as uow:
        stored = uow.events.read("execution-exec-1")
    assert [type(e).__name__ for e in stored] == ["ExecutionStarted", "StreamSynced", "ExecutionSucceeded"]
    assert isinstance(stored[0], ExecutionStarted)
    assert stored[0].streams == ("customers", "orders")
    assert isinstance(stored[1], StreamSynced)
    assert stored[1].at == at(1)


# --------------------------------------------------------------------------------------------------
# Replay


def test_replay_all_rebuilds_every_execution(engine):
    made = make_history(engine)
    cancelled = full_life("c1")
    cancelled.record_stream(
        StreamResult("orders", 3, StreamStatus.SUCCEEDED, Duration(0.125), {"replication_key_value": 3}),
        at=at(5),
    )
    cancelled.cancel(at=at(6), reason="stopped by bob", state_after=ref(orders=3))
    crashed = full_life("x1")
    crashed.crash("runner died", at=at(7))
    succeeded = full_life("s1")
    succeeded.record_stream(StreamResult("customers", 0, StreamStatus.SUCCEEDED, Duration(0)), at=at(8))
    succeeded.succeed(at=at(9), state_after=ref(customers="2024-02-01T00:00:00+00:00"), warnings=["w"])
    save(engine, cancelled, crashed, succeeded)
    # A state event stream must not be taken for an execution.
    with SqlUnitOfWork(engine) as uow:
        uow.snapshots.add(
            P1, SingerState.from_payload(singer(customers="x")), reason=SnapshotReason.MANUAL, at=T0
        )
        uow.commit()

    ids = [*made, "c1", "x1", "s1"]
    with SqlUnitOfWork(engine) as uow:
        originals = {eid: uow.executions.get(eid) for eid in ids}
    events_before = count_rows(engine)[2]

    with SqlUnitOfWork(engine) as uow:
        uow.executions.connection.execute(stream_results.delete())
        uow.executions.connection.execute(executions.delete())
        uow.commit()
    assert count_rows(engine)[:2] == (0, 0)

    with SqlUnitOfWork(engine) as uow:
        assert uow.executions.replay_all() == len(ids)
        uow.commit()

    assert count_rows(engine)[2] == events_before  # the log is only read
    with SqlUnitOfWork(engine) as uow:
        for eid in ids:
            assert_same_execution(uow.executions.get(eid), originals[eid])
        assert uow.executions.get("c1").error == "stopped by bob"
        assert uow.executions.get("s1").results["customers"].duration == Duration(0)


def test_replay_all_overwrites_drifted_rows(engine):
    execution = full_life()
    execution.record_stream(StreamResult("customers", 10, StreamStatus.SUCCEEDED), at=at(1))
    execution.succeed(at=at(2))
    save(engine, execution)
    with SqlUnitOfWork(engine) as uow:
        original = uow.executions.get("exec-1")
        conn = uow.executions.connection
        conn.execute(executions.update().values(status="CRASHED", error="tampered", runner_pid=1))
        conn.execute(stream_results.update().values(records=-5))
        assert uow.executions.replay_all() == 1
        assert_same_execution(uow.executions.get("exec-1"), original)


# --------------------------------------------------------------------------------------------------
# Concurrency


def test_two_writers_on_one_stream_first_commit_wins(engine):
    save(engine, start("exec-1"))
    with SqlUnitOfWork(engine) as first, SqlUnitOfWork(engine) as second:
        mine = first.executions.get("exec-1")
        theirs = second.executions.get("exec-1")
        assert mine.version == theirs.version == 1

        mine.record_stream(StreamResult("customers", 11, StreamStatus.SUCCEEDED), at=at(1))
        theirs.record_stream(StreamResult("orders", 22, StreamStatus.SUCCEEDED), at=at(1))
        first.executions.save(mine)
        first.commit()

        with pytest.raises(ConcurrencyConflict) as info:
            second.executions.save(theirs)
        assert "execution-exec-1" in str(info.value)
        # The losing unit of work is still usable: it can read what the winner wrote.
        reloaded = second.executions.get("exec-1")
        assert set(reloaded.results) == {"customers"}
        second.commit()

    with SqlUnitOfWork(engine) as uow:
        stored = uow.executions.get("exec-1")
        assert stored.version == 2
        assert set(stored.results) == {"customers"}
        assert stored.results["customers"].records == 11
        assert [type(e).__name__ for e in uow.events.read("execution-exec-1")] == [
            "ExecutionStarted",
            "StreamSynced",
        ]
        assert uow.events.read("execution-exec-1")[1].stream == "customers"


def test_second_writer_waits_for_the_first_then_conflicts(engine):
    save(engine, start("exec-1"))
    outcome: dict[str, BaseException | None] = {}
    with SqlUnitOfWork(engine) as first, SqlUnitOfWork(engine) as second:
        mine = first.executions.get("exec-1")
        theirs = second.executions.get("exec-1")
        mine.succeed(at=at(1))
        theirs.fail("late", at=at(1))
        first.executions.save(mine)  # not committed yet

        def write() -> None:
            try:
                second.executions.save(theirs)
                outcome["error"] = None
            except BaseException as exc:
                outcome["error"] = exc

        writer = threading.Thread(target=write)
        writer.start()
        writer.join(BLOCK_SECONDS)
        assert writer.is_alive(), "the second writer should wait for the first's uncommitted append"
        first.commit()
        writer.join(10)
        assert not writer.is_alive()
    assert isinstance(outcome["error"], ConcurrencyConflict)
    with SqlUnitOfWork(engine) as uow:
        stored = uow.executions.get("exec-1")
    assert stored.status is ExecutionStatus.SUCCEEDED
    assert stored.error is None
    assert stored.version == 2


def test_second_writer_proceeds_when_the_first_rolls_back(engine):
    save(engine, start("exec-1"))
    outcome: dict[str, BaseException | None] = {}
    with SqlUnitOfWork(engine) as first, SqlUnitOfWork(engine) as second:
        mine = first.executions.get("exec-1")
        theirs = second.executions.get("exec-1")
        mine.succeed(at=at(1))
        theirs.fail("second", at=at(1))
        first.executions.save(mine)

        def write() -> None:
            try:
                second.executions.save(theirs)
                second.commit()
                outcome["error"] = None
            except BaseException as exc:
                outcome["error"] = exc

        writer = threading.Thread(target=write)
        writer.start()
        writer.join(BLOCK_SECONDS)
        assert writer.is_alive()
        first.rollback()
        writer.join(10)
    assert outcome["error"] is None
    with SqlUnitOfWork(engine) as uow:
        stored = uow.executions.get("exec-1")
    assert stored.status is ExecutionStatus.FAILED
    assert stored.error == "second"


def a_pipeline(state_id: str = P1) -> Pipeline:
    sid = StateId.parse(state_id)
    return Pipeline(sid, sid.extractor, sid.loader, streams=("customers", "orders"))


def test_pipeline_lock_serialises_two_units_of_work(engine):
    outcome: dict[str, object] = {}
    with SqlUnitOfWork(engine) as first, SqlUnitOfWork(engine) as second:
        locked = first.pipelines.lock(a_pipeline())
        assert locked.active == []
        execution = locked.start_execution("exec-1", at=T0)
        first.executions.save(execution)

        def contend() -> None:
            try:
                theirs = second.pipelines.lock(a_pipeline())
                outcome["active"] = [e.id for e in theirs.active]
                try:
                    theirs.start_execution("exec-2", at=at(1))
                    outcome["started"] = True
                except ExecutionAlreadyRunning as exc:
                    outcome["started"] = exc
            except BaseException as exc:
                outcome["error"] = exc

        contender = threading.Thread(target=contend)
        contender.start()
        contender.join(BLOCK_SECONDS)
        assert contender.is_alive(), "the second lock() should wait for the first transaction"
        assert outcome == {}
        first.commit()
        contender.join(10)
        assert not contender.is_alive()
    assert "error" not in outcome, outcome.get("error")
    # Once the first committed, the second saw its RUNNING execution and refused to start.
    assert outcome["active"] == ["exec-1"]
    assert isinstance(outcome["started"], ExecutionAlreadyRunning)
    assert "exec-1" in str(outcome["started"])


def test_pipeline_lock_times_out_with_lock_timeout(engine):
    with SqlUnitOfWork(engine) as first, SqlUnitOfWork(engine) as second:
        first.pipelines.lock(a_pipeline())
        second.pipelines.connection.execute(sa.text("SET LOCAL lock_timeout = '100ms'"))
        began = time.monotonic()
        with pytest.raises(OperationalError, match="lock"):
            second.pipelines.lock(a_pipeline())
        assert time.monotonic() - began < 5


def test_pipeline_locks_of_different_pipelines_do_not_block(engine):
    with SqlUnitOfWork(engine) as first, SqlUnitOfWork(engine) as second:
        first.pipelines.lock(a_pipeline(P1))
        second.pipelines.connection.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
        other = second.pipelines.lock(a_pipeline(P2))
        assert other.active == []


def test_pipeline_lock_loads_active_executions_and_registers(engine):
    make_history(engine)
    with SqlUnitOfWork(engine) as uow:
        locked = uow.pipelines.lock(a_pipeline(P1))
        assert [e.id for e in locked.active] == ["h4"]
        with pytest.raises(ExecutionAlreadyRunning):
            locked.start_execution("new", at=at(1000))
        uow.commit()
    with SqlUnitOfWork(engine) as uow:
        (registered,) = uow.pipelines.all()
    assert registered.id == P1
    assert registered.extractor == "tap-shopsim"
    assert registered.loader == "target-jsonlines"
    assert registered.streams == ("customers", "orders")
    assert registered.active == []


# --------------------------------------------------------------------------------------------------
# Snapshots


def test_snapshots(engine):
    s1 = SingerState.from_payload(singer(customers="2024-01-01T00:00:00Z"))
    s2 = SingerState.from_payload(singer(customers="2024-01-02T00:00:00Z"))
    s3 = SingerState.from_payload(singer(orders=5))
    with SqlUnitOfWork(engine) as uow:
        a = uow.snapshots.add(P1, s1, reason=SnapshotReason.PRE_RUN, at=at(0), execution_id="exec-1")
        b = uow.snapshots.add(P1, s2, reason=SnapshotReason.POST_RUN, at=at(10), label="good")
        c = uow.snapshots.add(P2, s3, reason=SnapshotReason.MANUAL, at=at(5), label="good")
        # Same taken_at as b: the higher id is the newer.
        d = uow.snapshots.add(P1, s1, reason=SnapshotReason.PRE_RESTORE, at=at(10))
        uow.commit()

    assert a.id < b.id < c.id < d.id
    assert a == StateSnapshot(a.id, P1, at(0), SnapshotReason.PRE_RUN, s1.checksum, s1, None, "exec-1")
    assert b.checksum == s2.checksum != s1.checksum

    with SqlUnitOfWork(engine) as uow:
        snaps = uow.snapshots
        assert snaps.get(a.id) == a
        assert snaps.get(c.id) == c
        assert snaps.get(a.id).state.bookmark_value("customers") == "2024-01-01T00:00:00Z"
        with pytest.raises(NotFound, match=str(d.id + 1000)):
            snaps.get(d.id + 1000)

        assert snaps.latest(P1) == d
        assert snaps.latest(P2) == c
        assert snaps.latest("dev:nothing-to-nowhere") is None

        assert [s.id for s in snaps.list()] == [d.id, b.id, c.id, a.id]
        assert [s.id for s in snaps.list(P1)] == [d.id, b.id, a.id]
        assert [s.id for s in snaps.list(P1, since=at(5))] == [d.id, b.id]
        assert [s.id for s in snaps.list(since=at(5))] == [d.id, b.id, c.id]
        assert [s.id for s in snaps.list(label="good")] == [b.id, c.id]
        assert [s.id for s in snaps.list(P1, label="good")] == [b.id]
        assert [s.id for s in snaps.list(limit=2)] == [d.id, b.id]
        assert snaps.list("dev:nothing-to-nowhere") == []

        assert snaps.latest_checksums() == {P1: s1.checksum, P2: s3.checksum}
        assert snaps.latest_checksums([P2]) == {P2: s3.checksum}
        assert snaps.latest_checksums(["dev:nothing-to-nowhere"]) == {}

        assert snaps.delete([]) == 0
        assert snaps.delete([d.id, c.id, 999_999]) == 2
        uow.commit()

    with SqlUnitOfWork(engine) as uow:
        assert [s.id for s in uow.snapshots.list()] == [b.id, a.id]
        assert uow.snapshots.latest(P1) == b
        assert uow.snapshots.latest_checksums() == {P1: s2.checksum}


def test_snapshot_add_appends_state_snapshot_taken(engine):
    state = SingerState.from_payload(singer(customers="2024-01-01T00:00:00Z"))
    with SqlUnitOfWork(engine) as uow:
        first = uow.snapshots.add(P1, state, reason=SnapshotReason.MANUAL, at=at(1), label="mine")
        second = uow.snapshots.add(P1, state, reason=SnapshotReason.IMPORT, at=at(2))
        other = uow.snapshots.add(P2, state, reason=SnapshotReason.PRE_RUN, at=at(3))
        uow.commit()
    with SqlUnitOfWork(engine) as uow:
        p1_events = uow.events.read(f"state-{P1}")
        p2_events = uow.events.read(f"state-{P2}")
        assert uow.snapshots.stream_version(f"state-{P1}") == 2
        assert uow.snapshots.stream_version(f"state-{P2}") == 1
        assert uow.snapshots.stream_version("state-nothing") == 0
    assert p1_events == [
        StateSnapshotTaken(
            P1, at(1), snapshot_id=first.id, reason="manual", checksum=state.checksum, label="mine"
        ),
        StateSnapshotTaken(P1, at(2), snapshot_id=second.id, reason="import", checksum=state.checksum),
    ]
    assert p2_events == [
        StateSnapshotTaken(P2, at(3), snapshot_id=other.id, reason="pre-run", checksum=state.checksum)
    ]
    assert all(e.stream_id == f"state-{P1}" for e in p1_events)


def test_rolled_back_snapshot_leaves_no_event(engine):
    with SqlUnitOfWork(engine) as uow:
        uow.snapshots.add(P1, SingerState.empty(), reason=SnapshotReason.MANUAL, at=T0)
        assert uow.events.count() == 1
    with SqlUnitOfWork(engine) as uow:
        assert uow.events.count() == 0
        assert uow.snapshots.list() == []


# --------------------------------------------------------------------------------------------------
# Migrations


def test_migrations_are_idempotent(store_url):
    engine = database.ready_engine(store_url)
    head = database.head_revision()
    assert head is not None
    assert database.current_revision(engine) == head
    database.migrate(engine)
    database.migrate(engine)
    assert database.current_revision(engine) == head
    assert database.ready_engine(store_url) is engine
    # The schema still works after re-migrating.
    save(engine, start("exec-1"))
    with SqlUnitOfWork(engine) as uow:
        assert uow.executions.get("exec-1").version == 1


def test_concurrent_migrations_serialise(store_url):
    engine = database.ready_engine(store_url)
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            database.migrate(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert database.current_revision(engine) == database.head_revision()


def test_check_store_reports_migrated(store_url):
    health = database.check_store(store_url)
    assert health.reachable
    assert health.error is None
    assert health.migrated
    assert health.current_revision == health.head_revision == database.head_revision()
