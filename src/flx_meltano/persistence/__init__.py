"""Persistence: the PostgreSQL store (tables, repositories, unit of work, migrations, embedded server)."""
