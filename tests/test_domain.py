"""Pure unit tests of the domain: identifiers, values, the Pipeline and PipelineExecution aggregates,
events, specifications and Singer state. No database, no Meltano."""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from flx_meltano.domain.errors import (
    DomainError,
    ExecutionAlreadyRunning,
    IllegalTransition,
    InvalidState,
    InvalidStateId,
    UnknownStream,
)
from flx_meltano.domain.events import (
    DomainEvent,
    ExecutionCancelled,
    ExecutionCrashed,
    ExecutionEvent,
    ExecutionFailed,
    ExecutionStarted,
    ExecutionSucceeded,
    StateRestored,
    StateSnapshotTaken,
    StreamSynced,
)
from flx_meltano.domain.execution import PipelineExecution, StreamResult
from flx_meltano.domain.identifiers import StateId
from flx_meltano.domain.pipeline import Pipeline
from flx_meltano.domain.snapshots import StateRef
from flx_meltano.domain.specifications import IsStale, last_success
from flx_meltano.domain.state import (
    BookmarkChange,
    SingerState,
    StreamDiff,
    compare_bookmark,
    diff_states,
)
from flx_meltano.domain.values import Duration, ExecutionStatus, StreamStatus, Trigger

T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
PIPELINE_ID = "dev:tap-shopsim-to-target-jsonlines"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def state(**bookmarks: object) -> SingerState:
    """A SingerState whose streams have the given replication key values."""
    return SingerState.from_payload(
        {
            "singer_state": {
                "bookmarks": {
                    stream: {"replication_key": "updated_at", "replication_key_value": value}
                    for stream, value in bookmarks.items()
                }
            }
        }
    )


def execution_fields(execution: PipelineExecution) -> dict[str, object]:
    """Every field of an execution except the in-memory bookkeeping (pending events, version)."""
    return {
        f.name: getattr(execution, f.name)
        for f in dataclasses.fields(execution)
        if f.name not in ("pending_events", "version")
    }


# --------------------------------------------------------------------------------------------------
# StateId


@pytest.mark.parametrize(
    ("text", "environment", "extractor", "loader", "suffix"),
    [
        ("dev:tap-shopsim-to-target-jsonlines", "dev", "tap-shopsim", "target-jsonlines", None),
        ("prod:tap-a-to-target-b:daily", "prod", "tap-a", "target-b", "daily"),
        ("staging:tap_x.v2-to-target@pg:run-7", "staging", "tap_x.v2", "target@pg", "run-7"),
        # Meltano splits on the last "-to-".
        ("dev:tap-go-to-market-to-target-pg", "dev", "tap-go-to-market", "target-pg", None),
    ],
)
def test_state_id_parse_and_format_round_trip(text, environment, extractor, loader, suffix):
    parsed = StateId.parse(text)
    assert parsed == StateId(environment, extractor, loader, suffix)
    assert str(parsed) == text
    assert StateId.parse(str(parsed)) == parsed


def test_state_id_parse_strips_surrounding_whitespace():
    assert StateId.parse("  dev:tap-a-to-target-b\n") == StateId("dev", "tap-a", "target-b")


def test_state_id_without_suffix_formats_without_trailing_colon():
    assert str(StateId("dev", "tap-a", "target-b")) == "dev:tap-a-to-target-b"
    assert str(StateId("dev", "tap-a", "target-b", "nightly")) == "dev:tap-a-to-target-b:nightly"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "dev",
        "dev:",
        "dev:tap-shopsim",
        "tap-shopsim-to-target-jsonlines",
        ":tap-a-to-target-b",
        "dev:-to-target-b",
        "dev:tap-a-to-",
        "dev:tap-a-to-target-b:",
        "dev:tap-a-to-target-b:x:y",
        "dev:tap a-to-target-b",
        "dev:tap-a-to-target-b:has space",
        "dev/tap-a-to-target-b",
    ],
)
def test_malformed_state_ids_are_rejected_naming_the_text(text):
    with pytest.raises(InvalidStateId) as info:
        StateId.parse(text)
    assert repr(text) in str(info.value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, DomainError)


