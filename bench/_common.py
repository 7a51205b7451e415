"""Shared by the benchmarks: measurements, sizes, fresh store databases, generated projects, sandboxes."""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
LOCAL_SERVER = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=2"
EMBEDDED_DATA = REPO / ".meltano" / "flx" / "bench-pgdata"
REFERENCE_PIPELINE = "dev:tap-shopsim-to-target-jsonlines"
QUIET_ENV = {
    "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
    "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
    "MELTANO_DISABLE_TRACKING": "true",
}


def log(message: str) -> None:
    """Progress for people watching, on stderr (the table goes to stdout)."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


# --- measurements -------------------------------------------------------------------------------


@dataclass
class Measurement:
    """One figure of one benchmark, with its target and whether it met it (None: for information)."""

    benchmark: str
    name: str
    value: float
    unit: str
    target: str = ""
    passed: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """PASS, MISS, or info."""
        if self.passed is None:
            return "info"
        return "PASS" if self.passed else "MISS"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {**asdict(self), "verdict": self.verdict}


def median(values: list[float]) -> float:
    """The median (0 for no values)."""
    return statistics.median(values) if values else 0.0


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile, e.g. ``fraction=0.95``."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    """Wall-clock seconds of one call, and what it returned."""
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


# --- sizes --------------------------------------------------------------------------------------


def _env_int(name: str, default: int) -> Callable[[], int]:
    return lambda: int(os.environ.get(name, default))


@dataclass
class Config:
    """Sizes of every benchmark; each has an FLX_BENCH_* variable and a command-line flag."""

    extractors: int = field(default_factory=_env_int("FLX_BENCH_EXTRACTORS", 50))
    streams: int = field(default_factory=_env_int("FLX_BENCH_STREAMS", 20))
    repeats: int = field(default_factory=_env_int("FLX_BENCH_REPEATS", 7))
    event_executions: int = field(default_factory=_env_int("FLX_BENCH_EVENT_EXECUTIONS", 1000))
    event_streams: int = field(default_factory=_env_int("FLX_BENCH_EVENT_STREAMS", 4))
    bulk_batch: int = field(default_factory=_env_int("FLX_BENCH_BULK_BATCH", 500))
    history_rows: int = field(default_factory=_env_int("FLX_BENCH_HISTORY_ROWS", 1_000_000))
    history_results: int = field(default_factory=_env_int("FLX_BENCH_HISTORY_RESULTS", 50_000))
    history_pipelines: int = field(default_factory=_env_int("FLX_BENCH_HISTORY_PIPELINES", 50))
    iterations: int = field(default_factory=_env_int("FLX_BENCH_ITERATIONS", 200))
    rounds: int = field(default_factory=_env_int("FLX_BENCH_ROUNDS", 3))
    scale: int = field(default_factory=_env_int("FLX_BENCH_SCALE", 2000))
    state_mb: int = field(default_factory=_env_int("FLX_BENCH_STATE_MB", 50))
    growth_runs: int = field(default_factory=_env_int("FLX_BENCH_GROWTH_RUNS", 5))


SIZE_HELP: dict[str, str] = {
    "extractors": "extractors of the generated project (project, definitions)",
    "streams": "streams per extractor of the generated project",
    "repeats": "timed repetitions of in-process builds (median reported)",
    "event_executions": "executions per event_append variant (a quarter for per-event commits)",
    "event_streams": "StreamSynced events per execution",
    "bulk_batch": "executions per transaction in the bulk variant",
    "history_rows": "rows of flx.executions for history_query",
    "history_results": "newest executions given 4 stream_results each",
    "history_pipelines": "distinct pipeline ids in the history",
    "iterations": "timed iterations per history query",
    "rounds": "timed rounds of each variant in run/dagster overhead (after one warm-up)",
    "scale": "TAP_SHOPSIM_SCALE of the reference tap in run/dagster overhead",
    "state_mb": "megabytes of the state imported before state_growth's runs",
    "growth_runs": "executions of the reference pipeline in state_growth",
}


# --- databases ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Store:
    """A store database for one benchmark; ``owned`` when the benchmark created it (and drops it)."""

    url: str
    owned: bool
    server: str


class Databases:
    """FLX_BENCH_DATABASE_URL if set, else fresh databases on 127.0.0.1:5432, else the embedded server."""

    def __init__(self) -> None:
        self.given_url = os.environ.get("FLX_BENCH_DATABASE_URL") or None
        self._admin: str | None = None
        self._url_for: Callable[[str], str] | None = None
        self._started_embedded = False
        self._created_embedded_data = False
        self._warehouse_existed: bool | None = None
        self.server = ""

    def _resolve(self) -> None:
        if self.given_url or self._admin is not None:
            return
        try:
            psycopg.connect(LOCAL_SERVER).close()
        except psycopg.Error:
            from flx_meltano.persistence import embedded

            self._started_embedded = embedded.running(EMBEDDED_DATA) is None
            self._created_embedded_data = not EMBEDDED_DATA.exists()
            server = embedded.start(EMBEDDED_DATA)
            self._admin = server.conninfo("postgres")
            self._url_for = server.url
            self.server = f"embedded ({EMBEDDED_DATA})"
        else:
            self._admin = LOCAL_SERVER
            self._url_for = lambda name: f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
            self.server = "127.0.0.1:5432"
        with psycopg.connect(self._admin, autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'warehouse'").fetchone()
            self._warehouse_existed = found is not None

    def describe(self) -> str:
        """Which server the stores are on."""
        if self.given_url:
            from flx_meltano.persistence.database import redact_url

            return f"FLX_BENCH_DATABASE_URL={redact_url(self.given_url)}"
        self._resolve()
        return self.server

    @contextmanager
    def store(self) -> Iterator[Store]:
        """A migrated store database: a fresh one (dropped afterwards) unless FLX_BENCH_DATABASE_URL."""
        from flx_meltano.persistence import database

        if self.given_url:
            url = database.normalise_url(self.given_url)
            database.ready_engine(url)
            yield Store(url, owned=False, server=self.describe())
            return
        self._resolve()
        assert self._admin is not None
        assert self._url_for is not None
        name = f"flx_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self._admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = self._url_for(name)
        try:
            database.ready_engine(url)
            yield Store(url, owned=True, server=self.server)
        finally:
            database.engine_for(url).dispose()
            database.engine_for.cache_clear()
            with psycopg.connect(self._admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> list[str]:
        """Undo side effects: the 'warehouse' database flx creates beside a store, our embedded server."""
        notes: list[str] = []
        if self._admin is not None and self._warehouse_existed is False and not self._started_embedded:
            with psycopg.connect(self._admin, autocommit=True) as conn:
                if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'warehouse'").fetchone():
                    conn.execute('DROP DATABASE IF EXISTS "warehouse" WITH (FORCE)')
                    notes.append("dropped the 'warehouse' database flx-meltano created beside the store")
        if self._started_embedded:
            from flx_meltano.persistence import embedded

            embedded.stop(EMBEDDED_DATA)
            notes.append(f"stopped the embedded server in {EMBEDDED_DATA}")
            if self._created_embedded_data:
                shutil.rmtree(EMBEDDED_DATA, ignore_errors=True)
                notes.append(f"removed {EMBEDDED_DATA}")
        return notes


# --- generated projects -------------------------------------------------------------------------


def write_project(root: Path, extractors: int, streams: int, schedules: int = 10) -> int:
    """A Meltano project: ``extractors`` taps of ``streams`` explicitly selected streams, one loader,
    one job per tap, some schedules and environment overrides. Returns the number of streams."""
    lines = [
        "# Generated by bench/_common.py: no plugin here is installed or ever run.",
        "default_environment: dev",
        "project_id: flx-bench-generated",
        "send_anonymous_usage_stats: false",
        "environments:",
        "- name: dev",
        "- name: staging",
        "- name: prod",
        "  config:",
        "    plugins:",
        "      extractors:",
    ]
    for i in range(0, extractors, 5):
        lines += [f"      - name: tap-gen-{i:02d}", "        config:", "          page_size: 1000"]
    lines += ["plugins:", "  extractors:"]
    for i in range(extractors):
        lines += [
            f"  - name: tap-gen-{i:02d}",
            f"    namespace: tap_gen_{i:02d}",
            "    pip_url: tap-gen==1.0.0",
            "    executable: tap-gen",
            "    capabilities: [catalog, discover, state, about, stream-maps]",
            "    settings:",
            "    - {name: api_url, kind: string}",
            "    - {name: api_key, kind: string, sensitive: true}",
            "    - {name: start_date, kind: date_iso8601}",
            "    - {name: page_size, kind: integer}",
            "    config:",
            f"      api_url: https://api{i}.example.com",
            "      start_date: '2024-01-01T00:00:00Z'",
            "      page_size: 100",
            "    select:",
            *(f"    - stream_{s:02d}.*" for s in range(streams)),
            "    meta:",
            "      dagster:",
            "        owners: [team:data-platform]",
            "        freshness_hours: 24",
        ]
    lines += [
        "  loaders:",
        "  - name: target-gen",
        "    namespace: target_gen",
        "    pip_url: target-gen==1.0.0",
        "    executable: target-gen",
        "    capabilities: [about, stream-maps]",
        "    settings:",
        "    - {name: destination_path, kind: string}",
        "    config:",
        "      destination_path: $MELTANO_PROJECT_ROOT/output",
        "jobs:",
    ]
    for i in range(extractors):
        lines += [f"- name: job-{i:02d}", "  tasks:", f"  - tap-gen-{i:02d} target-gen"]
    lines += ["schedules:"]
    intervals = ["@daily", "@hourly", "0 */6 * * *", "15 3 * * 1-5", "@weekly"]
    for i in range(min(schedules, extractors)):
        lines += [
            f"- name: job-{i:02d}-schedule",
            f"  interval: '{intervals[i % len(intervals)]}'",
            f"  job: job-{i:02d}",
        ]
    root.mkdir(parents=True, exist_ok=True)
    (root / "meltano.yml").write_text("\n".join(lines) + "\n")
    return extractors * streams


@contextmanager
def generated_project(config: Config) -> Iterator[tuple[Path, int]]:
    """A generated project in a temporary directory, and its number of streams."""
    with tempfile.TemporaryDirectory(prefix="flx-bench-project-") as tmp:
        root = Path(tmp)
        yield root, write_project(root, config.extractors, config.streams)


# --- isolated meltano runs ----------------------------------------------------------------------


@dataclass(frozen=True)
class Sandbox:
    """One run's own Meltano system database and output directory (so it starts from no state)."""

    root: Path
    env: dict[str, str]

    @property
    def output(self) -> Path:
        """Where target-jsonlines writes."""
        return self.root / "out"

    def records(self) -> int:
        """Lines written by the target."""
        if not self.output.exists():
            return 0
        return sum(sum(1 for _ in path.open()) for path in self.output.glob("*.jsonl"))


@contextmanager
def sandboxes(scale: int) -> Iterator[Callable[[str], Sandbox]]:
    """A factory of fresh sandboxes (all removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="flx-bench-runs-") as tmp:

        def make(label: str) -> Sandbox:
            root = Path(tmp) / label
            root.mkdir()
            env = {
                **QUIET_ENV,
                "MELTANO_DATABASE_URI": f"sqlite:///{root / 'meltano.db'}",
                "TARGET_JSONLINES_DESTINATION_PATH": str(root / "out"),
                "TAP_SHOPSIM_SCALE": str(scale),
            }
            return Sandbox(root, env)

        yield make


def plugins_installed() -> bool:
    """Whether ``meltano install`` has installed the reference plugins (``make setup``)."""
    return (REPO / ".meltano" / "extractors" / "tap-shopsim" / "venv").exists()


def subprocess_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment (minus FLX_* so nothing leaks in), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLX_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env
