"""``flx-meltano db``: start, stop, migrate and locate the store."""

from __future__ import annotations

import shlex
from dataclasses import asdict
from typing import Annotated

import typer

from flx_meltano.cli.context import JsonOption, settings
from flx_meltano.cli.output import console, print_json

app = typer.Typer(help="The store: the embedded PostgreSQL server or FLX_DATABASE_URL.", no_args_is_help=True)


@app.command()
def start(as_json: JsonOption = False) -> None:
    """Start the embedded server (if used), create the databases and migrate the store."""
    from flx_meltano.application import database_admin  # the store's libraries: when used

    report = database_admin.start(settings(project=False))
    if as_json:
        print_json(report)
    else:
        console.print(report.summary, highlight=False)


@app.command()
def stop(as_json: JsonOption = False) -> None:
    """Stop the embedded PostgreSQL server."""
    from flx_meltano.application import database_admin  # the store's libraries: when used

    stopped = database_admin.stop(settings(project=False))
    if as_json:
        print_json({"stopped": stopped})
    else:
        console.print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")


@app.command()
def status(as_json: JsonOption = False) -> None:
    """Where the store is and whether it is reachable and migrated (exit 1 unless it is ready)."""
    from flx_meltano.application import database_admin  # the store's libraries: when used

    health = database_admin.status(settings(project=False))
    if as_json:
        print_json({**asdict(health), "ok": health.ok})
    else:
        console.print(health.summary, highlight=False)
    if not health.ok:
        raise typer.Exit(1)


@app.command()
def migrate(as_json: JsonOption = False) -> None:
    """Apply pending migrations to the store."""
    from flx_meltano.application import database_admin  # the store's libraries: when used

    report = database_admin.migrate(settings(project=False))
    if as_json:
        print_json(report)
    else:
        console.print(report.summary, highlight=False)


@app.command()
def env(
    show_secrets: Annotated[
        bool, typer.Option("--show-secrets", help="Print passwords as they are (for eval in a shell).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Shell exports for the warehouse and Dagster's storage (passwords masked unless --show-secrets)."""
    from flx_meltano.application import database_admin  # the store's libraries: when used

    values = database_admin.warehouse_environment(settings(project=False))
    shown = values if show_secrets else database_admin.masked_environment(values)
    if as_json:
        print_json(shown)
        return
    for key, value in shown.items():
        print(f"export {key}={shlex.quote(value)}")
