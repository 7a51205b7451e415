"""Runs from outside Dagster (CLI, API, bare meltano) reach Dagster as materializations, once each."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, build_sensor_context, materialize

from flx_meltano import api
from flx_meltano.orchestration import MeltanoResource, build_definitions
from flx_meltano.orchestration import metadata as md
from flx_meltano.orchestration.outside_runs import OutsideCursor
from flx_meltano.settings import Settings

REPO = Path(__file__).resolve().parents[1]
FLX = str(REPO / ".venv" / "bin" / "flx-meltano")
MELTANO = str(REPO / ".venv" / "bin" / "meltano")
PIPELINE = "dev:tap-shopsim-to-target-jsonlines"
STREAMS = ("customers", "products", "orders", "order_items")
FILES = ["files", "shop"]
pytestmark = pytest.mark.usefixtures("dbt_manifest")  # definitions of this project read it


def _sensor(store_url: str):
    defs = build_definitions(project_dir=REPO, database_url=store_url)
    return defs, next(s for s in defs.sensors if s.name == "meltano_outside_runs")


def _tick(sensor, defs, instance: DagsterInstance, cursor: str | None):
    """One evaluation, its asset events written to the instance as the sensor daemon writes them."""
    data = sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs, cursor=cursor))
    for event in data.asset_events:
        instance.report_runless_asset_event(event)
    return data


def _latest(instance: DagsterInstance, stream: str):
    event = instance.get_latest_materialization_event(AssetKey([*FILES, stream]))
    assert event is not None, f"no materialization of {stream}"
    assert event.asset_materialization is not None
    return event.asset_materialization


def test_a_cli_run_becomes_materializations_once(meltano_sandbox, default_store_url):
    defs, sensor = _sensor(default_store_url)
    with DagsterInstance.ephemeral() as instance:
        start = _tick(sensor, defs, instance, None)
        assert not start.asset_events
        assert start.cursor

        env = {
            **os.environ,
            **meltano_sandbox.env,
            "FLX_DATABASE_URL": default_store_url,
            "FLX_PROJECT_DIR": str(REPO),
        }
        cli = subprocess.run(
            [FLX, "run", PIPELINE, "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )
        assert cli.returncode == 0, cli.stderr[-3000:]
        [execution] = json.loads(cli.stdout)

        reported = _tick(sensor, defs, instance, start.cursor)
        assert sorted(e.asset_key for e in reported.asset_events) == sorted(
            AssetKey([*FILES, s]) for s in STREAMS
        )
        orders = _latest(instance, "orders")
        assert orders.metadata[md.EXECUTION_ID].value == execution["id"]
        assert orders.metadata[md.TRIGGER].value == "cli"
        assert orders.metadata[md.ROW_COUNT].value == 100
        assert orders.metadata[md.BOOKMARK].value["replication_key_value"].startswith("2024-01-02T00:00:00")
        assert orders.metadata[md.EXECUTION_RECORD].value == md.execution_record(execution["id"])

        # Evaluated again (same or newer cursor): nothing more.
        again = _tick(sensor, defs, instance, reported.cursor)
        assert not again.asset_events
        assert OutsideCursor.parse(again.cursor) == OutsideCursor.parse(reported.cursor)

        # A Dagster run materializes itself: the sensor reports nothing for it.
        files = [a for a in defs.assets if hasattr(a, "keys") and AssetKey([*FILES, "orders"]) in a.keys]
        resource = MeltanoResource(project_dir=str(REPO), database_url=default_store_url)
        assert materialize(files, resources={"meltano": resource}, instance=instance).success
        count = len(instance.fetch_materializations(AssetKey([*FILES, "orders"]), limit=10).records)
        after_dagster = _tick(sensor, defs, instance, again.cursor)
        assert not after_dagster.asset_events
        assert (
            len(instance.fetch_materializations(AssetKey([*FILES, "orders"]), limit=10).records) == count == 2
        )


def test_api_and_bare_meltano_runs_reach_dagster(meltano_sandbox, default_store_url):
    defs, sensor = _sensor(default_store_url)
    with DagsterInstance.ephemeral() as instance:
        start = _tick(sensor, defs, instance, None)
        [through_api] = api.run(PIPELINE, settings=Settings(project_dir=REPO, database_url=default_store_url))
        bare = subprocess.run(
            [MELTANO, "run", "tap-shopsim", "target-jsonlines"],
            cwd=REPO,
            env={**os.environ, **meltano_sandbox.env, "TAP_SHOPSIM_AS_OF": "2024-01-02T12:00:00Z"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert bare.returncode == 0, bare.stderr[-3000:]

        reported = _tick(sensor, defs, instance, start.cursor)  # syncs the bare run, then reports both
        by_execution: dict[str, set[str]] = {}
        for event in reported.asset_events:
            by_execution.setdefault(event.metadata[md.EXECUTION_ID].value, set()).add(
                event.asset_key.path[-1]
            )
        assert by_execution.pop(through_api.id) == set(STREAMS)
        [(bare_id, streams)] = by_execution.items()
        assert streams == {"customers", "orders"}  # the streams whose bookmark moved
        orders = _latest(instance, "orders")
        assert orders.metadata[md.EXECUTION_ID].value == bare_id
        assert orders.metadata[md.TRIGGER].value == "meltano"
        assert md.ROW_COUNT not in orders.metadata
        assert md.RECORDS_UNKNOWN in orders.metadata
        assert orders.metadata[md.BOOKMARK].value["replication_key_value"].startswith("2024-01-02T12:00:00")
        assert not _tick(sensor, defs, instance, reported.cursor).asset_events
