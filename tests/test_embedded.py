"""The embedded PostgreSQL server: one per project, started on demand, safe to start concurrently."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg

from flx_meltano.persistence import embedded

START = """
import json, sys
from pathlib import Path
from flx_meltano.persistence import embedded
server = embedded.start(Path(sys.argv[1]))
import psycopg
with psycopg.connect(server.conninfo()) as conn:
    query = "select pid from pg_stat_activity where backend_type = 'checkpointer'"
    checkpointer = conn.execute(query).fetchone()
found = checkpointer[0] if checkpointer else None
print(json.dumps({"socket": str(server.socket_dir), "checkpointer": found}))
"""


def test_two_processes_starting_it_at_once_share_one_server(tmp_path: Path):
    data = tmp_path / "pgdata"
    try:
        starters = [
            subprocess.Popen([sys.executable, "-c", START, str(data)], stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outputs = [json.loads(p.communicate(timeout=120)[0]) for p in starters]
        assert all(p.returncode == 0 for p in starters)
        assert outputs[0] == outputs[1]  # the same socket, the same server processes
        server = embedded.running(data)
        assert server is not None
        with psycopg.connect(server.conninfo("postgres")) as conn:
            names = {row[0] for row in conn.execute("select datname from pg_database")}
        assert {"flx", "warehouse", "dagster"} <= names
    finally:
        assert embedded.stop(data) is True
    assert embedded.running(data) is None
    assert embedded.stop(data) is False  # stopping a stopped server is not an error


def test_the_cli_stops_and_reports_the_embedded_server(tmp_path: Path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "meltano.yml").write_text("default_environment: dev\nenvironments: [{name: dev}]\n")
    flx = str(Path(sys.executable).with_name("flx-meltano"))
    env = {"PATH": str(Path(sys.executable).parent), "FLX_PROJECT_DIR": str(project), "HOME": str(tmp_path)}
    started = subprocess.run([flx, "db", "start"], env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    assert "embedded PostgreSQL" in started.stdout
    assert (project / ".meltano" / "flx" / "pgdata" / "PG_VERSION").exists()
    status = subprocess.run([flx, "db", "status"], env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0
    assert status.stdout.startswith("ok")
    stopped = subprocess.run([flx, "db", "stop"], env=env, capture_output=True, text=True, timeout=60)
    assert "stopped" in stopped.stdout
    after = subprocess.run([flx, "db", "status"], env=env, capture_output=True, text=True, timeout=60)
    assert after.returncode == 1
    assert "not running" in after.stdout
