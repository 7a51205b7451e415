"""ExecutionTracker: from a run's parsed events to confirmed stream results and the block's outcome."""
# ruff: noqa: E501

from __future__ import annotations

from collections.abc import Iterable

import pytest

from flx_meltano.domain.plugins import PluginType
from flx_meltano.domain.state import SingerState
from flx_meltano.domain.values import Duration, StreamStatus
from flx_meltano.integration.run_events import (
    BlockCompleted,
    LogRecord,
    Metric,
    RunCompleted,
    RunEvent,
    StateWritten,
    parse_line,
)
from flx_meltano.integration.translator import (
    TAIL_LINES_KEPT,
    ExecutionTracker,
    Outcome,
    StreamConfirmed,
    StreamProgress,
)

TAP = "tap-shopsim"
TARGET = "target-jsonlines"

# Verbatim lines of a real failing run (tap-shopsim with fail_after_records=50, Meltano 4.4.1).
TAP_FAILED_SYNC_DURATION = r"""{"stdio": "stderr", "consumer": false, "producer": true, "string_id": "tap-shopsim", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "name": "tap-shopsim", "event": "METRIC: {\"type\":\"timer\",\"metric\":\"sync_duration\",\"value\":0.0029823780059814453,\"tags\":{\"stream\":\"customers\",\"pid\":30787,\"context\":{},\"status\":\"failed\"}}", "run_id": "01a203f8-ec11-7816-a9c4-dc3acce7077c", "level": "info", "timestamp": "2026-11-22T15:56:16.470428Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.extractors.tap-shopsim (INFO)>", "_name": "info"}"""
TAP_FAILED_RECORD_COUNT = r"""{"stdio": "stderr", "consumer": false, "producer": true, "string_id": "tap-shopsim", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "name": "tap-shopsim", "event": "METRIC: {\"type\":\"counter\",\"metric\":\"record_count\",\"value\":49,\"tags\":{\"stream\":\"customers\",\"pid\":30787,\"context\":{}}}", "run_id": "01a203f8-ec11-7816-a9c4-dc3acce7077c", "level": "info", "timestamp": "2026-11-22T15:56:16.470573Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.extractors.tap-shopsim (INFO)>", "_name": "info"}"""
TAP_TRACEBACK = r"""{"stdio": "stderr", "consumer": false, "producer": true, "string_id": "tap-shopsim", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "name": "tap-shopsim", "event": "Traceback (most recent call last):", "run_id": "01a203f8-ec11-7816-a9c4-dc3acce7077c", "level": "info", "timestamp": "2026-11-22T15:56:16.471880Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.extractors.tap-shopsim (INFO)>", "_name": "info"}"""
TAP_RAISE = r"""{"stdio": "stderr", "consumer": false, "producer": true, "string_id": "tap-shopsim", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "name": "tap-shopsim", "event": "    raise ShopSimFailure(msg)", "run_id": "01a203f8-ec11-7816-a9c4-dc3acce7077c", "level": "info", "timestamp": "2026-11-22T15:56:16.478657Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.extractors.tap-shopsim (INFO)>", "_name": "info"}"""
TAP_EXCEPTION = r"""{"stdio": "stderr", "consumer": false, "producer": true, "string_id": "tap-shopsim", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "name": "tap-shopsim", "event": "tap_shopsim.tap.ShopSimFailure: tap-shopsim: failing on purpose after 50 records (fail_after_records)", "run_id": "01a203f8-ec11-7816-a9c4-dc3acce7077c", "level": "info", "timestamp": "2026-11-22T15:56:16.478722Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.extractors.tap-shopsim (INFO)>", "_name": "info"}"""
LOADER_READER_DONE = r"""{"stdio": "stderr", "consumer": true, "producer": false, "string_id": "target-jsonlines", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "name": "target-jsonlines", "event": "Reader 'target-jsonlines' completed processing 51 lines of input (1 schemas, 50 records, 0 batch manifests, 0 state messages, 0 activate version messages).", "run_id": "01a203f8-ec11-7816-a9c4-dc3acce7077c", "level": "info", "timestamp": "2026-11-22T15:56:16.528504Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.loaders.target-jsonlines (INFO)>", "_name": "info"}"""
LOADER_RECORD_COUNT = r"""{"stdio": "stderr", "consumer": true, "producer": false, "string_id": "target-jsonlines", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "name": "target-jsonlines", "event": "METRIC: {\"type\":\"counter\",\"metric\":\"record_count\",\"value\":50,\"tags\":{\"stream\":\"customers\",\"pid\":30789}}", "run_id": "01a203f8-ec11-7816-a9c4-dc3acce7077c", "level": "info", "timestamp": "2026-11-22T15:56:16.543381Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.loaders.target-jsonlines (INFO)>", "_name": "info"}"""
EXTRACTOR_FAILED = (
    r"""{"event": "Extractor failed", "level": "error", "timestamp": "2026-11-22T15:56:16.606905Z"}"""
)
BLOCK_FAILED = r"""{"set_number": 0, "block_type": "ExtractLoadBlocks", "success": false, "err": "Extractor failed", "exit_codes": {"extractors": 1}, "duration_seconds": 1.791, "event": "Block run completed", "run_id": "01a203f8-ec11-7816-a9c4-dc3acce7077c", "level": "error", "timestamp": "2026-11-22T15:56:16.607199Z", "_logger": "<_FixedFindCallerLogger meltano.cli.run (INFO)>", "_name": "error"}"""
RUN_FAILED = r"""{"duration_seconds": 1.791, "status": "failure", "event": "Run completed", "run_id": "01a203f8-ec11-7816-a9c4-dc3acce7077c", "level": "info", "timestamp": "2026-11-22T15:56:16.607383Z", "_logger": "<_FixedFindCallerLogger meltano.cli.run (INFO)>", "_name": "info"}"""
# And of a real successful run.
TAP_SYNC_DURATION = r"""{"stdio": "stderr", "consumer": false, "producer": true, "string_id": "tap-shopsim", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "name": "tap-shopsim", "event": "METRIC: {\"type\":\"timer\",\"metric\":\"sync_duration\",\"value\":0.004510402679443359,\"tags\":{\"stream\":\"customers\",\"pid\":30514,\"context\":{},\"status\":\"succeeded\"}}", "run_id": "01a203f8-7b46-7b29-8436-bae9f8353299", "level": "info", "timestamp": "2026-11-22T15:55:47.794897Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.extractors.tap-shopsim (INFO)>", "_name": "info"}"""
TAP_RECORD_COUNT = r"""{"stdio": "stderr", "consumer": false, "producer": true, "string_id": "tap-shopsim", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "name": "tap-shopsim", "event": "METRIC: {\"type\":\"counter\",\"metric\":\"record_count\",\"value\":100,\"tags\":{\"stream\":\"customers\",\"pid\":30514,\"context\":{}}}", "run_id": "01a203f8-7b46-7b29-8436-bae9f8353299", "level": "info", "timestamp": "2026-11-22T15:55:47.794999Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.extractors.tap-shopsim (INFO)>", "_name": "info"}"""
STATE_UPDATED = r"""{"event": "Incremental state has been updated at 2026-11-22 15:55:47.937165+00:00.", "run_id": "01a203f8-7b46-7b29-8436-bae9f8353299", "level": "info", "timestamp": "2026-11-22T15:55:47.937193Z", "_logger": "<_FixedFindCallerLogger meltano.core.plugin.singer.target (INFO)>", "_name": "info"}"""
BLOCK_SUCCEEDED = r"""{"set_number": 0, "block_type": "ExtractLoadBlocks", "success": true, "err": null, "duration_seconds": 2.05, "event": "Block run completed", "run_id": "01a203f8-7b46-7b29-8436-bae9f8353299", "level": "info", "timestamp": "2026-11-22T15:55:47.995395Z", "_logger": "<_FixedFindCallerLogger meltano.cli.run (INFO)>", "_name": "info"}"""


