"""Where Meltano keeps its own run records: its ``database_uri`` setting, resolved as Meltano does.

Meltano writes one ``runs`` row per extract-load block it runs (``job_name`` is the state id,
``run_id`` the run's id, ``state`` RUNNING/SUCCESS/FAIL/DEAD, a heartbeat every second while it
runs, and in ``payload`` the last Singer state the run wrote). Finding the database without
importing Meltano (seconds) keeps reading it cheap enough for every command that lists executions.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def _dotenv(project_dir: Path) -> dict[str, str]:
    """The project's ``.env`` (Meltano reads it too): ``KEY=value`` lines, quotes stripped."""
    values: dict[str, str] = {}
    path = project_dir / ".env"
    if not path.is_file():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def _top_level_setting(project_dir: Path, name: str) -> str | None:
    """A top-level ``name: value`` of meltano.yml (Meltano's own settings are top-level keys)."""
    path = project_dir / "meltano.yml"
    if not path.is_file():
        return None
    match = re.search(rf"^{name}:\s*(\S.*?)\s*$", path.read_text(), re.MULTILINE)
    return match.group(1).strip("'\"") if match else None


def system_database_uri(project_dir: Path, env: Mapping[str, str] | None = None) -> str:
    """Meltano's ``database_uri`` as Meltano resolves it: ``MELTANO_DATABASE_URI`` (``env``, the
    process environment, then ``.env``), else meltano.yml's ``database_uri``, else
    ``sqlite:///$MELTANO_SYS_DIR_ROOT/meltano.db`` (``.meltano`` in the project)."""
    project_dir = project_dir.resolve()
    values = {**_dotenv(project_dir), **os.environ, **(env or {})}
    uri = values.get("MELTANO_DATABASE_URI") or _top_level_setting(project_dir, "database_uri")
    sys_dir = values.get("MELTANO_SYS_DIR_ROOT") or str(project_dir / ".meltano")
    variables = {**values, "MELTANO_PROJECT_ROOT": str(project_dir), "MELTANO_SYS_DIR_ROOT": sys_dir}
    uri = uri or "sqlite:///$MELTANO_SYS_DIR_ROOT/meltano.db"
    return _VARIABLE.sub(lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), uri)
