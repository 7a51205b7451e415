"""End-to-end runs of the reference project: real meltano, tap, target and PostgreSQL store."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flx_meltano.application import queries
from flx_meltano.application import run as run_module
from flx_meltano.application.commands import reconcile_crashed
from flx_meltano.application.context import AppContext
from flx_meltano.application.pipelines import resolve
from flx_meltano.application.run import (
    LogUpdate,
    RunOptions,
    execute_pipeline,
    open_execution,
    run,
)
from flx_meltano.bootstrap import app_context
from flx_meltano.domain.errors import ExecutionAlreadyRunning
from flx_meltano.domain.execution import PipelineExecution, StreamResult
from flx_meltano.domain.values import ExecutionStatus, StreamStatus
from flx_meltano.integration.errors import LaunchError, StateAccessError
from flx_meltano.integration.launcher import MeltanoRun
from flx_meltano.persistence.errors import ConcurrencyConflict
from flx_meltano.settings import Settings

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
FLX = str(REPO / ".venv" / "bin" / "flx-meltano")
FILES_PIPELINE = "dev:tap-shopsim-to-target-jsonlines"
DAY_2 = "2024-01-03T00:00:00Z"


NO_MELTANO = "/nonexistent/bin/meltano"


def _context_without_meltano(sandbox, store_url: str, how: str, monkeypatch) -> AppContext:
    if how == "env":
        monkeypatch.setenv("FLX_MELTANO_EXECUTABLE", NO_MELTANO)
        return sandbox.context(store_url)
    settings = Settings(
        database_url=store_url, project_dir=REPO, environment="dev", meltano_executable=NO_MELTANO
    )
    return app_context(settings, env=sandbox.env)


@pytest.mark.parametrize("how", ["env", "settings"])
def test_a_meltano_that_cannot_start_is_recorded_failed_not_cancelled(
    meltano_sandbox, default_store_url, monkeypatch, how
):
    ctx = _context_without_meltano(meltano_sandbox, default_store_url, how, monkeypatch)
    with pytest.raises(LaunchError, match=f"{NO_MELTANO!r} was not found"):
        run(ctx, FILES_PIPELINE, RunOptions())
    [execution] = queries.execution_history(ctx, pipeline=FILES_PIPELINE)
    assert execution.status is ExecutionStatus.FAILED
    assert f"{NO_MELTANO!r} was not found" in (execution.error or "")
    assert "FLX_MELTANO_EXECUTABLE" in (execution.error or "")
    assert "cancelled" not in (execution.error or "")
    assert execution.ended_at is not None
    assert queries.execution_history(ctx, status="RUNNING") == []


def test_cli_run_names_an_unusable_meltano_without_a_traceback(meltano_sandbox, default_store_url):
    env = {**os.environ, **meltano_sandbox.env, "FLX_DATABASE_URL": default_store_url}
    done = subprocess.run(
        [FLX, "run", FILES_PIPELINE, "--json"],
        cwd=REPO,
        env={**env, "FLX_MELTANO_EXECUTABLE": NO_MELTANO},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"error: the meltano executable {NO_MELTANO!r} was not found" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_failure_while_closing_does_not_hide_the_original_error(
    meltano_sandbox, default_store_url, monkeypatch
):
    ctx = _context_without_meltano(meltano_sandbox, default_store_url, "env", monkeypatch)
    read_state = ctx.state_store.get
    start = MeltanoRun.start
    launched: list[bool] = []

    def launch(self, *args, **kwargs):
        launched.append(True)
        return start(self, *args, **kwargs)

    def state_backend_that_breaks_once_meltano_was_launched(state_id):
        if launched:
            raise StateAccessError("the state backend went away")
        return read_state(state_id)

    monkeypatch.setattr(MeltanoRun, "start", launch)
    monkeypatch.setattr(ctx.state_store, "get", state_backend_that_breaks_once_meltano_was_launched)
    with pytest.raises(LaunchError, match="was not found") as raised:
        run(ctx, FILES_PIPELINE, RunOptions())
    assert any("the state backend went away" in note for note in getattr(raised.value, "__notes__", []))
    [execution] = queries.execution_history(ctx, pipeline=FILES_PIPELINE)
    assert execution.status is ExecutionStatus.FAILED
    assert f"{NO_MELTANO!r} was not found" in (execution.error or "")
    assert "the state backend went away" in (execution.error or "")


def test_an_error_in_flx_while_meltano_runs_is_failed_and_stops_every_process(
    meltano_sandbox, default_store_url, processes_with
):
    ctx = meltano_sandbox.context(default_store_url, TAP_SHOPSIM_RECORD_DELAY_MS="20")
    [step] = resolve(ctx.project, FILES_PIPELINE)
    assert step.pipeline is not None
    marker = str(meltano_sandbox.system_db)
    updates = execute_pipeline(ctx, step.pipeline, RunOptions())
    for update in updates:
        if isinstance(update, LogUpdate) and update.plugin and len(processes_with(marker)) >= 3:
            break  # meltano, tap and target are running
    with pytest.raises(ConcurrencyConflict, match="another writer"):
        updates.throw(ConcurrencyConflict("another writer changed the execution"))
    assert processes_with(marker) == []
    [execution] = queries.execution_history(ctx, pipeline=FILES_PIPELINE)
    assert execution.status is ExecutionStatus.FAILED
    assert execution.error == "ConcurrencyConflict: another writer changed the execution"


def test_an_interrupt_in_the_consumer_cancels_at_once_not_when_the_generator_is_collected(
    meltano_sandbox, default_store_url, processes_with, monkeypatch
):
    ctx = meltano_sandbox.context(default_store_url, TAP_SHOPSIM_RECORD_DELAY_MS="20")
    marker = str(meltano_sandbox.system_db)
    held = []  # as a debugger, a traceback or another interpreter's GC may hold it
    execute = run_module.execute_pipeline

    def execute_and_hold(*args, **kwargs):
        updates = execute(*args, **kwargs)
        held.append(updates)
        return updates

    monkeypatch.setattr(run_module, "execute_pipeline", execute_and_hold)
    steps = resolve(ctx.project, FILES_PIPELINE, ctx.environment)

    def consume() -> None:  # the consumer (the CLI's progress table) is interrupted
        with closing(run_module.execute(ctx, steps, RunOptions())) as updates:
            for update in updates:
                if isinstance(update, LogUpdate) and update.plugin and len(processes_with(marker)) >= 3:
                    raise KeyboardInterrupt  # meltano, tap and target run

    with pytest.raises(KeyboardInterrupt):
        consume()
    assert held
    assert processes_with(marker) == []
    [execution] = queries.execution_history(ctx, pipeline=FILES_PIPELINE)
    assert execution.status is ExecutionStatus.CANCELLED


def test_history_of_executions_started_at_the_same_instant_is_ordered_by_id_too(store_url):
    ctx = app_context(Settings(database_url=store_url, project_dir=REPO, environment="dev"))
    at = datetime(2024, 1, 1, tzinfo=UTC)
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(8)]
    with ctx.unit_of_work() as uow:
        for execution_id in ids:  # inserted in ascending id order, so storage order is not the answer
            execution = PipelineExecution.start(execution_id, FILES_PIPELINE, at=at, streams=("orders",))
            execution.record_stream(StreamResult("orders", 1, StreamStatus.SUCCEEDED), at=at)
            execution.succeed(at=at)
            uow.executions.save(execution)
        uow.commit()
    newest_first = ids[::-1]
    assert [e.id for e in queries.execution_history(ctx)] == newest_first
    assert [e.id for e in queries.execution_history(ctx, pipeline=FILES_PIPELINE, limit=5)] == newest_first[
        :5
    ]
    assert [e.id for e in queries.execution_history(ctx, status="SUCCEEDED", limit=3)] == newest_first[:3]
    assert [m.execution_id for m in queries.stream_metrics(ctx, FILES_PIPELINE, "orders")] == newest_first
    with ctx.unit_of_work() as uow:
        assert uow.executions.last_by_pipeline()[FILES_PIPELINE].id == newest_first[0]


def test_two_runs_record_exact_counts_then_only_new_records(meltano_sandbox, default_store_url):
    ctx = meltano_sandbox.context(default_store_url)
    [first] = run(ctx, "shop-to-files", RunOptions())
    assert first.status is ExecutionStatus.SUCCEEDED
    items_first = len(meltano_sandbox.lines("order_items"))
    assert {s: r.records for s, r in first.results.items()} == {
        "customers": 100,
        "products": 100,
        "orders": 100,
        "order_items": items_first,
    }
    assert 100 <= items_first <= 400
    assert first.results["orders"].bookmark["replication_key_value"].startswith("2024-01-02T00:00:00")
    assert first.duration is not None
    assert first.duration.seconds > 0

    later = meltano_sandbox.context(default_store_url, TAP_SHOPSIM_AS_OF="2024-01-02T12:00:00Z")
    [second] = run(later, FILES_PIPELINE, RunOptions())
    assert second.status is ExecutionStatus.SUCCEEDED
    assert second.results["customers"].records == 50
    assert second.results["orders"].records == 50
    assert second.results["products"].records == 100  # full table
    assert second.state_before == first.state_after
    assert second.results["orders"].bookmark["replication_key_value"].startswith("2024-01-02T12:00:00")
    assert len(meltano_sandbox.lines("orders")) == 150  # upsert: 100 + 50 distinct ids

    history = queries.execution_history(ctx, pipeline=FILES_PIPELINE)
    assert [e.id for e in history] == [second.id, first.id]
    metrics = queries.stream_metrics(ctx, FILES_PIPELINE, "orders")
    assert [m.result.records for m in metrics] == [50, 100]
    _cli_filters_executions_and_shows_metrics(meltano_sandbox, default_store_url, first, second)


def flx(env: dict[str, str], *args: str) -> str:
    """Run ``flx-meltano *args``; its stdout (it must succeed)."""
    done = subprocess.run([FLX, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _cli_filters_executions_and_shows_metrics(sandbox, store_url, first, second):
    """``executions --pipeline/--status/--limit`` and ``metrics``, over the two runs just recorded."""
    env = {**os.environ, **sandbox.env, "FLX_DATABASE_URL": store_url, "COLUMNS": "200", "NO_COLOR": "1"}

    def ids(*args: str) -> list[str]:
        return [row["id"] for row in json.loads(flx(env, "executions", "--json", *args))]

    assert ids("--pipeline", FILES_PIPELINE) == [second.id, first.id]
    assert ids("--pipeline", FILES_PIPELINE, "--limit", "1") == [second.id]
    assert ids("-p", "dev:tap-shopsim-to-target-postgres") == []
    assert ids("--status", "succeeded") == [second.id, first.id]
    assert ids("--status", "FAILED") == []
    [row] = json.loads(flx(env, "executions", "--json", "-n", "1"))
    assert set(row) >= {"id", "pipeline_id", "status", "trigger", "started_at", "records", "results", "error"}
    assert (row["pipeline_id"], row["status"], row["trigger"]) == (FILES_PIPELINE, "SUCCEEDED", "api")
    assert {r["stream"]: r["records"] for r in row["results"]} == {
        s: r.records for s, r in second.results.items()
    }
    table = flx(env, "executions", "--pipeline", FILES_PIPELINE, "--status", "SUCCEEDED", "--limit", "1")
    assert second.id[:8] in table
    assert first.id[:8] not in table
    assert f"{second.records:,}" in table

    metrics = json.loads(flx(env, "metrics", FILES_PIPELINE, "--stream", "orders", "--json"))
    assert [(m["execution_id"], m["execution_status"]) for m in metrics] == [
        (second.id, "SUCCEEDED"),
        (first.id, "SUCCEEDED"),
    ]
    assert [m["result"]["records"] for m in metrics] == [50, 100]
    assert set(metrics[0]["result"]) == {
        "stream",
        "records",
        "status",
        "duration_seconds",  # the one duration shape of every command's JSON
        "bookmark",
        "finished_at",
    }
    assert isinstance(metrics[0]["result"]["duration_seconds"], float)
    assert metrics[0]["result"]["bookmark"]["replication_key_value"].startswith("2024-01-02T12:00:00")
    table = flx(env, "metrics", FILES_PIPELINE)
    assert f"{FILES_PIPELINE} streams over time" in table
    rows = [line for line in table.splitlines() if second.id[:8] in line]
    assert {row.split("│")[3].strip() for row in rows} == {"customers", "products", "orders", "order_items"}
    assert len([line for line in table.splitlines() if first.id[:8] in line]) == 4


def test_cli_lists_the_projects_plugins_as_a_table_and_json():
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1"}
    plugins = {p["name"]: p for p in json.loads(flx(env, "plugins", "--json"))}
    assert {"tap-shopsim", "target-jsonlines", "target-postgres"} <= set(plugins)
    assert plugins["tap-shopsim"] == {
        "name": "tap-shopsim",
        "type": "extractor",
        "namespace": "tap_shopsim",
        "pip_url": "-e ./taps/tap-shopsim",
        "executable": "tap-shopsim",
        "capabilities": ["catalog", "discover", "state", "about", "stream-maps", "schema-flattening"],
        "mappings": [],
    }
    assert plugins["target-jsonlines"]["type"] == "loader"
    table = flx(env, "plugins")
    [row] = [line for line in table.splitlines() if "│ tap-shopsim " in line]
    assert [cell.strip() for cell in row.split("│")[1:4]] == ["tap-shopsim", "extractor", "tap_shopsim"]


def test_cli_catalog_refresh_discovers_and_caches_the_streams(meltano_sandbox):
    from flx_meltano.integration import catalog

    cache = catalog.cache_path(REPO, "tap-shopsim")
    saved = cache.read_text() if cache.exists() else None
    env = {**os.environ, **meltano_sandbox.env, "COLUMNS": "200", "NO_COLOR": "1"}
    try:
        table = flx(env, "catalog", "refresh", "tap-shopsim")
        [row] = [line for line in table.splitlines() if "tap-shopsim" in line]
        streams = {"customers", "products", "orders", "order_items"}
        assert set(row.split("│")[2].strip().split(", ")) == streams
        assert set(catalog.discovered_streams(REPO, "tap-shopsim") or ()) == streams
    finally:
        if saved is None:
            cache.unlink(missing_ok=True)
        else:
            cache.write_text(saved)


def test_failing_tap_is_recorded_failed_with_the_state_it_reached(meltano_sandbox, default_store_url):
    ctx = meltano_sandbox.context(
        default_store_url, TAP_SHOPSIM_FAIL_AFTER_RECORDS="150", TAP_SHOPSIM_STATE_EVERY="20"
    )
    [execution] = run(ctx, "shop-to-files", RunOptions())
    assert execution.status is ExecutionStatus.FAILED
    assert execution.failed_plugin == "tap-shopsim"
    assert execution.exit_code == 1
    summary, heading, *tail = (execution.error or "").splitlines()
    assert summary.startswith("tap-shopsim exited with code 1: ")
    assert "failing on purpose after 150 records" in summary
    # The tap's last lines (the end of its traceback) are kept with the error.
    assert heading == f"last {len(tail)} lines of tap-shopsim:"
    assert 2 <= len(tail) <= 10
    assert any("in _fail" in line for line in tail)
    assert tail[-1].strip().endswith("failing on purpose after 150 records (fail_after_records)")
    assert execution.results["customers"].status is StreamStatus.SUCCEEDED
    assert execution.results["customers"].records == 100
    assert execution.results["orders"].status is StreamStatus.FAILED
    assert execution.state_after is not None
    with ctx.unit_of_work() as uow:  # the state reached, by reference: the post-run snapshot
        kept = uow.snapshots.get(execution.state_after.snapshot_id)
    assert kept.checksum == execution.state_after.checksum
    bookmarks = kept.state.bookmarks
    assert bookmarks["customers"]["replication_key_value"].startswith("2024-01-02T00:00:00")
    stored = queries.get_execution(ctx, execution.id)
    assert stored.status is ExecutionStatus.FAILED
    assert stored.error == execution.error
    env = {**os.environ, **meltano_sandbox.env, "FLX_DATABASE_URL": default_store_url, "COLUMNS": "200"}
    shown = subprocess.run(
        [FLX, "execution", execution.id[:8]], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert f"error: {summary} (plugin tap-shopsim, exit code 1)" in shown.stdout
    assert heading in shown.stdout
    assert all(line.strip() in shown.stdout for line in tail)


def test_a_subset_of_streams_moves_only_those_records(meltano_sandbox, default_store_url):
    ctx = meltano_sandbox.context(default_store_url)
    [execution] = run(ctx, FILES_PIPELINE, RunOptions(streams=("customers",)))
    assert execution.status is ExecutionStatus.SUCCEEDED
    assert set(execution.results) == {"customers"}
    assert len(meltano_sandbox.lines("customers")) == 100
    assert meltano_sandbox.lines("orders") == []
    assert meltano_sandbox.lines("products") == []


def test_a_second_execution_of_a_running_state_id_is_refused(meltano_sandbox, default_store_url):
    ctx = meltano_sandbox.context(default_store_url)
    [step] = resolve(ctx.project, FILES_PIPELINE)
    assert step.pipeline is not None
    open_execution(ctx, step.pipeline, RunOptions())
    with pytest.raises(ExecutionAlreadyRunning, match=FILES_PIPELINE):
        run(ctx, FILES_PIPELINE, RunOptions())
    # Our own pid is alive, so the reconciler must leave the open execution alone.
    assert reconcile_crashed(ctx) == []


def test_cancelling_stops_meltano_tap_and_target_and_records_cancelled(
    meltano_sandbox, default_store_url, processes_with
):
    env = {
        **os.environ,
        **meltano_sandbox.env,
        "FLX_DATABASE_URL": default_store_url,
        "TAP_SHOPSIM_RECORD_DELAY_MS": "40",
    }
    runner = subprocess.Popen(
        [FLX, "run", FILES_PIPELINE, "--json"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ctx = meltano_sandbox.context(default_store_url)
    marker = str(meltano_sandbox.system_db)
    deadline = time.monotonic() + 60
    running = []
    while time.monotonic() < deadline:
        running = queries.execution_history(ctx, status="RUNNING")
        if running and len(processes_with(marker)) >= 3:  # meltano, tap, target
            break
        time.sleep(0.2)
    assert running, "the execution never started"
    assert len(processes_with(marker)) >= 3
    cancel = subprocess.run(
        [FLX, "cancel", running[0].id], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert cancel.returncode == 0, cancel.stdout + cancel.stderr
    runner.wait(timeout=30)
    assert runner.returncode == 130
    assert processes_with(marker) == []
    cancelled = queries.get_execution(ctx, running[0].id)
    assert cancelled.status is ExecutionStatus.CANCELLED
    assert cancelled.duration is not None
    assert cancelled.duration.seconds < 30


def test_cli_lists_executions_as_json_and_tables(meltano_sandbox, default_store_url):
    ctx = meltano_sandbox.context(default_store_url)
    [execution] = run(ctx, "shop-to-files", RunOptions())
    env = {**os.environ, **meltano_sandbox.env, "FLX_DATABASE_URL": default_store_url, "COLUMNS": "200"}
    listed = subprocess.run(
        [FLX, "executions", "--json"], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    rows = json.loads(listed.stdout)
    assert [r["id"] for r in rows] == [execution.id]
    assert rows[0]["records"] == execution.records
    detail = subprocess.run(
        [FLX, "execution", execution.id[:8]], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert "order_items" in detail.stdout
    assert "SUCCEEDED" in detail.stdout
    table = subprocess.run([FLX, "pipelines"], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert FILES_PIPELINE in table.stdout
    assert "never run" in table.stdout  # the warehouse pipeline


def test_plugin_config_never_shows_secrets(meltano_sandbox, default_store_url):
    env = {**os.environ, **meltano_sandbox.env, "FLX_DATABASE_URL": default_store_url}
    shown = subprocess.run(
        [FLX, "config", "target-postgres", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(shown.stdout)["sqlalchemy_url"] == "********"


def test_the_warehouse_job_loads_postgres_and_runs_dbt(meltano_sandbox, default_store_url, default_server):
    import psycopg

    name = f"flx_wh_{os.getpid()}_{threading.get_ident() % 10000}"
    with psycopg.connect(default_server.admin_conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = default_server.url(name)
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        ctx = meltano_sandbox.context(
            default_store_url,
            FLX_WAREHOUSE_URL=url,
            FLX_WAREHOUSE_HOST=str(parsed.query.get("host") or parsed.host),
            FLX_WAREHOUSE_PORT=str(parsed.port or 5432),
            FLX_WAREHOUSE_USER="postgres",
            FLX_WAREHOUSE_PASSWORD="",
            FLX_WAREHOUSE_DBNAME=name,
        )
        [execution] = run(ctx, "shop-to-warehouse", RunOptions())
        assert execution.status is ExecutionStatus.SUCCEEDED
        with psycopg.connect(
            default_server.admin_conninfo.replace("dbname=postgres", f"dbname={name}")
        ) as conn:
            assert conn.execute("select count(*) from raw_shop.orders").fetchone() == (100,)
            assert conn.execute("select count(*) from analytics.customer_revenue").fetchone() == (100,)
    finally:
        with psycopg.connect(default_server.admin_conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_two_pipelines_of_one_tap_at_once_both_succeed(meltano_sandbox, default_store_url, default_server):
    """Meltano shares a tap's catalog file between runs (meltano#8763): flx must serialise them."""
    from concurrent.futures import ThreadPoolExecutor

    import psycopg

    name = f"flx_wh_{os.getpid()}_lock"
    with psycopg.connect(default_server.admin_conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(default_server.url(name))
        ctx = meltano_sandbox.context(
            default_store_url,
            FLX_WAREHOUSE_URL=default_server.url(name),
            FLX_WAREHOUSE_HOST=str(parsed.query.get("host") or parsed.host),
            FLX_WAREHOUSE_DBNAME=name,
        )
        with ThreadPoolExecutor(2) as pool:
            futures = [
                pool.submit(run, ctx, target, RunOptions())
                for target in ("dev:tap-shopsim-to-target-jsonlines", "dev:tap-shopsim-to-target-postgres")
            ]
            results = [f.result(timeout=300) for f in futures]
        assert [e.status for [e] in results] == [ExecutionStatus.SUCCEEDED, ExecutionStatus.SUCCEEDED]
        first, second = sorted((e for [e] in results), key=lambda e: e.started_at)
        assert second.ended_at is not None
        assert first.ended_at is not None
    finally:
        with psycopg.connect(default_server.admin_conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_bare_meltano_runs_every_job_and_resumes_from_its_bookmark(
    meltano_sandbox, default_store_url, default_server
):
    """The repository is a plain Meltano project too: `meltano run <job>` works and resumes."""
    import psycopg
    from sqlalchemy.engine import make_url

    meltano = str(REPO / ".venv" / "bin" / "meltano")
    name = f"flx_wh_{os.getpid()}_bare"
    with psycopg.connect(default_server.admin_conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    parsed = make_url(default_server.url(name))
    warehouse = {
        "FLX_WAREHOUSE_URL": default_server.url(name),
        "FLX_WAREHOUSE_HOST": str(parsed.query.get("host") or parsed.host),
        "FLX_WAREHOUSE_PORT": str(parsed.port or 5432),
        "FLX_WAREHOUSE_USER": "postgres",
        "FLX_WAREHOUSE_PASSWORD": "",
        "FLX_WAREHOUSE_DBNAME": name,
    }
    env = {**os.environ, **meltano_sandbox.env, **warehouse}
    try:
        for job in ("shop-to-files", "shop-to-warehouse"):
            done = subprocess.run(
                [meltano, "run", job], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 0, done.stderr[-2000:]
        assert len(meltano_sandbox.lines("orders")) == 100
        later = {
            **env,
            "TAP_SHOPSIM_AS_OF": "2024-01-02T06:00:00Z",
            "TARGET_JSONLINES_DESTINATION_PATH": str(meltano_sandbox.output / "second"),
        }
        done = subprocess.run(
            [meltano, "run", "tap-shopsim", "target-jsonlines"],
            cwd=REPO,
            env=later,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        second = (meltano_sandbox.output / "second" / "orders.jsonl").read_text().splitlines()
        assert len(second) == 25  # only the orders after the bookmark (a quarter day at 100/day)
        assert min(json.loads(line)["id"] for line in second) == 101
    finally:
        with psycopg.connect(default_server.admin_conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_cli_run_shows_a_live_table_per_stream(meltano_sandbox, default_store_url):
    env = {**os.environ, **meltano_sandbox.env, "FLX_DATABASE_URL": default_store_url, "COLUMNS": "200"}
    done = subprocess.run(
        [FLX, "run", FILES_PIPELINE], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table_rows = [line for line in done.stdout.splitlines() if FILES_PIPELINE in line and "SUCCEEDED" in line]
    assert {row.split("│")[2].strip() for row in table_rows if row.count("│") > 6} >= {
        "customers",
        "products",
        "orders",
        "order_items",
    }


def test_a_selected_stream_the_tap_does_not_have_ends_missing_with_a_warning(
    meltano_sandbox, default_store_url
):
    """Meltano says "Stream `x` was not found in the catalog": that stream did not succeed."""
    ctx = meltano_sandbox.context(default_store_url)
    [files] = resolve(ctx.project, FILES_PIPELINE)
    assert files.pipeline is not None
    typo = replace(files.pipeline, streams=(*files.pipeline.streams, "customerz"))
    execution = run_module.run_pipeline(ctx, typo, RunOptions(streams=("customers", "customerz")))
    assert execution.status is ExecutionStatus.SUCCEEDED
    assert execution.results["customers"].status is StreamStatus.SUCCEEDED
    missing = execution.results["customerz"]
    assert (missing.status, missing.records) == (StreamStatus.MISSING, None)
    assert any("customerz" in w and "catalog" in w for w in execution.warnings)
    assert execution.regression_warnings == ()
    stored = queries.get_execution(ctx, execution.id)
    assert stored.results["customerz"].status is StreamStatus.MISSING
    assert stored.results["customerz"].records is None


def test_a_bad_setting_value_names_the_plugin_and_setting(meltano_sandbox, default_store_url):
    ctx = meltano_sandbox.context(default_store_url, TAP_SHOPSIM_SCALE="abc")
    [execution] = run(ctx, FILES_PIPELINE, RunOptions())
    assert execution.status is ExecutionStatus.FAILED
    assert execution.failed_plugin == "tap-shopsim"
    error = execution.error or ""
    assert "invalid literal for int() with base 10: 'abc'" in error  # Meltano's own line, kept
    assert "tap-shopsim setting 'scale' (TAP_SHOPSIM_SCALE) is not a valid integer" in error
    assert len(error.splitlines()) <= 12
