"""definitions_build: build_definitions + resolve_all_asset_specs for 1,000 streams with column schemas
and three asset checks each (target ≤ 0.4 s), beside Dagster's floor: the same specs built by hand."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench._common import Config, Databases, Measurement, generated_project, log, median, timed

NAME = "definitions_build"
TARGET_SECONDS = 0.4
COLUMNS = 10  # per stream, in the catalog


def _entry(stream: str) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "id": {"type": ["integer"]},
        "updated_at": {"type": ["string"], "format": "date-time"},
    }
    for n in range(COLUMNS - 2):
        properties[f"field_{n:02d}"] = {"type": ["string", "null"]}
    return {
        "tap_stream_id": stream,
        "stream": stream,
        "key_properties": ["id"],
        "replication_key": "updated_at",
        "schema": {"type": "object", "properties": properties},
        "metadata": [{"breadcrumb": [], "metadata": {"selected": True, "table-key-properties": ["id"]}}],
    }


def write_catalogs(root: Path, extractors: int, streams: int) -> None:
    """The catalog Meltano would have cached for each generated tap (``tap.properties.json``)."""
    for i in range(extractors):
        path = root / ".meltano" / "run" / f"tap-gen-{i:02d}" / "tap.properties.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"streams": [_entry(f"stream_{s:02d}") for s in range(streams)]}))


def dagster_floor(extractors: int, streams: int) -> int:
    """What Dagster itself costs for the same assets: one subsettable multi-asset per pipeline of
    specs with the same kinds of metadata (a TableSchema of COLUMNS columns), freshness policy and
    three check specs per stream, built by hand; returns the number of specs resolved."""
    from datetime import timedelta

    from dagster import (
        AssetCheckSpec,
        AssetSpec,
        Definitions,
        FreshnessPolicy,
        TableColumn,
        TableColumnConstraints,
        TableSchema,
        multi_asset,
    )

    columns = [
        TableColumn(
            "id", "integer", description="Primary key", constraints=TableColumnConstraints(nullable=False)
        ),
        TableColumn("updated_at", "string(date-time)", description="Replication key"),
        *(TableColumn(f"field_{n:02d}", "string") for n in range(COLUMNS - 2)),
    ]
    schema = TableSchema(columns=columns)
    assets = []
    for i in range(extractors):
        tap = f"tap-gen-{i:02d}"
        specs = [
            AssetSpec(
                key=["tap_gen", f"stream_{s:02d}_{i:02d}"],
                group_name=f"tap_gen_{i:02d}_to_target_gen",
                kinds={"meltano", "singer", "gen"},
                description=f"Stream stream_{s:02d} of {tap}",
                tags={"meltano/extractor": tap, "meltano/loader": "target-gen"},
                metadata={
                    "meltano/state_id": f"dev:{tap}-to-target-gen",
                    "meltano/stream": f"stream_{s:02d}",
                    "dagster/column_schema": schema,
                },
                owners=["team:data-platform"],
                freshness_policy=FreshnessPolicy.time_window(fail_window=timedelta(hours=24)),
                skippable=True,
            )
            for s in range(streams)
        ]
        checks = [
            AssetCheckSpec(name, asset=spec.key, blocking=name == "bookmark_regression")
            for spec in specs
            for name in ("schema_drift", "bookmark_regression", "row_count_anomaly")
        ]

        @multi_asset(name=f"tap_gen_{i:02d}_to_target_gen", specs=specs, check_specs=checks, can_subset=True)
        def _pipeline(context):  # type: ignore[no-untyped-def]
            yield from ()

        assets.append(_pipeline)
    return len(Definitions(assets=assets).resolve_all_asset_specs())


def run(config: Config, databases: Databases) -> list[Measurement]:
    """Median in-process wall-clock, dagster already imported (a code server imports it once)."""
    start = time.perf_counter()
    import dagster  # noqa: F401 - imported first so its import is not timed

    from flx_meltano.orchestration import build_definitions

    import_seconds = time.perf_counter() - start

    def build(root: object) -> tuple[int, int, int]:
        defs = build_definitions(project_dir=str(root))
        specs = defs.resolve_all_asset_specs()
        schemas = sum(1 for s in specs if "dagster/column_schema" in s.metadata)
        checks = len(defs.resolve_asset_graph().asset_check_keys)
        return len(specs), schemas, checks

    with generated_project(config) as (root, stream_count):
        write_catalogs(root, config.extractors, config.streams)
        log(f"{NAME}: {stream_count:,} streams with schemas and checks, {config.repeats} repeats")
        specs, schemas, checks = build(root)  # warm-up
        if (specs, schemas, checks) != (stream_count, stream_count, 3 * stream_count):
            raise AssertionError(
                f"expected {stream_count} specs, schemas and 3 checks each: {specs, schemas, checks}"
            )
        samples = [timed(lambda: build(root))[0] for _ in range(config.repeats)]
        dagster_floor(config.extractors, config.streams)  # warm-up
        floor = [
            timed(lambda: dagster_floor(config.extractors, config.streams))[0] for _ in range(config.repeats)
        ]
    value, floor_value = median(samples), median(floor)
    return [
        Measurement(
            NAME,
            f"build_definitions + resolve_all_asset_specs ({stream_count:,} streams, schemas, 3 checks each)",
            value,
            "s",
            f"≤ {TARGET_SECONDS:g} s",
            value <= TARGET_SECONDS,
            {
                "streams": stream_count,
                "asset_specs": specs,
                "column_schemas": schemas,
                "asset_checks": checks,
                "repeats": config.repeats,
                "samples_s": samples,
                "dagster_floor_s": floor_value,
                "dagster_floor_samples_s": floor,
                "import_dagster_and_flx_orchestration_s": import_seconds,
            },
        ),
        Measurement(
            f"{NAME}_dagster_floor",
            f"the same specs, schemas and checks built by hand in Dagster ({stream_count:,} streams)",
            floor_value,
            "s",
            "for information",
            None,
            {"samples_s": floor},
        ),
    ]
