"""The Dagster code location in-process: materialize, subsets, failures, schedules, sensors, translator."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    RunRequest,
    build_schedule_context,
    build_sensor_context,
    materialize,
)

from flx_meltano.application import queries
from flx_meltano.application.logs import execution_logs
from flx_meltano.application.pipelines import resolve
from flx_meltano.application.run import RunOptions, open_execution
from flx_meltano.domain.values import ExecutionStatus, Trigger
from flx_meltano.orchestration import DagsterMeltanoTranslator, MeltanoResource, build_definitions
from flx_meltano.orchestration.sensors import stale_run_key

REPO = Path(__file__).resolve().parents[1]
FILES = ["files", "shop"]
pytestmark = pytest.mark.usefixtures("dbt_manifest")  # definitions of this project read it


def _defs(store_url: str, **kwargs):
    return build_definitions(project_dir=REPO, database_url=store_url, **kwargs)


def _assets(defs):
    return [a for a in defs.assets if hasattr(a, "keys")]


def _materializations(result, key: AssetKey):
    return [e for e in result.get_asset_materialization_events() if e.asset_key == key]


def test_definitions_have_an_asset_per_stream_jobs_schedules_and_sensors(default_store_url):
    defs = _defs(default_store_url)
    keys = {spec.key for spec in defs.resolve_all_asset_specs()}
    for stream in ("customers", "products", "orders", "order_items"):
        assert AssetKey([*FILES, stream]) in keys
        assert AssetKey(["raw_shop", stream]) in keys
    models = {AssetKey(["staging", "stg_customers"]), AssetKey(["staging", "stg_orders"])}
    assert models | {AssetKey(["customer_revenue"])} <= keys  # dbt-postgres:run is the dbt models
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key == AssetKey(["raw_shop", "orders"]))
    assert spec.kinds == {"meltano", "singer", "postgres"}
    assert spec.group_name == "tap_shopsim_to_target_postgres"
    assert spec.owners == ["team:data-platform"]
    assert spec.metadata["dagster/table_name"] == "raw_shop.orders"
    assert spec.tags["meltano/state_id"] == "dev.tap-shopsim-to-target-postgres"
    jobs = {j.name for j in defs.resolve_all_job_defs()}
    assert {"shop_to_files", "shop_to_warehouse"} <= jobs
    warehouse_job = defs.resolve_job_def("shop_to_warehouse")
    assert models <= warehouse_job.asset_layer.selected_asset_keys
    assert {s.name: s.cron_schedule for s in defs.schedules} == {
        "shop_to_files_daily": "0 0 * * *",
        "shop_to_warehouse_6h": "0 */6 * * *",
    }
    assert {s.name for s in defs.sensors} == {
        "meltano_crash_reconciler",
        "meltano_stale_pipelines",
        "meltano_outside_runs",
    }


def test_materialize_every_stream_reports_confirmed_row_counts(meltano_sandbox, default_store_url):
    defs = _defs(default_store_url)
    files = [a for a in _assets(defs) if AssetKey([*FILES, "orders"]) in a.keys]
    result = materialize(
        files, resources={"meltano": MeltanoResource(project_dir=str(REPO), database_url=default_store_url)}
    )
    assert result.success
    counts = {
        e.asset_key.path[-1]: e.materialization.metadata["dagster/row_count"].value
        for e in result.get_asset_materialization_events()
    }
    assert counts["customers"] == counts["orders"] == counts["products"] == 100
    assert counts["order_items"] == len(meltano_sandbox.lines("order_items"))
    orders = _materializations(result, AssetKey([*FILES, "orders"]))[0].materialization.metadata
    assert orders["meltano/bookmark"].value["replication_key_value"].startswith("2024-01-02")
    execution_id = orders["meltano/execution_id"].value
    assert orders["meltano/execution_record"].value == f"flx-meltano execution {execution_id}"
    assert orders["meltano/execution_log"].value == f"flx-meltano logs {execution_id}"
    log = execution_logs(meltano_sandbox.context(default_store_url), execution_id)
    stored_id = "dev:tap-shopsim-to-target-jsonlines"
    messages = [line.message for line in log.lines]
    assert f"Running job with name '{stored_id}' and run ID '{execution_id}'" in messages
    assert messages[-1] == "execution SUCCEEDED"
    # Dagster's event log folds the tap's repeated lines; the store keeps each one.
    repeated = "Beginning sync of 'order_items' in full_table mode with context keys: ('order_id',)"
    assert messages.count(repeated) == 100
    assert "meltano/run_id" not in orders  # Meltano's run id is the execution id: given once
    ctx = meltano_sandbox.context(default_store_url)
    stored = queries.get_execution(ctx, execution_id)
    assert stored.status is ExecutionStatus.SUCCEEDED
    assert stored.dagster_run_id == result.run_id
    assert stored.trigger is Trigger.DAGSTER
    logs = [e.message for e in result.all_events if e.event_type_value == "ENGINE_EVENT" or e.is_step_event]
    assert logs  # sanity: the run produced events


def test_materializing_one_stream_moves_only_its_records(meltano_sandbox, default_store_url):
    defs = _defs(default_store_url)
    files = [a for a in _assets(defs) if AssetKey([*FILES, "orders"]) in a.keys]
    result = materialize(
        files,
        selection=[AssetKey([*FILES, "customers"])],
        resources={"meltano": MeltanoResource(project_dir=str(REPO), database_url=default_store_url)},
    )
    assert result.success
    assert [e.asset_key for e in result.get_asset_materialization_events()] == [
        AssetKey([*FILES, "customers"])
    ]
    assert len(meltano_sandbox.lines("customers")) == 100
    assert meltano_sandbox.lines("orders") == []


def test_a_failing_tap_materializes_only_confirmed_streams(meltano_sandbox, default_store_url):
    defs = _defs(default_store_url)
    files = [a for a in _assets(defs) if AssetKey([*FILES, "orders"]) in a.keys]
    resource = MeltanoResource(
        project_dir=str(REPO),
        database_url=default_store_url,
        env={"TAP_SHOPSIM_FAIL_AFTER_RECORDS": "150", "TAP_SHOPSIM_STATE_EVERY": "20"},
    )
    result = materialize(files, resources={"meltano": resource}, raise_on_error=False)
    assert not result.success
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert materialized == {"customers"}
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "tap-shopsim" in failure.message or "tap-shopsim" in str(failure.event_specific_data)
    metadata = failure.event_specific_data.user_failure_data.metadata
    execution_id = metadata["meltano/execution_id"].value
    assert metadata["meltano/execution_log"].value == f"flx-meltano logs {execution_id}"
    tail = metadata["meltano/execution_log_tail"].value  # the stored log's last lines, by the query
    assert "ERROR [meltano] execution FAILED: tap-shopsim" in tail
    assert f"flx-meltano logs {execution_id}" in tail


def test_a_failing_loader_materializes_only_streams_whose_bookmark_it_moved(
    meltano_sandbox, default_store_url
):
    defs = _defs(default_store_url)
    files = [a for a in _assets(defs) if AssetKey([*FILES, "orders"]) in a.keys]
    resource = MeltanoResource(project_dir=str(REPO), database_url=default_store_url)
    # orders gets its bookmark (the default as_of); the next run has no new orders.
    first = materialize(files, selection=[AssetKey([*FILES, "orders"])], resources={"meltano": resource})
    assert first.success
    # target-jsonlines emits STATE only when a sink fills up (10000 records) or at the end. With
    # 11000 customers and products, the products sink fills after customers and orders finished:
    # that STATE moves customers' bookmark (new) but repeats orders' pre-run one. The loader then
    # fails midway through products, a full-table stream with no bookmark.
    failing = MeltanoResource(
        project_dir=str(REPO),
        database_url=default_store_url,
        env={"TAP_SHOPSIM_SCALE": "11000", "TARGET_JSONLINES_FAIL_AFTER_RECORDS": "21500"},
    )
    with DagsterInstance.ephemeral() as instance:
        result = materialize(files, resources={"meltano": failing}, instance=instance, raise_on_error=False)
        logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert not result.success
    # The loader is what failed: its traceback reached the step's logs.
    assert any("FailAfterRecordsError: target-jsonlines: failing on purpose" in line for line in logs)
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    user_failure = failure.step_failure_data.user_failure_data
    assert user_failure is not None
    unconfirmed = user_failure.metadata["meltano/unconfirmed_streams"].value
    assert sorted(unconfirmed.split(", ")) == ["order_items", "orders", "products"]
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert materialized == {"customers"}  # not orders (bookmark unchanged), products, order_items
    customers = _materializations(result, AssetKey([*FILES, "customers"]))[0].materialization.metadata
    assert customers["meltano/bookmark"].value["replication_key_value"].startswith("2024-01-02")
    stored = queries.get_execution(
        meltano_sandbox.context(default_store_url), customers["meltano/execution_id"].value
    )
    assert stored.status is ExecutionStatus.FAILED
    # Meltano 4.4.1 reports no block result when the loader dies while the tap still writes
    # (BrokenPipeError): the plugin is named from its traceback.
    assert user_failure.metadata["meltano/failed_plugin"].value == "target-jsonlines"
    assert stored.failed_plugin == "target-jsonlines"
    assert "FailAfterRecordsError" in (stored.error or "")
    assert {s: str(r.status) for s, r in stored.results.items()} == {
        "customers": "SUCCEEDED",
        "orders": "FAILED",
        "products": "FAILED",
        "order_items": "FAILED",
    }


def test_schedules_request_their_jobs(default_store_url):
    defs = _defs(default_store_url)
    schedule = next(s for s in defs.schedules if s.name == "shop_to_warehouse_6h")
    with DagsterInstance.ephemeral() as instance:
        context = build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 1, 1, 6, tzinfo=UTC)
        )
        data = schedule.evaluate_tick(context)
    assert len(data.run_requests) == 1
    assert isinstance(data.run_requests[0], RunRequest)
    assert schedule.job_name == "shop_to_warehouse"
    assert schedule.execution_timezone == "UTC"


def test_stale_sensor_requests_once_per_staleness(meltano_sandbox, default_store_url):
    defs = _defs(default_store_url)
    sensor = next(s for s in defs.sensors if s.name == "meltano_stale_pipelines")
    with DagsterInstance.ephemeral() as instance:
        first = sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs))
        second = sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs))
    keys = sorted(r.run_key for r in first.run_requests)
    assert keys == sorted(
        stale_run_key(p, None)
        for p in ("dev:tap-shopsim-to-target-jsonlines", "dev:tap-shopsim-to-target-postgres")
    )
    assert (
        sorted(r.run_key for r in second.run_requests) == keys
    )  # same staleness, same key: Dagster launches once
    orders = next(r for r in first.run_requests if "jsonlines" in r.run_key)
    assert AssetKey([*FILES, "orders"]) in orders.asset_selection

    # Once the pipeline succeeds it is fresh (freshness_hours: 24) and drops out.
    files = [a for a in _assets(defs) if AssetKey([*FILES, "orders"]) in a.keys]
    assert materialize(
        files, resources={"meltano": MeltanoResource(project_dir=str(REPO), database_url=default_store_url)}
    ).success
    with DagsterInstance.ephemeral() as instance:
        third = sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs))
    assert [r.run_key for r in third.run_requests] == [
        stale_run_key("dev:tap-shopsim-to-target-postgres", None)
    ]


def test_crash_reconciler_decides_by_the_lease_not_by_dagsters_run_status(meltano_sandbox, default_store_url):
    ctx = meltano_sandbox.context(default_store_url)
    [files] = resolve(ctx.project, "dev:tap-shopsim-to-target-jsonlines")
    [warehouse] = resolve(ctx.project, "dev:tap-shopsim-to-target-postgres")
    defs = _defs(default_store_url)
    sensor = next(s for s in defs.sensors if s.name == "meltano_crash_reconciler")
    job = defs.resolve_job_def("shop_to_files")
    with DagsterInstance.ephemeral() as instance:
        gone = instance.create_run_for_job(job_def=job, run_id=str(uuid.uuid4()))
        instance.report_run_failed(gone)
        queued = instance.create_run_for_job(job_def=job, run_id=str(uuid.uuid4()))
        assert instance.get_run_by_id(queued.run_id).status == DagsterRunStatus.NOT_STARTED
        # Its runner stopped heartbeating 10 minutes ago: dead, whatever Dagster says.
        dead_execution, _ = open_execution(ctx, files.pipeline, RunOptions(dagster_run_id=queued.run_id))
        # Its Dagster run FAILED (a killed run worker) but its step still heartbeats: it loads on.
        orphan, _ = open_execution(ctx, warehouse.pipeline, RunOptions(dagster_run_id=gone.run_id))
        # A runner that predates leases: only Dagster can tell, and its run is gone.
        legacy, _ = open_execution(ctx, files.pipeline, RunOptions(dagster_run_id=gone.run_id, force=True))
        # Runners on another host: only the lease tells whether they live.
        _move_runner(default_store_url, [dead_execution.id, orphan.id, legacy.id])
        _set_lease(default_store_url, dead_execution.id, heartbeat_age_seconds=600, lease_seconds=60)
        _set_lease(default_store_url, legacy.id, heartbeat_age_seconds=600, lease_seconds=None)
        result = sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs))
    assert dead_execution.id in (result.skip_message or "")
    assert orphan.id not in (result.skip_message or "")
    crashed = queries.get_execution(ctx, dead_execution.id)
    assert crashed.status is ExecutionStatus.CRASHED
    assert "no heartbeat for" in (crashed.error or "")
    assert queries.get_execution(ctx, orphan.id).status is ExecutionStatus.RUNNING
    legacy_closed = queries.get_execution(ctx, legacy.id)
    assert legacy_closed.status is ExecutionStatus.CRASHED
    assert gone.run_id in (legacy_closed.error or "")


def _set_lease(
    store_url: str, execution_id: str, *, heartbeat_age_seconds: float, lease_seconds: float | None
) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE flx.executions SET lease_seconds = :lease, "
                "heartbeat_at = now() - make_interval(secs => :age) WHERE id = :id"
            ),
            {"lease": lease_seconds, "age": heartbeat_age_seconds, "id": execution_id},
        )
    engine.dispose()


def test_crash_reconciler_marks_executions_whose_local_runner_died(meltano_sandbox, default_store_url):
    ctx = meltano_sandbox.context(default_store_url)
    [files] = resolve(ctx.project, "dev:tap-shopsim-to-target-jsonlines")
    execution, _ = open_execution(ctx, files.pipeline, RunOptions())
    _set_runner_pid(default_store_url, execution.id, _dead_pid())
    defs = _defs(default_store_url)
    sensor = next(s for s in defs.sensors if s.name == "meltano_crash_reconciler")
    with DagsterInstance.ephemeral() as instance:
        sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs))
    assert queries.get_execution(ctx, execution.id).status is ExecutionStatus.CRASHED


def _dead_pid() -> int:
    import subprocess

    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _set_runner_pid(store_url: str, execution_id: str, pid: int) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE flx.executions SET runner_pid = :pid WHERE id = :id"),
            {"pid": pid, "id": execution_id},
        )
    engine.dispose()


def _move_runner(store_url: str, execution_ids: list[str]) -> None:
    """Pretend these executions run on another host (so the local pid check does not apply)."""
    import sqlalchemy as sa

    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE flx.executions SET runner_host = 'elsewhere' WHERE id = ANY(:ids)"),
            {"ids": execution_ids},
        )
    engine.dispose()


def test_a_translator_override_changes_keys_and_duplicates_are_explained(default_store_url):
    class Prefixed(DagsterMeltanoTranslator):
        def get_asset_spec(self, stream):
            spec = super().get_asset_spec(stream)
            return spec.replace_attributes(key=AssetKey(["lake", stream.pipeline.loader.name, stream.name]))

    defs = _defs(default_store_url, translator=Prefixed())
    assert AssetKey(["lake", "target-postgres", "orders"]) in {s.key for s in defs.resolve_all_asset_specs()}

    class Colliding(DagsterMeltanoTranslator):
        def get_asset_key(self, stream):
            return AssetKey(["x", stream.name])

    with pytest.raises(
        ValueError,
        match="comes from both dev:tap-shopsim-to-target-jsonlines and dev:tap-shopsim-to-target-postgres",
    ):
        _defs(default_store_url, translator=Colliding())


def test_building_definitions_never_starts_meltano(default_store_url, monkeypatch):
    monkeypatch.setenv("FLX_MELTANO_EXECUTABLE", "/nonexistent/meltano")
    import subprocess

    def refuse(*args, **kwargs):
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(subprocess, "run", refuse)
    defs = _defs(default_store_url)
    assert len(list(defs.resolve_all_asset_specs())) == 8 + 3  # streams and dbt models


def test_op_config_runs_one_full_refresh_keeping_the_resource_settings(meltano_sandbox, default_store_url):
    defs = _defs(default_store_url)
    files = [a for a in _assets(defs) if AssetKey([*FILES, "orders"]) in a.keys]
    resource = MeltanoResource(project_dir=str(REPO), database_url=default_store_url)
    assert materialize(files, resources={"meltano": resource}).success
    again = materialize(files, resources={"meltano": resource})
    incremental = {
        e.asset_key.path[-1]: e.materialization.metadata["dagster/row_count"].value
        for e in again.get_asset_materialization_events()
    }
    assert incremental["orders"] == 0
    refreshed = materialize(
        files,
        resources={"meltano": resource},
        run_config={"ops": {"tap_shopsim_to_target_jsonlines": {"config": {"full_refresh": True}}}},
    )
    counts = {
        e.asset_key.path[-1]: e.materialization.metadata["dagster/row_count"]
        for e in refreshed.get_asset_materialization_events()
    }
    assert counts["orders"].value == 100
    execution_id = (
        refreshed.get_asset_materialization_events()[0].materialization.metadata["meltano/execution_id"].value
    )
    stored = queries.get_execution(meltano_sandbox.context(default_store_url), execution_id)
    assert stored.full_refresh is True
    assert stored.warnings == ()  # a full refresh may rewind bookmarks: not a regression
