"""Alembic environment: migrations always run on a connection handed over by database.migrate."""

from __future__ import annotations

from alembic import context

from flx_meltano.persistence.tables import SCHEMA

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable through the alembic CLI
    raise RuntimeError("run migrations with flx_meltano.persistence.database.migrate()")

context.configure(connection=connection, version_table_schema=SCHEMA, include_schemas=True)
with context.begin_transaction():
    context.run_migrations()
