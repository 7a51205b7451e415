"""parse_line on real ``meltano --log-format=json run`` output (Meltano 4.4.1) and on garbage.

The literal lines below were copied verbatim from runs of tap-shopsim -> target-jsonlines: a
successful one, one with ``fail_after_records`` (the extractor exits 1), and one with the plugins'
``structured-logging`` capability on (so Meltano parses the SDK's metrics into ``metric_info``).
"""
# ruff: noqa: E501

from __future__ import annotations

import json

import pytest

from flx_meltano.domain.plugins import PluginType
from flx_meltano.integration.run_events import (
    BlockCompleted,
    LogRecord,
    Metric,
    RunCompleted,
    StateWritten,
    StreamNotFound,
    parse_line,
)

MELTANO_VERSION = r"""{"event": "Meltano 4.4.1, Python 3.11.7, Linux (x86_64)", "level": "info", "timestamp": "2026-11-22T15:55:45.379309Z", "_logger": "<_FixedFindCallerLogger meltano.cli.cli (INFO)>", "_name": "info"}"""

NO_STATE_WARNING = r"""{"event": "No state was found, complete import.", "run_id": "01a203f8-7b46-7b29-8436-bae9f8353299", "level": "warning", "timestamp": "2026-11-22T15:55:46.182864Z", "_logger": "<_FixedFindCallerLogger meltano.core.plugin.singer.tap (INFO)>", "_name": "warning"}"""

TAP_DISCOVERY_LOG = r"""{"stdio": "stderr", "type": "discovery", "name": "tap-shopsim", "event": "Added 'order_items' as child stream to 'orders'", "run_id": "01a203f8-7b46-7b29-8436-bae9f8353299", "level": "info", "timestamp": "2026-11-22T15:55:46.968459Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.extractors.tap-shopsim (INFO)>", "_name": "info"}"""

TAP_LOG = r"""{"stdio": "stderr", "consumer": false, "producer": true, "string_id": "tap-shopsim", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "name": "tap-shopsim", "event": "Beginning sync of 'customers' in incremental mode", "run_id": "01a203f8-7b46-7b29-8436-bae9f8353299", "level": "info", "timestamp": "2026-11-22T15:55:47.789832Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.extractors.tap-shopsim (INFO)>", "_name": "info"}"""

TAP_SYNC_DURATION = r"""{"stdio": "stderr", "consumer": false, "producer": true, "string_id": "tap-shopsim", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "name": "tap-shopsim", "event": "METRIC: {\"type\":\"timer\",\"metric\":\"sync_duration\",\"value\":0.004510402679443359,\"tags\":{\"stream\":\"customers\",\"pid\":30514,\"context\":{},\"status\":\"succeeded\"}}", "run_id": "01a203f8-7b46-7b29-8436-bae9f8353299", "level": "info", "timestamp": "2026-11-22T15:55:47.794897Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.extractors.tap-shopsim (INFO)>", "_name": "info"}"""

TAP_RECORD_COUNT = r"""{"stdio": "stderr", "consumer": false, "producer": true, "string_id": "tap-shopsim", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "name": "tap-shopsim", "event": "METRIC: {\"type\":\"counter\",\"metric\":\"record_count\",\"value\":100,\"tags\":{\"stream\":\"customers\",\"pid\":30514,\"context\":{}}}", "run_id": "01a203f8-7b46-7b29-8436-bae9f8353299", "level": "info", "timestamp": "2026-11-22T15:55:47.794999Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.extractors.tap-shopsim (INFO)>", "_name": "info"}"""

TAP_CHILD_SYNC_DURATION = r"""{"stdio": "stderr", "consumer": false, "producer": true, "string_id": "tap-shopsim", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "name": "tap-shopsim", "event": "METRIC: {\"type\":\"timer\",\"metric\":\"sync_duration\",\"value\":0.00029921531677246094,\"tags\":{\"stream\":\"order_items\",\"pid\":30514,\"context\":{\"order_id\":1},\"status\":\"succeeded\"}}", "run_id": "01a203f8-7b46-7b29-8436-bae9f8353299", "level": "info", "timestamp": "2026-11-22T15:55:47.795978Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.extractors.tap-shopsim (INFO)>", "_name": "info"}"""

