"""``flx-meltano db``: start, stop, migrate and locate the store."""

from __future__ import annotations

import typer

from flx_meltano.application import database_admin
from flx_meltano.cli.output import console
from flx_meltano.settings import Settings

app = typer.Typer(help="The store: the embedded PostgreSQL server or FLX_DATABASE_URL.", no_args_is_help=True)


@app.command()
def start() -> None:
    """Start the embedded server (if used), create the databases and migrate the store."""
    summary = database_admin.start(Settings())
    console.print(summary, highlight=False)


@app.command()
def stop() -> None:
    """Stop the embedded PostgreSQL server."""
    stopped = database_admin.stop(Settings())
    console.print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")


@app.command()
def status() -> None:
    """Where the store is and whether it is reachable and migrated."""
    health = database_admin.status(Settings())
    console.print(health, highlight=False)
    if not health.startswith("ok"):
        raise typer.Exit(1)


@app.command()
def migrate() -> None:
    """Apply pending migrations to the store."""
    console.print(database_admin.migrate(Settings()))


@app.command()
def env() -> None:
    """Print shell exports for the warehouse (for a bare ``meltano run`` into target-postgres)."""
    for key, value in database_admin.warehouse_environment(Settings()).items():
        print(f"export {key}='{value}'")