def test_state_ids_order_and_hash():
    a = StateId.parse("dev:tap-a-to-target-b")
    b = StateId.parse("prod:tap-a-to-target-b")
    assert a < b
    assert len({a, StateId.parse("dev:tap-a-to-target-b"), b}) == 2


# --------------------------------------------------------------------------------------------------
# ExecutionStatus

S = ExecutionStatus
LEGAL = {
    (S.PENDING, S.RUNNING),
    (S.PENDING, S.CANCELLED),
    (S.PENDING, S.FAILED),
    (S.RUNNING, S.SUCCEEDED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.CANCELLED),
    (S.RUNNING, S.CRASHED),
}
TERMINAL = {S.SUCCEEDED, S.FAILED, S.CANCELLED, S.CRASHED}


@pytest.mark.parametrize(("source", "target"), list(itertools.product(S, S)))
def test_every_status_transition(source, target):
    legal = (source, target) in LEGAL
    assert source.can_become(target) is legal
    if legal:
        source.check_transition(target)
    else:
        with pytest.raises(IllegalTransition) as info:
            source.check_transition(target)
        assert str(source) in str(info.value)
        assert str(target) in str(info.value)


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_terminal_statuses_go_nowhere(status):
    assert status.is_terminal
    assert not status.is_active
    assert not any(status.can_become(target) for target in S)


def test_active_statuses():
    assert {s for s in S if s.is_active} == {S.PENDING, S.RUNNING}
    assert {s for s in S if s.is_terminal} == TERMINAL


# --------------------------------------------------------------------------------------------------
# Duration


@pytest.mark.parametrize("seconds", [-0.001, -1, -3600])
def test_negative_duration_is_rejected(seconds):
    with pytest.raises(ValueError, match="negative"):
        Duration(seconds)


def test_zero_duration_is_allowed():
    assert Duration(0).seconds == 0
    assert Duration(0).timedelta == timedelta(0)


def test_duration_between():
    assert Duration.between(T0, T0 + timedelta(seconds=90.5)) == Duration(90.5)
    assert Duration.between(T0, T0) == Duration(0)
    # Clocks going backwards never make a negative duration.
    assert Duration.between(T0 + timedelta(seconds=5), T0) == Duration(0.0)
    assert Duration(90.5).timedelta == timedelta(seconds=90.5)


def test_durations_order():
    assert Duration(1) < Duration(2) < Duration(60)
    assert max(Duration(3), Duration(1.5)) == Duration(3)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0ms"),
        (0.04, "40ms"),
        (0.25, "250ms"),
        (0.9994, "999ms"),
        (1, "1.0s"),
        (1.25, "1.2s"),
        (12.345, "12.3s"),
        (59.9, "59.9s"),
        (60, "1m00s"),
        (61.4, "1m01s"),
        (125, "2m05s"),
        (3599, "59m59s"),
        (3600, "1h00m00s"),
        (3723, "1h02m03s"),
        (90061, "25h01m01s"),
    ],
)
def test_duration_str(seconds, text):
    assert str(Duration(seconds)) == text


# --------------------------------------------------------------------------------------------------
# Pipeline.start_execution


def pipeline(streams: tuple[str, ...] = ("customers", "orders", "products")) -> Pipeline:
    return Pipeline(
        state_id=StateId.parse(PIPELINE_ID),
        extractor="tap-shopsim",
        loader="target-jsonlines",
        streams=streams,
    )


def test_pipeline_id_is_its_state_id():
    assert pipeline().id == PIPELINE_ID


def test_start_execution_records_execution_started():
    p = pipeline()
    execution = p.start_execution(
        "exec-1",
        at=T0,
        trigger=Trigger.DAGSTER,
        streams=["orders", "customers"],
        full_refresh=True,
        dagster_run_id="dagster-1",
        state_before=StateRef(1, "c1"),
        runner_host="worker-1",
        runner_pid=4242,
    )
    assert execution.status is ExecutionStatus.RUNNING
    assert execution.pipeline_id == PIPELINE_ID
    assert execution.started_at == T0
    assert execution.ended_at is None
    assert execution.duration is None
    assert execution.streams == ("orders", "customers")
    assert p.active == [execution]
    assert execution.pending_events == [
        ExecutionStarted(
            execution_id="exec-1",
            at=T0,
            pipeline_id=PIPELINE_ID,
            trigger="dagster",
            streams=("orders", "customers"),
            full_refresh=True,
            dagster_run_id="dagster-1",
            state_before=StateRef(1, "c1"),
            runner_host="worker-1",
            runner_pid=4242,
        )
    ]