def parsed(line: str) -> RunEvent:
    event = parse_line(line)
    assert event is not None
    return event


def tap_metric(
    name: str, stream: str, value: float, context: dict | None = None, status: str | None = "succeeded"
) -> Metric:
    tags: dict[str, object] = {"stream": stream, "pid": 1, "context": context or {}}
    if name == "sync_duration" and status is not None:
        tags["status"] = status
    kind = "timer" if name == "sync_duration" else "counter"
    return Metric(TAP, PluginType.EXTRACTOR, name, kind, value, tags)


def loader_count(stream: str, value: float, role: PluginType | None = PluginType.LOADER) -> Metric:
    return Metric(TARGET, role, "record_count", "counter", value, {"stream": stream, "pid": 2})


def success_block() -> BlockCompleted:
    return BlockCompleted(0, "ExtractLoadBlocks", True, None, {}, 1.0)


def failed_block(exit_codes: dict[str, int], error: str | None = "Extractor failed") -> BlockCompleted:
    return BlockCompleted(0, "ExtractLoadBlocks", False, error, exit_codes, 1.0)


def plugin_line(plugin: str, message: str, role: str | None = None) -> LogRecord:
    return LogRecord("info", message, plugin, role)


def singer(**values: object) -> SingerState:
    return SingerState.from_payload(
        {
            "singer_state": {
                "bookmarks": {
                    stream: {"replication_key": "updated_at", "replication_key_value": value}
                    for stream, value in values.items()
                }
            }
        }
    )


class FakeState:
    """A read_state that returns the states it was given, one per call (the last one repeatedly)."""

    def __init__(self, *states: SingerState | None) -> None:
        self.states = list(states) or [None]
        self.calls = 0

    def __call__(self) -> SingerState | None:
        state = self.states[min(self.calls, len(self.states) - 1)]
        self.calls += 1
        return state


