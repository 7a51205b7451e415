"""Conformance fixtures: the third-party plugin project, a seeded source database, isolated sandboxes.

The project (tests/conformance/project) is installed once per checkout by ``make conformance-plugins``
and shared by every test. A sandbox is one isolated way of running it: its own database (the flx
store in schema ``flx``, the warehouse in the loaders' schemas), Meltano system database (so its own
Singer state) and JSONL directory, all passed through environment variables, never through files of
the project. One database rather than two because CREATE/DROP DATABASE costs about a second each.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from flx_meltano import api
from flx_meltano.domain.execution import PipelineExecution
from flx_meltano.persistence import database
from flx_meltano.settings import Settings

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "project"
REPO = HERE.parents[1]
FLX = str(REPO / ".venv" / "bin" / "flx-meltano")
MELTANO = str(REPO / ".venv" / "bin" / "meltano")

EVENTS = 1000
CUSTOMERS = 50
EXTRACTOR = "tap-postgres"
PIPELINEWISE = "tap-pipelinewise-postgres"
PLAIN_STATE_ID = "test:tap-postgres-to-target-postgres"
MAPPED_STATE_ID = "test:tap-postgres-to-target-postgres-masked"
PIPELINEWISE_STATE_ID = "test:tap-pipelinewise-postgres-to-target-jsonl"
PLUGIN_DIRS = ("extractors", "loaders", "mappers")

# Deterministic source rows: event i happens at minute i of 2024-01-01, its kind cycles.
SEED_SQL = f"""
DROP TABLE IF EXISTS public.events, public.customers;
CREATE TABLE public.events (
    id integer PRIMARY KEY,
    kind text NOT NULL,
    payload text,
    updated_at timestamptz NOT NULL
);
INSERT INTO public.events
SELECT i, (ARRAY['view', 'click', 'buy'])[i % 3 + 1], 'payload ' || i,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute'
FROM generate_series(1, {EVENTS}) AS i;
CREATE TABLE public.customers (id integer PRIMARY KEY, name text NOT NULL, email text);
INSERT INTO public.customers
SELECT i, 'customer ' || i, 'c' || i || '@example.com' FROM generate_series(1, {CUSTOMERS}) AS i;
"""


@dataclass(frozen=True)
class Endpoint:
    """How plugins reach one PostgreSQL server: a TCP host and port, or a unix socket directory."""

    host: str
    port: int

    @classmethod
    def of(cls, admin_conninfo: str) -> Endpoint:
        params = conninfo_to_dict(admin_conninfo)
        return cls(str(params["host"]), int(params.get("port") or 5432))

    def conninfo(self, database_name: str) -> str:
        return f"host={self.host} port={self.port} user=postgres dbname={database_name}"

    def plugin_url(self, database_name: str) -> str:
        """A URL for SDK plugins, which insist on a host, user and password (trust auth ignores it)."""
        if self.host.startswith("/"):  # the embedded server: the `host` query parameter wins
            return f"postgresql+psycopg2://postgres:x@localhost:{self.port}/{database_name}?host={self.host}"
        return f"postgresql+psycopg2://postgres:x@{self.host}:{self.port}/{database_name}"

    def store_url(self, database_name: str) -> str:
        if self.host.startswith("/"):
            return f"postgresql+psycopg://postgres:x@localhost:{self.port}/{database_name}?host={self.host}"
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{database_name}"

    def create(self, name: str) -> None:
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')

    def drop(self, name: str) -> None:
        database.engine_for.cache_clear()
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def fetch(self, database_name: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.conninfo(database_name)) as conn:
            return conn.execute(sql, params).fetchall()

    def execute(self, database_name: str, sql: str, params: Any = None) -> None:
        with psycopg.connect(self.conninfo(database_name), autocommit=True) as conn:
            conn.execute(sql, params)


@dataclass(frozen=True)
class Source:
    """The source database both postgres taps read: public.events and public.customers."""

    endpoint: Endpoint
    name: str

    def reset(self) -> None:
        """Back to the seeded rows (same tables and columns, so cached catalogs stay valid)."""
        self.endpoint.execute(self.name, SEED_SQL)

    def execute(self, sql: str, params: Any = None) -> None:
        self.endpoint.execute(self.name, sql, params)

    def fetch(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        return self.endpoint.fetch(self.name, sql, params)

    def env(self) -> dict[str, str]:
        return {
            "CONFORMANCE_SOURCE_URL": self.endpoint.plugin_url(self.name),
            "CONFORMANCE_SOURCE_HOST": self.endpoint.host,
            "CONFORMANCE_SOURCE_PORT": str(self.endpoint.port),
            "CONFORMANCE_SOURCE_USER": "postgres",
            "CONFORMANCE_SOURCE_PASSWORD": "x",
            "CONFORMANCE_SOURCE_DBNAME": self.name,
        }


@pytest.fixture(scope="session")
def source(default_server) -> Iterator[Source]:
    """The seeded source database on the default test server.

    Its name is fixed per checkout, so the catalog Meltano caches for each tap (its cache key
    includes the connection URL) stays valid across sessions and discovery runs once, not per test.
    """
    if not (PROJECT / ".meltano" / ".installed").exists():
        pytest.fail("the conformance plugins are not installed: run 'make conformance-plugins' first")
    endpoint = Endpoint.of(default_server.admin_conninfo)
    name = "flx_conf_src_" + hashlib.sha1(str(REPO).encode()).hexdigest()[:10]
    endpoint.create(name)
    created = Source(endpoint, name)
    created.reset()
    yield created
    endpoint.drop(name)


@dataclass(frozen=True)
class Run:
    """What one ``flx-meltano run --json`` did: the process, and the executions it printed."""

    process: subprocess.CompletedProcess[str]
    executions: list[dict[str, Any]]

    @property
    def output(self) -> str:
        return f"exit {self.process.returncode}\n{self.process.stdout[-3000:]}\n{self.process.stderr[-3000:]}"

    @property
    def execution(self) -> dict[str, Any]:
        """The one execution of a one-pipeline job (fails naming the output otherwise)."""
        assert len(self.executions) == 1, self.output
        return self.executions[0]

    def records(self) -> dict[str, Any]:
        """Records per stream of the one execution."""
        return {r["stream"]: r["records"] for r in self.execution["results"]}


@dataclass
class Sandbox:
    """One isolated use of a conformance project: store, Meltano state, warehouse, JSONL output."""

    project: Path
    source: Source
    database: str  # the flx store (schema flx) and the warehouse (schemas raw, masked) in one
    system_db: Path
    jsonl_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> Endpoint:
        return self.source.endpoint

    @property
    def store_url(self) -> str:
        return self.endpoint.store_url(self.database)

    def settings(self) -> Settings:
        """Settings for the Python API over this sandbox."""
        return Settings(database_url=self.store_url, project_dir=self.project)

    def execution(self, execution_id: str) -> PipelineExecution:
        """One stored execution, through the Python API."""
        return api.execution(execution_id, settings=self.settings())

    def process_env(self, **extra: str) -> dict[str, str]:
        """The environment of an flx-meltano or meltano process of this sandbox."""
        return {**os.environ, **self.env, "COLUMNS": "250", "NO_COLOR": "1", **extra}

    def flx(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``flx-meltano *args`` in the project directory; it must succeed unless ``check`` is False."""
        done = subprocess.run(
            [FLX, *args],
            cwd=self.project,
            env=self.process_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert done.returncode == 0, f"flx-meltano {' '.join(args)}: {done.stdout}\n{done.stderr}"
        return done

    def flx_json(self, *args: str) -> Any:
        return json.loads(self.flx(*args, "--json").stdout)

    def run(self, target: str, *args: str) -> Run:
        """``flx-meltano run <target> --json``, whether it succeeds or not."""
        done = self.flx("run", target, *args, "--json", check=False)
        try:
            executions = json.loads(done.stdout)
        except ValueError:
            executions = []
        return Run(done, executions)

    def meltano(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [MELTANO, *args],
            cwd=self.project,
            env=self.process_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"meltano {' '.join(args)}: {done.stderr[-3000:]}"
        return done

    def live_state(self, state_id: str) -> dict[str, Any]:
        """The state Meltano itself holds for ``state_id`` (``meltano state get``)."""
        return json.loads(self.meltano("state", "get", state_id).stdout)

    def warehouse(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        return self.endpoint.fetch(self.database, sql, params)

    def store(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        return self.endpoint.fetch(self.database, sql, params)

    def columns(self, schema: str, table: str) -> list[str]:
        rows = self.warehouse(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
            "ORDER BY ordinal_position",
            (schema, table),
        )
        return [name for (name,) in rows]

    def table_exists(self, qualified: str) -> bool:
        """Whether ``schema.table`` exists in the warehouse."""
        schema, _, table = qualified.partition(".")
        rows = self.warehouse(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
            (schema, table),
        )
        return bool(rows)

    def jsonl(self, stream: str) -> list[dict[str, Any]]:
        path = self.jsonl_dir / f"{stream}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def definitions(self, **kwargs: Any) -> Any:
        """``build_definitions`` over the project, running in this sandbox."""
        from flx_meltano.orchestration import build_definitions

        return build_definitions(
            project_dir=self.project, database_url=self.store_url, env=self.env, **kwargs
        )


@pytest.fixture(scope="module")
def new_sandbox(tmp_path_factory: pytest.TempPathFactory, source: Source) -> Iterator[Callable[..., Sandbox]]:
    """Make sandboxes (dropped at the end of the module); ``project`` defaults to the fixture project.

    Each module starts from the seeded source rows, whatever the module before it changed.
    """
    source.reset()
    made: list[Sandbox] = []

    def make(project: Path = PROJECT) -> Sandbox:
        tag = uuid.uuid4().hex[:10]
        root = tmp_path_factory.mktemp(f"sandbox-{tag}")
        sandbox = Sandbox(
            project=project,
            source=source,
            database=f"flx_conf_{tag}",
            system_db=root / "meltano.db",
            jsonl_dir=root / "jsonl",
        )
        made.append(sandbox)
        source.endpoint.create(sandbox.database)
        database.ready_engine(sandbox.store_url)
        sandbox.jsonl_dir.mkdir()
        sandbox.env = {
            **source.env(),
            "CONFORMANCE_WAREHOUSE_URL": source.endpoint.plugin_url(sandbox.database),
            "CONFORMANCE_JSONL_DIR": str(sandbox.jsonl_dir),
            "MELTANO_DATABASE_URI": f"sqlite:///{sandbox.system_db}",
            "FLX_DATABASE_URL": sandbox.store_url,
            "FLX_PROJECT_DIR": str(project),
            "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
        return sandbox

    yield make
    for sandbox in made:
        sandbox.endpoint.drop(sandbox.database)


def throwaway_project(root: Path, edit: Callable[[str], str]) -> Path:
    """A copy of the fixture project with ``edit`` applied to its meltano.yml, sharing its plugin installs."""
    root.mkdir(parents=True, exist_ok=True)
    text = (PROJECT / "meltano.yml").read_text()
    edited = edit(text)
    assert edited != text, "the edit changed nothing"
    (root / "meltano.yml").write_text(edited)
    meltano_dir = root / ".meltano"
    meltano_dir.mkdir(exist_ok=True)
    for name in PLUGIN_DIRS:
        link = meltano_dir / name
        if not link.exists():
            link.symlink_to(PROJECT / ".meltano" / name, target_is_directory=True)
    return root


def line_of(path: Path, text: str) -> int:
    """1-based line of the first occurrence of ``text`` in ``path``."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def table_cells(output: str, marker: str) -> list[list[str]]:
    """The cells of each row of a rich table printed by flx-meltano that contains ``marker``."""
    return [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in output.splitlines()
        if marker in line and "│" in line
    ]


def table_header(output: str) -> list[str]:
    """The column names of the first rich table printed by flx-meltano."""
    line = next(line for line in output.splitlines() if "┃" in line)
    return [cell.strip() for cell in line.split("┃")[1:-1]]


def specs_by_stream(defs: Any, loader: str) -> dict[str, Any]:
    """The asset specs of one loader's pipeline, by the stream they stand for."""
    return {
        spec.metadata["meltano/stream"]: spec
        for spec in defs.resolve_all_asset_specs()
        if spec.metadata.get("meltano/loader") == loader
    }


def row_counts(result: Any) -> dict[str, Any]:
    """``dagster/row_count`` of each materialization of a Dagster result, by asset key path."""
    return {
        "/".join(e.asset_key.path): (
            e.materialization.metadata["dagster/row_count"].value
            if "dagster/row_count" in e.materialization.metadata
            else None
        )
        for e in result.get_asset_materialization_events()
    }


def dagster_failures(result: Any) -> str:
    """The step failures of a Dagster result, for assertion messages."""
    lines = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = getattr(event.event_specific_data, "error", None)
            lines.append(f"{event.step_key}: {error.message if error else event.message}")
    return "\n".join(lines) or "no step failed"


def materializations(result: Any) -> dict[str, Mapping[str, Any]]:
    """Metadata of each materialization, by asset key path."""
    return {
        "/".join(e.asset_key.path): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
