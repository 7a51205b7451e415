"""Rendering for people (rich tables) and scripts (JSON)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from flx_meltano.domain.values import Duration

# Piped output (logs, CI, ``| less``) has no terminal width: rich would squeeze tables into 80
# columns and cut pipeline and execution ids. Give it room; a terminal or COLUMNS keeps its own.
_PIPED_WIDTH = 200


def _width(stream: Any) -> int | None:
    return None if "COLUMNS" in os.environ or stream.isatty() else _PIPED_WIDTH


console = Console(soft_wrap=True, width=_width(sys.stdout))
error_console = Console(stderr=True, soft_wrap=True, width=_width(sys.stderr))


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Duration):
        return duration_seconds(value)
    if isinstance(value, Path):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout (dataclasses, enums and datetimes included)."""
    if is_dataclass(data) and not isinstance(data, type):
        data = asdict(data)
    elif isinstance(data, list) and data and is_dataclass(data[0]):
        data = [asdict(item) for item in data]
    print(json.dumps(data, default=_default, indent=2, sort_keys=False))


UNKNOWN = "?"


def count(value: int | None) -> int | str:
    """A record count for a table: the number, or ``?`` when it is unknown (JSON keeps null)."""
    return UNKNOWN if value is None else value


def duration_seconds(duration: Duration | None) -> float | None:
    """The one duration shape of every JSON output: seconds as a float, null when unknown."""
    return float(duration.seconds) if duration is not None else None


def count_text(value: int | None) -> str:
    """A record count as text: ``1,234``, or ``?`` when it is unknown."""
    return UNKNOWN if value is None else f"{value:,}"


def cell(value: Any) -> str:
    """One value as table text."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, Mapping | list):
        return json.dumps(value, default=_default)
    return str(value)


def print_table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    styles: Mapping[str, str] | None = None,
) -> None:
    """Print rows as a rich table; numbers right-aligned."""
    table = Table(title=title, title_justify="left", header_style="bold")
    materialised = [list(row) for row in rows]
    for index, column in enumerate(columns):
        numeric = bool(materialised) and all(
            isinstance(row[index], int | float) and not isinstance(row[index], bool)
            for row in materialised
            if row[index] is not None and row[index] != UNKNOWN
        )
        table.add_column(column, justify="right" if numeric else "left", style=(styles or {}).get(column))
    for row in materialised:
        table.add_row(*(cell(value) for value in row))
    console.print(table)


STATUS_STYLE = {
    "SUCCEEDED": "green",
    "RUNNING": "cyan",
    "PENDING": "cyan",
    "FAILED": "red",
    "CRASHED": "red",
    "CANCELLED": "yellow",
}


def status_text(status: str) -> str:
    """A status with its colour markup."""
    style = STATUS_STYLE.get(status, "")
    return f"[{style}]{status}[/{style}]" if style else status
