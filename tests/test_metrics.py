"""The Prometheus exporter: real runs, ``flx-meltano metrics serve`` scraped and parsed, and by Prometheus.

Three runs of the files pipeline (one good, one flagged for a state regression, one failing) and
one execution left RUNNING; the exporter (a separate process reading the store at each scrape) is
parsed with prometheus-client's own parser and scraped by Debian's Prometheus server.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from flx_meltano.application import queries
from flx_meltano.application.context import AppContext
from flx_meltano.application.pipelines import resolve
from flx_meltano.application.run import RunOptions, open_execution, run
from flx_meltano.bootstrap import app_context
from flx_meltano.cli.metrics_serve import registry_for
from flx_meltano.domain.execution import PipelineExecution
from flx_meltano.domain.values import ExecutionStatus
from flx_meltano.settings import Settings
from tests.dagster_helpers import free_port, start_logged, tail

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
FILES = "dev:tap-shopsim-to-target-jsonlines"
STREAMS = ("customers", "order_items", "orders", "products")


@dataclass(frozen=True)
class Ran:
    """The executions the runs left in the store, and the exporter serving it."""

    executions: list[PipelineExecution]  # newest first, with results
    metrics_url: str
    log: Path
    ctx: AppContext


def _scrape(url: str) -> dict[str, Any]:
    """Samples by (name, sorted labels), parsed by prometheus-client."""
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture(scope="module")
def ran(default_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    import psycopg

    from flx_meltano.persistence import database

    root = tmp_path_factory.mktemp("metrics")
    name = f"flx_test_metrics_{int(time.time() * 1000) % 10**9}"
    with psycopg.connect(default_server.admin_conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    store_url = default_server.url(name)
    env = {
        "MELTANO_DATABASE_URI": f"sqlite:///{root / 'meltano.db'}",
        "TARGET_JSONLINES_DESTINATION_PATH": str(root / "out"),
    }
    ctx = app_context(Settings(database_url=store_url, project_dir=REPO, environment="dev"), env=env)
    process = None
    try:
        [good] = run(ctx, FILES, RunOptions())
        [wiped] = run(ctx, FILES, RunOptions(env={"TARGET_JSONLINES_EMIT_EMPTY_FINAL_STATE": "true"}))
        [failed] = run(ctx, FILES, RunOptions(env={"TAP_SHOPSIM_FAIL_AFTER_RECORDS": "30"}))
        assert (good.status, wiped.status, failed.status) == (
            ExecutionStatus.SUCCEEDED,
            ExecutionStatus.SUCCEEDED,
            ExecutionStatus.FAILED,
        )
        assert any(w.startswith("state regression") for w in wiped.warnings)
        [step] = resolve(ctx.project, FILES)
        assert step.pipeline is not None
        running, _ = open_execution(ctx, step.pipeline, RunOptions())
        history = queries.execution_history(ctx, pipeline=FILES)
        executions = [queries.get_execution(ctx, e.id) for e in history]
        assert [e.id for e in executions] == [running.id, failed.id, wiped.id, good.id]

        port = free_port()
        log = root / "metrics.log"
        process = start_logged(
            [Path(sys.executable).with_name("flx-meltano"), "metrics", "serve", "--host", "127.0.0.1",
             "--port", str(port)],
            log,
            env={"PATH": "/usr/bin:/bin", "FLX_DATABASE_URL": store_url, "FLX_PROJECT_DIR": str(REPO)},
            cwd=root,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail(f"metrics serve did not answer at {url}:\n{tail(log)}")
        yield Ran(executions, url, log, ctx)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=20)
        ctx.close()
        database.engine_for.cache_clear()
        with psycopg.connect(default_server.admin_conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def test_metrics_show_every_series_per_pipeline_and_stream_after_runs(ran: Ran):
    _, failed, wiped, good = ran.executions
    samples = _scrape(ran.metrics_url)
    p = {"pipeline": FILES}
    assert samples[_key("flx_meltano_up")] == 1
    statuses = map(str, ExecutionStatus)
    by_status = {s: samples[_key("flx_meltano_executions_total", **p, status=s)] for s in statuses}
    expected = {"PENDING": 0, "RUNNING": 1, "SUCCEEDED": 2, "FAILED": 1, "CANCELLED": 0, "CRASHED": 0}
    assert by_status == expected
    assert samples[_key("flx_meltano_executions_running", **p)] == 1
    assert samples[_key("flx_meltano_state_regressions_total", **p)] == 1
    assert wiped.ended_at is not None
    assert samples[_key("flx_meltano_last_success_timestamp_seconds", **p)] == pytest.approx(
        wiped.ended_at.timestamp(), abs=0.001
    )

    finished = [e for e in (failed, wiped, good) if e.duration is not None]
    assert len(finished) == 3
    assert samples[_key("flx_meltano_execution_duration_seconds_count", **p)] == 3
    assert samples[_key("flx_meltano_execution_duration_seconds_sum", **p)] == pytest.approx(
        sum(e.duration.seconds for e in finished if e.duration), rel=1e-6
    )
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in samples.items()
        if name == "flx_meltano_execution_duration_seconds_bucket"
    )
    assert buckets[-1] == (float("inf"), 3)
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert all(v == sum(1 for e in finished if e.duration and e.duration.seconds <= le) for le, v in buckets)

    for stream in STREAMS:
        s = {**p, "stream": stream}
        results = [e.results[stream] for e in (failed, wiped, good) if stream in e.results]
        loaded = sum(r.records for r in results if r.records is not None)
        assert samples[_key("flx_meltano_records_loaded_total", **s)] == loaded, stream
        newest = results[0]
        if newest.records is not None:
            assert samples[_key("flx_meltano_stream_last_records", **s)] == newest.records, stream
        succeeded = sum(1 for r in results if str(r.status) == "SUCCEEDED")
        assert samples[_key("flx_meltano_stream_results_total", **s, status="SUCCEEDED")] == succeeded
        assert samples[_key("flx_meltano_stream_duration_seconds_count", **s)] == sum(
            1 for r in results if r.duration is not None
        )
        assert _key("flx_meltano_stream_last_success_timestamp_seconds", **s) in samples
    assert samples[_key("flx_meltano_records_loaded_total", **p, stream="orders")] > 0


def test_metrics_are_read_at_each_scrape_not_kept(ran: Ran):
    """A second scrape sees the store as it is now: the RUNNING execution, closed meanwhile."""
    p = {"pipeline": FILES}
    before = _scrape(ran.metrics_url)
    assert before[_key("flx_meltano_executions_running", **p)] == 1
    with ran.ctx.unit_of_work() as uow:
        execution = uow.executions.get(ran.executions[0].id, for_update=True)
        execution.crash("closed by the metrics test", at=datetime.now(UTC))
        uow.executions.save(execution)
        uow.commit()
    after = _scrape(ran.metrics_url)
    assert after[_key("flx_meltano_executions_running", **p)] == 0
    assert after[_key("flx_meltano_executions_total", **p, status="CRASHED")] == 1
    assert after[_key("flx_meltano_execution_duration_seconds_count", **p)] == 4
    unchanged = _key("flx_meltano_executions_total", **p, status="SUCCEEDED")
    assert after[unchanged] == before[unchanged] == 2


def test_an_unreachable_store_gives_up_zero_and_no_error(default_server):
    nowhere = default_server.url("flx_no_such_database")
    ctx = app_context(Settings(database_url=nowhere, project_dir=REPO))
    text = generate_latest(registry_for(ctx)).decode()
    assert text.splitlines()[-1] == "flx_meltano_up 0.0"
    assert "flx_meltano_executions_total" not in text


def test_a_real_prometheus_scrapes_the_exporter(ran: Ran, tmp_path: Path):
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("Prometheus is not installed: run 'make prometheus' (Debian's package, as root)")
    target = urllib.parse.urlsplit(ran.metrics_url).netloc
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [{"job_name": "flx-meltano", "static_configs": [{"targets": [target]}]}],
            }
        )
    )
    port = free_port()
    log = tmp_path / "prometheus.log"
    process = start_logged(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        log,
        env={"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 60
        answer: dict[str, Any] = {}
        while time.monotonic() < deadline and process.poll() is None:
            try:
                query = urllib.parse.quote('flx_meltano_executions_total{status="SUCCEEDED"}')
                with urllib.request.urlopen(f"{api}/query?query={query}", timeout=5) as response:
                    answer = json.loads(response.read())
                if answer.get("data", {}).get("result"):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        series = answer.get("data", {}).get("result")
        assert series, f"{answer}\n{tail(log)}"
        [result] = series
        assert result["metric"]["pipeline"] == FILES
        assert result["value"][1] == "2"
        with urllib.request.urlopen(f"{api}/targets", timeout=5) as response:
            [active] = json.loads(response.read())["data"]["activeTargets"]
        assert (active["health"], active["lastError"]) == ("up", "")
    finally:
        process.terminate()
        process.wait(timeout=20)