def test_start_execution_defaults_to_every_stream_of_the_pipeline():
    execution = pipeline().start_execution("exec-1", at=T0)
    assert execution.streams == ("customers", "orders", "products")
    assert execution.trigger is Trigger.MANUAL
    assert execution.full_refresh is False
    (event,) = execution.pending_events
    assert isinstance(event, ExecutionStarted)
    assert event.streams == ("customers", "orders", "products")
    assert event.trigger == "manual"


def test_start_execution_refuses_while_one_is_running():
    p = pipeline()
    first = p.start_execution("exec-1", at=T0)
    with pytest.raises(ExecutionAlreadyRunning) as info:
        p.start_execution("exec-2", at=at(1))
    assert "exec-1" in str(info.value)
    assert PIPELINE_ID in str(info.value)
    assert p.active == [first]


def test_start_execution_refuses_while_one_is_pending():
    p = pipeline()
    pending = PipelineExecution(id="exec-0", pipeline_id=PIPELINE_ID, started_at=T0)
    assert pending.status is ExecutionStatus.PENDING
    p.active = [pending]
    with pytest.raises(ExecutionAlreadyRunning, match="exec-0"):
        p.start_execution("exec-1", at=at(1))


def test_start_execution_with_force_overlaps():
    p = pipeline()
    first = p.start_execution("exec-1", at=T0)
    second = p.start_execution("exec-2", at=at(1), force=True)
    assert second.status is ExecutionStatus.RUNNING
    assert p.active == [first, second]


def test_finished_executions_do_not_block_a_new_one():
    p = pipeline()
    first = p.start_execution("exec-1", at=T0)
    first.fail("boom", at=at(1))
    second = p.start_execution("exec-2", at=at(2))
    assert second.status is ExecutionStatus.RUNNING


def test_start_execution_refuses_unknown_streams():
    p = pipeline()
    with pytest.raises(UnknownStream) as info:
        p.start_execution("exec-1", at=T0, streams=["orders", "refunds", "invoices"])
    message = str(info.value)
    assert "'refunds'" in message
    assert "'invoices'" in message
    assert "'orders'" not in message
    assert p.active == []


def test_pipeline_without_known_streams_accepts_any():
    execution = pipeline(streams=()).start_execution("exec-1", at=T0, streams=["anything"])
    assert execution.streams == ("anything",)


# --------------------------------------------------------------------------------------------------
# PipelineExecution lifecycle


def running(execution_id: str = "exec-1", started: datetime = T0) -> PipelineExecution:
    return PipelineExecution.start(
        execution_id,
        PIPELINE_ID,
        at=started,
        trigger=Trigger.CLI,
        streams=["customers", "orders"],
        state_before=StateRef(2, "c2"),
        runner_host="host-a",
        runner_pid=77,
    )


def test_record_stream_while_running():
    execution = running()
    result = StreamResult(
        "customers",
        100,
        StreamStatus.SUCCEEDED,
        Duration(1.5),
        bookmark={"replication_key_value": "2024-01-02T00:00:00Z"},
    )
    execution.record_stream(result, at=at(1))
    assert len(execution.pending_events) == 2
    event = execution.pending_events[-1]
    assert event == StreamSynced(
        execution_id="exec-1",
        at=at(1),
        stream="customers",
        records=100,
        status="SUCCEEDED",
        duration_seconds=1.5,
        bookmark={"replication_key_value": "2024-01-02T00:00:00Z"},
    )
    assert execution.results == {"customers": dataclasses.replace(result, finished_at=at(1))}
    execution.record_stream(StreamResult("orders", 7, StreamStatus.FAILED), at=at(2))
    assert execution.results["orders"].duration is None
    assert execution.pending_events[-1].duration_seconds is None
    assert execution.records == 107


def test_record_stream_twice_keeps_the_latest():
    execution = running()
    execution.record_stream(StreamResult("customers", 1, StreamStatus.FAILED), at=at(1))
    execution.record_stream(StreamResult("customers", 5, StreamStatus.SUCCEEDED), at=at(2))
    assert execution.results["customers"].records == 5
    assert execution.results["customers"].status is StreamStatus.SUCCEEDED
    assert execution.records == 5


