"""Where the store lives: resolve its URL, create engines, apply migrations idempotently."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from flx_meltano.persistence import embedded
from flx_meltano.persistence.errors import InvalidStoreUrl, StoreUnreachable
from flx_meltano.persistence.tables import SCHEMA
from flx_meltano.settings import ProjectNotFound, Settings

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# The newest migration; a test checks it against Alembic's head. Knowing it here lets every
# process check its store with one query, without importing Alembic (0.4 s) unless it migrates.
HEAD_REVISION = "0006"
# Any constant will do: it only has to be the same in every process that migrates this store.
MIGRATION_LOCK_KEY = 0x464C58  # "FLX"
# A server that drops packets would otherwise keep a command waiting for minutes.
CONNECT_TIMEOUT_SECONDS = 10
URL_EXAMPLE = "postgresql://user:password@host:5432/database"


@dataclass(frozen=True)
class DatabaseLocation:
    """The store's URL, the warehouse URL beside it, and whether it is the embedded server."""

    store_url: str
    warehouse_url: str
    dagster_url: str
    embedded: bool


def mask_password(text: str) -> str:
    """``text`` with the password of any ``scheme://user:password@`` in it masked (parseable or not)."""
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs; InvalidStoreUrl unless it is a PostgreSQL URL."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        raise InvalidStoreUrl(
            f"FLX_DATABASE_URL {mask_password(url)!r} is not a database URL; expected {URL_EXAMPLE} "
            "(or unset it to use the embedded server)"
        ) from None
    if parsed.get_backend_name() != "postgresql":
        raise InvalidStoreUrl(
            f"FLX_DATABASE_URL {redact_url(url)!r} is a {parsed.get_backend_name()} URL; the flx store "
            f"needs PostgreSQL: {URL_EXAMPLE} (or unset it to use the embedded server)"
        )
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
    data_dir = settings.embedded_data_dir  # ProjectNotFound outside a project: nothing is started
    try:
        server = embedded.start(data_dir) if start_embedded else embedded.running(data_dir)
    except (ProjectNotFound, StoreUnreachable):
        raise
    except Exception as exc:  # pgserver, initdb or the postmaster failed: say where and why
        raise StoreUnreachable(
            f"the embedded PostgreSQL server in {data_dir} did not start: {_first_line(exc)}; "
            "try 'flx-meltano db stop && flx-meltano db start', or set FLX_DATABASE_URL"
        ) from exc
    if server is None:
        raise StoreUnreachable(
            f"the embedded PostgreSQL server in {data_dir} is not running; "
            "start it with 'flx-meltano db start'"
        )
    return DatabaseLocation(
        store_url=server.url(embedded.STORE_DATABASE),
        warehouse_url=server.url(embedded.WAREHOUSE_DATABASE),
        dagster_url=server.libpq_url(embedded.DAGSTER_DATABASE),
        embedded=True,
    )


def _first_line(exc: BaseException) -> str:
    """The first line of a (driver) error's message, without SQLAlchemy's decoration."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def unreachable(url: str, exc: BaseException, what: str = "the store") -> StoreUnreachable:
    """A driver's connection error as a StoreUnreachable naming the database (password masked)."""
    reason = mask_password(_first_line(exc))
    if "does not exist" in reason:
        way_out = "create that database on the server, or correct FLX_DATABASE_URL"
    else:
        way_out = (
            "start that PostgreSQL server, correct FLX_DATABASE_URL, or unset it to use the embedded server"
        )
    return StoreUnreachable(f"cannot reach {what} at {redact_url(url)}: {reason}; {way_out}")


@contextmanager
def reaching(url: str, what: str = "the store") -> Iterator[None]:
    """Turn the driver's connection errors inside the block into StoreUnreachable naming ``url``."""
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise unreachable(url, exc, what) from exc
    except sa.exc.NoSuchModuleError as exc:
        raise InvalidStoreUrl(
            f"the store URL {redact_url(url)} names a driver that is not installed: {_first_line(exc)}; "
            f"use {URL_EXAMPLE}"
        ) from exc


def store_error(exc: BaseException, url: str | None) -> StoreUnreachable | None:
    """An unexpected exception that is a lost or refused store connection, as a StoreUnreachable."""
    if not isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        return None
    if url is None:
        return StoreUnreachable(f"lost the connection to the store: {mask_password(_first_line(exc))}")
    return unreachable(url, exc)


@cache
def engine_for(url: str) -> Engine:
    """One pooled engine per URL and process."""
    with reaching(url):
        return sa.create_engine(
            url, pool_pre_ping=True, future=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS}
        )


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
        with reaching(url):
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
    try:
        return unquote(make_url(url).render_as_string(hide_password=True))
    except sa.exc.ArgumentError:
        return mask_password(url)


def check_store(url: str, timeout_seconds: int = 5) -> StoreHealth:
    """Connect to the store and read its migration revision, never raising."""
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": timeout_seconds})
    except Exception as exc:  # e.g. a driver that is not installed
        return StoreHealth(redact_url(url), False, mask_password(_first_line(exc)), None, HEAD_REVISION)
    try:
        current = current_revision(engine)
    except Exception as exc:  # any driver error means "not reachable"; its text is reported
        return StoreHealth(redact_url(url), False, mask_password(_first_line(exc)), None, HEAD_REVISION)
    finally:
        engine.dispose()
    return StoreHealth(redact_url(url), True, None, current, HEAD_REVISION)


def ensure_database_exists(url: str) -> None:
    """Create the database of ``url`` on its server unless it exists (racing creators are fine)."""
    target = make_url(url)
    admin = sa.create_engine(
        target.set(database="postgres"),
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
    )
    try:
        with reaching(url, f"the server of database {target.database!r}"), admin.connect() as conn:
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
