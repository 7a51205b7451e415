"""A Singer catalog entry's JSON schema as the domain's StreamSchema (columns, types, keys)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flx_meltano.domain.stream_schema import Column, StreamSchema


def _types(prop: Mapping[str, Any]) -> tuple[list[str], bool]:
    """The non-null JSON types of a property and whether it may be null (``anyOf`` folded in)."""
    raw = prop.get("type")
    names = [raw] if isinstance(raw, str) else [str(t) for t in raw] if isinstance(raw, Sequence) else []
    for option in prop.get("anyOf") or ():
        if isinstance(option, Mapping):
            more, _ = _types(option)
            names += more if option.get("type") != "null" else ["null"]
    nullable = "null" in names or not names
    return [t for t in dict.fromkeys(names) if t != "null"], nullable


def column_type(prop: Mapping[str, Any]) -> str:
    """A readable type: ``integer``, ``string(date-time)``, ``array``, ``integer|string``."""
    types, _ = _types(prop)
    shown = "|".join(types) or "any"
    fmt = prop.get("format")
    return f"{shown}({fmt})" if isinstance(fmt, str) and fmt else shown


def _breadcrumb_metadata(entry: Mapping[str, Any]) -> dict[tuple[str, ...], Mapping[str, Any]]:
    found: dict[tuple[str, ...], Mapping[str, Any]] = {}
    for item in entry.get("metadata") or ():
        if isinstance(item, Mapping) and isinstance(item.get("metadata"), Mapping):
            found[tuple(map(str, item.get("breadcrumb") or ()))] = item["metadata"]
    return found


def _deselected(meta: Mapping[str, Any] | None) -> bool:
    return bool(meta) and meta.get("selected") is False and meta.get("inclusion") != "automatic"  # type: ignore[union-attr]


def stream_schema(entry: Mapping[str, Any]) -> StreamSchema | None:
    """The columns a tap sends for a catalog entry (columns deselected in its metadata left out),
    or None when the entry has no object schema."""
    schema = entry.get("schema")
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    if not isinstance(properties, Mapping):
        return None
    metadata = _breadcrumb_metadata(entry)
    columns = []
    for name, prop in properties.items():
        if not isinstance(prop, Mapping) or _deselected(metadata.get(("properties", str(name)))):
            continue
        _, nullable = _types(prop)
        columns.append(Column(str(name), column_type(prop), nullable))
    stream_meta = metadata.get((), {})
    keys = entry.get("key_properties", stream_meta.get("table-key-properties")) or ()
    replication_key = entry.get("replication_key") or stream_meta.get("replication-key")
    return StreamSchema(
        columns=tuple(columns),
        key_properties=tuple(map(str, keys))
        if isinstance(keys, Sequence) and not isinstance(keys, str)
        else (),
        replication_key=str(replication_key) if replication_key else None,
    )

