"""``flx-meltano ui``: the Dagster UI and daemon over a Meltano project (``dagster dev``), stopped cleanly."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flx_meltano.cli.context import settings
from flx_meltano.cli.output import console


def register(app: typer.Typer) -> None:
    """Add ``ui`` to the root app."""

    @app.command("ui")
    def ui_command(
        host: Annotated[str, typer.Option("--host", help="Address the UI listens on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", "-p", help="Port of the UI.")] = 3000,
        dagster_home: Annotated[
            Path | None,
            typer.Option(
                envvar="DAGSTER_HOME", help="Dagster instance directory [default: .meltano/flx/dagster_home]."
            ),
        ] = None,
        definitions: Annotated[
            Path | None,
            typer.Option(help="Code location file [default: orchestrate/dagster/definitions.py if present]."),
        ] = None,
        stop_grace: Annotated[
            float,
            typer.Option(help="Seconds Dagster gets to stop after Ctrl-C or SIGTERM before it is killed."),
        ] = 5.0,
    ) -> None:
        """Start the Dagster UI and daemon over the project, on the flx store's PostgreSQL server."""
        from flx_meltano.application.ui import prepare_ui
        from flx_meltano.integration.process_group import run_supervised

        launch = prepare_ui(
            settings(), host=host, port=port, dagster_home=dagster_home, definitions=definitions
        )
        console.print(f"code location: {launch.code_location}", highlight=False)
        console.print(f"instance: {launch.instance_note}", highlight=False)
        console.print(
            f"Dagster UI: {launch.url}  (streams under Catalog; Ctrl-C or SIGTERM stops UI and daemon)",
            highlight=False,
        )
        code = run_supervised(launch.argv, env=launch.env, cwd=launch.cwd, grace_seconds=stop_grace)
        raise typer.Exit(code)