def tracker(
    read_state: FakeState | None = None,
    expected: Iterable[str] = (),
    mappers: tuple[str, ...] = (),
    before: SingerState | None = None,
) -> ExecutionTracker:
    """A tracker of a run that starts with no state unless ``before`` is given."""
    return ExecutionTracker(
        extractor=TAP,
        loader=TARGET,
        read_state=read_state or FakeState(),
        expected_streams=expected,
        mappers=mappers,
        state_before=before or SingerState.empty(),
    )


def feed_all(t: ExecutionTracker, events: Iterable[RunEvent]) -> list[object]:
    out: list[object] = []
    for event in events:
        out.extend(t.feed(event))
    return out


def confirmed_names(notifications: Iterable[object]) -> list[str]:
    return [n.result.stream for n in notifications if isinstance(n, StreamConfirmed)]


# --------------------------------------------------------------------------------------------------
# Counts


def test_record_counts_report_progress():
    t = tracker()
    # The loader has reported nothing yet: None, not a 0 nobody saw.
    assert t.feed(tap_metric("record_count", "customers", 40)) == [StreamProgress("customers", 40, None)]
    assert t.feed(tap_metric("record_count", "customers", 60)) == [StreamProgress("customers", 100, None)]
    assert t.feed(loader_count("customers", 98)) == [StreamProgress("customers", 100, 98)]


def test_loader_counts_are_preferred_over_tap_counts():
    t = tracker(FakeState(singer(customers="2024-01-02T00:00:00Z")))
    feed_all(
        t,
        [
            tap_metric("record_count", "customers", 100),
            tap_metric("sync_duration", "customers", 0.5),
            loader_count("customers", 60),
            loader_count("customers", 38),
        ],
    )
    (confirmed,) = t.feed(StateWritten())
    assert isinstance(confirmed, StreamConfirmed)
    assert confirmed.result.records == 98
    assert confirmed.result.status is StreamStatus.SUCCEEDED


def test_loader_recognised_by_name_without_a_role():
    t = tracker()
    feed_all(t, [tap_metric("record_count", "orders", 10), loader_count("orders", 7, role=None)])
    (result,) = t.unconfirmed_results()
    assert result.records == 7


def test_tap_count_used_when_the_loader_reports_none():
    t = tracker(FakeState(singer(customers="2024-01-02T00:00:00Z")))
    notes = feed_all(
        t,
        [
            parsed(TAP_RECORD_COUNT),
            parsed(TAP_SYNC_DURATION),
            parsed(STATE_UPDATED),
        ],
    )
    (confirmed,) = [n for n in notes if isinstance(n, StreamConfirmed)]
    assert confirmed.result.records == 100
    assert confirmed.result.duration == Duration(round(0.004510402679443359, 6))


def test_metrics_of_other_plugins_or_without_stream_are_ignored():
    t = tracker()
    assert (
        t.feed(Metric("tap-other", PluginType.EXTRACTOR, "record_count", "counter", 5, {"stream": "s"})) == []
    )
    assert t.feed(Metric(TAP, PluginType.EXTRACTOR, "record_count", "counter", 5, {})) == []
    assert (
        t.feed(Metric(TAP, PluginType.EXTRACTOR, "http_request_duration", "timer", 1, {"stream": "s"})) == []
    )
    assert (
        t.feed(Metric("tap-other", PluginType.EXTRACTOR, "sync_duration", "timer", 1, {"stream": "s"})) == []
    )
    assert t.feed(StateWritten()) == []  # "s" never finished extracting


# --------------------------------------------------------------------------------------------------
# Confirmation of top-level streams at STATE writes


def test_top_level_stream_confirmed_only_at_the_first_state_written_after_its_sync_duration():
    reads = FakeState(
        singer(),
        singer(customers="2024-01-02T00:00:00Z"),
        singer(customers="2024-01-02T00:00:00Z", orders=100),
    )
    t = tracker(reads, expected=["customers", "orders"])
    # A STATE written while customers is still being extracted confirms nothing.
    t.feed(tap_metric("record_count", "customers", 100))
    assert t.feed(StateWritten()) == []
    assert reads.calls == 1
    # The sync_duration timer alone confirms nothing either.
    assert t.feed(tap_metric("sync_duration", "customers", 0.25)) == []
    assert t.confirmed == {}
    # The next STATE write confirms customers, with the bookmark read then.
    (note,) = t.feed(StateWritten())
    assert reads.calls == 2
    assert isinstance(note, StreamConfirmed)
    result = note.result
    assert result.stream == "customers"
    assert result.records == 100
    assert result.status is StreamStatus.SUCCEEDED
    assert result.duration == Duration(0.25)
    assert result.bookmark == {
        "replication_key": "updated_at",
        "replication_key_value": "2024-01-02T00:00:00Z",
    }
    assert result.finished_at is not None
    assert set(t.confirmed) == {"customers"}
    # It is not confirmed twice; orders follows at the next write after its own timer.
    notes = feed_all(
        t, [tap_metric("record_count", "orders", 100), tap_metric("sync_duration", "orders", 1.0)]
    )
    assert confirmed_names(notes) == []
    assert confirmed_names(t.feed(StateWritten())) == ["orders"]
    assert t.confirmed["orders"].bookmark == {"replication_key": "updated_at", "replication_key_value": 100}
    assert t.feed(StateWritten()) == []


