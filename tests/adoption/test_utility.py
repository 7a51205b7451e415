"""flx-meltano as a Meltano utility in a fresh ``meltano init`` project: doctor, a run, the UI, init."""

from __future__ import annotations

import os
import signal
import time

import pytest

from flx_meltano import state as state_api
from flx_meltano.application import queries
from flx_meltano.application.scaffold import template
from flx_meltano.bootstrap import app_context
from flx_meltano.domain.state import BookmarkChange
from flx_meltano.domain.values import ExecutionStatus, StreamStatus, Trigger
from flx_meltano.settings import Settings
from tests.adoption.conftest import JOB, MELTANO, REPO, SCALE, STATE_ID, run
from tests.dagster_helpers import DagsterGraphQL, dagster_storage_url, free_port, kill, start_logged, tail

pytestmark = pytest.mark.slow

CODE_LOCATION_FILES = (
    "dg.toml",
    "meltano_location/__init__.py",
    "meltano_location/definitions.py",
    "meltano_location/defs/__init__.py",
    "meltano_location/defs/meltano/defs.yaml",
    "instance/dagster.yaml",
    "workspace.yaml",
)


def _tree(root):
    """Every file of the project but Meltano's, the target's and bytecode, with its content."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file()
        and path.relative_to(root).parts[0] not in {".meltano", "output"}
        and "__pycache__" not in path.parts
    }


def test_meltano_invoke_doctor_then_a_job_through_the_utility_is_recorded(adopted_project):
    doctor = adopted_project.meltano("invoke", "flx-meltano", "doctor")
    assert "checks ok" in doctor.stdout, doctor.stdout

    adopted_project.meltano("invoke", "flx-meltano:run", JOB)

    settings = Settings(database_url=adopted_project.store_url, project_dir=adopted_project.root)
    ctx = app_context(settings)
    try:
        history = queries.execution_history(ctx, pipeline=STATE_ID)
        [execution] = [e for e in history if e.dagster_run_id is None]
        execution = queries.get_execution(ctx, execution.id)
    finally:
        ctx.close()
    assert (execution.status, execution.trigger) == (ExecutionStatus.SUCCEEDED, Trigger.CLI)
    assert {s: (r.records, r.status) for s, r in execution.results.items()} == {
        "customers": (SCALE, StreamStatus.SUCCEEDED),
        "orders": (SCALE, StreamStatus.SUCCEEDED),
    }
    # The third-party target wrote where the project says, relative to the project.
    for stream in ("customers", "orders"):
        assert len((adopted_project.root / "output" / f"{stream}.jsonl").read_text().splitlines()) == SCALE

    # The state the run saved is in Meltano's system database and in flx's history.
    [snapshot] = state_api.list_snapshots(STATE_ID, settings=settings)
    assert snapshot.execution_id == execution.id
    assert set(snapshot.state.bookmarks) == {"customers", "orders"}
    live = state_api.diff_live(snapshot.id, settings=settings)
    unchanged = dict.fromkeys(("customers", "orders"), BookmarkChange.UNCHANGED)
    assert {d.stream: d.change for d in live} == unchanged


def test_meltano_invoke_ui_serves_the_project_and_sigterm_stops_all_of_it(
    adopted_project, adoption_databases, processes_with
):
    port = free_port()
    log = adopted_project.root.parent / "ui.log"
    marker = f"FLX_TEST_MARKER=flx-ui-{port}"
    env = adopted_project.env(
        FLX_DAGSTER_PG_URL=dagster_storage_url(adoption_databases.server, adoption_databases.dagster_name),
        FLX_TEST_MARKER=marker.split("=", 1)[1],
    )
    process = start_logged(
        [MELTANO, "invoke", "flx-meltano:ui", "--port", str(port)], log, env=env, cwd=adopted_project.root
    )

    class Ui(DagsterGraphQL):
        def logs(self) -> str:
            return tail(log, 40)

    ui = Ui(f"http://127.0.0.1:{port}")
    try:
        ui.wait_until_serving(180, alive=lambda: process.poll() is None)
        data = ui.gql("{ assetNodes { assetKey { path } } }")
        keys = sorted(tuple(n["assetKey"]["path"]) for n in data["assetNodes"])
        assert keys == [("tap_shopsim", "customers"), ("tap_shopsim", "orders")], ui.logs()
        jobs = ui.gql("{ repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name } } } } }")[
            "repositoriesOrError"
        ]["nodes"][0]["jobs"]
        assert "shop_to_jsonl" in {j["name"] for j in jobs}
        started = set(processes_with(marker))
        assert len(started) >= 5, started  # meltano, flx-meltano ui, dagster dev, webserver, daemon, ...

        os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_with(marker) == [], ui.logs()
        assert process.wait(timeout=5) is not None
    finally:
        kill(processes_with(marker))
    # Without flx-meltano init the project is served all the same (the packaged code location).
    assert (
        "code location: flx_meltano.code_location" in log.read_text()
        or (adopted_project.root / "orchestrate" / "dagster" / "dg.toml").exists()
    )


def test_init_adds_only_the_code_location_files_and_dagster_validates_them(adopted_project):
    before = _tree(adopted_project.root)
    written = adopted_project.meltano("invoke", "flx-meltano", "init")
    added = {k: v for k, v in _tree(adopted_project.root).items() if k not in before}
    assert sorted(added) == sorted(f"orchestrate/dagster/{name}" for name in CODE_LOCATION_FILES)
    assert {k: v for k, v in _tree(adopted_project.root).items() if k in before} == before
    assert added["orchestrate/dagster/instance/dagster.yaml"].decode() == template("dagster.yaml")
    assert "wrote orchestrate/dagster/meltano_location/defs/meltano/defs.yaml" in written.stdout

    dagster = adopted_project.utility_bin / "dagster"
    validated = run(
        [dagster, "definitions", "validate", "-f", "orchestrate/dagster/meltano_location/definitions.py"],
        cwd=adopted_project.root,
        env=adopted_project.env(),
    )
    assert "All code locations passed validation" in validated.stdout + validated.stderr

    again = adopted_project.meltano("invoke", "flx-meltano", "init", check=False)
    assert again.returncode == 2
    message = " ".join((again.stdout + again.stderr).split())
    assert all(f"orchestrate/dagster/{name}" in message for name in CODE_LOCATION_FILES), message
    assert "nothing was written" in message
    assert _tree(adopted_project.root) == {**before, **added}
    assert REPO not in adopted_project.root.parents
