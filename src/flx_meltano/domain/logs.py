"""An execution's log: lines with time, level and plugin, and how much of it was kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flx_meltano.domain.errors import InvalidOption

# Lowest first: a level filter keeps a line at or above it.
LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error", "critical")


def level_rank(level: str) -> int:
    """Where ``level`` stands among LEVELS (an unknown level of a plugin counts as info)."""
    try:
        return LEVELS.index(level.lower())
    except ValueError:
        return LEVELS.index("info")


def parse_level(level: str) -> str:
    """A level a person typed, lower-cased; InvalidOption naming the levels if it is none of them."""
    if level.lower() not in LEVELS:
        raise InvalidOption(f"level {level!r} is not one of {', '.join(LEVELS)}")
    return level.lower()


@dataclass(frozen=True)
class LogLine:
    """One line of an execution's log: meltano's own (plugin None) or one of a plugin's.

    The message is masked before it is built: secrets never reach a LogLine.
    """

    at: datetime
    level: str
    plugin: str | None
    message: str


@dataclass(frozen=True)
class LogKept:
    """What the store keeps of an execution's log besides its lines.

    Attributes:
        dropped_lines, dropped_bytes: the oldest lines dropped to keep the log within its bound.
        complete: the runner wrote its last line (a live log that is not complete may still grow).
        pruned_at: when retention deleted the lines (None: not pruned).
    """

    dropped_lines: int = 0
    dropped_bytes: int = 0
    complete: bool = False
    pruned_at: datetime | None = None


@dataclass(frozen=True)
class LogChunk:
    """One stored chunk: its place in the log and its lines."""

    seq: int
    lines: list[LogLine]


@dataclass(frozen=True)
class LogSize:
    """How big an execution's stored log is: lines, their raw (encoded) bytes, bytes stored."""

    lines: int
    raw_bytes: int
    stored_bytes: int