def test_several_streams_confirmed_by_one_state_write():
    t = tracker(FakeState(singer(a=1, b=2)))
    feed_all(t, [tap_metric("sync_duration", "a", 0.1), tap_metric("sync_duration", "b", 0.2)])
    assert sorted(confirmed_names(t.feed(StateWritten()))) == ["a", "b"]


def test_failed_sync_duration_is_not_confirmed():
    t = tracker(FakeState(singer()))
    feed_all(t, [parsed(TAP_FAILED_RECORD_COUNT), parsed(TAP_FAILED_SYNC_DURATION)])
    assert t.feed(StateWritten()) == []
    (result,) = t.unconfirmed_results()
    assert (result.stream, result.status, result.records) == ("customers", StreamStatus.FAILED, 49)


def test_no_bookmark_when_state_has_none_for_the_stream():
    t = tracker(FakeState(None))
    feed_all(t, [tap_metric("sync_duration", "products", 0.1), StateWritten()])
    (note,) = t.feed(success_block())
    assert note.result.bookmark is None
    t2 = tracker(FakeState(SingerState.from_payload({"singer_state": {"bookmarks": {"products": {}}}})))
    feed_all(t2, [tap_metric("sync_duration", "products", 0.1), StateWritten()])
    (note2,) = t2.feed(success_block())
    assert note2.result.bookmark is None


# --------------------------------------------------------------------------------------------------
# A STATE confirms a stream only when it moved the stream's bookmark (else only block success does)

PRE_RUN = "2024-01-01T00:00:00Z"


def _extract_then_state_then_loader_failure(t: ExecutionTracker, stream: str = "customers") -> list[object]:
    return feed_all(
        t,
        [
            tap_metric("record_count", stream, 40),
            tap_metric("sync_duration", stream, 0.5),
            loader_count(stream, 40),
            StateWritten(),
            plugin_line(TARGET, "OSError: disk full"),
            failed_block({"extractors": 0, "loaders": 1}, "Loader failed"),
        ],
    )


@pytest.mark.parametrize(
    ("before", "written"),
    [
        pytest.param(None, singer(orders="2024-01-02T00:00:00Z"), id="state-without-the-stream"),
        pytest.param(None, None, id="no-state-at-all"),
        pytest.param(singer(customers=PRE_RUN), singer(customers=PRE_RUN), id="pre-run-bookmark"),
        pytest.param(
            singer(customers=PRE_RUN), singer(customers="2024-01-01T00:00:00+00:00"), id="same-instant"
        ),
    ],
)
def test_a_state_that_did_not_move_the_bookmark_confirms_nothing_when_the_loader_fails(before, written):
    t = tracker(FakeState(written), expected=["customers"], before=before)
    notes = _extract_then_state_then_loader_failure(t)
    assert confirmed_names(notes) == []
    assert t.confirmed == {}
    assert t.outcome is not None
    assert t.outcome.failed_plugin == TARGET
    (result,) = t.unconfirmed_results()
    assert (result.stream, result.status, result.records) == ("customers", StreamStatus.FAILED, 40)


@pytest.mark.parametrize(
    ("before", "written"),
    [
        pytest.param(None, singer(customers="2024-01-02T00:00:00Z"), id="new-bookmark"),
        pytest.param(singer(customers=PRE_RUN), singer(customers="2024-01-02T00:00:00Z"), id="moved"),
    ],
)
def test_a_state_that_moved_the_bookmark_confirms_the_stream_before_the_loader_fails(before, written):
    t = tracker(FakeState(written), expected=["customers"], before=before)
    notes = _extract_then_state_then_loader_failure(t)
    assert confirmed_names(notes) == ["customers"]
    result = t.confirmed["customers"]
    assert (result.records, result.status) == (40, StreamStatus.SUCCEEDED)
    assert result.bookmark == {
        "replication_key": "updated_at",
        "replication_key_value": "2024-01-02T00:00:00Z",
    }
    assert t.unconfirmed_results() == []


def test_a_later_state_that_moves_the_bookmark_confirms_the_stream():
    reads = FakeState(singer(customers=PRE_RUN), singer(customers="2024-01-02T00:00:00Z"))
    t = tracker(reads, before=singer(customers=PRE_RUN))
    feed_all(t, [tap_metric("sync_duration", "customers", 0.5)])
    assert t.feed(StateWritten()) == []
    assert confirmed_names(t.feed(StateWritten())) == ["customers"]