TAP_CHILD_RECORD_COUNT = r"""{"stdio": "stderr", "consumer": false, "producer": true, "string_id": "tap-shopsim", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "name": "tap-shopsim", "event": "METRIC: {\"type\":\"counter\",\"metric\":\"record_count\",\"value\":4,\"tags\":{\"stream\":\"order_items\",\"pid\":30514,\"context\":{\"order_id\":1}}}", "run_id": "01a203f8-7b46-7b29-8436-bae9f8353299", "level": "info", "timestamp": "2026-11-22T15:55:47.796117Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.extractors.tap-shopsim (INFO)>", "_name": "info"}"""

LOADER_LOG = r"""{"stdio": "stderr", "consumer": true, "producer": false, "string_id": "target-jsonlines", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "name": "target-jsonlines", "event": "Reader 'target-jsonlines' completed processing 766 lines of input (103 schemas, 560 records, 0 batch manifests, 103 state messages, 0 activate version messages).", "run_id": "01a203f8-7b46-7b29-8436-bae9f8353299", "level": "info", "timestamp": "2026-11-22T15:55:47.912154Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.loaders.target-jsonlines (INFO)>", "_name": "info"}"""

LOADER_BATCH_TIME = r"""{"stdio": "stderr", "consumer": true, "producer": false, "string_id": "target-jsonlines", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "name": "target-jsonlines", "event": "METRIC: {\"type\":\"timer\",\"metric\":\"batch_processing_time\",\"value\":0.0075151920318603516,\"tags\":{\"stream\":\"customers\",\"pid\":30516,\"status\":\"succeeded\"}}", "run_id": "01a203f8-7b46-7b29-8436-bae9f8353299", "level": "info", "timestamp": "2026-11-22T15:55:47.924101Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.loaders.target-jsonlines (INFO)>", "_name": "info"}"""

LOADER_RECORD_COUNT = r"""{"stdio": "stderr", "consumer": true, "producer": false, "string_id": "target-jsonlines", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "name": "target-jsonlines", "event": "METRIC: {\"type\":\"counter\",\"metric\":\"record_count\",\"value\":100,\"tags\":{\"stream\":\"customers\",\"pid\":30516}}", "run_id": "01a203f8-7b46-7b29-8436-bae9f8353299", "level": "info", "timestamp": "2026-11-22T15:55:47.926985Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.loaders.target-jsonlines (INFO)>", "_name": "info"}"""

STATE_UPDATED = r"""{"event": "Incremental state has been updated at 2026-11-22 15:55:47.937165+00:00.", "run_id": "01a203f8-7b46-7b29-8436-bae9f8353299", "level": "info", "timestamp": "2026-11-22T15:55:47.937193Z", "_logger": "<_FixedFindCallerLogger meltano.core.plugin.singer.target (INFO)>", "_name": "info"}"""

BLOCK_SUCCEEDED = r"""{"set_number": 0, "block_type": "ExtractLoadBlocks", "success": true, "err": null, "duration_seconds": 2.05, "event": "Block run completed", "run_id": "01a203f8-7b46-7b29-8436-bae9f8353299", "level": "info", "timestamp": "2026-11-22T15:55:47.995395Z", "_logger": "<_FixedFindCallerLogger meltano.cli.run (INFO)>", "_name": "info"}"""

RUN_SUCCEEDED = r"""{"duration_seconds": 2.05, "status": "success", "event": "Run completed", "run_id": "01a203f8-7b46-7b29-8436-bae9f8353299", "level": "info", "timestamp": "2026-11-22T15:55:47.995670Z", "_logger": "<_FixedFindCallerLogger meltano.cli.run (INFO)>", "_name": "info"}"""

