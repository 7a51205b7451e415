"""``flx-meltano metrics show|serve``: the group, registered without importing the exporter.

``metrics`` becomes a group without breaking ``flx-meltano metrics <pipeline>``: a first argument
that is not one of its commands is a pipeline for ``metrics show`` (a state id always has a
``:``, so it never reads as ``serve``).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

DEFAULT_PORT = 9467


def serve(
    port: Annotated[int, typer.Option(help="Port of the /metrics endpoint.")] = DEFAULT_PORT,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",  # noqa: S104 - an exporter is scraped from elsewhere
) -> None:
    """Serve Prometheus metrics of every pipeline and stream at /metrics, read from the store per scrape."""
    from flx_meltano.cli import metrics_serve  # prometheus_client and the store: only to serve

    metrics_serve.serve(port=port, host=host)


class PipelineOrCommand(TyperGroup):
    """A group whose first argument, when it names none of its commands, goes to ``show``."""

    default_command = "show"

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's own (vendored) click Context
        """Route ``metrics <pipeline> ...`` (and ``metrics --json <pipeline>``) to ``metrics show``."""
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


def register(app: typer.Typer) -> None:
    """Make the root's ``metrics`` command the ``metrics`` group: ``show`` (the old command) and ``serve``."""
    shown = [
        c for c in app.registered_commands if (c.name or getattr(c.callback, "__name__", "")) == "metrics"
    ]
    if len(shown) != 1:
        raise RuntimeError("flx-meltano metrics serve: register it after the 'metrics' command")
    [show] = shown
    app.registered_commands.remove(show)
    show.name = "show"
    group = typer.Typer(
        cls=PipelineOrCommand,
        no_args_is_help=True,
        help="Per-stream figures of one pipeline (metrics PIPELINE, i.e. metrics show PIPELINE), "
        "or a Prometheus exporter over the store (metrics serve).",
    )
    group.registered_commands.append(show)
    group.command("serve")(serve)
    app.add_typer(group, name="metrics")