def test_the_pre_run_state_is_read_when_the_tracker_is_made():
    reads = FakeState(singer(customers=PRE_RUN), singer(customers=PRE_RUN, orders=5))
    t = ExecutionTracker(extractor=TAP, loader=TARGET, read_state=reads)
    assert reads.calls == 1
    assert t.state_before == singer(customers=PRE_RUN)
    feed_all(t, [tap_metric("sync_duration", "customers", 0.5), tap_metric("sync_duration", "orders", 0.5)])
    assert confirmed_names(t.feed(StateWritten())) == ["orders"]


@pytest.mark.parametrize(
    "written",
    [
        pytest.param(None, id="no-state"),
        pytest.param(
            SingerState.from_payload({"singer_state": {"bookmarks": {"products": {}}}}), id="empty-bookmark"
        ),
        pytest.param(
            SingerState.from_payload(
                {"singer_state": {"bookmarks": {"products": {"partitions": [{"context": {"id": 1}}]}}}}
            ),
            id="partitions-only",
        ),
    ],
)
def test_a_full_table_stream_is_confirmed_only_when_the_block_succeeds(written):
    failing = tracker(FakeState(written), expected=["products"])
    assert confirmed_names(_extract_then_state_then_loader_failure(failing, "products")) == []
    (result,) = failing.unconfirmed_results()
    assert (result.stream, result.status) == ("products", StreamStatus.FAILED)

    succeeding = tracker(FakeState(written), expected=["products"])
    notes = feed_all(
        succeeding,
        [
            tap_metric("record_count", "products", 40),
            tap_metric("sync_duration", "products", 0.5),
            loader_count("products", 40),
            StateWritten(),
        ],
    )
    assert confirmed_names(notes) == []
    assert confirmed_names(succeeding.feed(success_block())) == ["products"]
    assert succeeding.confirmed["products"].records == 40
    assert succeeding.confirmed["products"].status is StreamStatus.SUCCEEDED
    assert succeeding.unconfirmed_results() == []


# --------------------------------------------------------------------------------------------------
# Child streams


def test_child_stream_confirmed_at_block_success_not_at_state_writes():
    reads = FakeState(singer(orders=3))
    t = tracker(reads)
    events: list[RunEvent] = []
    for order_id, (records, seconds) in enumerate([(4, 0.25), (3, 0.125), (2, 0.0625)], start=1):
        events += [
            tap_metric("sync_duration", "order_items", seconds, context={"order_id": order_id}),
            tap_metric("record_count", "order_items", records, context={"order_id": order_id}),
        ]
    events += [tap_metric("sync_duration", "orders", 1.0), tap_metric("record_count", "orders", 3)]
    feed_all(t, events)
    # The state write confirms the parent only.
    assert confirmed_names(t.feed(StateWritten())) == ["orders"]
    assert "order_items" not in t.confirmed
    assert [r.stream for r in t.unconfirmed_results()] == ["order_items"]
    # Block success confirms the child with all its partitions summed.
    notes = t.feed(success_block())
    assert confirmed_names(notes) == ["order_items"]
    child = t.confirmed["order_items"]
    assert child.records == 9
    assert child.duration == Duration(0.4375)
    assert child.status is StreamStatus.SUCCEEDED
    assert t.outcome == Outcome(success=True)
    assert t.unconfirmed_results() == []


def test_block_success_reads_state_when_none_was_written():
    reads = FakeState(singer(order_items=5))
    t = tracker(reads)
    feed_all(t, [tap_metric("sync_duration", "order_items", 0.1, context={"order_id": 1})])
    assert reads.calls == 0
    (note,) = t.feed(success_block())
    assert reads.calls == 1
    assert note.result.bookmark == {"replication_key": "updated_at", "replication_key_value": 5}


def test_block_success_confirms_with_the_last_state_written():
    reads = FakeState(singer(s="first"), singer(s="second"))
    t = tracker(reads)
    feed_all(t, [tap_metric("record_count", "s", 1), StateWritten()])
    (note,) = t.feed(success_block())
    assert reads.calls == 1
    assert note.result.bookmark["replication_key_value"] == "first"


# --------------------------------------------------------------------------------------------------
# Failure


