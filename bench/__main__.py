"""Run the benchmarks (all or those named), print figures against targets, write results/latest.json."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._common import REPO, SIZE_HELP, Config, Databases, Measurement

# Module name, then the short names accepted on the command line.
BENCHMARKS: dict[str, tuple[str, ...]] = {
    "project_read": ("project", "read"),
    "event_append": ("events", "event", "append"),
    "history_query": ("history", "query"),
    "run_overhead": ("run", "runs"),
    "definitions_build": ("definitions", "defs"),
    "dagster_overhead": ("dagster",),
    "state_backup": ("state", "backup"),
    "state_growth": ("growth", "store-growth"),
}
RESULTS = Path(__file__).resolve().parent / "results"


def _parse(argv: list[str]) -> tuple[list[str], Config]:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="flx-meltano benchmarks. Sizes default to FLX_BENCH_<NAME> variables, then to "
        "the values shown. Stores: FLX_BENCH_DATABASE_URL, else fresh databases on 127.0.0.1:5432, "
        "else the embedded server.",
    )
    names = ", ".join(f"{m} ({'/'.join(a)})" for m, a in BENCHMARKS.items())
    parser.add_argument("benchmarks", nargs="*", help=f"which to run (default all): {names}")
    defaults = Config()
    for item in dataclasses.fields(Config):
        flag = "--" + item.name.replace("_", "-")
        parser.add_argument(
            flag,
            type=int,
            default=getattr(defaults, item.name),
            help=f"{SIZE_HELP[item.name]} (FLX_BENCH_{item.name.upper()}; default %(default)s)",
        )
    args = parser.parse_args(argv)
    chosen: list[str] = []
    for name in args.benchmarks or list(BENCHMARKS):
        module = next((m for m, aliases in BENCHMARKS.items() if name == m or name in aliases), None)
        if module is None:
            parser.error(f"unknown benchmark {name!r}; known: {names}")
        if module not in chosen:
            chosen.append(module)
    config = Config(**{item.name: getattr(args, item.name) for item in dataclasses.fields(Config)})
    return chosen, config


def _format(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "x":
        return f"{value:.3f}x"
    if unit == "MB":
        return f"{value:,.1f} MB"
    if unit == "events/s":
        return f"{value:,.0f}/s"
    return f"{value:g} {unit}"


def _table(measurements: list[Measurement]) -> str:
    rows = [("benchmark", "measure", "figure", "target", "verdict")]
    rows += [
        (m.benchmark, m.name, _format(m.value, m.unit), m.target or "-", m.verdict) for m in measurements
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    out = []
    for index, row in enumerate(rows):
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench``."""
    chosen, config = _parse(sys.argv[1:] if argv is None else argv)
    os.chdir(REPO)
    databases = Databases()
    started = time.perf_counter()
    measurements: list[Measurement] = []
    timings: dict[str, float] = {}
    errors: dict[str, str] = {}
    print(f"flx-meltano benchmarks: {', '.join(chosen)}", file=sys.stderr)
    try:
        for name in chosen:
            print(f"[{name}]", file=sys.stderr, flush=True)
            begin = time.perf_counter()
            try:
                module = importlib.import_module(f"bench.{name}")
                measurements += module.run(config, databases)
            except Exception as exc:
                traceback.print_exc()
                errors[name] = f"{type(exc).__name__}: {exc}"
                measurements.append(
                    Measurement(name, f"ERROR {type(exc).__name__}: {exc}"[:100], 0.0, "", "", False)
                )
            timings[name] = time.perf_counter() - begin
            print(f"  .. {name} took {timings[name]:.1f} s", file=sys.stderr, flush=True)
    finally:
        notes = databases.close()
    total = time.perf_counter() - started

    print()
    sizes = ", ".join(f"{k}={v:,}" for k, v in dataclasses.asdict(config).items())
    print(f"sizes: {sizes}")
    print(_table(measurements))
    print()
    for m in measurements:
        for note in m.details.get("notes", []):
            print(f"note [{m.benchmark}]: {note}")
    for m in measurements:
        plan = m.details.get("plan")
        if plan and m.passed is False:
            print(f"\nEXPLAIN ANALYZE of the missed query ({m.name}):\n{plan}")
    for note in notes:
        print(f"note: {note}")
    misses = [m for m in measurements if m.passed is False]
    print(
        f"\n{len(measurements) - len(misses)} of {len(measurements)} figures without a miss; "
        f"{len(misses)} MISS. Store server: {databases.describe()}. Total {total:.1f} s."
    )

    report: dict[str, Any] = {
        "finished_at": datetime.now(UTC).isoformat(),
        "command": " ".join([Path(sys.executable).name, "-m", "bench", *sys.argv[1:]]),
        "host": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "store_server": databases.describe(),
        "config": dataclasses.asdict(config),
        "benchmarks": chosen,
        "seconds": {"total": total, **timings},
        "errors": errors,
        "notes": notes,
        "measurements": [m.as_dict() for m in measurements],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"Wrote {RESULTS / 'latest.json'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
