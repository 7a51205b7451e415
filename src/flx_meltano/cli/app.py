"""The ``flx-meltano`` command: global options, doctor, and (in submodules) everything else."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from flx_meltano.cli import catalog, db, history, init, logs, metrics, run, state, sync, ui
from flx_meltano.cli.about import version_text
from flx_meltano.cli.context import GLOBAL, JsonOption, debugging, settings
from flx_meltano.cli.errors import report
from flx_meltano.cli.output import console, print_json

if TYPE_CHECKING:
    from flx_meltano.application.doctor import Check

# Subcommands import what they use when they run (cli/*.py): `flx-meltano run` spawns meltano
# before it pays for the store's or the exporter's libraries.

app = typer.Typer(
    name="flx-meltano",
    help="Meltano projects as Dagster code locations, with a run record and Singer state history.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(catalog.app, name="catalog")
run.register(app)
history.register(app)
metrics.register(app)  # after history: makes its 'metrics' command the group 'metrics show|serve'
state.register(app)
init.register(app)
ui.register(app)
sync.register(app)
logs.register(app)


def _version(value: bool) -> None:
    if value:
        console.print(version_text(), highlight=False)
        raise typer.Exit()


@app.callback()
def root(
    environment: Annotated[
        str | None,
        typer.Option(
            "--environment",
            "-e",
            help="The Meltano environment (default: FLX_ENVIRONMENT, else the project's).",
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an error (also FLX_DEBUG=1).")
    ] = False,
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
    GLOBAL.environment = environment
    GLOBAL.debug = debug


def _mark(check: Check) -> str:
    if not check.ok:
        return "[red]FAIL[/red]"
    return "[yellow]warn[/yellow]" if check.warning else "[green]ok[/green]  "


@app.command()
def doctor(as_json: JsonOption = False) -> None:
    """Check the Meltano project, plugin installs, the meltano executable and the store."""
    from flx_meltano.application.doctor import run_doctor

    checks = run_doctor(settings(project=False))
    if as_json:
        print_json(checks)
    else:
        for check in checks:
            console.print(f"{_mark(check)} [bold]{check.name}[/bold]: {check.detail}", highlight=False)
            if (not check.ok or check.warning) and check.fix:
                console.print(f"      fix: {check.fix}", style="yellow", highlight=False)
        failed = sum(not c.ok for c in checks)
        warned = sum(c.ok and c.warning for c in checks)
        warnings = f", {warned} warning(s)" if warned else ""
        console.print(
            f"\n{len(checks) - failed} ok{warnings}, {failed} to fix"
            if failed
            else f"\nall {len(checks)} checks ok{warnings}",
            style="red" if failed else "green",
        )
    if any(not c.ok for c in checks):
        raise typer.Exit(1)


def _wants_json(args: Sequence[str]) -> bool:
    """Whether the command line asks for JSON (so that errors are JSON too, even usage errors)."""
    return "--json" in (args[: list(args).index("--")] if "--" in args else args)


def main(args: Sequence[str] | None = None) -> None:
    """Console-script entry point: every error ends here as ``error: ...`` and exit code 2 or 1."""
    argv = list(sys.argv[1:] if args is None else args)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="flx-meltano", standalone_mode=False)
    except Exception as exc:
        code = report(
            exc, as_json=_wants_json(argv), debug=debugging(), store_url=os.environ.get("FLX_DATABASE_URL")
        )
    sys.exit(code if isinstance(code, int) else 0)
