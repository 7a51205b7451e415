"""``flx-meltano init``: add the Dagster code location files to an existing Meltano project."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated

import typer

from flx_meltano.application import scaffold
from flx_meltano.cli.context import settings
from flx_meltano.cli.output import console

_STYLES = ", ".join(scaffold.CODE_LOCATION_STYLES)


def register(app: typer.Typer) -> None:
    """Add ``init`` to the root app."""

    @app.command("init")
    def init_command(
        directory: Annotated[str, typer.Option(help="Where the files go, relative to the project.")] = str(
            scaffold.DEFAULT_DIRECTORY
        ),
        style: Annotated[
            str,
            typer.Option(help=f"How the code location is declared: {_STYLES}."),
        ] = scaffold.DEFAULT_STYLE,
    ) -> None:
        """Write the code location (a dg project, or a definitions.py), dagster.yaml and
        workspace.yaml; never overwrite, touch nothing else."""
        project_dir = settings(project=False).project_dir  # init names a missing meltano.yml itself
        files = scaffold.code_location_files(PurePosixPath(directory), style)
        written = scaffold.write_code_location(project_dir, files)  # ScaffoldError: a usage error
        for path in written:
            console.print(f"wrote {path.relative_to(project_dir)}", highlight=False)
        definitions = scaffold.code_location_file(PurePosixPath(directory), style)
        console.print(
            f"\nnext: flx-meltano ui (Dagster UI and daemon over {definitions}), or\n"
            f"      dagster definitions validate -f {definitions}",
            highlight=False,
        )
