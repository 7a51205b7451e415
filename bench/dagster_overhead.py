"""dagster_overhead: the reference pipeline materialized through Dagster vs bare `meltano run` (<= 1.10x)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import redirect_stderr
from typing import Any

from bench._common import (
    REPO,
    Config,
    Databases,
    Measurement,
    Sandbox,
    log,
    median,
    plugins_installed,
)
from bench.run_overhead import Outcome, alternate, bare_meltano, busy_note, extractor_lock

NAME = "dagster_overhead"
TARGET_RATIO = 1.10
FILES_KEY = ("files", "shop", "orders")


def _materialize(store_url: str) -> Callable[[Sandbox], Outcome]:
    """``dagster.materialize`` of the files multi-asset, in-process, on an ephemeral instance."""
    from dagster import AssetKey, DagsterInstance, materialize

    from flx_meltano.orchestration import MeltanoResource, build_definitions

    defs = build_definitions(project_dir=REPO, database_url=store_url)
    files = [a for a in defs.assets if hasattr(a, "keys") and AssetKey(list(FILES_KEY)) in a.keys]
    if len(files) != 1:
        raise RuntimeError(f"expected one multi-asset holding {'/'.join(FILES_KEY)}, found {len(files)}")

    def run_dagster(sandbox: Sandbox) -> Outcome:
        resource = MeltanoResource(project_dir=str(REPO), database_url=store_url, env=sandbox.env)
        with extractor_lock():
            pass
        # Dagster's console logger writes every event to stderr: keep it (its cost is part of a
        # run) but send it to a file rather than over the benchmark's table.
        with (
            DagsterInstance.ephemeral() as instance,
            (sandbox.root / "dagster.log").open("w") as log_file,
            redirect_stderr(log_file),
        ):
            start = time.perf_counter()
            result = materialize(files, resources={"meltano": resource}, instance=instance)
            seconds = time.perf_counter() - start
            entries = instance.all_logs(result.run_id)
        if not result.success:
            raise RuntimeError(f"dagster materialize failed; see {sandbox.root / 'dagster.log'}")
        counts = {
            str(e.asset_key.to_user_string() if e.asset_key else None): int(
                str(e.materialization.metadata["dagster/row_count"].value)
            )
            for e in result.get_asset_materialization_events()
        }
        written = sandbox.records()
        if sum(counts.values()) != written:
            raise RuntimeError(f"dagster reported {counts} but the target wrote {written} records")
        logged = sum(1 for entry in entries if not entry.is_dagster_event)
        return Outcome(seconds, written, {"log_records": float(logged), "event_records": float(len(entries))})

    return run_dagster


def run(config: Config, databases: Databases) -> list[Measurement]:
    """Median wall-clock of each and the ratio."""
    if not plugins_installed():
        raise RuntimeError("plugins are not installed: run 'make setup' (meltano install) first")
    with databases.store() as store:
        start = time.perf_counter()
        dagster_run = _materialize(store.url)
        setup_seconds = time.perf_counter() - start
        log(f"{NAME}: TAP_SHOPSIM_SCALE={config.scale}, {config.rounds} rounds after a warm-up")
        outcomes = alternate({"meltano": bare_meltano, "dagster": dagster_run}, config.rounds, config.scale)
    records = outcomes["meltano"][0].records
    bare = median([o.seconds for o in outcomes["meltano"]])
    seconds = median([o.seconds for o in outcomes["dagster"]])
    ratio = seconds / bare
    details: dict[str, Any] = {
        "scale": config.scale,
        "records_per_run": records,
        "rounds": config.rounds,
        "samples_s": {name: [o.seconds for o in runs] for name, runs in outcomes.items()},
        "load_1m_at_start": {name: [o.phases["load_1m"] for o in runs] for name, runs in outcomes.items()},
        "cpus": os.cpu_count(),
        "import_and_build_definitions_s": setup_seconds,
        "instance": "DagsterInstance.ephemeral(), created per run outside the timing",
    }
    logged = median([o.phases.get("log_records", 0.0) for o in outcomes["dagster"]])
    stored = median([o.phases.get("event_records", 0.0) for o in outcomes["dagster"]])
    details["dagster_log_records_per_run"] = logged
    details["dagster_event_log_entries_per_run"] = stored
    notes = busy_note(outcomes)
    if ratio > TARGET_RATIO:
        notes.append(
            f"Dagster: +{seconds - bare:.2f} s over bare meltano; each run wrote {stored:,.0f} entries to "
            f"Dagster's event log, {logged:,.0f} of them log messages (MeltanoResource.run_pipeline calls "
            "context.log for every meltano/plugin line); run_overhead's in-process figure is flx's share"
        )
    return [
        Measurement(
            NAME,
            f"bare meltano run (scale {config.scale}, {records:,} records): median",
            bare,
            "s",
            "",
            None,
            details,
        ),
        Measurement(NAME, "dagster materialize in-process: median", seconds, "s", "", None, details),
        Measurement(
            NAME,
            "dagster materialize in-process: ratio to bare",
            ratio,
            "x",
            f"<= {TARGET_RATIO:.2f}x",
            ratio <= TARGET_RATIO,
            {**details, "notes": notes},
        ),
    ]
