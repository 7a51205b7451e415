"""The production topology: the code location image's steps, then code server, webserver and daemon apart.

The image is scripts/build-image.sh run into a temporary directory (the Dockerfile's only step).
The code server runs from the image's virtual environment over the image's project; the webserver
and daemon run from another environment and reach it only through workspace.yaml's gRPC address,
with the shipped dagster.yaml (PostgreSQL storage, queued run coordinator, pools, run monitoring)
as their instance. A job is launched through GraphQL and found in the flx store; the metrics
exporter runs beside the code server from the same image.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from flx_meltano.application import queries
from flx_meltano.application.context import AppContext
from flx_meltano.bootstrap import app_context
from flx_meltano.domain.values import ExecutionStatus, StreamStatus, Trigger
from flx_meltano.settings import Settings
from tests.adoption.conftest import REPO, SCALE, STATE_ID, Databases, Image, new_databases, user_env
from tests.dagster_helpers import DagsterGraphQL, dagster_storage_url, free_port, kill, start_logged, tail

pytestmark = pytest.mark.slow

DAGSTER_BIN = REPO / ".venv" / "bin"  # the webserver's and daemon's environment, not the image's
STARTUP_SECONDS = 240


def test_the_image_steps_install_everything_the_code_location_needs(image: Image):
    assert (image.venv / "bin" / "flx-meltano").exists()
    assert (image.venv / "bin" / "dagster").exists()
    for plugin in ("extractors/tap-shopsim", "loaders/target-jsonl", "utilities/flx-meltano"):
        assert (image.project / ".meltano" / plugin / "venv" / "bin").is_dir(), plugin
    shipped = (image.project / "orchestrate" / "dagster" / "instance" / "dagster.yaml").read_text()
    assert (image.dagster_home / "dagster.yaml").read_text() == shipped
    # Bytecode was compiled into the image, so no process of it compiles dagster again.
    assert list((image.venv / "lib").glob("python3.11/site-packages/dagster/__pycache__/__init__*.pyc"))
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "scripts/build-image.sh" in dockerfile
    assert "&& bash /tmp/build/build-image.sh /project /opt/flx " in dockerfile


@dataclass
class Topology(DagsterGraphQL):
    """Three Dagster processes and the metrics exporter, started apart."""

    logs_dir: Path = Path()
    store_url: str = ""
    metrics_url: str = ""

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{tail(log, 25)}" for log in sorted(self.logs_dir.glob("*.log")))

    def context(self) -> AppContext:
        return app_context(Settings(database_url=self.store_url, project_dir=REPO))


@pytest.fixture(scope="module")
def topology_databases(default_server) -> Iterator[Databases]:
    """A deployment of its own: not the adopted project's store (the state id is the same)."""
    with new_databases(default_server) as databases:
        yield databases


@pytest.fixture(scope="module")
def topology(image: Image, topology_databases: Databases, processes_with) -> Iterator[Topology]:
    logs = image.project.parent / "logs"
    logs.mkdir(exist_ok=True)
    grpc_port, web_port, metrics_port = free_port(), free_port(), free_port()
    marker = f"FLX_TEST_MARKER=topology-{grpc_port}"
    instance = {
        "DAGSTER_HOME": str(image.dagster_home),
        "FLX_DAGSTER_PG_URL": dagster_storage_url(topology_databases.server, topology_databases.dagster_name),
        "FLX_TEST_MARKER": marker.split("=", 1)[1],
    }
    code_env = user_env({**instance, "FLX_DATABASE_URL": topology_databases.store_url})
    dagster_env = user_env(
        {**instance, "FLX_CODE_SERVER_HOST": "127.0.0.1", "FLX_CODE_SERVER_PORT": str(grpc_port)}
    )
    workspace = image.project / "orchestrate" / "dagster" / "workspace.yaml"
    bin_ = image.venv / "bin"
    started = [
        start_logged(
            [bin_ / "dagster", "code-server", "start", "-h", "127.0.0.1", "-p", str(grpc_port),
             "-f", "orchestrate/dagster/meltano_location/definitions.py", "--location-name", "meltano"],
            logs / "code-server.log", env=code_env, cwd=image.project,
        ),
        start_logged(
            [DAGSTER_BIN / "dagster-webserver", "-h", "127.0.0.1", "-p", str(web_port), "-w", workspace],
            logs / "webserver.log", env=dagster_env, cwd=logs,
        ),
        start_logged(
            [DAGSTER_BIN / "dagster-daemon", "run", "-w", workspace],
            logs / "daemon.log", env=dagster_env, cwd=logs,
        ),
        start_logged(
            [bin_ / "flx-meltano", "metrics", "serve", "--host", "127.0.0.1", "--port", str(metrics_port)],
            logs / "metrics.log", env=code_env, cwd=image.project,
        ),
    ]  # fmt: skip
    topology = Topology(
        f"http://127.0.0.1:{web_port}",
        logs_dir=logs,
        store_url=topology_databases.store_url,
        metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
    )
    try:
        topology.wait_until_serving(STARTUP_SECONDS, alive=lambda: all(p.poll() is None for p in started))
        yield topology
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=20)
            except Exception:
                process.kill()
        kill(processes_with(marker))


def test_a_job_launched_through_the_webserver_runs_in_the_code_server_and_is_recorded(topology: Topology):
    assert topology.location == "meltano"  # workspace.yaml's gRPC server, not a file the webserver loaded
    instance = yaml.safe_load((REPO / "orchestrate" / "dagster" / "instance" / "dagster.yaml").read_text())
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"

    run_id = topology.launch("shop_to_jsonl")
    assert topology.wait_for_run(run_id, timeout=240) == "SUCCESS", topology.explain(run_id)

    ctx = topology.context()
    try:
        [found] = [e for e in queries.execution_history(ctx, pipeline=STATE_ID) if e.dagster_run_id == run_id]
        execution = queries.get_execution(ctx, found.id)
    finally:
        ctx.close()
    assert (execution.status, execution.trigger) == (ExecutionStatus.SUCCEEDED, Trigger.DAGSTER)
    assert {s: (r.records, r.status) for s, r in execution.results.items()} == {
        "customers": (SCALE, StreamStatus.SUCCEEDED),
        "orders": (SCALE, StreamStatus.SUCCEEDED),
    }
    [latest, *_] = topology.materializations(["tap_shopsim", "orders"], limit=1)
    assert latest["runId"] == run_id
    assert latest["metadata"]["dagster/row_count"] == SCALE

    # The exporter beside the code server sees the run at its next scrape.
    with urllib.request.urlopen(topology.metrics_url, timeout=30) as response:
        families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    wanted = {"pipeline": STATE_ID, "status": "SUCCEEDED"}
    samples = families["flx_meltano_executions"].samples
    [succeeded] = [s.value for s in samples if s.name.endswith("_total") and s.labels == wanted]
    assert succeeded >= 1