TAP_FAILED_SYNC_DURATION = r"""{"stdio": "stderr", "consumer": false, "producer": true, "string_id": "tap-shopsim", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "name": "tap-shopsim", "event": "METRIC: {\"type\":\"timer\",\"metric\":\"sync_duration\",\"value\":0.0029823780059814453,\"tags\":{\"stream\":\"customers\",\"pid\":30787,\"context\":{},\"status\":\"failed\"}}", "run_id": "01a203f8-ec11-7816-a9c4-dc3acce7077c", "level": "info", "timestamp": "2026-11-22T15:56:16.470428Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.extractors.tap-shopsim (INFO)>", "_name": "info"}"""

TAP_EXCEPTION = r"""{"stdio": "stderr", "consumer": false, "producer": true, "string_id": "tap-shopsim", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "name": "tap-shopsim", "event": "tap_shopsim.tap.ShopSimFailure: tap-shopsim: failing on purpose after 50 records (fail_after_records)", "run_id": "01a203f8-ec11-7816-a9c4-dc3acce7077c", "level": "info", "timestamp": "2026-11-22T15:56:16.478722Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.extractors.tap-shopsim (INFO)>", "_name": "info"}"""

EXTRACTOR_FAILED = (
    r"""{"event": "Extractor failed", "level": "error", "timestamp": "2026-11-22T15:56:16.606905Z"}"""
)

BLOCK_FAILED = r"""{"set_number": 0, "block_type": "ExtractLoadBlocks", "success": false, "err": "Extractor failed", "exit_codes": {"extractors": 1}, "duration_seconds": 1.791, "event": "Block run completed", "run_id": "01a203f8-ec11-7816-a9c4-dc3acce7077c", "level": "error", "timestamp": "2026-11-22T15:56:16.607199Z", "_logger": "<_FixedFindCallerLogger meltano.cli.run (INFO)>", "_name": "error"}"""

RUN_FAILED = r"""{"duration_seconds": 1.791, "status": "failure", "event": "Run completed", "run_id": "01a203f8-ec11-7816-a9c4-dc3acce7077c", "level": "info", "timestamp": "2026-11-22T15:56:16.607383Z", "_logger": "<_FixedFindCallerLogger meltano.cli.run (INFO)>", "_name": "info"}"""

STRUCTURED_TAP_LOG = r"""{"stdio": "stderr", "consumer": false, "producer": true, "string_id": "tap-shopsim", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "pid": 30954, "thread_name": "MainThread", "app_name": "singer-sdk", "name": "tap-shopsim", "plugin_logger": "tap-shopsim", "event": "tap-shopsim v0.1.0, Meltano SDK v0.54.9", "run_id": "01a203f9-159f-737f-82be-443d59db9059", "level": "info", "timestamp": "2026-11-22T15:56:27.724907Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.extractors.tap-shopsim (INFO)>", "_name": "info"}"""

STRUCTURED_TAP_SYNC_DURATION = r"""{"stdio": "stderr", "consumer": false, "producer": true, "string_id": "tap-shopsim", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "pid": 30954, "thread_name": "MainThread", "app_name": "singer-sdk", "metric_info": {"type": "timer", "metric": "sync_duration", "value": 0.008587360382080078, "tags": {"stream": "customers", "pid": 30954, "context": {}, "status": "succeeded"}}, "name": "tap-shopsim", "plugin_logger": "singer_sdk.metrics", "event": "METRIC", "run_id": "01a203f9-159f-737f-82be-443d59db9059", "level": "info", "timestamp": "2026-11-22T15:56:27.740652Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.extractors.tap-shopsim (INFO)>", "_name": "info"}"""

STRUCTURED_TAP_RECORD_COUNT = r"""{"stdio": "stderr", "consumer": false, "producer": true, "string_id": "tap-shopsim", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "pid": 30954, "thread_name": "MainThread", "app_name": "singer-sdk", "metric_info": {"type": "counter", "metric": "record_count", "value": 100, "tags": {"stream": "customers", "pid": 30954, "context": {}}}, "name": "tap-shopsim", "plugin_logger": "singer_sdk.metrics", "event": "METRIC", "run_id": "01a203f9-159f-737f-82be-443d59db9059", "level": "info", "timestamp": "2026-11-22T15:56:27.740873Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.extractors.tap-shopsim (INFO)>", "_name": "info"}"""

