"""``flx-meltano catalog``: discover an extractor's streams once and cache them."""

from __future__ import annotations

from typing import Annotated

import typer

from flx_meltano.cli.context import JsonOption, app_context
from flx_meltano.cli.output import print_json, print_table

app = typer.Typer(help="Stream catalogs of extractors (cached discovery).", no_args_is_help=True)


@app.command()
def refresh(
    extractor: Annotated[list[str] | None, typer.Argument(help="Extractors (default: all).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Run discovery through meltano and cache the stream names."""
    with app_context() as ctx:
        from flx_meltano.application.catalog import refresh_catalog

        rows = refresh_catalog(ctx, extractor or None)
    if as_json:
        print_json({name: list(streams) for name, streams in rows.items()})
        return
    print_table(
        "discovered streams", ["extractor", "streams"], [[name, ", ".join(s)] for name, s in rows.items()]
    )
