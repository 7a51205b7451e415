"""What every command shares: the global options (-e, --debug) and the settings they make."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from flx_meltano import bootstrap
from flx_meltano.application.context import AppContext
from flx_meltano.settings import Settings

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON instead of a table.")]


@dataclass
class GlobalOptions:
    """Options given before the command (``flx-meltano -e staging --debug run ...``)."""

    environment: str | None = None
    debug: bool = False


GLOBAL = GlobalOptions()


def debugging() -> bool:
    """Whether errors show their traceback (``--debug`` or FLX_DEBUG=1)."""
    return GLOBAL.debug or os.environ.get("FLX_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def settings(*, project: bool = True) -> Settings:
    """Settings from FLX_* variables and the global options.

    With ``project`` (every command but ``db``), ProjectNotFound unless a meltano.yml is found
    first: outside a Meltano project nothing is started (the embedded server lives inside it).
    """
    values: dict[str, Any] = {"environment": GLOBAL.environment} if GLOBAL.environment else {}
    found = Settings(**values)
    if project:
        found.require_project()
    return found


@contextmanager
def app_context() -> Iterator[AppContext]:
    """An AppContext over ``settings()``, closed afterwards."""
    ctx = bootstrap.app_context(settings())
    try:
        yield ctx
    finally:
        ctx.close()
