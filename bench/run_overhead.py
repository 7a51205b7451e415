"""run_overhead: `flx-meltano run` (CLI and in-process) against bare `meltano run` (target <= 1.05x)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from typing import Any

from bench._common import (
    BIN,
    REFERENCE_PIPELINE,
    REPO,
    Config,
    Databases,
    Measurement,
    Sandbox,
    log,
    median,
    plugins_installed,
    sandboxes,
    subprocess_env,
)

NAME = "run_overhead"
TARGET_RATIO = 1.05
LOG_TARGET_RATIO = 0.10  # an execution's stored log: at most this share of its raw size
EXTRACTOR = "tap-shopsim"
# What integration.state_access imports on its first state read.
MELTANO_STATE_MODULES = (
    "meltano.core.db, meltano.core.migration_service, meltano.core.project, meltano.core.state_service"
)


@contextmanager
def extractor_lock() -> Iterator[None]:
    """flx's lock on the reference tap (Meltano shares its catalog file between runs, meltano#8763).

    Others may run the reference project at the same time (the test suite): bare meltano runs hold
    the lock as flx runs do, and flx runs start only once it is free, so no one waits while timed.
    """
    from flx_meltano.integration.launcher import PluginLock

    lock = PluginLock.acquire(REPO, EXTRACTOR)
    try:
        yield
    finally:
        lock.release()


@dataclass
class Outcome:
    """One timed run: wall-clock seconds, records written, and phase timings where known."""

    seconds: float
    records: int
    phases: dict[str, float] = field(default_factory=dict)


def bare_meltano(sandbox: Sandbox) -> Outcome:
    """``meltano run --run-id <uuid> tap-shopsim target-jsonlines`` in a subprocess."""
    argv = [str(BIN / "meltano"), "run", f"--run-id={uuid.uuid4()}", EXTRACTOR, "target-jsonlines"]
    with (sandbox.root / "meltano.log").open("w") as out, extractor_lock():
        start = time.perf_counter()
        code = subprocess.call(
            argv, cwd=REPO, env=subprocess_env(sandbox.env), stdout=out, stderr=subprocess.STDOUT
        )
        seconds = time.perf_counter() - start
    if code != 0:
        tail = (sandbox.root / "meltano.log").read_text().splitlines()[-5:]
        raise RuntimeError(f"bare meltano run exited {code}: {' | '.join(tail)}")
    console_log = (sandbox.root / "meltano.log").stat().st_size
    return Outcome(seconds, sandbox.records(), {"meltano_log_bytes": console_log})


def _flx_cli(store_url: str) -> Callable[[Sandbox], Outcome]:
    def run_cli(sandbox: Sandbox) -> Outcome:
        argv = [str(BIN / "flx-meltano"), "run", REFERENCE_PIPELINE, "--json"]
        env = subprocess_env({**sandbox.env, "FLX_DATABASE_URL": store_url, "FLX_PROJECT_DIR": str(REPO)})
        with extractor_lock():
            pass
        start = time.perf_counter()
        result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"flx-meltano run exited {result.returncode}: {result.stderr.strip()[-500:]}")
        [execution] = json.loads(result.stdout)
        _check(execution["status"], execution["state_before"], execution["records"], sandbox)
        return Outcome(seconds, execution["records"])

    return run_cli


def _check(status: str, state_before: Any, records: int, sandbox: Sandbox) -> None:
    if status != "SUCCEEDED":
        raise RuntimeError(f"flx run ended {status}")
    if state_before is not None:
        raise RuntimeError("the run did not start from an empty state: the sandbox leaked")
    written = sandbox.records()
    if records != written:
        raise RuntimeError(f"flx recorded {records} records but the target wrote {written}")


class PhaseObserver:
    """Timestamps of the run's phases, as the application layer reports them."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.opened: float | None = None
        self.last_activity: float | None = None
        self.closed: float | None = None
        self.waited = False

    def on_log(self, level: str, plugin: str | None, message: str) -> None:
        self.last_activity = time.perf_counter()
        if plugin is None and message.startswith("waiting for another run"):
            self.waited = True

    def on_progress(self, pipeline_id: str, stream: str, extracted: int, loaded: int) -> None:
        self.last_activity = time.perf_counter()

    def on_stream(self, execution: Any, result: Any) -> None:
        self.last_activity = time.perf_counter()

    def on_execution(self, execution: Any) -> None:
        if self.opened is None:
            self.opened = time.perf_counter()
        else:
            self.closed = time.perf_counter()

    def follow(self, updates: Any) -> Any:
        """Consume a run's updates (RunUpdate), timing them; the closed execution."""

        from flx_meltano.application.run import ExecutionUpdate, LogUpdate, ProgressUpdate, StreamUpdate

        execution = None
        with closing(updates):
            for update in updates:
                if isinstance(update, LogUpdate):
                    self.on_log(update.level, update.plugin, update.message)
                elif isinstance(update, ProgressUpdate):
                    self.on_progress(update.pipeline_id, update.stream, update.extracted, update.loaded)
                elif isinstance(update, StreamUpdate):
                    self.on_stream(update.execution, update.result)
                elif isinstance(update, ExecutionUpdate):
                    self.on_execution(update.execution)
                    execution = update.execution
        return execution

    def phases(self) -> dict[str, float]:
        """Seconds before meltano started (open) and after its last output (close)."""
        if self.opened is None or self.closed is None:
            return {}
        last = self.last_activity or self.opened
        phases = {"open_s": self.opened - self.start, "close_s": self.closed - last}
        if self.waited:
            phases["waited_for_lock"] = 1.0
        return phases


