"""End-to-end through the real Dagster webserver and daemon (scripts/dagster-dev.sh) over this project.

One ``dagster dev`` serves the module: its own DAGSTER_HOME, a fresh flx store and a fresh Dagster
storage database, and a Meltano system db and JSONL output under a temporary directory. Runs are
launched, watched and terminated through GraphQL, the way the UI does it; what they did is read
back through GraphQL (materializations), the flx store (executions) and the files the target wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from flx_meltano.application import queries
from flx_meltano.application.context import AppContext
from flx_meltano.bootstrap import app_context
from flx_meltano.domain.execution import PipelineExecution
from flx_meltano.domain.values import ExecutionStatus, StreamStatus, Trigger
from flx_meltano.persistence import database
from flx_meltano.settings import Settings
from tests.dagster_helpers import (
    FINISHED,
    DagsterGraphQL,
    dagster_storage_url,
    free_port,
    kill,
    start_logged,
    tail,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
FILES_PIPELINE = "dev:tap-shopsim-to-target-jsonlines"
FILES_GROUP = "tap_shopsim_to_target_jsonlines"
FILES_PREFIX = ["files", "shop"]
STREAMS = ("customers", "order_items", "orders", "products")
STARTUP_SECONDS = 300  # dagster dev on a loaded machine (2 shared cores) can take minutes


@dataclass(kw_only=True)
class DagsterDev(DagsterGraphQL):
    """A running ``dagster dev`` (webserver and daemon) and what it was started with."""

    root: Path
    log: Path
    store_url: str
    output: Path
    system_db: Path
    process: subprocess.Popen[bytes]

    def log_tail(self, lines: int = 80) -> str:
        return tail(self.log, lines)

    def logs(self) -> str:
        return "dagster dev log:\n" + self.log_tail(40)

    def context(self) -> AppContext:
        return app_context(Settings(database_url=self.store_url, project_dir=REPO))

    def executions_of(self, run_id: str, status: ExecutionStatus | None = None) -> list[PipelineExecution]:
        """flx executions the Dagster run recorded, each with its stream results."""
        ctx = self.context()
        try:
            found = [e for e in queries.execution_history(ctx, status=status) if e.dagster_run_id == run_id]
            return [queries.get_execution(ctx, e.id) for e in found]
        finally:
            ctx.close()


@pytest.fixture(scope="module")
def dagster(
    default_server: Any, tmp_path_factory: pytest.TempPathFactory, processes_with: Any
) -> Iterator[DagsterDev]:
    """``bash scripts/dagster-dev.sh`` on a free port with fresh storage; killed and dropped after."""
    root = tmp_path_factory.mktemp("dagster-e2e")
    suffix = uuid.uuid4().hex[:10]
    store_name, dagster_name = f"flx_test_{suffix}", f"flx_test_{suffix}_dagster"
    with psycopg.connect(default_server.admin_conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{store_name}"')
        conn.execute(f'CREATE DATABASE "{dagster_name}"')
    store_url = default_server.url(store_name)
    database.ready_engine(store_url)

    port = free_port()
    home, output, system_db, log = root / "home", root / "out", root / "meltano.db", root / "dagster-dev.log"
    env = {key: value for key, value in os.environ.items() if key != "TAP_SHOPSIM_RECORD_DELAY_MS"}
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "FLX_DATABASE_URL": store_url,
            "FLX_DAGSTER_PG_URL": dagster_storage_url(default_server, dagster_name),
            "MELTANO_DATABASE_URI": f"sqlite:///{system_db}",
            "TARGET_JSONLINES_DESTINATION_PATH": str(output),
        }
    )
    process = start_logged(["bash", "scripts/dagster-dev.sh"], log, env=env, cwd=REPO)
    dev = DagsterDev(
        url=f"http://127.0.0.1:{port}",
        root=root,
        log=log,
        store_url=store_url,
        output=output,
        system_db=system_db,
        process=process,
    )
    try:
        dev.wait_until_serving(STARTUP_SECONDS, alive=lambda: process.poll() is None)
        yield dev
    finally:
        # Quicker than a clean stop (test_demo checks that one): kill flx-meltano ui's group, then
        # everything started under our temporary directory (dagster dev and meltano lead their own
        # sessions).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        kill(processes_with(f"{root}/"))
        database.engine_for.cache_clear()
        with psycopg.connect(default_server.admin_conninfo, autocommit=True) as conn:
            for name in (store_name, dagster_name):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _show_dagster_log_on_failure(request: pytest.FixtureRequest, dagster: DagsterDev) -> Iterator[None]:
    """When a test of this module fails, print the tail of the dagster dev log."""
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"\n--- dagster dev log ({dagster.log}), last lines ---")
            reporter.write_line(dagster.log_tail())


def _meltano_config(**env: str) -> dict[str, Any]:
    """Run config for the ``meltano`` resource with extra environment for this run only."""
    # project_dir must be repeated: run config replaces the resource's configuration as a whole.
    return {"resources": {"meltano": {"config": {"project_dir": str(REPO), "env": env}}}}


def test_job_materializes_every_stream_and_the_store_records_the_execution(dagster):
    run_id = dagster.launch("shop_to_files")
    assert dagster.wait_for_run(run_id) == "SUCCESS", dagster.explain(run_id)

    [execution] = dagster.executions_of(run_id)
    assert execution.pipeline_id == FILES_PIPELINE
    assert execution.status is ExecutionStatus.SUCCEEDED
    assert execution.trigger is Trigger.DAGSTER
    assert set(execution.results) == set(STREAMS)
    assert all(r.status is StreamStatus.SUCCEEDED for r in execution.results.values())
    records = {stream: result.records for stream, result in execution.results.items()}
    assert {s: records[s] for s in ("customers", "orders", "products")} == {
        "customers": 100,
        "orders": 100,
        "products": 100,
    }
    assert 100 <= records["order_items"] <= 400

    [latest, *_] = dagster.materializations([*FILES_PREFIX, "orders"])
    assert latest["runId"] == run_id
    assert latest["metadata"]["dagster/row_count"] == 100
    assert latest["metadata"]["meltano/execution_id"] == execution.id
    for stream in STREAMS:
        [newest, *_] = dagster.materializations([*FILES_PREFIX, stream], limit=1)
        assert newest["runId"] == run_id, stream
        assert newest["metadata"]["dagster/row_count"] == records[stream], stream
        lines = (dagster.output / f"{stream}.jsonl").read_text().splitlines()
        assert len(lines) == records[stream], stream


def test_materializing_one_asset_runs_only_its_stream(dagster, tmp_path):
    output, system_db = tmp_path / "out", tmp_path / "meltano.db"
    run_id = dagster.launch(
        "__ASSET_JOB",
        asset_selection=[[*FILES_PREFIX, "customers"]],
        run_config=_meltano_config(
            MELTANO_DATABASE_URI=f"sqlite:///{system_db}", TARGET_JSONLINES_DESTINATION_PATH=str(output)
        ),
    )
    assert dagster.wait_for_run(run_id) == "SUCCESS", dagster.explain(run_id)

    assert sorted(p.name for p in output.iterdir()) == ["customers.jsonl"]
    assert len((output / "customers.jsonl").read_text().splitlines()) == 100
    assert dagster.run_materializations(run_id) == [[*FILES_PREFIX, "customers"]]
    [latest, *_] = dagster.materializations([*FILES_PREFIX, "customers"], limit=1)
    assert latest["runId"] == run_id
    assert latest["metadata"]["dagster/row_count"] == 100

    [execution] = dagster.executions_of(run_id)
    assert execution.status is ExecutionStatus.SUCCEEDED
    assert execution.streams == ("customers",)
    assert {s: (r.records, r.status) for s, r in execution.results.items()} == {
        "customers": (100, StreamStatus.SUCCEEDED)
    }


def test_terminating_a_run_stops_meltano_tap_and_target_and_records_cancelled(
    dagster, tmp_path, processes_with
):
    system_db = tmp_path / "meltano.db"
    marker = str(system_db)
    run_id = dagster.launch(
        "shop_to_files",
        run_config=_meltano_config(
            TAP_SHOPSIM_RECORD_DELAY_MS="40",
            MELTANO_DATABASE_URI=f"sqlite:///{system_db}",
            TARGET_JSONLINES_DESTINATION_PATH=str(tmp_path / "out"),
        ),
    )
    deadline = time.monotonic() + 90
    running: list[PipelineExecution] = []
    while time.monotonic() < deadline:
        running = dagster.executions_of(run_id, ExecutionStatus.RUNNING)
        if running and len(processes_with(marker)) >= 3:  # meltano, tap, target
            break
        assert dagster.run_status(run_id) not in FINISHED, dagster.explain(run_id)
        time.sleep(0.3)
    assert running, f"no RUNNING execution for run {run_id}\n{dagster.explain(run_id)}"
    assert len(processes_with(marker)) >= 3

    data = dagster.gql(
        """
        mutation Terminate($runId: String!) {
          terminateRun(runId: $runId, terminatePolicy: SAFE_TERMINATE) {
            __typename
            ... on TerminateRunFailure { message }
            ... on PythonError { message }
          }
        }
        """,
        runId=run_id,
    )
    assert data["terminateRun"]["__typename"] == "TerminateRunSuccess", data
    assert dagster.wait_for_run(run_id, timeout=60) == "CANCELED", dagster.explain(run_id)

    deadline = time.monotonic() + 10
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_with(marker) == []
    [cancelled] = dagster.executions_of(run_id)
    assert cancelled.id == running[0].id
    assert cancelled.status is ExecutionStatus.CANCELLED
    assert cancelled.duration is not None
    assert cancelled.duration.seconds < 60


def _chromium(*args: str, user_data: Path) -> subprocess.CompletedProcess[str]:
    command = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={user_data}",
        "--window-size=1600,1200",
        "--virtual-time-budget=15000",
        *args,
    ]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError:
        pytest.fail("chromium is not installed: run 'make browser'")


def test_asset_catalog_lists_the_streams_and_the_group_graph_renders(dagster, tmp_path):
    # The UI greets a first visit from localhost with a dialog that would cover the graph.
    assert dagster.gql("mutation { setNuxSeen }")["setNuxSeen"] is True

    # The catalog renders after its GraphQL queries answer; on a busy machine that can outlast
    # Chromium's virtual-time budget, so wait for the page to show the streams (or a deadline).
    deadline = time.monotonic() + 90
    while True:
        catalog = _chromium("--dump-dom", f"{dagster.url}/assets", user_data=tmp_path / "profile")
        assert catalog.returncode == 0, catalog.stderr[-2000:]
        missing = [stream for stream in STREAMS if stream not in catalog.stdout]
        if not missing or time.monotonic() > deadline:
            break
    assert missing == [], f"{missing} not in the rendered asset catalog"

    ARTIFACTS.mkdir(exist_ok=True)
    png = ARTIFACTS / "asset-graph.png"
    png.unlink(missing_ok=True)
    group_page = f"{dagster.url}/locations/__repository__@{dagster.location}/asset-groups/{FILES_GROUP}"
    shot = _chromium(f"--screenshot={png}", group_page, user_data=tmp_path / "profile")
    assert shot.returncode == 0, shot.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (1600, 1200)
    assert len(data) > 20_000, f"{png} is only {len(data)} bytes: a blank page?"


def _reload_location(dagster: DagsterDev, key: list[str], label: str) -> None:
    """Reload the code location (it reads the catalogs again) until ``key`` has metadata ``label``."""
    reloaded = dagster.gql(
        "mutation Reload($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) "
        "{ __typename } }",
        name=dagster.location,
    )
    assert reloaded["reloadRepositoryLocation"]["__typename"] == "WorkspaceLocationEntry", reloaded
    deadline = time.monotonic() + STARTUP_SECONDS
    labels: list[str] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # answers with an error while the location loads
            data = dagster.gql(
                "query Node($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) "
                "{ __typename ... on AssetNode { metadataEntries { label } } } }",
                key={"path": key},
            )
            labels = [e["label"] for e in data["assetNodeOrError"].get("metadataEntries", [])]
            if label in labels:
                return
        time.sleep(1)
    pytest.fail(f"{'/'.join(key)} has no {label} after reloading the location: {labels}")


def _page(url: str, expected: list[str], png: Path, profile: Path) -> str:
    """The page's text once every ``expected`` string is in it (polled: the UI renders after its
    GraphQL queries answer, which on a busy machine can outlast Chromium's virtual-time budget),
    then a screenshot of it."""
    deadline = time.monotonic() + 120
    while True:
        dom = _chromium("--dump-dom", url, user_data=profile)
        assert dom.returncode == 0, dom.stderr[-2000:]
        missing = [text for text in expected if text not in dom.stdout]
        if not missing or time.monotonic() > deadline:
            break
    assert missing == [], f"{missing} not on {url}"
    png.unlink(missing_ok=True)
    shot = _chromium(f"--screenshot={png}", url, user_data=profile)
    assert shot.returncode == 0, shot.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000, f"{png} is only {len(data)} bytes: a blank page?"
    print(f"screenshot: {png}")
    return dom.stdout


def test_an_asset_page_shows_its_column_schema_and_checks_and_the_lineage_reaches_dbt(dagster, tmp_path):
    """Screenshots (paths printed) of a stream asset's page, its checks and the lineage to dbt."""
    assert dagster.gql("mutation { setNuxSeen }")["setNuxSeen"] is True
    run_id = dagster.launch("shop_to_files", asset_selection=[[*FILES_PREFIX, "customers"]])
    assert dagster.wait_for_run(run_id) == "SUCCESS", dagster.explain(run_id)
    # The run wrote the catalog Meltano gave the tap; a reload of the location reads it.
    _reload_location(dagster, [*FILES_PREFIX, "customers"], "dagster/column_schema")
    shots, profile = tmp_path / "screenshots", tmp_path / "profile"
    shots.mkdir()
    asset = f"{dagster.url}/assets/{'/'.join(FILES_PREFIX)}/customers"

    overview = _page(
        asset, ["Columns", "updated_at", "Primary key", "Replication key"], shots / "asset.png", profile
    )
    assert "string(date-time)" in overview
    checks = _page(
        f"{asset}?view=checks",
        ["schema_drift", "bookmark_regression", "row_count_anomaly"],
        shots / "asset-checks.png",
        profile,
    )
    assert "flx-meltano state restore-previous" in checks  # the blocking check's description
    lineage = _page(
        f"{dagster.url}/assets/customer_revenue?view=lineage&lineageScope=upstream&lineageDepth=4",
        ["customer_revenue", "stg_orders", "stg_customers", "raw_shop"],
        shots / "lineage.png",
        profile,
    )
    assert "orders" in lineage


