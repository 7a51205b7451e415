"""project_read: read_project + all_pipelines of a generated 1,000-stream project (target < 1 s)."""

from __future__ import annotations

from functools import partial

from bench._common import Config, Databases, Measurement, generated_project, log, median, timed

NAME = "project_read"
TARGET_SECONDS = 1.0


def run(config: Config, databases: Databases) -> list[Measurement]:
    """Median wall-clock of reading the project and resolving every pipeline."""
    from flx_meltano.application.pipelines import all_pipelines
    from flx_meltano.integration.project_reader import read_project

    with generated_project(config) as (root, stream_count):
        log(f"{NAME}: {config.extractors} extractors x {config.streams} streams, {config.repeats} repeats")
        pipelines = all_pipelines(read_project(root))  # warm-up: imports, caches
        found = sum(len(p.streams) for p in pipelines)
        if found != stream_count:
            raise AssertionError(f"expected {stream_count} streams, all_pipelines found {found}")
        reads: list[float] = []
        resolves: list[float] = []
        for _ in range(config.repeats):
            read_seconds, project = timed(lambda: read_project(root))
            resolve_seconds, _ = timed(partial(all_pipelines, project))
            reads.append(read_seconds)
            resolves.append(resolve_seconds)
        totals = [r + s for r, s in zip(reads, resolves, strict=True)]
    total = median(totals)
    return [
        Measurement(
            NAME,
            f"read_project + all_pipelines ({stream_count:,} streams, {len(pipelines)} pipelines)",
            total,
            "s",
            f"< {TARGET_SECONDS:g} s",
            total < TARGET_SECONDS,
            {
                "streams": stream_count,
                "pipelines": len(pipelines),
                "repeats": config.repeats,
                "read_project_median_s": median(reads),
                "all_pipelines_median_s": median(resolves),
                "totals_s": totals,
            },
        )
    ]