def test_record_stream_refused_unless_running():
    pending = PipelineExecution(id="exec-0")
    with pytest.raises(IllegalTransition, match="RUNNING"):
        pending.record_stream(StreamResult("customers", 1, StreamStatus.SUCCEEDED), at=T0)
    assert pending.pending_events == []

    finished = running()
    finished.succeed(at=at(1))
    before = list(finished.pending_events)
    with pytest.raises(IllegalTransition) as info:
        finished.record_stream(StreamResult("customers", 1, StreamStatus.SUCCEEDED), at=at(2))
    assert "exec-1" in str(info.value)
    assert "SUCCEEDED" in str(info.value)
    assert finished.pending_events == before
    assert finished.results == {}


def test_succeed():
    execution = running()
    execution.succeed(at=at(3), state_after=StateRef(1, "c1"), warnings=["w1", "w2"])
    assert execution.pending_events[1:] == [
        ExecutionSucceeded(
            "exec-1", at(3), state_after=StateRef(1, "c1"), warnings=("w1", "w2")
        )
    ]
    assert execution.status is ExecutionStatus.SUCCEEDED
    assert execution.ended_at == at(3)
    assert execution.duration == Duration(180)
    assert execution.warnings == ("w1", "w2")
    assert execution.state_after == StateRef(1, "c1")
    assert execution.error is None


def test_fail():
    execution = running()
    execution.fail(
        "tap-shopsim exited with code 1: boom",
        at=at(2),
        failed_plugin="tap-shopsim",
        exit_code=1,
        state_after=StateRef(3, "c3"),
        warnings=("careful",),
    )
    assert execution.pending_events[1:] == [
        ExecutionFailed(
            "exec-1",
            at(2),
            error="tap-shopsim exited with code 1: boom",
            failed_plugin="tap-shopsim",
            exit_code=1,
            state_after=StateRef(3, "c3"),
            warnings=("careful",),
        )
    ]
    assert execution.status is ExecutionStatus.FAILED
    assert execution.ended_at == at(2)
    assert execution.error == "tap-shopsim exited with code 1: boom"
    assert execution.failed_plugin == "tap-shopsim"
    assert execution.exit_code == 1
    assert execution.warnings == ("careful",)


def test_cancel():
    execution = running()
    execution.cancel(at=at(1), reason="stopped by alice", state_after=StateRef(4, "c4"))
    assert execution.pending_events[1:] == [
        ExecutionCancelled("exec-1", at(1), reason="stopped by alice", state_after=StateRef(4, "c4"))
    ]
    assert execution.status is ExecutionStatus.CANCELLED
    assert execution.error == "stopped by alice"
    assert execution.state_after == StateRef(4, "c4")
    assert execution.ended_at == at(1)


def test_cancel_default_reason():
    execution = running()
    execution.cancel(at=at(1))
    (event,) = execution.pending_events[1:]
    assert event == ExecutionCancelled("exec-1", at(1))
    assert execution.error == "cancelled"


def test_crash():
    execution = running()
    execution.crash("runner pid 77 is gone", at=at(5))
    assert execution.pending_events[1:] == [ExecutionCrashed("exec-1", at(5), reason="runner pid 77 is gone")]
    assert execution.status is ExecutionStatus.CRASHED
    assert execution.error == "runner pid 77 is gone"
    assert execution.ended_at == at(5)


def test_pending_execution_may_fail_or_cancel_but_not_succeed_or_crash():
    pending = PipelineExecution(id="p")
    with pytest.raises(IllegalTransition):
        pending.succeed(at=T0)
    with pytest.raises(IllegalTransition):
        pending.crash("gone", at=T0)
    assert pending.pending_events == []
    pending.cancel(at=T0)
    assert pending.status is ExecutionStatus.CANCELLED
    other = PipelineExecution(id="q")
    other.fail("no", at=T0)
    assert other.status is ExecutionStatus.FAILED


CLOSERS = {
    "succeed": lambda e, t: e.succeed(at=t),
    "fail": lambda e, t: e.fail("boom", at=t),
    "cancel": lambda e, t: e.cancel(at=t),
    "crash": lambda e, t: e.crash("gone", at=t),
}


