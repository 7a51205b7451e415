"""Column schemas and asset checks of the stream assets, on real meltano runs of the reference project."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    TableSchema,
    materialize,
)

from flx_meltano.orchestration import CheckOptions, MeltanoResource, build_definitions
from flx_meltano.orchestration.checks import BOOKMARK_REGRESSION, ROW_COUNT_ANOMALY, SCHEMA_DRIFT

REPO = Path(__file__).resolve().parents[1]
FILES = ["files", "shop"]
CUSTOMERS = AssetKey([*FILES, "customers"])
ORDERS = AssetKey([*FILES, "orders"])
STATE_ID = "dev:tap-shopsim-to-target-jsonlines"


def _files_asset(store_url: str, **kwargs):
    defs = build_definitions(project_dir=REPO, database_url=store_url, dbt=None, **kwargs)
    return next(a for a in defs.assets if hasattr(a, "keys") and ORDERS in a.keys), defs


def _resource(store_url: str, *, full_refresh: bool = False, **env: str) -> MeltanoResource:
    return MeltanoResource(project_dir=str(REPO), database_url=store_url, env=env, full_refresh=full_refresh)


def _checks(result) -> dict[AssetCheckKey, object]:
    return {e.asset_check_key: e for e in result.get_asset_check_evaluations()}


def test_every_stream_has_its_column_schema_from_the_catalog_and_three_checks(
    meltano_sandbox, default_store_url
):
    files, _ = _files_asset(default_store_url)
    assert materialize(
        [files], selection=[CUSTOMERS], resources={"meltano": _resource(default_store_url)}
    ).success
    # The run wrote the catalog Meltano gave the tap: the next load of the definitions knows it.
    files, defs = _files_asset(default_store_url)
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key == CUSTOMERS)
    schema = spec.metadata["dagster/column_schema"]
    assert isinstance(schema, TableSchema)
    columns = {c.name: c for c in schema.columns}
    assert list(columns) == ["id", "name", "email", "country", "created_at", "updated_at"]
    assert columns["id"].type == "integer"
    assert columns["id"].constraints.nullable is False
    assert "primary_key" in columns["id"].tags
    assert columns["email"].type == "string(email)"
    assert columns["email"].constraints.nullable is True
    assert columns["updated_at"].type == "string(date-time)"
    assert "replication_key" in columns["updated_at"].tags
    assert columns["updated_at"].description == "Replication key"
    assert schema.constraints.other == ["primary key (id)", "replication key (updated_at)"]
    checks = {key.name for key in files.check_keys if key.asset_key == CUSTOMERS}
    assert checks == {SCHEMA_DRIFT, BOOKMARK_REGRESSION, ROW_COUNT_ANOMALY}
    blocking = {s.name for s in files.check_specs if s.asset_key == CUSTOMERS and s.blocking}
    assert blocking == {BOOKMARK_REGRESSION}
    assert spec.freshness_policy is not None  # meta.dagster.freshness_hours of the reference project


def test_a_column_added_by_the_tap_fails_the_schema_drift_check_with_a_warning(
    meltano_sandbox, default_store_url
):
    with DagsterInstance.ephemeral() as instance:
        files, _ = _files_asset(default_store_url)
        first = materialize(
            [files],
            selection=[CUSTOMERS],
            resources={"meltano": _resource(default_store_url)},
            instance=instance,
        )
        assert first.success  # (its drift check depends on the catalog an earlier run left)
        files, _ = _files_asset(default_store_url)  # its catalog: the first run's
        drifted = materialize(
            [files],
            selection=[CUSTOMERS],
            resources={
                "meltano": _resource(
                    default_store_url, full_refresh=True, TAP_SHOPSIM_EXTRA_COLUMN="loyalty_tier"
                )
            },
            instance=instance,
        )
    assert drifted.success  # WARN: the step and the materialization stand
    check = _checks(drifted)[AssetCheckKey(CUSTOMERS, SCHEMA_DRIFT)]
    assert not check.passed
    assert check.severity is AssetCheckSeverity.WARN
    assert check.metadata["meltano/columns_added"].value == ["loyalty_tier"]
    assert check.metadata["meltano/drift_from_catalog"].value == "added loyalty_tier"
    assert check.metadata["meltano/drift_from_previous_run"].value == "added loyalty_tier"
    [materialization] = drifted.get_asset_materialization_events()
    run_schema = materialization.materialization.metadata["dagster/column_schema"].value
    assert [c.name for c in run_schema.columns][-1] == "loyalty_tier"
    assert json.loads(meltano_sandbox.lines("customers")[-1])["loyalty_tier"] == "shopsim"


def test_zero_rows_where_there_were_rows_and_a_wiped_bookmark_fail_their_checks(
    meltano_sandbox, default_store_url
):
    files, _ = _files_asset(default_store_url, checks=CheckOptions(row_count_history=1))
    with DagsterInstance.ephemeral() as instance:

        def run(**env: str):
            return materialize(
                [files],
                selection=[ORDERS],
                resources={"meltano": _resource(default_store_url, **env)},
                instance=instance,
                raise_on_error=False,
            )

        first = run()
        assert first.success
        assert _checks(first)[AssetCheckKey(ORDERS, ROW_COUNT_ANOMALY)].passed  # no history yet
        assert _checks(first)[AssetCheckKey(ORDERS, BOOKMARK_REGRESSION)].passed
        second = run()  # incremental: nothing new since the bookmark
        row_check = _checks(second)[AssetCheckKey(ORDERS, ROW_COUNT_ANOMALY)]
        assert not row_check.passed
        assert row_check.severity is AssetCheckSeverity.WARN
        assert "0 rows loaded; the last 1 runs loaded [100]" in (row_check.description or "")
        wiped = run(TARGET_JSONLINES_EMIT_EMPTY_FINAL_STATE="true")
    regression = _checks(wiped)[AssetCheckKey(ORDERS, BOOKMARK_REGRESSION)]
    assert not regression.passed
    assert regression.severity is AssetCheckSeverity.ERROR
    assert f"flx-meltano state restore-previous {STATE_ID}" in (regression.description or "")
    assert "the new state has no bookmarks" in regression.description
    # The command the check names puts the last good state back.
    restored = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "flx-meltano"),
            "state",
            "restore-previous",
            STATE_ID,
            "--yes",
            "--json",
        ],
        env={**os.environ, "FLX_DATABASE_URL": default_store_url, "FLX_PROJECT_DIR": str(REPO)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert restored.returncode == 0, restored.stdout + restored.stderr
    result = json.loads(restored.stdout)
    assert result["state_id"] == STATE_ID
    assert {change["stream"] for change in result["changes"]} >= {"orders"}


def test_materialization_metadata_is_the_streams_own(meltano_sandbox, default_store_url):
    """Item 7: the stream's real sync duration, one id, the file the target wrote, the store record."""
    files, _ = _files_asset(default_store_url)
    result = materialize(
        [files],
        resources={"meltano": _resource(default_store_url, TAP_SHOPSIM_RECORD_DELAY_MS="5")},
    )
    assert result.success
    by_stream = {e.asset_key.path[-1]: e for e in result.get_asset_materialization_events()}
    step = next(e for e in result.all_events if e.event_type_value == "STEP_SUCCESS")
    step_seconds = step.event_specific_data.duration_ms / 1000
    durations = {}
    for stream, event in by_stream.items():
        metadata = event.materialization.metadata
        rows = metadata["dagster/row_count"].value
        duration = metadata["meltano/sync_duration_seconds"].value
        durations[stream] = duration
        # 5 ms before each record: the stream took at least that, and less than the whole step.
        assert rows * 0.005 <= duration < step_seconds, (stream, rows, duration, step_seconds)
        assert metadata["meltano/path"].value == str(meltano_sandbox.output / f"{stream}.jsonl")
        execution_id = metadata["meltano/execution_id"].value
        assert metadata["meltano/execution_record"].value == f"flx-meltano execution {execution_id}"
        assert not {key for key in metadata if key.endswith("run_id")}
    assert len({e.materialization.metadata["meltano/execution_id"].value for e in by_stream.values()}) == 1
    assert len(set(durations.values())) == len(durations)  # each stream its own, not the step's
