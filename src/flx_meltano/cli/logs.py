"""``flx-meltano logs <execution-id> [--follow]`` and ``flx-meltano logs prune``."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from typer import _click  # typer's vendored click: the type its groups' hooks take
from typer.core import TyperGroup

from flx_meltano.application import logs as logs_use_case
from flx_meltano.application.context import AppContext
from flx_meltano.application.logs import ExecutionLog, LogFilter
from flx_meltano.cli.context import JsonOption, app_context
from flx_meltano.cli.output import console, print_json
from flx_meltano.domain.logs import LogLine

SHOW = "show"
LAST_LOG_LINES = 10  # what ``flx-meltano execution <id>`` shows of the log
LEVEL_STYLE = {"debug": "dim", "warning": "yellow", "error": "red", "critical": "bold red"}


class _ExecutionIdFirst(TyperGroup):
    """``logs <execution-id> ...`` means ``logs show <execution-id> ...``; ``logs prune`` is prune."""

    def parse_args(self, ctx: _click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [SHOW, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_ExecutionIdFirst,
    help="An execution's log, as the store keeps it: 'flx-meltano logs <execution-id>'.",
    no_args_is_help=True,
)


def line_dict(line: LogLine) -> dict[str, Any]:
    """One line for JSON output."""
    return {
        "at": line.at.isoformat(),
        "level": line.level,
        "plugin": line.plugin or "meltano",
        "message": line.message,
    }


def print_line(line: LogLine) -> None:
    """One line for people: local time, level, plugin, message."""
    at = line.at.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    console.print(
        f"{at} {line.level.upper():<8} {(line.plugin or 'meltano'):<18} {line.message}",
        style=LEVEL_STYLE.get(line.level.lower()),
        markup=False,
        highlight=False,
    )


def log_dict(log: ExecutionLog) -> dict[str, Any]:
    """A whole answer for JSON output."""
    return {
        "execution_id": log.execution.id,
        "pipeline_id": log.execution.pipeline_id,
        "status": str(log.execution.status),
        "available": log.available,
        "reason": log.reason,
        "dropped_lines": log.kept.dropped_lines,
        "dropped_bytes": log.kept.dropped_bytes,
        "complete": log.kept.complete,
        "lines": [line_dict(line) for line in log.lines],
    }


def print_unavailable(log: ExecutionLog) -> None:
    """Why an execution has no log."""
    console.print(
        f"no log for execution {log.execution.id} ({log.execution.pipeline_id}): {log.reason}",
        style="yellow",
        markup=False,
        highlight=False,
    )


def show_last_lines(log: ExecutionLog) -> None:
    """The last lines of an execution's log (under ``flx-meltano execution <id>``)."""
    if not log.available:
        print_unavailable(log)
        return
    console.print(
        f"last {len(log.lines)} log lines ('flx-meltano logs {log.execution.id}' for all):",
        style="bold",
        markup=False,
        highlight=False,
    )
    for line in log.lines:
        print_line(line)


@app.command(SHOW)
def show(
    execution_id: Annotated[str, typer.Argument(help="Execution id (a unique prefix is enough).")],
    plugin: Annotated[
        str | None, typer.Option("--plugin", "-p", help="Only this plugin's lines ('meltano': its own).")
    ] = None,
    level: Annotated[
        str | None, typer.Option("--level", "-l", help="Only lines at or above: debug, info, warning, error.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only lines from then on: an instant (2026-12-01T03:12, local time) or an age (15m)."
        ),
    ] = None,
    tail: Annotated[int | None, typer.Option("--tail", "-n", help="Only the last N lines.")] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep printing new lines until the execution ends."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """An execution's log: meltano's and each plugin's lines, secrets masked."""
    query = LogFilter(
        plugin=plugin,
        level=level,
        since=logs_use_case.parse_since(since) if since else None,
        tail=tail,
    )
    with app_context() as ctx:
        if follow:
            _follow(ctx, execution_id, query, as_json)
            return
        log = logs_use_case.execution_logs(ctx, execution_id, query)
    if as_json:
        print_json(log_dict(log))
        return
    if not log.available:
        print_unavailable(log)
        return
    if log.dropped_note and query.tail is None:
        console.print(log.dropped_note, style="yellow", markup=False, highlight=False)
    for line in log.lines:
        print_line(line)


def _follow(ctx: AppContext, execution_id: str, query: LogFilter, as_json: bool) -> None:
    """Print lines as they reach the store (JSON: one object a line) until the execution ends."""
    first = logs_use_case.execution_logs(ctx, execution_id, LogFilter(tail=1))
    if not first.available:
        if as_json:
            print(json.dumps(log_dict(first)))
        else:
            print_unavailable(first)
        return
    for line in logs_use_case.follow_execution_logs(ctx, first.execution.id, query):
        if as_json:
            print(json.dumps(line_dict(line)), flush=True)
        else:
            print_line(line)
            sys.stdout.flush()


@app.command()
def prune(
    older_than: Annotated[
        str | None,
        typer.Option(
            help="Logs of executions that ended longer ago than this (30d, 12h; "
            "default FLX_LOG_RETENTION_DAYS)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Delete the logs of executions that ended longer ago than the retention."""
    age = logs_use_case.parse_age(older_than) if older_than else None
    with app_context() as ctx:
        pruned = logs_use_case.prune_logs(ctx, age)
    if as_json:
        print_json({"ended_before": pruned.ended_before, "execution_ids": pruned.execution_ids})
        return
    console.print(
        f"pruned the logs of {len(pruned.execution_ids)} execution(s) that ended before "
        f"{pruned.ended_before.astimezone():%Y-%m-%d %H:%M}",
        highlight=False,
    )


def register(root: typer.Typer) -> None:
    """Add the ``logs`` group to the root app."""
    root.add_typer(app, name="logs")