@pytest.mark.parametrize(("first", "second"), list(itertools.product(CLOSERS, CLOSERS)))
def test_closed_execution_cannot_close_again(first, second):
    execution = running()
    CLOSERS[first](execution, at(1))
    snapshot = execution_fields(execution)
    events_before = list(execution.pending_events)
    with pytest.raises(IllegalTransition):
        CLOSERS[second](execution, at(2))
    assert execution.pending_events == events_before
    assert execution_fields(execution) == snapshot


# --------------------------------------------------------------------------------------------------
# Replay


def lived(path: str) -> PipelineExecution:
    """An execution taken along one terminal path, with stream results on the way."""
    execution = running()
    execution.record_stream(
        StreamResult(
            "customers",
            100,
            StreamStatus.SUCCEEDED,
            Duration(2.25),
            {"replication_key": "updated_at", "replication_key_value": "2024-01-02T00:00:00Z"},
        ),
        at=at(1),
    )
    if path == "succeed":
        execution.record_stream(StreamResult("orders", 0, StreamStatus.SUCCEEDED, Duration(0)), at=at(2))
        execution.succeed(at=at(3), state_after=StateRef(5, "c5"), warnings=["w"])
    elif path == "fail":
        execution.record_stream(StreamResult("orders", 49, StreamStatus.FAILED, Duration(0.5)), at=at(2))
        execution.fail(
            "tap-shopsim exited with code 1: boom",
            at=at(3),
            failed_plugin="tap-shopsim",
            exit_code=1,
            state_after=StateRef(6, "c6"),
            warnings=("w1", "w2"),
        )
    elif path == "cancel":
        execution.cancel(at=at(3), reason="user", state_after=StateRef(1, "c1"))
    elif path == "crash":
        execution.crash("process died", at=at(3))
    return execution


@pytest.mark.parametrize("path", ["running", "succeed", "fail", "cancel", "crash"])
def test_replay_reproduces_the_execution(path):
    original = lived(path)
    events = list(original.pending_events)
    replayed = PipelineExecution.replay(events)
    assert execution_fields(replayed) == execution_fields(original)
    assert replayed.version == len(events)
    assert replayed.pending_events == []
    assert replayed.duration == original.duration
    assert replayed.records == original.records


@pytest.mark.parametrize("path", ["running", "succeed", "fail", "cancel", "crash"])
def test_replay_through_json_payloads_reproduces_the_execution(path):
    original = lived(path)
    stored = [(type(e).__name__, json.loads(json.dumps(e.to_payload()))) for e in original.pending_events]
    events = [DomainEvent.from_payload(name, payload) for name, payload in stored]
    replayed = PipelineExecution.replay(events)  # type: ignore[arg-type]
    assert execution_fields(replayed) == execution_fields(original)
    assert isinstance(replayed.streams, tuple)
    assert isinstance(replayed.warnings, tuple)
    assert isinstance(replayed.started_at, datetime)
    assert replayed.trigger is Trigger.CLI


def test_replay_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="no events"):
        PipelineExecution.replay([])


# --------------------------------------------------------------------------------------------------
# Domain events

EVENTS: list[DomainEvent] = [
    ExecutionStarted(
        execution_id="e1",
        at=T0,
        pipeline_id=PIPELINE_ID,
        trigger="schedule",
        streams=("customers", "orders"),
        full_refresh=True,
        dagster_run_id="d-1",
        state_before=StateRef(7, "c7"),
        runner_host="host",
        runner_pid=123,
    ),
    StreamSynced(
        execution_id="e1",
        at=at(1),
        stream="customers",
        records=10,
        status="SUCCEEDED",
        duration_seconds=0.25,
        bookmark={"replication_key_value": "2024-01-01T00:00:00Z"},
    ),
    ExecutionSucceeded(execution_id="e1", at=at(2), state_after=StateRef(4, "c4"), warnings=("a", "b")),
    ExecutionFailed(
        execution_id="e2",
        at=at(3),
        error="boom",
        failed_plugin="target-jsonlines",
        exit_code=2,
        state_after=None,
        warnings=("w",),
    ),
    ExecutionCancelled(execution_id="e3", at=at(4), reason="user", state_after=StateRef(4, "c4")),
    ExecutionCrashed(execution_id="e4", at=at(5), reason="died"),
    StateSnapshotTaken(
        state_id=PIPELINE_ID, at=at(6), snapshot_id=7, reason="manual", checksum="abc", label="before"
    ),
    StateRestored(
        state_id=PIPELINE_ID,
        at=at(7),
        snapshot_id=7,
        source_state_id="prod:tap-shopsim-to-target-jsonlines",
        pre_restore_snapshot_id=8,
    ),
]