def test_extractor_failure_from_a_real_run():
    t = tracker(FakeState(singer()), expected=["customers", "orders"])
    lines = [
        TAP_FAILED_SYNC_DURATION,
        TAP_FAILED_RECORD_COUNT,
        TAP_TRACEBACK,
        TAP_RAISE,
        TAP_EXCEPTION,
        LOADER_READER_DONE,
        LOADER_RECORD_COUNT,
        EXTRACTOR_FAILED,
        BLOCK_FAILED,
        RUN_FAILED,
    ]
    notes = feed_all(t, [parsed(line) for line in lines])
    assert confirmed_names(notes) == []
    outcome = t.outcome
    assert outcome is not None
    assert outcome.success is False
    assert outcome.failed_plugin == TAP
    assert outcome.exit_code == 1
    assert outcome.error == (
        "tap-shopsim exited with code 1: tap_shopsim.tap.ShopSimFailure: tap-shopsim: failing on purpose "
        "after 50 records (fail_after_records)"
    )
    assert outcome.error_lines == (
        "Traceback (most recent call last):",
        "    raise ShopSimFailure(msg)",
        "tap_shopsim.tap.ShopSimFailure: tap-shopsim: failing on purpose after 50 records (fail_after_records)",
    )
    # RunCompleted does not overwrite the block's outcome.
    assert t.outcome is outcome
    unconfirmed = {r.stream: r for r in t.unconfirmed_results()}
    assert set(unconfirmed) == {"customers", "orders"}
    assert unconfirmed["customers"].status is StreamStatus.FAILED
    assert unconfirmed["customers"].records == 50  # the loader's count
    assert unconfirmed["orders"].records == 0
    assert unconfirmed["orders"].status is StreamStatus.FAILED


def test_failure_error_uses_the_last_non_empty_line_of_the_failed_plugin():
    t = tracker()
    feed_all(
        t,
        [
            plugin_line(TAP, "first"),
            plugin_line(TAP, "ValueError: the real problem"),
            plugin_line(TAP, "   "),
            plugin_line(TAP, ""),
            plugin_line(TARGET, "loader chatter after the tap died"),
            LogRecord("error", "Extractor failed"),
            failed_block({"extractors": 1}),
        ],
    )
    assert t.outcome == Outcome(
        False,
        "tap-shopsim exited with code 1: ValueError: the real problem",
        TAP,
        1,
        ("first", "ValueError: the real problem", "   ", ""),
    )


def test_loader_failure_names_the_loader():
    t = tracker()
    feed_all(
        t,
        [
            plugin_line(TAP, "fine"),
            plugin_line(TARGET, "psycopg.OperationalError: gone"),
            failed_block({"extractors": 0, "loaders": 2}, "Loader failed"),
        ],
    )
    assert t.outcome is not None
    assert (t.outcome.failed_plugin, t.outcome.exit_code) == (TARGET, 2)
    assert t.outcome.error == "target-jsonlines exited with code 2: psycopg.OperationalError: gone"


def test_mapper_failure_names_the_first_mapper():
    t = tracker(mappers=("meltano-map-transformer",))
    feed_all(
        t,
        [
            plugin_line("meltano-map-transformer", "KeyError: 'x'"),
            failed_block({"mappers": 3}, "Mapper failed"),
        ],
    )
    assert t.outcome is not None
    assert t.outcome.failed_plugin == "meltano-map-transformer"
    assert t.outcome.exit_code == 3
    assert t.outcome.error == "meltano-map-transformer exited with code 3: KeyError: 'x'"


def test_failed_plugin_without_output_falls_back_to_meltanos_error():
    t = tracker()
    t.feed(failed_block({"extractors": -9}, "Extractor failed"))
    assert t.outcome == Outcome(False, "tap-shopsim exited with code -9: Extractor failed", TAP, -9, ())


def test_failure_without_exit_codes():
    t = tracker()
    t.feed(plugin_line(TAP, "something"))
    t.feed(failed_block({}, "Cancelled"))
    assert t.outcome == Outcome(False, "Cancelled", None, None, ())
    t2 = tracker()
    t2.feed(failed_block({}, None))
    assert t2.outcome == Outcome(False, "block failed", None, None, ())


def test_error_tail_is_bounded():
    t = tracker()
    feed_all(t, [plugin_line(TAP, f"line {i}") for i in range(TAIL_LINES_KEPT + 15)])
    t.feed(failed_block({"extractors": 1}))
    assert t.outcome is not None
    assert len(t.outcome.error_lines) == TAIL_LINES_KEPT
    assert t.outcome.error_lines[-1] == f"line {TAIL_LINES_KEPT + 14}"
    assert t.outcome.error_lines[0] == "line 15"


def test_unconfirmed_results_are_the_others_as_failed():
    t = tracker(FakeState(singer(a=1)), expected=["a", "b", "c"])
    feed_all(
        t,
        [
            tap_metric("record_count", "a", 10),
            tap_metric("sync_duration", "a", 0.5),
            StateWritten(),
            tap_metric("record_count", "b", 4),
            tap_metric("sync_duration", "b", 0.25, context={"id": 1}),
            failed_block({"extractors": 1}),
        ],
    )
    assert set(t.confirmed) == {"a"}
    results = {r.stream: r for r in t.unconfirmed_results()}
    assert set(results) == {"b", "c"}
    assert results["b"].status is StreamStatus.FAILED
    assert results["b"].records == 4
    assert results["b"].duration == Duration(0.25)
    assert results["c"].status is StreamStatus.FAILED
    assert results["c"].records == 0  # the tap counts (it reported a and b): nothing came of c
    assert results["c"].duration is None  # no timer ran for it


