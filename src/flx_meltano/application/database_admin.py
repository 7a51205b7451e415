"""Use cases of the store itself: start, stop, migrate, report; and the warehouse environment."""

from __future__ import annotations

import os
from pathlib import Path

from flx_meltano.persistence import database, embedded
from flx_meltano.settings import Settings

DOTENV_KEYS = (
    "FLX_WAREHOUSE_URL",
    "FLX_WAREHOUSE_HOST",
    "FLX_WAREHOUSE_PORT",
    "FLX_WAREHOUSE_USER",
    "FLX_WAREHOUSE_PASSWORD",
    "FLX_WAREHOUSE_DBNAME",
)


def start(settings: Settings) -> str:
    """Start (embedded) or reach the store, migrate it, and write the warehouse env to .env."""
    location = database.locate(settings)
    database.ready_engine(location.store_url)
    if location.embedded:
        write_dotenv(settings.project_dir / ".env", database.warehouse_environment(location))
    where = "embedded PostgreSQL" if location.embedded else "FLX_DATABASE_URL"
    url = database.redact_url(location.store_url)
    return f"store ready at {url} ({where}), migration {database.HEAD_REVISION}"


def stop(settings: Settings) -> bool:
    """Stop the embedded server; False when it was not running."""
    return embedded.stop(settings.embedded_data_dir)


def status(settings: Settings) -> str:
    """One line: ok or what is wrong."""
    if not settings.database_url and embedded.running(settings.embedded_data_dir) is None:
        return f"stopped: the embedded PostgreSQL in {settings.embedded_data_dir} is not running"
    location = database.locate(settings, start_embedded=False)
    health = database.check_store(location.store_url)
    if not health.reachable:
        return f"unreachable: {health.url}: {health.error}"
    if not health.migrated:
        return f"not migrated: {health.url} at {health.current_revision}, expected {health.head_revision}"
    return f"ok: {health.url} at migration {health.current_revision}"


def migrate(settings: Settings) -> str:
    """Bring the store to the newest migration."""
    location = database.locate(settings)
    database.migrate(database.engine_for(location.store_url))
    return f"migrated {database.redact_url(location.store_url)} to {database.HEAD_REVISION}"


def warehouse_environment(settings: Settings) -> dict[str, str]:
    """FLX_WAREHOUSE_* variables for loaders and dbt, and FLX_DAGSTER_PG_URL for Dagster's storage."""
    location = database.locate(settings)
    database.ensure_database_exists(location.warehouse_url)
    database.ensure_database_exists(location.dagster_url)
    return {**database.warehouse_environment(location), "FLX_DAGSTER_PG_URL": location.dagster_url}


def write_dotenv(path: Path, values: dict[str, str]) -> None:
    """Set ``values`` in a .env file, keeping every other line as it was; the file is 0600 (it
    holds the warehouse password)."""
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [line for line in lines if line.split("=", 1)[0].strip() not in values]
    kept.extend(f"{key}='{value}'" for key, value in values.items())
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(fd, 0o600)  # a stale temporary file keeps its mode on O_CREAT
        handle.write("\n".join(kept) + "\n")
    tmp.replace(path)