def test_every_event_type_is_covered_and_registered():
    concrete = {
        name
        for name, cls in DomainEvent.registry.items()
        if cls not in (ExecutionEvent, DomainEvent) and name != "StateEvent"
    }
    assert {type(e).__name__ for e in EVENTS} == concrete


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_event_payload_round_trip(event):
    payload = event.to_payload()
    text = json.dumps(payload)  # JSON-ready
    back = DomainEvent.from_payload(type(event).__name__, json.loads(text))
    assert type(back) is type(event)
    assert back == event
    assert isinstance(back.at, datetime)
    assert back.at.tzinfo is not None
    assert back.occurred_at == event.at
    assert back.stream_id == event.stream_id
    for f in dataclasses.fields(event):
        original = getattr(event, f.name)
        if isinstance(original, tuple):
            assert isinstance(payload[f.name], list)
            assert isinstance(getattr(back, f.name), tuple)
        if isinstance(original, datetime):
            assert isinstance(payload[f.name], str)


def test_event_stream_ids():
    assert EVENTS[0].stream_id == "execution-e1"
    assert EVENTS[5].stream_id == "execution-e4"
    assert EVENTS[6].stream_id == f"state-{PIPELINE_ID}"
    assert EVENTS[7].stream_id == f"state-{PIPELINE_ID}"


def test_event_from_payload_uses_defaults_for_missing_fields():
    back = DomainEvent.from_payload(
        "ExecutionSucceeded", {"execution_id": "x", "at": "2024-03-01T12:00:00+00:00"}
    )
    assert back == ExecutionSucceeded("x", T0)
    assert back.warnings == ()


def test_event_with_non_utc_offset_round_trips():
    event = ExecutionCrashed("x", datetime(2024, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))), "r")
    back = DomainEvent.from_payload("ExecutionCrashed", json.loads(json.dumps(event.to_payload())))
    assert back == event
    assert back.at == T0


# --------------------------------------------------------------------------------------------------
# Specifications


def finished(execution_id: str, status: ExecutionStatus, ended: datetime) -> PipelineExecution:
    execution = running(execution_id, started=ended - timedelta(minutes=1))
    if status is ExecutionStatus.SUCCEEDED:
        execution.succeed(at=ended)
    elif status is ExecutionStatus.FAILED:
        execution.fail("boom", at=ended)
    elif status is ExecutionStatus.CANCELLED:
        execution.cancel(at=ended)
    elif status is ExecutionStatus.CRASHED:
        execution.crash("gone", at=ended)
    return execution


NOW = T0 + timedelta(days=2)


def test_is_stale_without_any_success():
    spec = IsStale(max_age=timedelta(hours=24))
    assert spec([], NOW)
    assert spec([finished("f", S.FAILED, NOW - timedelta(minutes=5)), running("r", NOW)], NOW)


def test_is_stale_by_age_of_the_last_success():
    spec = IsStale(max_age=timedelta(hours=24))
    fresh = finished("s", S.SUCCEEDED, NOW - timedelta(hours=23))
    old = finished("o", S.SUCCEEDED, NOW - timedelta(hours=25))
    exactly = finished("x", S.SUCCEEDED, NOW - timedelta(hours=24))
    assert not spec([fresh], NOW)
    assert spec([old], NOW)
    assert not spec([exactly], NOW)
    # A newer failure does not make a recent success stale; an older success does not help.
    assert not spec([finished("f", S.FAILED, NOW - timedelta(hours=1)), fresh, old], NOW)
    assert spec([finished("f", S.FAILED, NOW - timedelta(hours=1)), old], NOW)
    assert spec.since(None, NOW)
    assert not spec.since(fresh.ended_at, NOW)
    assert spec.since(old.ended_at, NOW)
    assert not spec.since(exactly.ended_at, NOW)


