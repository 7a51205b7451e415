"""Migrations: the constant head matches Alembic's, and migrating is idempotent and concurrent-safe."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from flx_meltano.persistence import database


def test_the_known_head_is_alembics_head():
    assert database.head_revision() == database.HEAD_REVISION


def test_migrating_from_many_threads_at_once_is_safe(server):
    import psycopg

    name = "flx_test_migrate_race"
    with psycopg.connect(server.admin_conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server.url(name)
    try:
        engines = [sa.create_engine(url) for _ in range(4)]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(database.migrate, engines))
        assert database.current_revision(engines[0]) == database.HEAD_REVISION
        for engine in engines:
            engine.dispose()
    finally:
        database.engine_for.cache_clear()
        with psycopg.connect(server.admin_conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