def test_run_completed_sets_the_outcome_only_when_no_block_did():
    t = tracker()
    t.feed(parsed(RUN_FAILED))
    assert t.outcome == Outcome(success=False, error="run failed")
    t2 = tracker()
    t2.feed(RunCompleted(success=True, duration_seconds=1))
    assert t2.outcome == Outcome(success=True, error=None)
    t3 = tracker()
    t3.feed(parsed(BLOCK_SUCCEEDED))
    t3.feed(RunCompleted(success=False, duration_seconds=1))
    assert t3.outcome == Outcome(success=True)


# --------------------------------------------------------------------------------------------------
# Expected streams


def test_expected_streams_with_zero_records_are_reported_at_success():
    t = tracker(
        FakeState(singer(customers="2024-01-02T00:00:00Z")), expected=["customers", "orders", "products"]
    )
    notes = feed_all(
        t,
        [
            tap_metric("record_count", "customers", 3),
            tap_metric("sync_duration", "customers", 0.5),
            loader_count("customers", 3),
            parsed(STATE_UPDATED),
        ],
    )
    assert confirmed_names(notes) == ["customers"]
    notes = t.feed(parsed(BLOCK_SUCCEEDED))
    assert sorted(confirmed_names(notes)) == ["orders", "products"]
    assert {name: r.records for name, r in t.confirmed.items()} == {
        "customers": 3,
        "orders": 0,
        "products": 0,
    }
    assert all(r.status is StreamStatus.SUCCEEDED for r in t.confirmed.values())
    assert t.confirmed["orders"].bookmark is None
    assert t.confirmed["products"].duration is None
    assert t.unconfirmed_results() == []
    assert t.outcome == Outcome(success=True)


def test_expected_streams_without_any_event_fail_when_the_block_fails():
    t = tracker(expected=["customers", "orders"])
    t.feed(failed_block({"extractors": 1}))
    # No plugin reported any count: unknown, never 0.
    assert sorted((r.stream, r.records, r.status) for r in t.unconfirmed_results()) == [
        ("customers", None, StreamStatus.FAILED),
        ("orders", None, StreamStatus.FAILED),
    ]


@pytest.mark.parametrize("event", [LogRecord("info", "hello"), LogRecord("info", "x", "tap-other")])
def test_plain_log_records_notify_nothing(event):
    assert tracker().feed(event) == []


def test_a_run_that_dies_without_a_block_result_names_the_plugin_whose_output_ends_in_a_traceback():
    # Meltano 4.4 dies with a BrokenPipeError when the loader crashes mid-stream: no block result.
    t = tracker()
    feed_all(
        t,
        [
            plugin_line(TAP, "Beginning sync of 'orders'", PluginType.EXTRACTOR),
            plugin_line(TARGET, "Traceback (most recent call last):", PluginType.LOADER),
            plugin_line(TARGET, "    raise FailAfterRecordsError(limit)", PluginType.LOADER),
            plugin_line(
                TARGET,
                "target_jsonlines.target.FailAfterRecordsError: failing after 50 records",
                PluginType.LOADER,
            ),
            plugin_line(TAP, "Beginning sync of 'order_items'", PluginType.EXTRACTOR),
            RunCompleted(success=False, duration_seconds=1),
        ],
    )
    assert t.outcome is not None
    assert not t.outcome.success
    assert t.outcome.failed_plugin == TARGET
    assert (
        t.outcome.error
        == f"{TARGET} failed: target_jsonlines.target.FailAfterRecordsError: failing after 50 records"
    )
    assert "Traceback (most recent call last):" in t.outcome.error_lines


def test_a_run_that_dies_with_no_plugin_traceback_stays_unattributed():
    t = tracker()
    feed_all(t, [plugin_line(TAP, "Error-free line: all good", PluginType.EXTRACTOR), RunCompleted(False, 1)])
    assert t.outcome is not None
    assert (t.outcome.failed_plugin, t.outcome.error) == (None, "run failed")


# --------------------------------------------------------------------------------------------------
# Counts that are true or unknown (plugins we did not write)