def test_last_success():
    ok = finished("ok", S.SUCCEEDED, NOW - timedelta(hours=3))
    history = [finished("f", S.FAILED, NOW), ok, finished("ok2", S.SUCCEEDED, NOW - timedelta(hours=9))]
    assert last_success(history) is ok
    assert last_success([finished("f", S.FAILED, NOW)]) is None


# --------------------------------------------------------------------------------------------------
# SingerState


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ([], "expected a JSON object, got list"),
        ("singer_state", "expected a JSON object, got str"),
        (None, "expected a JSON object, got NoneType"),
        (42, "expected a JSON object, got int"),
        ({}, "no 'singer_state' key"),
        ({"bookmarks": {}}, "no 'singer_state' key"),
        ({"singer_state": []}, "'singer_state' must be an object"),
        ({"singer_state": "x"}, "'singer_state' must be an object"),
        ({"singer_state": {"bookmarks": []}}, "'singer_state.bookmarks' must be an object"),
        ({"singer_state": {"bookmarks": "2024"}}, "'singer_state.bookmarks' must be an object"),
    ],
)
def test_singer_state_validation(payload, fragment):
    with pytest.raises(InvalidState) as info:
        SingerState.from_payload(payload, where="snapshot 12")
    message = str(info.value)
    assert fragment in message
    assert message.startswith("snapshot 12: ")
    assert isinstance(info.value, ValueError)


def test_singer_state_default_where():
    with pytest.raises(InvalidState, match=r"^state: "):
        SingerState.from_payload([])


def test_singer_state_accessors():
    payload = {
        "singer_state": {
            "bookmarks": {
                "customers": {"replication_key": "updated_at", "replication_key_value": "2024-01-02"},
                "products": {},
                "odd": "not-an-object",
            },
            "currently_syncing": None,
        }
    }
    s = SingerState.from_payload(payload)
    assert s.payload() == payload
    assert s.bookmark_value("customers") == "2024-01-02"
    assert s.bookmark_value("products") is None
    assert s.bookmark_value("odd") is None
    assert s.bookmark_value("missing") is None
    assert not s.is_empty
    assert SingerState.from_payload({"singer_state": {}}).bookmarks == {}
    assert SingerState.from_payload({"singer_state": {}}).is_empty
    assert SingerState.from_payload({"singer_state": {"bookmarks": {"a": {}}}}).is_empty
    assert SingerState.empty().is_empty
    assert SingerState.empty().payload() == {"singer_state": {"bookmarks": {}}}


def test_checksum_is_stable_under_key_order():
    a = SingerState.from_payload(
        {
            "singer_state": {
                "bookmarks": {
                    "customers": {"replication_key": "updated_at", "replication_key_value": "x"},
                    "orders": {"replication_key_value": 5, "replication_key": "id"},
                },
                "currently_syncing": None,
            }
        }
    )
    b = SingerState.from_payload(
        {
            "singer_state": {
                "currently_syncing": None,
                "bookmarks": {
                    "orders": {"replication_key": "id", "replication_key_value": 5},
                    "customers": {"replication_key_value": "x", "replication_key": "updated_at"},
                },
            }
        }
    )
    assert a.checksum == b.checksum
    assert len(a.checksum) == 64
    assert int(a.checksum, 16) >= 0
    assert a.checksum == a.checksum  # deterministic
    assert state(customers="x").checksum != state(customers="y").checksum
    assert SingerState.empty().checksum != state(customers="x").checksum


# --------------------------------------------------------------------------------------------------
# diff_states


def one_diff(before: SingerState | None, after: SingerState | None) -> StreamDiff:
    (diff,) = diff_states(before, after)
    return diff


