"""A stream's StreamSchema as Dagster's TableSchema (``dagster/column_schema``), and back."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from dagster import TableColumn, TableColumnConstraints, TableConstraints, TableSchema

from flx_meltano.domain.stream_schema import Column, StreamSchema

PRIMARY_KEY_TAG = "primary_key"
REPLICATION_KEY_TAG = "replication_key"


@lru_cache(maxsize=8192)
def table_schema(schema: StreamSchema) -> TableSchema:
    """Columns with type and nullability; the primary key and the replication key are marked by
    column tags, a description and a table constraint (cached: one catalog version, one object)."""
    keys = set(schema.key_properties)
    columns = []
    for column in schema.columns:
        tags: dict[str, str] = {}
        roles = []
        if column.name in keys:
            tags[PRIMARY_KEY_TAG] = ""
            roles.append("primary key")
        if column.name == schema.replication_key:
            tags[REPLICATION_KEY_TAG] = ""
            roles.append("replication key")
        columns.append(
            TableColumn(
                name=column.name,
                type=column.type,
                description=", ".join(roles).capitalize() or None,
                constraints=TableColumnConstraints(nullable=column.nullable),
                tags=tags,
            )
        )
    other = []
    if schema.key_properties:
        other.append(f"primary key ({', '.join(schema.key_properties)})")
    if schema.replication_key:
        other.append(f"replication key ({schema.replication_key})")
    return TableSchema(columns=columns, constraints=TableConstraints(other=other))


def stream_schema_of(value: Any) -> StreamSchema | None:
    """The StreamSchema a TableSchema written by ``table_schema`` describes (None if not one)."""
    if not isinstance(value, TableSchema):
        return None
    keys = tuple(c.name for c in value.columns if PRIMARY_KEY_TAG in c.tags)
    replication = next((c.name for c in value.columns if REPLICATION_KEY_TAG in c.tags), None)
    return StreamSchema(
        columns=tuple(Column(c.name, c.type, c.constraints.nullable) for c in value.columns),
        key_properties=keys,
        replication_key=replication,
    )
