"""Where a loader puts a stream: a table in a schema, a file, or somewhere flx cannot tell."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StreamDestination:
    """The place a loader writes one stream to.

    Exactly one of (``schema``, ``table``) or ``path`` is set, or neither when the loader is not
    one whose naming flx knows (its asset then keeps the generic key).
    """

    table: str | None = None
    schema: str | None = None
    path: str | None = None

    @property
    def qualified_table(self) -> str | None:
        """``schema.table`` (or the bare table), None when not a table."""
        if self.table is None:
            return None
        return f"{self.schema}.{self.table}" if self.schema else self.table


UNKNOWN_DESTINATION = StreamDestination()
