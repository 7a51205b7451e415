"""The one place errors become output: ``error: ...`` on stderr, JSON with --json, exit 2 or 1."""

from __future__ import annotations

import json
import sys
import traceback

import typer
from rich.markup import escape

from flx_meltano.cli.output import error_console
from flx_meltano.errors import FAILURE_EXIT_CODE, USAGE_EXIT_CODE, FlxError, exit_code

INTERNAL = "InternalError"


def _with_notes(error: BaseException) -> str:
    """The message and every note added on the way up (e.g. how recording the outcome failed)."""
    return "\n".join([str(error), *getattr(error, "__notes__", ())]).strip()


def describe(error: Exception, store_url: str | None = None) -> tuple[str, str, int]:
    """(type, message, exit code) of an error that reached the command line."""
    if isinstance(error, FlxError):
        return type(error).__name__, _with_notes(error), exit_code(error)
    if isinstance(error, typer.TyperException):  # typer's (vendored click's) own errors
        message = error.format_message()
        usage = error.exit_code == USAGE_EXIT_CODE  # click's UsageError and its subclasses
        context = getattr(error, "ctx", None)
        if usage and context is not None:
            message += f"\nsee '{context.command_path} --help'"
        return ("UsageError" if usage else type(error).__name__), message, error.exit_code
    if isinstance(error, typer.Abort):  # e.g. no answer to a confirmation
        return "Aborted", "aborted: nothing was changed", FAILURE_EXIT_CODE
    from flx_meltano.persistence.database import mask_password, store_error  # only for errors

    lost = store_error(error, store_url)
    if lost is not None:
        return type(lost).__name__, _with_notes(lost), exit_code(lost)
    text = mask_password(_with_notes(error)) or type(error).__name__
    return (
        INTERNAL,
        f"unexpected {type(error).__name__}: {text}\n"
        "this is a bug in flx-meltano: run again with --debug (or FLX_DEBUG=1) for the traceback",
        FAILURE_EXIT_CODE,
    )


def report(error: Exception, *, as_json: bool, debug: bool, store_url: str | None = None) -> int:
    """Print ``error`` for people (stderr) and, with --json, for scripts (stdout); its exit code."""
    if isinstance(error, typer.TyperException) and type(error).__name__ == "NoArgsIsHelpError":
        error_console.print(escape(error.format_message()), highlight=False)  # a group without a command
        return USAGE_EXIT_CODE
    kind, message, code = describe(error, store_url)
    if debug:
        traceback.print_exception(error, file=sys.stderr)
    if as_json:
        print(json.dumps({"error": {"type": kind, "message": message}}, indent=2))
    first, *rest = message.splitlines() or [""]
    error_console.print(f"[red]error:[/red] {escape(first)}", highlight=False)
    for line in rest:
        error_console.print(f"  {escape(line)}", highlight=False)
    return code or FAILURE_EXIT_CODE
