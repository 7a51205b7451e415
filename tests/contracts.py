"""Contract tests of the ports, run against each adapter (the fake and the real one).

A subclass says how to make its adapter (``make_unit_of_work`` / ``make_state_store``); every test
here must hold for both, so a fake cannot drift from what the application relies on.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from flx_meltano.application.ports import StateStore, UnitOfWork
from flx_meltano.domain.errors import ExecutionAlreadyRunning
from flx_meltano.domain.execution import StreamResult
from flx_meltano.domain.history import ExecutionFilter
from flx_meltano.domain.identifiers import StateId
from flx_meltano.domain.logs import LogKept, LogLine, LogSize
from flx_meltano.domain.pipeline import Pipeline
from flx_meltano.domain.snapshots import SnapshotReason, StateRef
from flx_meltano.domain.state import SingerState
from flx_meltano.domain.values import ExecutionStatus, StreamStatus, Trigger
from flx_meltano.persistence.errors import ConcurrencyConflict, NotFound

T0 = datetime(2026, 1, 1, tzinfo=UTC)
P1 = "dev:tap-a-to-target-b"
P2 = "dev:tap-c-to-target-d"


def state(value: str) -> SingerState:
    return SingerState.from_payload(
        {"singer_state": {"bookmarks": {"orders": {"replication_key_value": value}}}}
    )


def line(number: int) -> LogLine:
    """A log line with a time to the millisecond (what the store keeps of it)."""
    at = T0 + timedelta(seconds=number, milliseconds=250)
    return LogLine(at, "info", "tap-a" if number % 2 else None, f"line {number}: ünïcode ✓")


def pipeline(state_id: str = P1) -> Pipeline:
    parsed = StateId.parse(state_id)
    return Pipeline(parsed, parsed.extractor, parsed.loader, streams=("orders",))


class UnitOfWorkContract:
    """What the application relies on from a UnitOfWork and its repositories."""

    @pytest.fixture
    def make_unit_of_work(self) -> Callable[[], UnitOfWork]:
        raise NotImplementedError

    def start(self, uow: UnitOfWork, state_id: str = P1, execution_id: str = "e-1", at: datetime = T0):
        locked = uow.pipelines.lock(pipeline(state_id))
        execution = locked.start_execution(
            execution_id, at=at, trigger=Trigger.CLI, streams=("orders",), lease_seconds=30.0
        )
        uow.executions.save(execution)
        return execution

    def test_what_is_not_committed_is_not_kept(self, make_unit_of_work):
        with make_unit_of_work() as uow:
            self.start(uow)
        with make_unit_of_work() as uow:
            assert uow.executions.active() == []
            with pytest.raises(NotFound):
                uow.executions.get("e-1")

    def test_rollback_discards_since_the_last_commit(self, make_unit_of_work):
        with make_unit_of_work() as uow:
            self.start(uow, execution_id="kept")
            uow.commit()
            self.start(uow, P2, execution_id="dropped")
            uow.rollback()
            assert [e.id for e in uow.executions.active()] == ["kept"]

    def test_an_execution_reads_back_through_its_life(self, make_unit_of_work):
        with make_unit_of_work() as uow:
            start_position = uow.executions.last_position()
            before = uow.snapshots.add(P1, state("w"), reason=SnapshotReason.PRE_RUN, at=T0)
            locked = uow.pipelines.lock(pipeline())
            execution = locked.start_execution(
                "e-1", at=T0, trigger=Trigger.CLI, streams=("orders",), state_before=before.ref
            )
            uow.executions.save(execution)
            result = StreamResult("orders", 7, StreamStatus.SUCCEEDED, finished_at=T0)
            execution.record_stream(result, at=T0 + timedelta(seconds=1))
            after = uow.snapshots.add(
                P1, state("x"), reason=SnapshotReason.POST_RUN, at=T0, execution_id="e-1"
            )
            execution.succeed(at=T0 + timedelta(seconds=2), state_after=after.ref)
            uow.executions.save(execution)
            uow.commit()
        with make_unit_of_work() as uow:
            stored = uow.executions.get("e-1")
            assert uow.executions.find("e-") == stored
            assert uow.executions.last_success_by_pipeline() == {P1: T0 + timedelta(seconds=2)}
            metrics = uow.executions.stream_metrics(P1)
            end_position = uow.executions.last_position()
            closed = uow.executions.closed_after(start_position)
            assert uow.executions.closed_after(end_position) == []
            referenced = uow.snapshots.get(stored.state_after.snapshot_id).state
        assert stored.status is ExecutionStatus.SUCCEEDED
        assert stored.trigger is Trigger.CLI
        assert stored.results["orders"].records == 7
        # States by reference: the snapshots' ids and checksums, the state read through them.
        assert (stored.state_before, stored.state_after) == (before.ref, after.ref)
        assert stored.state_after == StateRef(after.id, state("x").checksum)
        assert referenced == state("x")
        assert [(m[1], m[2], m[3].records) for m in metrics] == [("e-1", "SUCCEEDED", 7)]
        # The closing event, once, at a position of the event log after where it started.
        assert [(e.id, e.status) for _, e in closed] == [("e-1", ExecutionStatus.SUCCEEDED)]
        [(position, _)] = closed
        assert start_position < position <= end_position
        assert closed[0][1].results["orders"].records == 7

    def test_the_lease_is_renewed_by_heartbeat_alone_on_the_store_clock(self, make_unit_of_work):
        with make_unit_of_work() as uow:
            self.start(uow)
            uow.commit()
            earlier = uow.executions.now()
            uow.commit()  # a new transaction: the store's clock has moved on
        with make_unit_of_work() as uow:
            assert earlier.tzinfo is not None
            assert uow.executions.heartbeat("e-1") is True
            assert uow.executions.heartbeat("no-such-execution") is False
            uow.commit()
            later = uow.executions.now()
        with make_unit_of_work() as uow:
            execution = uow.executions.get("e-1")
            beat = execution.heartbeat_at
            assert beat is not None
            assert earlier <= beat <= later
            assert execution.lease_seconds == 30.0
            # A save (a stream confirmed) leaves the heartbeat as it is, even from an older copy.
            execution.heartbeat_at = T0
            execution.record_stream(StreamResult("orders", 1, StreamStatus.SUCCEEDED), at=T0)
            uow.executions.save(execution)
            uow.commit()
            assert uow.executions.get("e-1").heartbeat_at == beat
            execution.fail("boom", at=T0 + timedelta(seconds=1))
            uow.executions.save(execution)
            assert uow.executions.heartbeat("e-1") is False  # closed: nothing to keep alive
            uow.commit()
            assert uow.executions.get("e-1").heartbeat_at == beat

    def test_concurrent_units_keep_each_others_rows_and_conflict_on_one_stream(self, make_unit_of_work):
        with make_unit_of_work() as uow:
            self.start(uow)
            uow.commit()
        with make_unit_of_work() as run, make_unit_of_work() as beat, make_unit_of_work() as other:
            execution = run.executions.get("e-1")
            same = other.executions.get("e-1")
            assert beat.executions.heartbeat("e-1") is True  # the heartbeat thread's own unit
            beat.commit()
            execution.record_stream(StreamResult("orders", 3, StreamStatus.SUCCEEDED), at=T0)
            run.executions.save(execution)
            run.commit()
            # A second writer of the same execution from the same version conflicts.
            same.fail("boom", at=T0)

            def save_and_commit() -> None:  # a database refuses at the save, a fake at the commit
                other.executions.save(same)
                other.commit()

            with pytest.raises(ConcurrencyConflict):
                save_and_commit()
        with make_unit_of_work() as uow:
            stored = uow.executions.get("e-1")
            assert stored.status is ExecutionStatus.RUNNING
            assert stored.results["orders"].records == 3
            assert stored.heartbeat_at is not None
            assert stored.heartbeat_at != T0  # the beat stands, though the save came after it

    def test_covering_and_newest_state_refs(self, make_unit_of_work):
        with make_unit_of_work() as uow:
            old = uow.snapshots.add(P1, state("a"), reason=SnapshotReason.POST_RUN, at=T0)
            new = uow.snapshots.add(P1, state("b"), reason=SnapshotReason.POST_RUN, at=T0)
            first = self.start(uow, execution_id="first", at=T0)
            first.succeed(at=T0 + timedelta(minutes=1), state_after=old.ref)
            uow.executions.save(first)
            second = self.start(uow, execution_id="second", at=T0 + timedelta(minutes=2))
            second.succeed(at=T0 + timedelta(minutes=3), state_after=new.ref)
            uow.executions.save(second)
            self.start(uow, execution_id="running", at=T0 + timedelta(minutes=4))  # not finished
            self.start(uow, P2, execution_id="other", at=T0)
            uow.commit()
            # The newest finished execution of each pipeline: P1's second (P2's runs, none closed).
            assert uow.executions.newest_state_refs() == {new.id}
            at = T0 + timedelta(seconds=30)
            assert uow.executions.covering(P1, at, exclude_trigger=str(Trigger.MELTANO)) == "first"
            assert uow.executions.covering(P1, at, exclude_trigger=str(Trigger.CLI)) is None
            assert uow.executions.covering(P1, T0 + timedelta(minutes=90), exclude_trigger="") == "running"
            assert uow.executions.covering(P1, T0 - timedelta(seconds=1), exclude_trigger="") is None

    def test_unknown_and_ambiguous_ids_are_not_found(self, make_unit_of_work):
        with make_unit_of_work() as uow:
            self.start(uow, execution_id="abc-1")
            self.start(uow, P2, execution_id="abc-2")
            with pytest.raises(NotFound, match="no execution 'zzz'"):
                uow.executions.find("zzz")
            with pytest.raises(NotFound, match="ambiguous"):
                uow.executions.find("abc")
            with pytest.raises(NotFound):
                uow.executions.get("abc")

    def test_history_is_newest_first_and_filtered(self, make_unit_of_work):
        with make_unit_of_work() as uow:
            for number in range(3):
                execution = self.start(uow, execution_id=f"e-{number}", at=T0 + timedelta(minutes=number))
                execution.fail("boom", at=T0 + timedelta(minutes=number, seconds=1))
                uow.executions.save(execution)
            other = self.start(uow, P2, execution_id="other", at=T0 + timedelta(hours=1))
            uow.commit()
            assert [e.id for e in uow.executions.history(ExecutionFilter())] == ["other", "e-2", "e-1", "e-0"]
            assert [e.id for e in uow.executions.history_of(P1, limit=2)] == ["e-2", "e-1"]
            failed = uow.executions.history(ExecutionFilter(status=ExecutionStatus.FAILED))
            assert [e.id for e in failed] == ["e-2", "e-1", "e-0"]
            assert [e.id for e in uow.executions.active()] == [other.id]
            assert {p: e.id for p, e in uow.executions.last_by_pipeline().items()} == {P1: "e-2", P2: "other"}

    def test_lock_loads_the_active_executions_so_a_second_start_is_refused(self, make_unit_of_work):
        with make_unit_of_work() as uow:
            self.start(uow)
            uow.commit()
        with make_unit_of_work() as uow:
            locked = uow.pipelines.lock(pipeline())
            assert [e.id for e in locked.active] == ["e-1"]
            with pytest.raises(ExecutionAlreadyRunning):
                locked.start_execution("e-2", at=T0)
            assert [p.id for p in uow.pipelines.all()] == [P1]

    def test_snapshots_newest_first_with_labels_checksums_and_deletes(self, make_unit_of_work):
        with make_unit_of_work() as uow:
            first = uow.snapshots.add(P1, state("a"), reason=SnapshotReason.PRE_RUN, at=T0)
            taken = uow.snapshots.add_many(
                {P1: state("b"), P2: state("c")},
                reason=SnapshotReason.MANUAL,
                at=T0 + timedelta(1),
                label="v1",
            )
            uow.commit()
        with make_unit_of_work() as uow:
            assert [s.state_id for s in taken] == [P1, P2]
            assert uow.snapshots.get(first.id).state == state("a")
            latest = uow.snapshots.latest(P1)
            assert latest is not None
            assert latest.state == state("b")
            assert latest.label == "v1"
            assert uow.snapshots.latest_checksums() == {P1: state("b").checksum, P2: state("c").checksum}
            assert uow.snapshots.latest_checksums([P2]) == {P2: state("c").checksum}
            assert [s.label for s in uow.snapshots.list(P1)] == ["v1", None]
            assert [s.state_id for s in uow.snapshots.list(label="v1")] == [P2, P1]  # same time: id desc
            # By reference: the newest snapshot's id and checksum.
            assert uow.snapshots.latest_ref(P1) == latest.ref == StateRef(taken[0].id, state("b").checksum)
            assert uow.snapshots.latest_ref("dev:none-to-nothing") is None
            assert uow.snapshots.delete([first.id]) == 1
            with pytest.raises(NotFound):
                uow.snapshots.get(first.id)
            assert uow.snapshots.latest("dev:none-to-nothing") is None

    def test_a_log_is_kept_in_chunks_with_a_header_of_what_was_dropped(self, make_unit_of_work):
        lines = [line(n) for n in range(5)]
        with make_unit_of_work() as uow:
            self.start(uow)
            assert uow.logs.kept("e-1") is None  # no header until something is dropped or completed
            assert uow.logs.size("e-1") == LogSize(0, 0, 0)
            raw = [uow.logs.append("e-1", 1, lines[:2]), uow.logs.append("e-1", 2, lines[2:4])]
            raw.append(uow.logs.append("e-1", 3, lines[4:]))
            uow.commit()
        with make_unit_of_work() as uow:
            assert [(c.seq, c.lines) for c in uow.logs.chunks("e-1")] == [
                (1, lines[:2]),
                (2, lines[2:4]),
                (3, lines[4:]),
            ]
            assert [c.seq for c in uow.logs.chunks("e-1", after_seq=2)] == [3]
            size = uow.logs.size("e-1")
            assert (size.lines, size.raw_bytes) == (5, sum(raw))
            assert size.stored_bytes > 0
            assert uow.logs.kept("e-1") is None
            uow.logs.drop("e-1", [1], 2, raw[0])
            uow.logs.drop("e-1", [2], 2, raw[1])  # drops add up
            uow.logs.complete("e-1")
            uow.commit()
        with make_unit_of_work() as uow:
            assert uow.logs.kept("e-1") == LogKept(4, raw[0] + raw[1], complete=True, pruned_at=None)
            assert [(c.seq, c.lines) for c in uow.logs.chunks("e-1")] == [(3, lines[4:])]
            assert uow.logs.size("e-1").lines == 1

    def test_pruning_logs_keeps_a_header_saying_when(self, make_unit_of_work):
        with make_unit_of_work() as uow:
            for number, execution_id in enumerate(("old", "new", "running")):
                execution = self.start(uow, f"dev:tap-{number}-to-target-x", execution_id, at=T0)
                uow.logs.append(execution_id, 1, [line(0), line(1)])
                if execution_id != "running":
                    execution.fail("boom", at=T0 + timedelta(days=1 if execution_id == "old" else 9))
                    uow.executions.save(execution)
            uow.commit()
            pruned_at = T0 + timedelta(days=10)
            assert uow.logs.prune(T0 + timedelta(days=5), at=pruned_at) == ["old"]
            uow.commit()
        with make_unit_of_work() as uow:
            assert uow.logs.chunks("old") == []
            assert uow.logs.size("old") == LogSize(0, 0, 0)
            assert uow.logs.kept("old") == LogKept(pruned_at=pruned_at)
            assert [len(uow.logs.chunks(i)[0].lines) for i in ("new", "running")] == [2, 2]
            assert uow.logs.kept("new") is None
            assert uow.logs.prune(T0 + timedelta(days=5), at=pruned_at) == []  # nothing left to prune

    def test_a_meltano_run_is_claimed_once(self, make_unit_of_work):
        def claim(uow, run_id, row_id, *, source="db-a", by_flx=False, status="RUNNING"):
            return uow.meltano_runs.claim(
                run_id=run_id,
                source=source,
                row_id=row_id,
                state_id=P1,
                execution_id=f"e-{run_id}",
                launched_by_flx=by_flx,
                meltano_status=status,
            )

        with make_unit_of_work() as uow:
            assert uow.meltano_runs.last_row_id("db-a") == 0
            assert claim(uow, "r1", 4) is True
            assert claim(uow, "r2", 7, by_flx=True) is True
            assert claim(uow, "r3", 2, source="db-b", status="SUCCESS") is True
            uow.commit()
        with make_unit_of_work() as uow:
            # Claimed already (by this or an earlier sync): False, and the first claim stands.
            assert claim(uow, "r1", 99, source="db-b", status="SUCCESS") is False
            uow.commit()
            assert (uow.meltano_runs.last_row_id("db-a"), uow.meltano_runs.last_row_id("db-b")) == (7, 2)
            # Followed: bare runs (not flx's own) still RUNNING when read, by run id.
            assert uow.meltano_runs.followed("db-a") == {"r1": "e-r1"}
            assert uow.meltano_runs.followed("db-b") == {}
            uow.meltano_runs.set_status("r1", "SUCCESS")
            uow.commit()
        with make_unit_of_work() as uow:
            assert uow.meltano_runs.followed("db-a") == {}


class StateStoreContract:
    """What the application relies on from a StateStore."""

    @pytest.fixture
    def make_state_store(self) -> Callable[[], StateStore]:
        raise NotImplementedError

    def test_set_get_clear(self, make_state_store):
        store = make_state_store()
        assert store.get(P1) is None
        store.set(P1, state("a"))
        assert store.get(P1) == state("a")
        store.set(StateId.parse(P1), state("b"))
        assert store.get(StateId.parse(P1)) == state("b")
        store.clear(P1)
        assert store.get(P1) is None

    def test_state_ids_and_get_many_match_a_glob(self, make_state_store):
        store = make_state_store()
        store.set(P1, state("a"))
        store.set(P2, state("c"))
        store.set("prod:tap-a-to-target-b", state("p"))
        assert store.state_ids("dev:*") == [P1, P2]
        assert store.state_ids("dev:tap-?-to-target-b") == [P1]
        assert store.get_many("dev:*") == {P1: state("a"), P2: state("c")}
        assert isinstance(store.backend_label, str)
        store.close()

    def test_a_state_id_meltano_never_ran_has_no_runs(self, make_state_store):
        store = make_state_store()
        assert store.runs("dev:tap-never-to-target-ran") == []
        assert store.runs("dev:tap-never-to-target-ran", running_only=True) == []
        assert store.run("00000000-0000-4000-8000-000000000000") is None
        assert store.run("not-a-run-id") is None
        store.close()
