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
from flx_meltano.domain.pipeline import Pipeline
from flx_meltano.domain.snapshots import SnapshotReason
from flx_meltano.domain.state import SingerState
from flx_meltano.domain.values import ExecutionStatus, StreamStatus, Trigger
from flx_meltano.persistence.errors import NotFound

T0 = datetime(2026, 1, 1, tzinfo=UTC)
P1 = "dev:tap-a-to-target-b"
P2 = "dev:tap-c-to-target-d"


def state(value: str) -> SingerState:
    return SingerState.from_payload(
        {"singer_state": {"bookmarks": {"orders": {"replication_key_value": value}}}}
    )


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
        execution = locked.start_execution(execution_id, at=at, trigger=Trigger.CLI, streams=("orders",))
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
            execution = self.start(uow)
            result = StreamResult("orders", 7, StreamStatus.SUCCEEDED, finished_at=T0)
            execution.record_stream(result, at=T0 + timedelta(seconds=1))
            execution.succeed(at=T0 + timedelta(seconds=2), state_after=state("x").payload())
            uow.executions.save(execution)
            uow.commit()
        with make_unit_of_work() as uow:
            stored = uow.executions.get("e-1")
            assert uow.executions.find("e-") == stored
            assert uow.executions.last_success_by_pipeline() == {P1: T0 + timedelta(seconds=2)}
            metrics = uow.executions.stream_metrics(P1)
        assert stored.status is ExecutionStatus.SUCCEEDED
        assert stored.trigger is Trigger.CLI
        assert stored.results["orders"].records == 7
        assert stored.state_after == state("x").payload()
        assert [(m[1], m[2], m[3].records) for m in metrics] == [("e-1", "SUCCEEDED", 7)]

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
            assert uow.snapshots.delete([first.id]) == 1
            with pytest.raises(NotFound):
                uow.snapshots.get(first.id)
            assert uow.snapshots.latest("dev:none-to-nothing") is None


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
