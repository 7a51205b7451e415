"""definitions_build: build_definitions + resolve_all_asset_specs for 1,000 streams (target < 1 s)."""

from __future__ import annotations

import time

from bench._common import Config, Databases, Measurement, generated_project, log, median, timed

NAME = "definitions_build"
TARGET_SECONDS = 1.0


def run(config: Config, databases: Databases) -> list[Measurement]:
    """Median in-process wall-clock, dagster already imported (a code server imports it once)."""
    start = time.perf_counter()
    import dagster  # noqa: F401 - imported first so its import is not timed

    from flx_meltano.orchestration import build_definitions

    import_seconds = time.perf_counter() - start

    def build(root: object) -> int:
        defs = build_definitions(project_dir=str(root))
        return len(defs.resolve_all_asset_specs())

    with generated_project(config) as (root, stream_count):
        log(f"{NAME}: {stream_count:,} streams, {config.repeats} repeats")
        specs = build(root)  # warm-up
        if specs != stream_count:
            raise AssertionError(f"expected {stream_count} asset specs, got {specs}")
        samples = [timed(lambda: build(root))[0] for _ in range(config.repeats)]
    value = median(samples)
    return [
        Measurement(
            NAME,
            f"build_definitions + resolve_all_asset_specs ({stream_count:,} streams)",
            value,
            "s",
            f"< {TARGET_SECONDS:g} s",
            value < TARGET_SECONDS,
            {
                "streams": stream_count,
                "asset_specs": specs,
                "repeats": config.repeats,
                "samples_s": samples,
                "import_dagster_and_flx_orchestration_s": import_seconds,
            },
        )
    ]