def in_process(store_url: str) -> Callable[[Sandbox], Outcome]:
    """``application.run.run_pipeline`` called from this interpreter, with a fresh AppContext."""

    def run_here(sandbox: Sandbox) -> Outcome:
        from flx_meltano.application.pipelines import resolve
        from flx_meltano.application.run import RunOptions, execute_pipeline
        from flx_meltano.bootstrap import app_context
        from flx_meltano.domain.values import Trigger
        from flx_meltano.settings import Settings

        with extractor_lock():
            pass
        observer = PhaseObserver()
        ctx = app_context(Settings(database_url=store_url, project_dir=REPO), env=sandbox.env)
        try:
            [step] = resolve(ctx.project, REFERENCE_PIPELINE, ctx.environment)
            assert step.pipeline is not None
            execution = observer.follow(execute_pipeline(ctx, step.pipeline, RunOptions(trigger=Trigger.API)))
        finally:
            ctx.close()
        seconds = time.perf_counter() - observer.start
        _check(str(execution.status), execution.state_before, execution.records, sandbox)
        return Outcome(seconds, execution.records, observer.phases())

    return run_here


def alternate(
    variants: dict[str, Callable[[Sandbox], Outcome]], rounds: int, scale: int
) -> dict[str, list[Outcome]]:
    """One warm-up of each variant, then ``rounds`` rounds, the order rotating each round."""
    names = list(variants)
    outcomes: dict[str, list[Outcome]] = {name: [] for name in names}
    with sandboxes(scale) as make:
        for name in names:
            warm = variants[name](make(f"warm-{name}"))
            log(f"warm-up {name}: {warm.seconds:.2f} s, {warm.records:,} records")
        for index in range(rounds):
            order = names[index % len(names) :] + names[: index % len(names)]
            for name in order:
                load = os.getloadavg()[0]
                outcome = variants[name](make(f"round{index}-{name}"))
                outcome.phases["load_1m"] = load
                outcomes[name].append(outcome)
                log(f"round {index + 1}/{rounds} {name}: {outcome.seconds:.2f} s")
    counts = {name: {o.records for o in runs} for name, runs in outcomes.items()}
    if len({count for found in counts.values() for count in found}) != 1:
        raise RuntimeError(f"the variants moved different numbers of records: {counts}")
    return outcomes


