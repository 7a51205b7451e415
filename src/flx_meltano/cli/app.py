"""The ``flx-meltano`` command: version, doctor, database and (in submodules) everything else."""

from __future__ import annotations

from typing import Annotated

import typer

from flx_meltano.application.doctor import run_doctor
from flx_meltano.cli import catalog, db, init, metrics_serve, runs, state, ui
from flx_meltano.cli.about import version_text
from flx_meltano.cli.output import console, print_json
from flx_meltano.settings import Settings

app = typer.Typer(
    name="flx-meltano",
    help="Meltano projects as Dagster code locations, with a run record and Singer state history.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(catalog.app, name="catalog")
runs.register(app)
metrics_serve.register(app)  # after runs: makes its 'metrics' command the group 'metrics show|serve'
state.register(app)
init.register(app)
ui.register(app)


def _version(value: bool) -> None:
    if value:
        console.print(version_text(), highlight=False)
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Print flx-meltano's, Meltano's and Dagster's versions and exit.",
        ),
    ] = False,
) -> None:
    """flx-meltano."""


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Check the Meltano project, plugin installs, the meltano executable and the store."""
    checks = run_doctor(Settings())
    if as_json:
        print_json(checks)
    else:
        for check in checks:
            mark = "[green]ok[/green]  " if check.ok else "[red]FAIL[/red]"
            console.print(f"{mark} [bold]{check.name}[/bold]: {check.detail}", highlight=False)
            if not check.ok and check.fix:
                console.print(f"      fix: {check.fix}", style="yellow", highlight=False)
        failed = sum(not c.ok for c in checks)
        console.print(
            f"\n{len(checks) - failed} ok, {failed} to fix" if failed else f"\nall {len(checks)} checks ok",
            style="red" if failed else "green",
        )
    if any(not c.ok for c in checks):
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point."""
    app()