@pytest.mark.parametrize(
    ("before", "after", "change"),
    [
        ("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", BookmarkChange.FORWARD),
        ("2024-01-02T00:00:00Z", "2024-01-01T00:00:00Z", BookmarkChange.BACKWARD),
        ("2024-01-01T00:00:00+00:00", "2024-01-01T00:00:01Z", BookmarkChange.FORWARD),
        ("2024-01-01T00:00:01Z", "2024-01-01T00:00:00+00:00", BookmarkChange.BACKWARD),
        ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z", BookmarkChange.UNCHANGED),
        # The same instant written two ways has not moved.
        ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00+00:00", BookmarkChange.UNCHANGED),
        ("2024-01-01T00:00:00+00:00", "2024-01-01T00:00:00Z", BookmarkChange.UNCHANGED),
        ("2024-01-01T01:00:00+01:00", "2024-01-01T00:00:00Z", BookmarkChange.UNCHANGED),
        # Earlier wall clock, later instant.
        ("2024-01-01T10:00:00+05:00", "2024-01-01T06:00:00Z", BookmarkChange.FORWARD),
        (9, 10, BookmarkChange.FORWARD),
        (10, 9, BookmarkChange.BACKWARD),
        (100, 100, BookmarkChange.UNCHANGED),
        (5, 5.0, BookmarkChange.UNCHANGED),
        (1.5, 2, BookmarkChange.FORWARD),
        ("abc", "abd", BookmarkChange.FORWARD),
        ("abc", 5, BookmarkChange.CHANGED),
        (None, "2024-01-01T00:00:00Z", BookmarkChange.CHANGED),
    ],
)
def test_diff_states_bookmark_moves(before, after, change):
    diff = one_diff(state(s=before), state(s=after))
    assert diff.change is change
    assert diff.stream == "s"
    assert diff.before == {"replication_key": "updated_at", "replication_key_value": before}
    assert diff.after == {"replication_key": "updated_at", "replication_key_value": after}
    assert compare_bookmark(before, after) is change


def test_diff_states_added_removed_unchanged_and_sorted():
    before = state(customers="2024-01-01T00:00:00Z", orders=10, stale=1)
    after = state(customers="2024-01-01T00:00:00Z", orders=12, products="2024-05-01T00:00:00Z")
    diffs = diff_states(before, after)
    assert [(d.stream, d.change) for d in diffs] == [
        ("customers", BookmarkChange.UNCHANGED),
        ("orders", BookmarkChange.FORWARD),
        ("products", BookmarkChange.ADDED),
        ("stale", BookmarkChange.REMOVED),
    ]
    by_stream = {d.stream: d for d in diffs}
    assert by_stream["products"].before is None
    assert by_stream["products"].after == {
        "replication_key": "updated_at",
        "replication_key_value": "2024-05-01T00:00:00Z",
    }
    assert by_stream["stale"].after is None
    assert by_stream["stale"].before == {"replication_key": "updated_at", "replication_key_value": 1}


def test_diff_states_against_nothing():
    s = state(a=1, b=2)
    assert [(d.stream, d.change) for d in diff_states(None, s)] == [
        ("a", BookmarkChange.ADDED),
        ("b", BookmarkChange.ADDED),
    ]
    assert [(d.stream, d.change) for d in diff_states(s, None)] == [
        ("a", BookmarkChange.REMOVED),
        ("b", BookmarkChange.REMOVED),
    ]
    assert diff_states(None, None) == []
    assert diff_states(SingerState.empty(), SingerState.empty()) == []


def test_diff_states_without_replication_key_values_compares_whole_entries():
    def entry(**value: object) -> SingerState:
        return SingerState.from_payload({"singer_state": {"bookmarks": {"s": value}}})

    same_a = entry(partitions=[{"context": {"id": 1}}], starting_replication_value=None)
    same_b = entry(starting_replication_value=None, partitions=[{"context": {"id": 1}}])
    other = entry(partitions=[{"context": {"id": 2}}])
    assert one_diff(same_a, same_b).change is BookmarkChange.UNCHANGED
    assert one_diff(same_a, other).change is BookmarkChange.CHANGED


def test_records_of_an_execution_that_ended_without_stream_results_are_unknown_not_zero():
    crashed = PipelineExecution.start("e1", "p", at=at(0), streams=("customers",))
    assert crashed.records is None  # running, nothing confirmed yet
    crashed.crash("runner process 7 is gone", at=at(1))
    assert crashed.records is None
    empty = PipelineExecution.start("e2", "p", at=at(0), streams=())
    empty.succeed(at=at(1))
    assert empty.records == 0  # a run of no streams that succeeded did load nothing
