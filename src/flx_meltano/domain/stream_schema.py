"""A stream's columns as a tap describes them (names, types, nullability, keys) and how two differ."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    """One column: its name, its type as the tap writes it (``integer``, ``string(date-time)``...)."""

    name: str
    type: str
    nullable: bool = True


@dataclass(frozen=True)
class StreamSchema:
    """The columns of one stream, in order, with its primary key and replication key."""

    columns: tuple[Column, ...]
    key_properties: tuple[str, ...] = ()
    replication_key: str | None = None

    def by_name(self) -> Mapping[str, Column]:
        """The columns by name."""
        return {c.name: c for c in self.columns}


@dataclass(frozen=True)
class TypeChange:
    """A column whose type (or nullability) differs between two schemas."""

    column: str
    before: str
    after: str


@dataclass(frozen=True)
class SchemaDrift:
    """What changed from one schema to another."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[TypeChange, ...] = field(default=())

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def __str__(self) -> str:
        parts = []
        if self.added:
            parts.append(f"added {', '.join(self.added)}")
        if self.removed:
            parts.append(f"removed {', '.join(self.removed)}")
        if self.changed:
            parts.append(
                "changed " + ", ".join(f"{c.column} ({c.before} -> {c.after})" for c in self.changed)
            )
        return "; ".join(parts) or "no change"


def _shown(column: Column) -> str:
    return column.type if column.nullable else f"{column.type} not null"


def schema_drift(before: StreamSchema, after: StreamSchema) -> SchemaDrift:
    """Columns added, removed and changed (type or nullability) from ``before`` to ``after``."""
    old, new = before.by_name(), after.by_name()
    return SchemaDrift(
        added=tuple(name for name in new if name not in old),
        removed=tuple(name for name in old if name not in new),
        changed=tuple(
            TypeChange(name, _shown(old[name]), _shown(column))
            for name, column in new.items()
            if name in old and _shown(old[name]) != _shown(column)
        ),
    )