STRUCTURED_CHILD_SYNC_DURATION = r"""{"stdio": "stderr", "consumer": false, "producer": true, "string_id": "tap-shopsim", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "pid": 30954, "thread_name": "MainThread", "app_name": "singer-sdk", "metric_info": {"type": "timer", "metric": "sync_duration", "value": 0.0013837814331054688, "tags": {"stream": "order_items", "pid": 30954, "context": {"order_id": 1}, "status": "succeeded"}}, "name": "tap-shopsim", "plugin_logger": "singer_sdk.metrics", "event": "METRIC", "run_id": "01a203f9-159f-737f-82be-443d59db9059", "level": "info", "timestamp": "2026-11-22T15:56:27.741694Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.extractors.tap-shopsim (INFO)>", "_name": "info"}"""

STRUCTURED_LOADER_RECORD_COUNT = r"""{"stdio": "stderr", "consumer": true, "producer": false, "string_id": "target-jsonlines", "cmd_type": "elb", "job_name": "dev:tap-shopsim-to-target-jsonlines", "pid": 30956, "thread_name": "MainThread", "app_name": "singer-sdk", "metric_info": {"type": "counter", "metric": "record_count", "value": 100, "tags": {"stream": "customers", "pid": 30956}}, "name": "target-jsonlines", "plugin_logger": "singer_sdk.metrics", "event": "METRIC", "run_id": "01a203f9-159f-737f-82be-443d59db9059", "level": "info", "timestamp": "2026-11-22T15:56:28.109056Z", "_logger": "<_FixedFindCallerLogger meltano.plugin.stderr.loaders.target-jsonlines (INFO)>", "_name": "info"}"""


# --------------------------------------------------------------------------------------------------
# Plugin log lines


def test_extractor_log_line():
    event = parse_line(TAP_LOG)
    assert event == LogRecord(
        level="info",
        message="Beginning sync of 'customers' in incremental mode",
        plugin="tap-shopsim",
        plugin_role=PluginType.EXTRACTOR,
        timestamp="2026-11-22T15:55:47.789832Z",
    )


def test_loader_log_line():
    event = parse_line(LOADER_LOG)
    assert isinstance(event, LogRecord)
    assert event.plugin == "target-jsonlines"
    assert event.plugin_role == PluginType.LOADER
    assert event.message.startswith("Reader 'target-jsonlines' completed processing 766 lines")
    assert event.timestamp == "2026-11-22T15:55:47.912154Z"


def test_discovery_line_takes_its_role_from_the_logger_name():
    # Catalog discovery runs outside the extract-load block: no producer/consumer flags.
    event = parse_line(TAP_DISCOVERY_LOG)
    assert event == LogRecord(
        "info",
        "Added 'order_items' as child stream to 'orders'",
        "tap-shopsim",
        PluginType.EXTRACTOR,
        "2026-11-22T15:55:46.968459Z",
    )


def test_failing_extractor_traceback_line():
    event = parse_line(TAP_EXCEPTION)
    assert isinstance(event, LogRecord)
    assert event.plugin == "tap-shopsim"
    assert event.plugin_role == PluginType.EXTRACTOR
    assert event.message == (
        "tap_shopsim.tap.ShopSimFailure: tap-shopsim: failing on purpose after 50 records (fail_after_records)"
    )


def test_structured_plugin_log_line():
    event = parse_line(STRUCTURED_TAP_LOG)
    assert event == LogRecord(
        "info",
        "tap-shopsim v0.1.0, Meltano SDK v0.54.9",
        "tap-shopsim",
        PluginType.EXTRACTOR,
        "2026-11-22T15:56:27.724907Z",
    )


