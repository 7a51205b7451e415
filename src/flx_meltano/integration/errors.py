"""Errors of the anti-corruption layer, each naming the file, line, plugin or state id at fault."""

from __future__ import annotations

from flx_meltano.errors import FlxError, UsageError


class IntegrationError(FlxError):
    """Base class of errors raised while talking to Meltano or Singer."""


class ProjectError(IntegrationError):
    """meltano.yml (or a file it includes) is broken; the message starts with ``file:line``."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None) -> None:
        self.file = file
        self.line = line
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(f"{where}{message}")


class UnknownEnvironment(ProjectError, UsageError):
    """The environment asked for (-e, FLX_ENVIRONMENT) is not one meltano.yml defines."""


class StateAccessError(IntegrationError):
    """Reading or writing a state id through Meltano failed."""


class LaunchError(IntegrationError):
    """``meltano`` could not be started."""