def test_op_config_may_set_only_full_refresh_for_one_run(dagster):
    """A one-off full refresh is op config (MeltanoRunConfig); nothing else has to be repeated."""
    selector = dagster.selector("shop_to_files")
    data = dagster.gql(
        """
        query Valid($selector: PipelineSelector!, $config: RunConfigData) {
          isPipelineConfigValid(pipeline: $selector, runConfigData: $config, mode: "default") {
            __typename
            ... on RunConfigValidationInvalid { errors { message } }
          }
        }
        """,
        selector={
            "repositoryLocationName": selector["repositoryLocationName"],
            "repositoryName": selector["repositoryName"],
            "pipelineName": selector["jobName"],
        },
        config={"ops": {"tap_shopsim_to_target_jsonlines": {"config": {"full_refresh": True}}}},
    )
    assert data["isPipelineConfigValid"]["__typename"] == "PipelineConfigValidationValid", data


OUTSIDE_SENSOR = "meltano_outside_runs"


def _outside_sensor_ticks(dagster: DagsterDev) -> list[dict[str, Any]]:
    data = dagster.gql(
        """
        query Ticks($selector: SensorSelector!) {
          sensorOrError(sensorSelector: $selector) {
            __typename
            ... on Sensor { sensorState { status ticks(limit: 5) { id status cursor } } }
          }
        }
        """,
        selector={
            "repositoryLocationName": dagster.location,
            "repositoryName": "__repository__",
            "sensorName": OUTSIDE_SENSOR,
        },
    )
    sensor = data["sensorOrError"]
    assert sensor["__typename"] == "Sensor", sensor
    assert sensor["sensorState"]["status"] == "RUNNING"  # on by default
    return sensor["sensorState"]["ticks"]