def import_profile(module: str, top: int = 6) -> tuple[float, list[str]]:
    """Seconds a fresh interpreter spends importing ``module``, and the packages costing the most
    (``python -X importtime``, self time summed per top-level package)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=False,
        env=subprocess_env({}),
    )
    pattern = re.compile(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)")
    by_package: dict[str, int] = {}
    for line in result.stderr.splitlines():
        match = pattern.match(line)
        if match:
            package = match.group(2).split(".")[0]
            by_package[package] = by_package.get(package, 0) + int(match.group(1))
    ranked = sorted(by_package.items(), key=lambda item: item[1], reverse=True)
    return sum(by_package.values()) / 1e6, [f"{name} {micros / 1e6:.2f} s" for name, micros in ranked[:top]]


def startup_seconds(argv: list[str], times: int = 2) -> float:
    """Median wall-clock of a quick command (interpreter start-up plus imports)."""
    samples: list[float] = []
    for _ in range(times):
        start = time.perf_counter()
        subprocess.run(argv, cwd=REPO, env=subprocess_env({}), capture_output=True, check=False)
        samples.append(time.perf_counter() - start)
    return median(samples)


def busy_note(outcomes: dict[str, list[Outcome]]) -> list[str]:
    """A warning when other work competed for the CPUs during the timed runs."""
    loads = [o.phases.get("load_1m", 0.0) for runs in outcomes.values() for o in runs]
    cpus = os.cpu_count() or 1
    if loads and max(loads) > cpus:
        return [
            f"the machine was busy during timed runs (1-min load up to {max(loads):.1f} on {cpus} CPUs, "
            f"median {median(loads):.1f}): other processes competed; figures are noisier than usual"
        ]
    return []


def log_sizes(store_url: str) -> list[dict[str, int]]:
    """Each flx run's stored log: lines, raw bytes (its lines encoded, uncompressed), bytes stored."""
    import sqlalchemy as sa

    from flx_meltano.persistence import database
    from flx_meltano.persistence.tables import executions
    from flx_meltano.persistence.unit_of_work import SqlUnitOfWork

    engine = database.ready_engine(store_url)
    with engine.connect() as conn:
        ids = [row.id for row in conn.execute(sa.select(executions.c.id))]
    with SqlUnitOfWork(engine) as uow:
        found = [uow.logs.size(execution_id) for execution_id in ids]
    return [{"lines": f.lines, "raw_bytes": f.raw_bytes, "stored_bytes": f.stored_bytes} for f in found]


def log_size_measurement(
    sizes: list[dict[str, int]], outcomes: dict[str, list[Outcome]], scale: int, records: int
) -> Measurement:
    """The stored log's size as a share of its raw size (median over the flx runs)."""
    if not sizes or not all(size["raw_bytes"] for size in sizes):
        raise RuntimeError(f"an flx run stored no log: {sizes}")
    ratio = median([size["stored_bytes"] / size["raw_bytes"] for size in sizes])
    console_log = median([o.phases.get("meltano_log_bytes", 0.0) for o in outcomes["meltano"]])
    return Measurement(
        NAME,
        f"stored execution log / raw (scale {scale}, {records:,} records): median",
        ratio,
        "x",
        f"<= {LOG_TARGET_RATIO:.2f}x",
        ratio <= LOG_TARGET_RATIO,
        {
            "runs": sizes,
            "raw_bytes_median": median([size["raw_bytes"] for size in sizes]),
            "stored_bytes_median": median([size["stored_bytes"] for size in sizes]),
            "lines_median": median([size["lines"] for size in sizes]),
            "bare_meltano_console_log_bytes_median": console_log,
            "notes": [
                "raw bytes: the stored lines encoded, uncompressed (time, level, plugin, message); "
                "bare meltano's own console log of the same run is given for comparison"
            ],
        },
    )


