"""Asset checks of a stream: schema drift, bookmark regression (blocking) and row-count anomaly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey, MetadataValue

from flx_meltano.domain.stream_schema import SchemaDrift, StreamSchema, schema_drift
from flx_meltano.orchestration import metadata as md

SCHEMA_DRIFT: str = "schema_drift"
BOOKMARK_REGRESSION: str = "bookmark_regression"
ROW_COUNT_ANOMALY: str = "row_count_anomaly"
RESTORE_COMMAND = "flx-meltano state restore-previous"

Severity = Literal["WARN", "ERROR"]


@dataclass(frozen=True)
class CheckOptions:
    """Which checks every stream gets, and how strict they are.

    Attributes:
        schema_drift: check the columns the tap was given in a run against the catalog known
            when the definitions loaded and against the previous run.
        schema_drift_severity: WARN (default) or ERROR.
        bookmark_regression: a blocking ERROR check when the run wiped or rewound a bookmark.
        row_count_history: a run loading 0 rows fails the row-count check when each of this many
            previous materializations had rows (WARN); 0 turns the check off.
    """

    schema_drift: bool = True
    schema_drift_severity: Severity = "WARN"
    bookmark_regression: bool = True
    row_count_history: int = 3

    def __post_init__(self) -> None:
        if self.row_count_history < 0:
            raise ValueError(f"row_count_history must be 0 or more, not {self.row_count_history}")
        if self.schema_drift_severity not in ("WARN", "ERROR"):
            raise ValueError(
                f"schema_drift_severity must be WARN or ERROR, not {self.schema_drift_severity!r}"
            )


def check_specs(key: AssetKey, options: CheckOptions) -> list[AssetCheckSpec]:
    """The check specs of one stream asset."""
    specs = []
    if options.schema_drift:
        specs.append(
            AssetCheckSpec(
                SCHEMA_DRIFT,
                asset=key,
                description="Columns the tap was given in this run against the catalog known when the "
                "definitions loaded and against the previous run: added, removed, changed type.",
            )
        )
    if options.bookmark_regression:
        specs.append(
            AssetCheckSpec(
                BOOKMARK_REGRESSION,
                asset=key,
                blocking=True,
                description="The run must not wipe or rewind the stream's bookmark; if it did, put the "
                f"last good state back with `{RESTORE_COMMAND} <state id>`.",
            )
        )
    if options.row_count_history:
        specs.append(
            AssetCheckSpec(
                ROW_COUNT_ANOMALY,
                asset=key,
                description=f"0 rows loaded where each of the last {options.row_count_history} "
                "materializations had rows.",
            )
        )
    return specs


def _drift_text(drift: SchemaDrift) -> str:
    return str(drift) if drift else "no change"


def schema_drift_result(
    key: AssetKey,
    run: StreamSchema | None,
    catalog: StreamSchema | None,
    previous: StreamSchema | None,
    severity: Severity = "WARN",
) -> AssetCheckResult:
    """Drift of the run's columns from the definition-time catalog and from the previous run."""
    if run is None:
        return AssetCheckResult(
            check_name=SCHEMA_DRIFT,
            asset_key=key,
            passed=True,
            metadata={md.CHECK_DETAIL: MetadataValue.text("the run's catalog has no schema for this stream")},
        )
    from_catalog = schema_drift(catalog, run) if catalog is not None else SchemaDrift()
    from_previous = schema_drift(previous, run) if previous is not None else SchemaDrift()
    drifted = bool(from_catalog or from_previous)
    return AssetCheckResult(
        check_name=SCHEMA_DRIFT,
        asset_key=key,
        passed=not drifted,
        severity=AssetCheckSeverity(severity),
        description=(
            f"since the catalog: {_drift_text(from_catalog)}; "
            f"since the previous run: {_drift_text(from_previous)}"
            if drifted
            else None
        ),
        metadata={
            md.DRIFT_FROM_CATALOG: MetadataValue.text(_drift_text(from_catalog)),
            md.DRIFT_FROM_PREVIOUS: MetadataValue.text(
                _drift_text(from_previous) if previous is not None else "no previous run with a schema"
            ),
            md.COLUMNS_ADDED: MetadataValue.json(sorted({*from_catalog.added, *from_previous.added})),
            md.COLUMNS_REMOVED: MetadataValue.json(sorted({*from_catalog.removed, *from_previous.removed})),
            md.COLUMNS_CHANGED: MetadataValue.json(
                sorted({c.column for c in (*from_catalog.changed, *from_previous.changed)})
            ),
        },
    )


def stream_regressions(stream: str, warnings: Sequence[str]) -> list[str]:
    """The state guard's regression warnings that concern ``stream``: its own bookmark moved
    backward, or the whole state lost its bookmarks (application/state_guard.py words them)."""
    return [w for w in warnings if f"bookmark of {stream} moved" in w or "bookmark of " not in w]


def bookmark_regression_result(
    key: AssetKey, state_id: str, execution_id: str, warnings: Sequence[str]
) -> AssetCheckResult:
    """ERROR (blocking) when the run wiped or rewound the stream's bookmark."""
    return AssetCheckResult(
        check_name=BOOKMARK_REGRESSION,
        asset_key=key,
        passed=not warnings,
        severity=AssetCheckSeverity.ERROR,
        description=(
            f"{'; '.join(warnings)}. Put the last good state back with `{RESTORE_COMMAND} {state_id}`"
            if warnings
            else None
        ),
        metadata={
            md.EXECUTION_ID: MetadataValue.text(execution_id),
            md.STATE_WARNINGS: MetadataValue.json(list(warnings)),
        },
    )


def row_count_result(
    key: AssetKey, rows: int | None, previous: Sequence[int], history: int
) -> AssetCheckResult:
    """WARN when 0 rows were loaded although each of the last ``history`` runs had rows."""
    usual = len(previous) >= history and all(count > 0 for count in previous[:history])
    passed = not (rows == 0 and usual)
    if rows is None:
        detail = "the row count of this run is unknown"
    elif len(previous) < history:
        detail = f"{len(previous)} previous materializations with a row count (the check needs {history})"
    else:
        detail = f"{rows} rows; the last {history}: {', '.join(map(str, previous[:history]))}"
    return AssetCheckResult(
        check_name=ROW_COUNT_ANOMALY,
        asset_key=key,
        passed=passed,
        severity=AssetCheckSeverity.WARN,
        description=None
        if passed
        else f"0 rows loaded; the last {history} runs loaded {list(previous[:history])}",
        metadata={md.CHECK_DETAIL: MetadataValue.text(detail)},
    )
