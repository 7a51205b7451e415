"""The launch gate: meltano imports itself early but touches nothing until the run is started."""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from flx_meltano.integration.launcher import MeltanoRun, RunRequest, gated_argv
from flx_meltano.integration.run_events import RunCompleted

if TYPE_CHECKING:
    from conftest import MeltanoSandbox

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
MELTANO = str(REPO / ".venv" / "bin" / "meltano")


def _request(sandbox: MeltanoSandbox) -> RunRequest:
    return RunRequest(
        project_dir=REPO,
        environment="dev",
        blocks=("tap-shopsim", "target-jsonlines"),
        run_id=str(uuid.uuid4()),
        meltano_executable=MELTANO,
        force=True,
        env=sandbox.env,
        exclusive=("tap-shopsim",),
    )


def _meltano_jobs(system_db: Path) -> int:
    if not system_db.exists():
        return 0
    with sqlite3.connect(system_db) as db:
        tables = {row[0] for row in db.execute("select name from sqlite_master where type='table'")}
        return db.execute("select count(*) from runs").fetchone()[0] if "runs" in tables else 0


def test_gated_argv_only_for_meltanos_python_script(tmp_path: Path) -> None:
    argv = gated_argv([MELTANO, "run", "tap-shopsim"])
    assert argv is not None
    assert argv[0].endswith("python")
    assert argv[1] == "-c"
    assert "from meltano.cli import main" in argv[2]
    assert argv[3:] == ["run", "tap-shopsim"]

    wrapper = tmp_path / "meltano-wrapper"
    wrapper.write_text('#!/bin/sh\nexec meltano "$@"\n')
    assert gated_argv([str(wrapper), "run"]) is None
    assert gated_argv([str(tmp_path / "missing"), "run"]) is None


def test_gated_meltano_does_nothing_until_started_then_runs(meltano_sandbox: MeltanoSandbox) -> None:
    run = MeltanoRun(_request(meltano_sandbox)).spawn()
    try:
        time.sleep(3)  # long enough for an ungated meltano to have started the tap
        assert run.returncode is None
        assert not meltano_sandbox.output.exists()
        assert _meltano_jobs(meltano_sandbox.system_db) == 0
        events = list(run.start().events())
    finally:
        run.cancel()
    assert run.returncode == 0
    assert [e for e in events if isinstance(e, RunCompleted)]
    assert meltano_sandbox.lines("customers")
    assert _meltano_jobs(meltano_sandbox.system_db) == 1


def test_aborted_gate_exits_without_running(meltano_sandbox: MeltanoSandbox, processes_with) -> None:
    marker = str(meltano_sandbox.output)
    run = MeltanoRun(_request(meltano_sandbox)).spawn()
    assert processes_with(marker)
    run.abort()
    assert run.returncode == 0
    assert not processes_with(marker)
    assert not meltano_sandbox.output.exists()
    assert _meltano_jobs(meltano_sandbox.system_db) == 0
