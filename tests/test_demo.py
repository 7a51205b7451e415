"""``make demo``'s script stops cleanly on SIGTERM, started as a script starts it: in the background.

A background job of a non-interactive shell inherits SIGINT ignored; ``dagster dev`` maps SIGTERM
onto its SIGINT handler, so before ``flx-meltano ui`` it ignored SIGTERM too and ran on. Here the
script is started that way, on a free port, with its own Dagster storage; once the UI serves the
project, SIGTERM to the script's process must leave nothing behind within seconds.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.dagster_helpers import DagsterGraphQL, dagster_storage_url, free_port, kill, start_logged, tail

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
STOP_SECONDS = 12  # the 5 s grace of flx-meltano ui, then SIGKILL of what is left, and slack


def _as_a_background_job() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_sigterm_stops_the_demo_ui_daemon_and_code_server(default_server, tmp_path, processes_with):
    store_db = f"flx_test_{uuid.uuid4().hex[:10]}"
    dagster_db = f"{store_db}_dagster"
    with psycopg.connect(default_server.admin_conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{store_db}"')
        conn.execute(f'CREATE DATABASE "{dagster_db}"')
    port, log = free_port(), tmp_path / "demo.log"
    marker = f"FLX_TEST_MARKER=demo-{port}"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FLX_", "DAGSTER_"))}
    env.update(
        {
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "DAGSTER_HOME": str(tmp_path / "home"),
            "FLX_DATABASE_URL": default_server.url(store_db),
            "FLX_DAGSTER_PG_URL": dagster_storage_url(default_server, dagster_db),
            "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
            "FLX_TEST_MARKER": marker.split("=", 1)[1],
        }
    )
    script = start_logged(
        ["bash", "scripts/dagster-dev.sh"], log, env=env, cwd=REPO, preexec_fn=_as_a_background_job
    )

    class Demo(DagsterGraphQL):
        def logs(self) -> str:
            return tail(log, 40)

    demo = Demo(f"http://127.0.0.1:{port}")
    try:
        demo.wait_until_serving(180, alive=lambda: script.poll() is None)
        running = processes_with(marker)
        assert len(running) >= 5, running  # flx-meltano ui, dagster dev, webserver, daemon, code server

        started = time.monotonic()
        script.send_signal(signal.SIGTERM)
        while processes_with(marker) and time.monotonic() - started < 30:
            time.sleep(0.2)
        stopped = time.monotonic() - started
        assert processes_with(marker) == [], demo.logs()
        assert stopped < STOP_SECONDS, f"took {stopped:.1f}s\n{demo.logs()}"
        assert script.wait(timeout=5) == 0
        assert "KeyboardInterrupt received" in log.read_text()  # dagster dev was asked, not just killed
    finally:
        kill(processes_with(marker))
        with psycopg.connect(default_server.admin_conninfo, autocommit=True) as conn:
            for name in (store_db, dagster_db):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
