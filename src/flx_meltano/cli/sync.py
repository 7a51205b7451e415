"""``flx-meltano sync``: record the bare ``meltano run``s of the project from Meltano's system database."""

from __future__ import annotations

import typer
from rich.markup import escape

from flx_meltano.application.context import AppContext
from flx_meltano.application.sync import MeltanoDatabaseUnreadable, SyncReport, sync_meltano_runs
from flx_meltano.cli.context import JsonOption, app_context
from flx_meltano.cli.output import console, error_console, print_json


def _as_dict(report: SyncReport) -> dict[str, object]:
    return {
        "source": report.source,
        "recorded": list(report.recorded),
        "closed": list(report.closed),
        "running": list(report.running),
        "own": list(report.own),
    }


def sync(as_json: JsonOption = False) -> None:
    """Record the `meltano run`s flx did not launch (trigger meltano), from Meltano's own records."""
    with app_context() as ctx:
        report = sync_meltano_runs(ctx)
    if as_json:
        print_json(_as_dict(report))
        return
    console.print(
        f"{len(report.recorded)} new meltano run(s) recorded, {len(report.closed)} closed, "
        f"{len(report.running)} still running, {len(report.own)} of flx's own noted "
        f"(from {escape(report.source)})",
        highlight=False,
    )
    for execution_id in report.recorded:
        console.print(f"  recorded {execution_id}", highlight=False)


def sync_before_listing(ctx: AppContext) -> None:
    """Sync before a command lists executions. Meltano's database unreadable is a warning there,
    not the command's end; a store error goes on (the listing would meet it anyway)."""
    try:
        sync_meltano_runs(ctx)
    except MeltanoDatabaseUnreadable as exc:
        error_console.print(
            f"[yellow]warning: bare meltano runs not synced: {escape(str(exc))}[/yellow]", highlight=False
        )


def register(app: typer.Typer) -> None:
    """Add ``sync`` to the ``flx-meltano`` command."""
    app.command("sync")(sync)