def run(config: Config, databases: Databases) -> list[Measurement]:
    """Median wall-clock of each variant and its ratio to bare meltano."""
    if not plugins_installed():
        raise RuntimeError("plugins are not installed: run 'make setup' (meltano install) first")
    with databases.store() as store:
        log(f"{NAME}: TAP_SHOPSIM_SCALE={config.scale}, {config.rounds} rounds after a warm-up")
        outcomes = alternate(
            {"meltano": bare_meltano, "flx_cli": _flx_cli(store.url), "in_process": in_process(store.url)},
            config.rounds,
            config.scale,
        )
        sizes = log_sizes(store.url)
    records = outcomes["meltano"][0].records
    bare = median([o.seconds for o in outcomes["meltano"]])
    cli_startup = startup_seconds([str(BIN / "flx-meltano"), "--help"])
    meltano_startup = startup_seconds([str(BIN / "meltano"), "--help"])
    phases = {
        key: median([o.phases[key] for o in outcomes["in_process"] if key in o.phases])
        for key in ("open_s", "close_s")
    }
    common = {
        "scale": config.scale,
        "records_per_run": records,
        "rounds": config.rounds,
        "samples_s": {name: [o.seconds for o in runs] for name, runs in outcomes.items()},
        "load_1m_at_start": {name: [o.phases["load_1m"] for o in runs] for name, runs in outcomes.items()},
        "cpus": os.cpu_count(),
    }
    measurements = [
        Measurement(
            NAME,
            f"bare meltano run (scale {config.scale}, {records:,} records): median",
            bare,
            "s",
            "",
            None,
            {**common, "notes": busy_note(outcomes)},
        )
    ]
    measurements.append(log_size_measurement(sizes, outcomes, config.scale, records))
    labels = {
        "flx_cli": "flx-meltano run --json subprocess",
        "in_process": "run_pipeline in-process (what Dagster uses)",
    }
    in_process_overhead = median([o.seconds for o in outcomes["in_process"]]) - bare
    for name, label in labels.items():
        seconds = median([o.seconds for o in outcomes[name]])
        ratio = seconds / bare
        details: dict[str, Any] = {**common, "median_s": seconds, "overhead_s": seconds - bare}
        if name == "flx_cli":
            details["flx_meltano_help_s"] = cli_startup
            details["meltano_help_s"] = meltano_startup
            import_seconds, packages = import_profile("flx_meltano.cli.app")
            with_meltano, _ = import_profile(f"flx_meltano.cli.app, {MELTANO_STATE_MODULES}")
            details["import_seconds"] = import_seconds
            details["import_profile"] = packages
            details["meltano_state_import_seconds_after_cli"] = with_meltano - import_seconds
            notes = [
                f"flx-meltano CLI: +{seconds - bare:.2f} s over bare meltano, of which the in-process "
                f"run accounts for +{in_process_overhead:.2f} s; the rest is a second Python process "
                f"doing work before meltano's starts: `flx-meltano --help` takes {cli_startup:.2f} s "
                f"(`meltano --help` {meltano_startup:.2f} s); importing flx_meltano.cli.app takes "
                f"{import_seconds:.2f} s ({', '.join(packages)}), then the first state read "
                f"(integration.state_access) imports meltano.core for another "
                f"{with_meltano - import_seconds:.2f} s"
            ]
        else:
            details["phases_median_s"] = phases
            notes = [
                f"in-process: +{seconds - bare:.2f} s over bare meltano; before meltano starts "
                f"(open_execution: state read + store) {phases['open_s']:.2f} s, after its last "
                f"line (state read, close, snapshot) {phases['close_s']:.2f} s"
            ]
        measurements.append(Measurement(NAME, f"{label}: median", seconds, "s", "", None, details))
        measurements.append(
            Measurement(
                NAME,
                f"{label}: ratio to bare",
                ratio,
                "x",
                f"<= {TARGET_RATIO:.2f}x",
                ratio <= TARGET_RATIO,
                {**details, "notes": notes if ratio > TARGET_RATIO else []},
            )
        )
    return measurements
