"""Shared fixtures: a fresh store database on each PostgreSQL server we have, isolated Meltano runs."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from flx_meltano.application.context import AppContext
from flx_meltano.bootstrap import app_context
from flx_meltano.persistence import database, embedded
from flx_meltano.settings import Settings

REPO = Path(__file__).resolve().parents[1]
LOCAL_SERVER = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=2"
EMBEDDED_DATA = REPO / ".meltano" / "flx" / "test-pgdata"

os.environ.setdefault("MELTANO_CLI_DISABLE_VERSION_CHECK", "true")
os.environ.setdefault("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")


def _local_server_answers() -> bool:
    try:
        psycopg.connect(LOCAL_SERVER).close()
    except psycopg.Error:
        return False
    return True


LOCAL_SERVER_UP = _local_server_answers()
# Both servers when the one at 127.0.0.1:5432 answers (CI), else only the embedded one.
SERVERS = ["local", "embedded"] if LOCAL_SERVER_UP else ["embedded"]


@dataclass(frozen=True)
class Server:
    """A PostgreSQL server the tests may create databases on."""

    name: str
    admin_conninfo: str
    url_for: object  # Callable[[str], str]

    def url(self, database_name: str) -> str:
        return self.url_for(database_name)  # type: ignore[operator]


def _server(name: str) -> Server:
    if name == "local":
        return Server("local", LOCAL_SERVER, lambda db: f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}")
    server = embedded.start(EMBEDDED_DATA)
    return Server("embedded", server.conninfo("postgres"), server.url)


@pytest.fixture(scope="session", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Server:
    """Each available PostgreSQL server in turn."""
    return _server(request.param)


def _create_database(server: Server) -> tuple[str, str]:
    name = f"flx_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.admin_conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, server.url(name)


def _drop_database(server: Server, name: str) -> None:
    database.engine_for.cache_clear()
    with psycopg.connect(server.admin_conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def store_url(server: Server) -> Iterator[str]:
    """A fresh, migrated store database (dropped afterwards), on each server."""
    name, url = _create_database(server)
    database.ready_engine(url)
    yield url
    _drop_database(server, name)


@pytest.fixture(scope="session")
def default_server() -> Server:
    """The server at 127.0.0.1:5432 when it answers, else the embedded one."""
    return _server(SERVERS[0])


@pytest.fixture
def default_store_url(default_server: Server) -> Iterator[str]:
    """A fresh store database on the default server only (for slow end-to-end tests)."""
    name, url = _create_database(default_server)
    database.ready_engine(url)
    yield url
    _drop_database(default_server, name)


@dataclass
class MeltanoSandbox:
    """The repository's Meltano project with its own system db, output dir and warehouse."""

    root: Path
    system_db: Path
    output: Path
    env: dict[str, str]

    def context(self, store_url: str, environment: str = "dev", **extra_env: str) -> AppContext:
        settings = Settings(database_url=store_url, project_dir=REPO, environment=environment)
        return app_context(settings, env={**self.env, **extra_env})

    def lines(self, stream: str) -> list[str]:
        path = self.output / f"{stream}.jsonl"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def meltano_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MeltanoSandbox:
    """Runs of the repository's project that touch nothing of the developer's (state, output)."""
    if not (REPO / ".meltano" / "extractors" / "tap-shopsim" / "venv").exists():
        pytest.fail("plugins are not installed: run 'make setup' (meltano install) first")
    system_db = tmp_path / "meltano.db"
    output = tmp_path / "out"
    env = {
        "MELTANO_DATABASE_URI": f"sqlite:///{system_db}",
        "TARGET_JSONLINES_DESTINATION_PATH": str(output),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return MeltanoSandbox(REPO, system_db, output, env)


@pytest.fixture(scope="session")
def dbt_manifest() -> Path:
    """transform/'s dbt manifest, parsed once when stale (make setup normally has it ready)."""
    from flx_meltano.integration.project_reader import read_project
    from flx_meltano.orchestration.dbt import find_dbt, manifest_is_stale, prepare_manifest

    setup = find_dbt(read_project(REPO))
    assert setup is not None, "the reference project has a dbt utility"
    if manifest_is_stale(setup):
        prepare_manifest(setup)
    return setup.manifest_path


def live_processes_with(marker: str) -> list[int]:
    """Live processes (not zombies, not this one) whose environment mentions ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="session")
def processes_with():
    """Find processes left behind by a test, by a marker in their environment (e.g. a tmp path)."""
    return live_processes_with


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Leave no test server running behind us."""
    if EMBEDDED_DATA.exists() and embedded.running(EMBEDDED_DATA):
        embedded.stop(EMBEDDED_DATA)
    shutil.rmtree(REPO / ".meltano" / "flx" / "test-catalog", ignore_errors=True)
