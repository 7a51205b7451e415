"""Singer JSON schemas as StreamSchemas, and drift between two of them (fast: no meltano, no Dagster run)."""

from __future__ import annotations

from flx_meltano.domain.stream_schema import Column, StreamSchema, schema_drift
from flx_meltano.integration.singer_schema import stream_schema
from flx_meltano.orchestration.checks import (
    CheckOptions,
    row_count_result,
    schema_drift_result,
    stream_regressions,
)
from flx_meltano.orchestration.column_schema import stream_schema_of, table_schema


def test_types_nullability_keys_and_deselected_columns_of_a_catalog_entry():
    entry = {
        "tap_stream_id": "orders",
        "schema": {
            "properties": {
                "id": {"type": ["integer"]},
                "total": {"anyOf": [{"type": "number"}, {"type": "null"}]},
                "at": {"type": ["null", "string"], "format": "date-time"},
                "secret": {"type": "string"},
                "tags": {"type": "array"},
            }
        },
        "metadata": [
            {"breadcrumb": [], "metadata": {"table-key-properties": ["id"], "replication-key": "at"}},
            {
                "breadcrumb": ["properties", "secret"],
                "metadata": {"selected": False, "inclusion": "available"},
            },
        ],
    }
    schema = stream_schema(entry)
    assert schema == StreamSchema(
        columns=(
            Column("id", "integer", nullable=False),
            Column("total", "number", nullable=True),
            Column("at", "string(date-time)", nullable=True),
            Column("tags", "array", nullable=False),
        ),
        key_properties=("id",),
        replication_key="at",
    )
    assert stream_schema({"schema": {"type": "object"}}) is None
    assert stream_schema_of(table_schema(schema)) == schema  # what a materialization keeps comes back


def test_drift_names_columns_added_removed_and_changed():
    before = StreamSchema((Column("id", "integer", False), Column("name", "string"), Column("n", "integer")))
    after = StreamSchema((Column("id", "integer", False), Column("n", "string"), Column("email", "string")))
    drift = schema_drift(before, after)
    assert (drift.added, drift.removed) == (("email",), ("name",))
    assert str(drift) == "added email; removed name; changed n (integer -> string)"
    assert not schema_drift(before, before)
    result = schema_drift_result(table_key(), after, before, None, "ERROR")
    assert not result.passed
    assert result.severity.value == "ERROR"
    assert result.metadata["meltano/drift_from_previous_run"].value == "no previous run with a schema"


def table_key():
    from dagster import AssetKey

    return AssetKey(["raw", "orders"])


def test_row_count_needs_history_and_regressions_are_per_stream():
    key = table_key()
    assert row_count_result(key, 0, [5, 7], history=3).passed  # not enough history to judge
    assert not row_count_result(key, 0, [5, 7, 9], history=3).passed
    assert row_count_result(key, 0, [5, 0, 9], history=3).passed  # 0 happens for this stream
    assert row_count_result(key, None, [5, 7, 9], history=3).passed  # unknown is not 0
    warnings = [
        "state regression: bookmark of orders moved backward (2 -> 1)",
        "state regression: bookmark of customers moved backward (3 -> 1)",
    ]
    assert stream_regressions("orders", warnings) == warnings[:1]
    wiped = ["state regression: the new state has no bookmarks (before: 2 streams); restore_previous() ..."]
    assert stream_regressions("orders", wiped) == wiped
    assert CheckOptions(row_count_history=0).row_count_history == 0