@pytest.mark.parametrize(
    ("flags", "logger", "role"),
    [
        ({"producer": True, "consumer": True}, "", PluginType.MAPPER),
        ({"producer": True, "consumer": False}, "", PluginType.EXTRACTOR),
        ({"producer": False, "consumer": True}, "", PluginType.LOADER),
        ({}, "<L meltano.plugin.stderr.loaders.target-x (INFO)>", PluginType.LOADER),
        ({}, "<L meltano.plugin.stderr.mappers.meltano-map (INFO)>", PluginType.MAPPER),
        ({}, "<L meltano.plugin.stdout.utilities.dbt (INFO)>", PluginType.UTILITY),
        ({}, "<L meltano.plugin.stderr.transformers.dbt (INFO)>", PluginType.TRANSFORMER),
        ({}, "<L meltano.somewhere (INFO)>", None),
    ],
)
def test_plugin_roles(flags, logger, role):
    line = json.dumps({"stdio": "stderr", "name": "p", "event": "hello", "_logger": logger, **flags})
    event = parse_line(line)
    assert isinstance(event, LogRecord)
    assert event.plugin == "p"
    assert event.plugin_role == role


# --------------------------------------------------------------------------------------------------
# Metrics, string form ("METRIC: {...}")


def test_tap_record_count():
    event = parse_line(TAP_RECORD_COUNT)
    assert event == Metric(
        plugin="tap-shopsim",
        plugin_role=PluginType.EXTRACTOR,
        name="record_count",
        kind="counter",
        value=100.0,
        tags={"stream": "customers", "pid": 30514, "context": {}},
        timestamp="2026-11-22T15:55:47.794999Z",
    )
    assert event.stream == "customers"
    assert event.context == {}


def test_tap_sync_duration_of_a_top_level_stream():
    event = parse_line(TAP_SYNC_DURATION)
    assert isinstance(event, Metric)
    assert event.name == "sync_duration"
    assert event.kind == "timer"
    assert event.value == pytest.approx(0.004510402679443359)
    assert event.stream == "customers"
    assert event.context == {}
    assert event.tags["status"] == "succeeded"


def test_tap_sync_duration_of_a_child_stream_has_its_context():
    event = parse_line(TAP_CHILD_SYNC_DURATION)
    assert isinstance(event, Metric)
    assert event.name == "sync_duration"
    assert event.stream == "order_items"
    assert event.context == {"order_id": 1}
    child_count = parse_line(TAP_CHILD_RECORD_COUNT)
    assert isinstance(child_count, Metric)
    assert (child_count.name, child_count.value, child_count.context) == (
        "record_count",
        4.0,
        {"order_id": 1},
    )


def test_failed_sync_duration_keeps_its_status():
    event = parse_line(TAP_FAILED_SYNC_DURATION)
    assert isinstance(event, Metric)
    assert event.tags["status"] == "failed"


def test_loader_metrics():
    count = parse_line(LOADER_RECORD_COUNT)
    assert count == Metric(
        "target-jsonlines",
        PluginType.LOADER,
        "record_count",
        "counter",
        100.0,
        {"stream": "customers", "pid": 30516},
        "2026-11-22T15:55:47.926985Z",
    )
    assert count.context == {}
    batch = parse_line(LOADER_BATCH_TIME)
    assert isinstance(batch, Metric)
    assert (batch.plugin_role, batch.name, batch.kind, batch.stream) == (
        PluginType.LOADER,
        "batch_processing_time",
        "timer",
        "customers",
    )


def test_metric_without_stream_or_tags():
    line = json.dumps(
        {
            "stdio": "stderr",
            "name": "tap-x",
            "producer": True,
            "event": 'METRIC: {"metric": "m", "value": "2.5"}',
        }
    )
    event = parse_line(line)
    assert event == Metric("tap-x", PluginType.EXTRACTOR, "m", "", 2.5, {}, None)
    assert event.stream is None
    assert event.context == {}


# --------------------------------------------------------------------------------------------------
# Metrics, structured-logging form (metric_info)


def test_structured_tap_sync_duration():
    event = parse_line(STRUCTURED_TAP_SYNC_DURATION)
    assert event == Metric(
        "tap-shopsim",
        PluginType.EXTRACTOR,
        "sync_duration",
        "timer",
        0.008587360382080078,
        {"stream": "customers", "pid": 30954, "context": {}, "status": "succeeded"},
        "2026-11-22T15:56:27.740652Z",
    )


def test_structured_tap_record_count():
    event = parse_line(STRUCTURED_TAP_RECORD_COUNT)
    assert isinstance(event, Metric)
    assert (event.plugin, event.plugin_role, event.name, event.value, event.stream) == (
        "tap-shopsim",
        PluginType.EXTRACTOR,
        "record_count",
        100.0,
        "customers",
    )