def _wait(what: str, check: Any, timeout: float, dagster: DagsterDev) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(2)
    pytest.fail(f"{what} within {timeout:.0f}s:\n{dagster.logs()}")


def test_a_cli_run_reaches_dagster_through_the_daemon_within_a_minute(dagster):
    # The daemon's first tick only marks where reporting starts: wait for it.
    _wait("no tick of the outside-runs sensor", lambda: _outside_sensor_ticks(dagster), 120, dagster)
    env = {
        **os.environ,
        "FLX_DATABASE_URL": dagster.store_url,
        "FLX_PROJECT_DIR": str(REPO),
        "MELTANO_DATABASE_URI": f"sqlite:///{dagster.system_db}",
        "TARGET_JSONLINES_DESTINATION_PATH": str(dagster.output),
    }
    flx = str(REPO / ".venv" / "bin" / "flx-meltano")
    done = subprocess.run(
        [flx, "run", FILES_PIPELINE, "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    execution_id = json.loads(done.stdout)[0]["id"]
    finished = time.monotonic()

    def reported() -> list[dict[str, Any]]:
        return [
            m
            for m in dagster.materializations([*FILES_PREFIX, "orders"], limit=10)
            if m["metadata"].get("meltano/execution_id") == execution_id
        ]

    [materialization] = _wait("no materialization of the CLI run", reported, 120, dagster)
    latency = time.monotonic() - finished
    assert materialization["runId"] == ""  # a runless event: no Dagster run did it
    assert materialization["metadata"]["meltano/trigger"] == "cli"
    assert latency < 70, f"the CLI run reached Dagster after {latency:.0f}s"
    # Later ticks do not report it again.
    seen = {t["id"] for t in _outside_sensor_ticks(dagster)}
    _wait("no later tick", lambda: {t["id"] for t in _outside_sensor_ticks(dagster)} - seen, 120, dagster)
    assert len(reported()) == 1