# A singer-python tap (pipelinewise) tags its counts "endpoint", not "stream".
PIPELINEWISE_RECORD_COUNT = r"""{"stdio": "stderr", "consumer": false, "producer": true, "string_id": "tap-pw", "cmd_type": "elb", "job_name": "dev:tap-pw-to-target-jsonl", "name": "tap-pw", "event": "METRIC: {\"type\": \"counter\", \"metric\": \"record_count\", \"value\": 50, \"tags\": {\"endpoint\": \"public-customers\"}}", "level": "info", "timestamp": "2026-12-01T10:00:01.000000Z"}"""
MELTANO_STREAM_NOT_FOUND = r"""{"event": "Stream `public-eventz` was not found in the catalog", "level": "warning", "timestamp": "2026-12-01T10:00:00.000000Z", "_logger": "<_FixedFindCallerLogger meltano.core.plugin.singer.tap (INFO)>"}"""
MELTANO_BAD_SETTING = r"""{"event": "invalid literal for int() with base 10: 'abc'", "level": "error", "timestamp": "2026-12-01T20:30:42.340011Z", "_logger": "<_FixedFindCallerLogger meltano.cli.utils (INFO)>", "_name": "error"}"""


def pw_tracker(expected: Iterable[str]) -> ExecutionTracker:
    return ExecutionTracker(
        extractor="tap-pw",
        loader="target-jsonl",
        read_state=FakeState(),
        expected_streams=expected,
        state_before=SingerState.empty(),
    )


def test_counts_nobody_reported_are_unknown_and_said_so():
    t = pw_tracker(["public-customers", "public-events"])
    confirmed = confirmed_names(t.feed(success_block()))
    assert sorted(confirmed) == ["public-customers", "public-events"]
    assert {name: r.records for name, r in t.confirmed.items()} == {
        "public-customers": None,
        "public-events": None,
    }
    [warning] = t.warnings()
    assert warning.startswith("record counts unknown for public-customers, public-events")
    assert "tap-pw" in warning
    assert "target-jsonl" in warning


def test_a_singer_python_count_tagged_endpoint_is_the_streams():
    t = pw_tracker(["public-customers"])
    assert t.feed(parsed(PIPELINEWISE_RECORD_COUNT)) == [StreamProgress("public-customers", 50, None)]
    t.feed(success_block())
    assert t.confirmed["public-customers"].records == 50
    assert t.warnings() == []


def test_a_stream_meltano_did_not_find_in_the_catalog_is_missing_not_succeeded():
    t = tracker(FakeState(singer(customers="2024-01-02T00:00:00Z")), expected=["customers", "customerz"])
    t.feed(parsed(MELTANO_STREAM_NOT_FOUND.replace("public-eventz", "customerz")))
    feed_all(t, [tap_metric("record_count", "customers", 3), tap_metric("sync_duration", "customers", 1)])
    t.feed(StateWritten())
    t.feed(success_block())
    assert t.confirmed["customers"].status is StreamStatus.SUCCEEDED
    missing = t.confirmed["customerz"]
    assert (missing.status, missing.records) == (StreamStatus.MISSING, None)
    [warning] = t.warnings()
    assert "customerz" in warning
    assert "catalog" in warning


def test_a_child_streams_duration_spans_its_timers_not_their_sum():
    t = tracker(expected=["order_items"])
    for second, value in ((1, 0.001), (5, 0.002), (9, 0.5)):
        metric = tap_metric("sync_duration", "order_items", value, context={"order_id": second})
        t.feed(Metric(**{**metric.__dict__, "timestamp": f"2026-12-01T10:00:0{second}Z"}))
    t.feed(success_block())
    # From the start of the first timer (1 s - 0.001 s) to the end of the last (9 s).
    assert t.confirmed["order_items"].duration == Duration(round(8.001, 6))


def test_meltano_failing_before_any_plugin_keeps_its_own_error_line():
    t = tracker(expected=["customers"])
    t.feed(parsed(MELTANO_BAD_SETTING))
    t.feed(RunCompleted(success=False, duration_seconds=1))
    assert t.outcome == Outcome(False, "meltano failed: invalid literal for int() with base 10: 'abc'")
    assert t.meltano_errors == ("invalid literal for int() with base 10: 'abc'",)


def test_a_mapper_failure_names_the_mapping_that_logged():
    t = ExecutionTracker(
        extractor=TAP,
        loader=TARGET,
        read_state=FakeState(),
        mappers=("hide-kind", "meltano-map-transformer"),
        state_before=SingerState.empty(),
    )
    t.feed(plugin_line("hide-kind", "ValueError: bad expression", PluginType.MAPPER))
    t.feed(failed_block({"mappers": 1}, error="Mapper failed"))
    assert t.outcome is not None
    assert t.outcome.failed_plugin == "hide-kind"
    assert t.outcome.error == "hide-kind exited with code 1: ValueError: bad expression"


def test_a_huge_log_line_is_bounded_in_the_error():
    t = tracker()
    t.feed(plugin_line(TAP, "psycopg2.OperationalError: " + "x" * 5000, PluginType.EXTRACTOR))
    t.feed(failed_block({"extractors": 1}))
    assert t.outcome is not None
    assert t.outcome.error is not None
    assert len(t.outcome.error) < 600