def test_structured_child_sync_duration():
    event = parse_line(STRUCTURED_CHILD_SYNC_DURATION)
    assert isinstance(event, Metric)
    assert event.stream == "order_items"
    assert event.context == {"order_id": 1}


def test_structured_loader_record_count():
    event = parse_line(STRUCTURED_LOADER_RECORD_COUNT)
    assert isinstance(event, Metric)
    assert (event.plugin, event.plugin_role, event.name, event.kind, event.value, event.stream) == (
        "target-jsonlines",
        PluginType.LOADER,
        "record_count",
        "counter",
        100.0,
        "customers",
    )


def test_structured_metric_info_wins_over_the_message():
    record = json.loads(STRUCTURED_TAP_RECORD_COUNT)
    record["event"] = 'METRIC: {"metric": "other", "value": 1}'
    event = parse_line(json.dumps(record))
    assert isinstance(event, Metric)
    assert event.name == "record_count"


@pytest.mark.parametrize(
    "metric_info",
    [
        None,
        "record_count",
        [1, 2],
        {"metric": "record_count"},
        {"value": 3},
        {"metric": "record_count", "value": "lots"},
        {"metric": "record_count", "value": None},
        {"metric": "record_count", "value": [1]},
    ],
)
def test_bad_metric_info_becomes_a_log_record(metric_info):
    record = json.loads(STRUCTURED_TAP_RECORD_COUNT)
    record["metric_info"] = metric_info
    event = parse_line(json.dumps(record))
    assert event == LogRecord(
        "info", "METRIC", "tap-shopsim", PluginType.EXTRACTOR, "2026-11-22T15:56:27.740873Z"
    )


# --------------------------------------------------------------------------------------------------
# Meltano's own lines


def test_state_updated():
    assert parse_line(STATE_UPDATED) == StateWritten("2026-11-22T15:55:47.937193Z")


def test_a_stream_meltano_did_not_find_in_the_catalog():
    line = r"""{"event": "Stream `public-eventz` was not found in the catalog", "level": "warning", "timestamp": "2026-12-01T10:00:00Z", "_logger": "<_FixedFindCallerLogger meltano.core.plugin.singer.tap (INFO)>"}"""
    assert parse_line(line) == StreamNotFound("public-eventz", "2026-12-01T10:00:00Z")
    # The same words from a plugin are the plugin's log line.
    plugin = json.dumps(
        {"stdio": "stderr", "name": "tap-x", "event": "Stream `a` was not found in the catalog"}
    )
    assert isinstance(parse_line(plugin), LogRecord)


def test_a_singer_python_metric_names_its_stream_by_endpoint():
    line = json.dumps(
        {
            "stdio": "stderr",
            "producer": True,
            "name": "tap-pw",
            "event": 'METRIC: {"type": "counter", "metric": "record_count", "value": 50, "tags": {"endpoint": "public-customers"}}',
        }
    )
    metric = parse_line(line)
    assert isinstance(metric, Metric)
    assert (metric.stream, metric.value, metric.plugin_role) == ("public-customers", 50, PluginType.EXTRACTOR)


def test_block_succeeded():
    assert parse_line(BLOCK_SUCCEEDED) == BlockCompleted(
        index=0,
        block_type="ExtractLoadBlocks",
        success=True,
        error=None,
        exit_codes={},
        duration_seconds=2.05,
    )


def test_block_failed():
    assert parse_line(BLOCK_FAILED) == BlockCompleted(
        index=0,
        block_type="ExtractLoadBlocks",
        success=False,
        error="Extractor failed",
        exit_codes={"extractors": 1},
        duration_seconds=1.791,
    )


def test_block_failed_exit_codes_are_ints():
    record = json.loads(BLOCK_FAILED)
    record["exit_codes"] = {"extractors": "1", "loaders": None, "mappers": "x", "utilities": 0}
    record["set_number"] = 2
    event = parse_line(json.dumps(record))
    assert isinstance(event, BlockCompleted)
    assert event.exit_codes == {"extractors": 1, "utilities": 0}
    assert event.index == 2


