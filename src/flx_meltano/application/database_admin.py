"""Use cases of the store itself: start, stop, migrate, report; and the warehouse environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flx_meltano.application.secrets import MASK, looks_secret
from flx_meltano.persistence import database, embedded
from flx_meltano.settings import Settings

# Files flx writes that can hold secrets (.env holds the warehouse password) are the owner's only.
SECRET_FILE_MODE = 0o600


def _where(embedded_server: bool) -> str:
    return "embedded PostgreSQL" if embedded_server else "FLX_DATABASE_URL"


@dataclass(frozen=True)
class StoreReport:
    """What start or migrate did: the store (password masked) and its migration."""

    url: str
    embedded: bool
    migration: str | None
    summary: str


def start(settings: Settings) -> StoreReport:
    """Start (embedded) or reach the store, migrate it, and write the warehouse env to .env."""
    location = database.locate(settings)
    database.ready_engine(location.store_url)
    if location.embedded:
        write_dotenv(settings.project_dir / ".env", database.warehouse_environment(location))
    url = database.redact_url(location.store_url)
    summary = f"store ready at {url} ({_where(location.embedded)}), migration {database.HEAD_REVISION}"
    return StoreReport(url, location.embedded, database.HEAD_REVISION, summary)


def stop(settings: Settings) -> bool:
    """Stop the embedded server; False when it was not running."""
    return embedded.stop(settings.embedded_data_dir)


@dataclass(frozen=True)
class StoreStatus:
    """Where the store is and whether it is ready; ``ok`` False means commands cannot use it now.

    A store that is reachable but not migrated yet is ok: every command migrates it on first use.
    """

    url: str | None
    embedded: bool
    running: bool
    reachable: bool
    migrated: bool
    current_revision: str | None
    head_revision: str | None
    error: str | None
    summary: str

    @property
    def ok(self) -> bool:
        """Whether commands can use the store now."""
        return self.reachable


def status(settings: Settings) -> StoreStatus:
    """Whether the store runs, is reachable and migrated (never starts the embedded server)."""
    is_embedded = not settings.database_url
    if is_embedded and embedded.running(settings.embedded_data_dir) is None:
        summary = (
            f"stopped: the embedded PostgreSQL in {settings.embedded_data_dir} is not running "
            "(start it with 'flx-meltano db start'; any command starts it when needed)"
        )
        return StoreStatus(None, True, False, False, False, None, database.HEAD_REVISION, None, summary)
    location = database.locate(settings, start_embedded=False)
    health = database.check_store(location.store_url)
    if not health.reachable:
        summary = f"unreachable: {health.url}: {health.error}"
    elif not health.migrated:
        summary = (
            f"ok: {health.url} at migration {health.current_revision or 'none'}, code expects "
            f"{health.head_revision}: it is migrated on first use (or now: 'flx-meltano db migrate')"
        )
    else:
        summary = f"ok: {health.url} at migration {health.current_revision}"
    return StoreStatus(
        url=health.url,
        embedded=location.embedded,
        running=True,
        reachable=health.reachable,
        migrated=health.migrated,
        current_revision=health.current_revision,
        head_revision=health.head_revision,
        error=health.error,
        summary=summary,
    )


def migrate(settings: Settings) -> StoreReport:
    """Bring the store to the newest migration."""
    location = database.locate(settings)
    with database.reaching(location.store_url):
        database.migrate(database.engine_for(location.store_url))
    url = database.redact_url(location.store_url)
    summary = f"migrated {url} to {database.HEAD_REVISION}"
    return StoreReport(url, location.embedded, database.HEAD_REVISION, summary)


def warehouse_environment(settings: Settings) -> dict[str, str]:
    """FLX_WAREHOUSE_* variables for loaders and dbt, and FLX_DAGSTER_PG_URL for Dagster's storage."""
    location = database.locate(settings)
    database.ensure_database_exists(location.warehouse_url)
    database.ensure_database_exists(location.dagster_url)
    return {**database.warehouse_environment(location), "FLX_DAGSTER_PG_URL": location.dagster_url}


def masked_environment(values: Mapping[str, str]) -> dict[str, str]:
    """``values`` for people: secret-named values masked, and the password of every URL."""
    return {
        key: MASK if looks_secret(key) and value else database.mask_password(value)
        for key, value in values.items()
    }


def write_dotenv(path: Path, values: dict[str, str]) -> None:
    """Set ``values`` in a .env file (mode 0600: it holds passwords), keeping every other line."""
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [line for line in lines if line.split("=", 1)[0].strip() not in values]
    kept.extend(f"{key}='{value}'" for key, value in values.items())
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    # Created 0600 from the start: the password is never readable by others, not even briefly.
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
    with os.fdopen(descriptor, "w") as handle:
        handle.write("\n".join(kept) + "\n")
    tmp.replace(path)
