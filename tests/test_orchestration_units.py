"""Orchestration helpers: retry policies, pools, freshness, names and tags, schedule options."""

from __future__ import annotations

from datetime import timedelta

from dagster import Backoff, DefaultScheduleStatus, RetryPolicy

from flx_meltano.domain.identifiers import StateId
from flx_meltano.domain.plugins import Plugin, PluginType
from flx_meltano.domain.project import PipelineDefinition, Schedule
from flx_meltano.orchestration.assets import pool_for, retry_policy_for
from flx_meltano.orchestration.definitions import freshness_of
from flx_meltano.orchestration.schedules import build_schedules
from flx_meltano.orchestration.translator import (
    DagsterMeltanoTranslator,
    MeltanoStream,
    dagster_name,
    tag_value,
)


def _pipeline(extractor_extras=None, loader_extras=None) -> PipelineDefinition:
    tap = Plugin("tap-a", PluginType.EXTRACTOR, namespace="tap_a", extras=extractor_extras or {})
    target = Plugin("target-b", PluginType.LOADER, namespace="target_b", extras=loader_extras or {})
    return PipelineDefinition(StateId("prod", "tap-a", "target-b"), tap, target, streams=("x",))


def test_retry_policy_comes_from_meta_with_backoff():
    retry = {
        "meta": {"dagster": {"retry": {"max_retries": 3, "delay_seconds": 30, "backoff": "exponential"}}}
    }
    policy = retry_policy_for(_pipeline(loader_extras=retry))
    assert policy == RetryPolicy(max_retries=3, delay=30.0, backoff=Backoff.EXPONENTIAL)
    default = RetryPolicy(max_retries=1)
    assert retry_policy_for(_pipeline(), default) is default
    assert retry_policy_for(_pipeline()) is None


def test_pools_are_per_extractor_and_freshness_per_pipeline():
    assert pool_for(_pipeline()) == "meltano/tap-a"
    fresh = {"meta": {"dagster": {"freshness_hours": 6}}}
    assert freshness_of(_pipeline(extractor_extras=fresh), None) == timedelta(hours=6)
    assert freshness_of(_pipeline(), 24) == timedelta(hours=24)
    assert freshness_of(_pipeline(), None) is None


def test_names_and_tags_are_valid_for_dagster():
    assert dagster_name("shop-to-files.daily") == "shop_to_files_daily"
    assert tag_value("prod:tap-a-to-target-b") == "prod.tap-a-to-target-b"
    assert len(tag_value("x" * 100)) == 63


def test_schedules_take_timezone_and_status_and_skip_manual_ones():
    from dagster import AssetSelection, define_asset_job

    job = define_asset_job("j", selection=AssetSelection.all())
    schedules = [
        Schedule("hourly", "@hourly", job="j"),
        Schedule("manual", "@manual", job="j"),
    ]
    [built] = build_schedules(
        schedules,
        {"j": job},
        {},
        execution_timezone="Europe/Paris",
        default_status=DefaultScheduleStatus.RUNNING,
    )
    assert built.name == "hourly"
    assert built.cron_schedule == "0 * * * *"
    assert built.execution_timezone == "Europe/Paris"
    assert built.default_status == DefaultScheduleStatus.RUNNING


def test_repeated_log_lines_reach_dagster_once_with_a_count():
    from flx_meltano.orchestration.resource import CollapsedLog

    class FakeLog:
        def __init__(self):
            self.lines = []

        def log(self, level, message):
            self.lines.append((level, message))

    class FakeContext:
        log = FakeLog()

    log = CollapsedLog(FakeContext())
    for _ in range(2000):
        log("info", "tap-a", "Beginning sync of 'items'")
    log("warning", "tap-a", "slow")
    log("info", None, "done")
    log.flush()
    assert [m for _, m in FakeContext.log.lines] == [
        "[tap-a] Beginning sync of 'items'",
        "[tap-a] Beginning sync of 'items' (previous line repeated 1999 more times)",
        "[tap-a] slow",
        "[meltano] done",
    ]
    assert FakeContext.log.lines[2][0] == 30  # WARNING keeps its level


def test_the_loader_kind_is_what_follows_target_in_its_name():
    translator = DagsterMeltanoTranslator()
    for loader, kind in [
        ("target-postgres", "postgres"),
        ("pipelinewise-target-snowflake", "snowflake"),
        ("target-bigquery-batch", "bigquery"),
        ("loader-without-prefix", "loader"),
    ]:
        pipeline = _pipeline()
        renamed = PipelineDefinition(
            state_id=StateId("dev", pipeline.extractor.name, loader),
            extractor=pipeline.extractor,
            loader=Plugin(loader, PluginType.LOADER),
        )
        assert translator.get_kinds(MeltanoStream(renamed, "orders")) == {"meltano", "singer", kind}


def test_sql_streams_are_keyed_by_the_table_the_loader_writes():
    from flx_meltano.domain.destinations import StreamDestination

    pipeline = PipelineDefinition(
        StateId("dev", "tap-postgres", "target-postgres"),
        Plugin("tap-postgres", PluginType.EXTRACTOR, namespace="tap_postgres"),
        Plugin("target-postgres", PluginType.LOADER, namespace="target_postgres"),
        streams=("public-events",),
        mappings=("hide-kind",),
        destinations={"public-events": StreamDestination("events", "raw")},
    )
    spec = DagsterMeltanoTranslator().get_asset_spec(MeltanoStream(pipeline, "public-events"))
    assert spec.key.path == ["raw", "events"]
    assert spec.metadata["dagster/table_name"] == "raw.events"
    assert spec.metadata["meltano/mappings"] == "hide-kind"
    assert spec.metadata["meltano/stream"] == "public-events"