def test_run_completed():
    assert parse_line(RUN_SUCCEEDED) == RunCompleted(success=True, duration_seconds=2.05)
    assert parse_line(RUN_FAILED) == RunCompleted(success=False, duration_seconds=1.791)


def test_other_meltano_lines_are_log_records():
    assert parse_line(MELTANO_VERSION) == LogRecord(
        "info", "Meltano 4.4.1, Python 3.11.7, Linux (x86_64)", None, None, "2026-11-22T15:55:45.379309Z"
    )
    assert parse_line(NO_STATE_WARNING) == LogRecord(
        "warning", "No state was found, complete import.", None, None, "2026-11-22T15:55:46.182864Z"
    )
    assert parse_line(EXTRACTOR_FAILED) == LogRecord(
        "error", "Extractor failed", None, None, "2026-11-22T15:56:16.606905Z"
    )


@pytest.mark.parametrize(
    ("level", "expected"), [("DEBUG", "debug"), ("critical", "critical"), ("trace", "info"), (None, "info")]
)
def test_levels_are_normalised(level, expected):
    event = parse_line(json.dumps({"event": "x", "level": level}))
    assert isinstance(event, LogRecord)
    assert event.level == expected


def test_line_endings_are_ignored():
    assert parse_line(STATE_UPDATED + "\n") == parse_line(STATE_UPDATED)
    assert parse_line(RUN_FAILED + "\r\n") == parse_line(RUN_FAILED)


# --------------------------------------------------------------------------------------------------
# Garbage never raises


@pytest.mark.parametrize("line", ["", "\n", "   ", "\t \r\n"])
def test_blank_lines_are_none(line):
    assert parse_line(line) is None


@pytest.mark.parametrize(
    "line",
    [
        "Traceback (most recent call last):",
        "not json at all {",
        "[1, 2, 3]",
        '["Block run completed"]',
        "42",
        "null",
        '"Run completed"',
        "{}}",
        TAP_SYNC_DURATION[:120],
        BLOCK_FAILED[:-1],
        STRUCTURED_TAP_RECORD_COUNT[: len(STRUCTURED_TAP_RECORD_COUNT) // 2],
    ],
)
def test_non_object_lines_become_plain_log_records(line):
    assert parse_line(line) == LogRecord(level="info", message=line)


@pytest.mark.parametrize(
    "message",
    [
        "METRIC: {not json",
        "METRIC: ",
        "METRIC: [1, 2]",
        'METRIC: "record_count"',
        'METRIC: {"type": "counter", "value": 5}',
        'METRIC: {"metric": "record_count"}',
        'METRIC: {"metric": "record_count", "value": "five"}',
        'METRIC: {"metric": "record_count", "value": {"n": 5}}',
        'METRIC: {"metric": "record_count", "value": 5',
    ],
)
def test_bad_metric_payloads_become_plugin_log_records(message):
    record = json.loads(TAP_RECORD_COUNT)
    record["event"] = message
    event = parse_line(json.dumps(record))
    assert event == LogRecord(
        "info", message, "tap-shopsim", PluginType.EXTRACTOR, "2026-11-22T15:55:47.794999Z"
    )


@pytest.mark.parametrize(
    "record",
    [
        {"event": "Block run completed"},
        {"event": "Block run completed", "set_number": None, "duration_seconds": None, "exit_codes": [1]},
        {"event": "Block run completed", "set_number": "x", "success": True},
        {"event": "Block run completed", "duration_seconds": "n/a", "success": False},
        {"event": "Run completed", "duration_seconds": "soon"},
        {"event": "Run completed", "duration_seconds": [1]},
        {"event": None},
        {"event": {"nested": True}, "level": 5},
        {"stdio": "stderr", "name": None, "event": "x"},
        {"stdio": "stderr", "name": 7, "event": None, "level": []},
    ],
)
def test_odd_json_objects_do_not_raise(record):
    event = parse_line(json.dumps(record))
    assert isinstance(event, LogRecord | BlockCompleted | RunCompleted)
