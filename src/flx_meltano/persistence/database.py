"""Where the store lives: resolve its URL, create engines, apply migrations idempotently."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from flx_meltano.persistence import embedded
from flx_meltano.settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SCHEMA = "flx"
# The newest migration; a test checks it against Alembic's head. Knowing it here lets every
# process check its store with one query, without importing Alembic (0.4 s) unless it migrates.
HEAD_REVISION = "0002"
# Any constant will do: it only has to be the same in every process that migrates this store.
MIGRATION_LOCK_KEY = 0x464C58  # "FLX"


@dataclass(frozen=True)
class DatabaseLocation:
    """The store's URL, the warehouse URL beside it, and whether it is the embedded server."""

    store_url: str
    warehouse_url: str
    dagster_url: str
    embedded: bool


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def sibling_database(url: str, database: str) -> str:
    """The URL of another database on the same server."""
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def locate(settings: Settings, *, start_embedded: bool = True) -> DatabaseLocation:
    """Where the store is: ``FLX_DATABASE_URL`` if set, else the embedded server (started here)."""
    if settings.database_url:
        url = normalise_url(settings.database_url)
        return DatabaseLocation(
            store_url=url,
            warehouse_url=sibling_database(url, embedded.WAREHOUSE_DATABASE),
            dagster_url=make_url(sibling_database(url, embedded.DAGSTER_DATABASE))
            .set(drivername="postgresql")
            .render_as_string(hide_password=False),
            embedded=False,
        )
    server = (
        embedded.start(settings.embedded_data_dir)
        if start_embedded
        else embedded.running(settings.embedded_data_dir)
    )
    if server is None:
        raise RuntimeError(f"the embedded PostgreSQL server in {settings.embedded_data_dir} is not running")
    return DatabaseLocation(
        store_url=server.url(embedded.STORE_DATABASE),
        warehouse_url=server.url(embedded.WAREHOUSE_DATABASE),
        dagster_url=server.libpq_url(embedded.DAGSTER_DATABASE),
        embedded=True,
    )


@cache
def engine_for(url: str) -> Engine:
    """One pooled engine per URL and process."""
    return sa.create_engine(url, pool_pre_ping=True, future=True)


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic config pointing at our migrations (and, when given, at an open connection)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest migration this code knows (asks Alembic)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at (None when never migrated)."""
    with engine.connect() as conn:
        table = conn.execute(
            sa.text("SELECT to_regclass(:name)"), {"name": f"{SCHEMA}.alembic_version"}
        ).scalar()
        if table is None:
            return None
        return conn.execute(sa.text("SELECT version_num FROM flx.alembic_version")).scalar()


def migrate(engine: Engine) -> None:
    """Bring the store to the newest schema; safe to call from many processes at once."""
    from alembic import command

    with engine.begin() as conn:
        # Serialise concurrent migrators: the second waits, then finds nothing left to do.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        command.upgrade(alembic_config(conn), "head")


_migrated: set[str] = set()


def ready_engine(url: str) -> Engine:
    """An engine whose database is migrated (checked once per process)."""
    engine = engine_for(url)
    if url not in _migrated:
        if current_revision(engine) != HEAD_REVISION:
            migrate(engine)
        _migrated.add(url)
    return engine


@dataclass(frozen=True)
class StoreHealth:
    """What doctor needs to know about the store."""

    url: str
    reachable: bool
    error: str | None
    current_revision: str | None
    head_revision: str | None

    @property
    def migrated(self) -> bool:
        """True when the database is at the newest migration."""
        return self.reachable and self.current_revision == self.head_revision


def redact_url(url: str) -> str:
    """The URL with any password masked, for people and logs."""
    return unquote(make_url(url).render_as_string(hide_password=True))


def check_store(url: str, timeout_seconds: int = 5) -> StoreHealth:
    """Connect to the store and read its migration revision, never raising."""
    engine = sa.create_engine(url, connect_args={"connect_timeout": timeout_seconds})
    try:
        current = current_revision(engine)
    except Exception as exc:  # any driver error means "not reachable"; its text is reported
        message = str(getattr(exc, "orig", exc)).strip().splitlines()
        return StoreHealth(redact_url(url), False, message[0] if message else repr(exc), None, HEAD_REVISION)
    finally:
        engine.dispose()
    return StoreHealth(redact_url(url), True, None, current, HEAD_REVISION)


def ensure_database_exists(url: str) -> None:
    """Create the database of ``url`` on its server unless it exists (racing creators are fine)."""
    target = make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": target.database}
            ).first()
            if not exists:
                try:
                    conn.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
                except sa.exc.ProgrammingError as exc:
                    if "already exists" not in str(exc.orig):
                        raise
    finally:
        admin.dispose()


def warehouse_environment(location: DatabaseLocation) -> dict[str, str]:
    """Environment variables through which loaders and dbt reach the warehouse database."""
    url = make_url(location.warehouse_url)
    return {
        "FLX_WAREHOUSE_URL": url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False),
        "FLX_WAREHOUSE_HOST": str(url.query.get("host") or url.host or "localhost"),
        "FLX_WAREHOUSE_PORT": str(url.port or 5432),
        "FLX_WAREHOUSE_USER": url.username or "postgres",
        "FLX_WAREHOUSE_PASSWORD": url.password or "",
        "FLX_WAREHOUSE_DBNAME": url.database or "warehouse",
    }