def test_file_streams_name_their_file_and_key_prefix_still_wins():
    from flx_meltano.domain.destinations import StreamDestination

    prefixed = {"meta": {"dagster": {"key_prefix": ["files"]}}}
    pipeline = PipelineDefinition(
        StateId("dev", "tap-a", "target-jsonl"),
        Plugin("tap-a", PluginType.EXTRACTOR, namespace="tap_a"),
        Plugin("target-jsonl", PluginType.LOADER, namespace="target_jsonl", extras=prefixed),
        streams=("s",),
        destinations={"s": StreamDestination(path="/out/s.jsonl")},
    )
    spec = DagsterMeltanoTranslator().get_asset_spec(MeltanoStream(pipeline, "s"))
    assert spec.key.path == ["files", "s"]
    assert spec.metadata["meltano/path"] == "/out/s.jsonl"
    assert "dagster/table_name" not in spec.metadata
    assert "meltano/mappings" not in spec.metadata


def test_colour_codes_never_reach_dagster_logs():
    from flx_meltano.orchestration.resource import CollapsedLog

    class FakeLog:
        def __init__(self):
            self.lines = []

        def log(self, level, message):
            self.lines.append(message)

    class FakeContext:
        log = FakeLog()

    log = CollapsedLog(FakeContext())
    log("info", "dbt-postgres", "1 of 3 \x1b[32mOK\x1b[0m created sql view model \x1b[1mstg_orders\x1b[0m")
    log("info", "dbt-postgres", "\x1b[0m20:33:09  [\x1b[33mWARNING\x1b[0m]: deprecated")
    assert FakeContext.log.lines == [
        "[dbt-postgres] 1 of 3 OK created sql view model stg_orders",
        "[dbt-postgres] 20:33:09  [WARNING]: deprecated",
    ]


def test_pipelines_are_filtered_by_id_or_name_globs():
    from flx_meltano.orchestration.builder import PipelineFilter

    pipeline = _pipeline()  # prod:tap-a-to-target-b
    assert PipelineFilter().selects(pipeline)
    assert PipelineFilter(include=("prod:*",)).selects(pipeline)
    assert PipelineFilter(include=("tap-a-to-*",)).selects(pipeline)
    assert not PipelineFilter(include=("dev:*",)).selects(pipeline)
    assert not PipelineFilter(include=("tap-a-*",), exclude=("*-to-target-b",)).selects(pipeline)


def test_dbt_sources_map_to_the_stream_loading_their_table():
    from dagster import AssetKey, AssetSpec

    from flx_meltano.orchestration.dbt import StreamTables

    streams = StreamTables(
        [
            AssetSpec(AssetKey(["raw", "events"]), metadata={"dagster/table_name": "raw.events"}),
            AssetSpec(AssetKey(["files", "shop", "orders"])),  # a file target: no table
            AssetSpec(AssetKey(["lake", "users"]), metadata={"dagster/table_name": "Landing.Users"}),
        ]
    )
    assert streams.key_for("warehouse", "raw", "events") == AssetKey(["raw", "events"])
    assert streams.key_for(None, "landing", "users") == AssetKey(["lake", "users"])  # case-insensitive
    assert streams.key_for(None, "lake", "users") == AssetKey(["lake", "users"])  # by key when no table
    assert streams.key_for(None, "shop", "orders") is None
    assert streams.key_for(None, None, "events") is None


def test_dbt_lines_are_redacted_in_the_dagster_log_and_the_compute_log(capsys):
    from flx_meltano.application.secrets import Redactor
    from flx_meltano.orchestration.dbt import _events, _RedactingWriter
    from flx_meltano.orchestration.resource import CollapsedLog

    class FakeLog:
        def __init__(self):
            self.lines = []

        def log(self, level, message):
            self.lines.append((level, message))

    class FakeContext:
        log = FakeLog()

    class Event:
        def __init__(self, level, msg):
            self.raw_event = {"info": {"level": level, "msg": msg}}

        def to_default_asset_events(self, **kwargs):
            print(self.raw_event["info"]["msg"])  # dagster-dbt echoes each line to stdout
            return iter(())

    class Invocation:
        manifest = dagster_dbt_translator = target_path = project = context = None

        def stream_raw_events(self):
            yield Event("info", "Running with dbt=1.10")
            yield Event("warn", "password s3cret-pass rejected")

    class Setup:
        utility = Plugin("dbt-postgres", PluginType.UTILITY)

    import contextlib
    import sys

    redact = Redactor.for_plugins([], {"FLX_WAREHOUSE_PASSWORD": "s3cret-pass"})
    with contextlib.redirect_stdout(_RedactingWriter(sys.stdout, redact)):
        list(_events(Invocation(), CollapsedLog(FakeContext()), redact, Setup()))
    assert FakeContext.log.lines == [
        (20, "[dbt-postgres] Running with dbt=1.10"),
        (30, "[dbt-postgres] password ******** rejected"),
    ]
    assert "s3cret-pass" not in capsys.readouterr().out
