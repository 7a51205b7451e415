"""Settings for every layer, read from FLX_* environment variables."""

from __future__ import annotations

import os
import shutil
import sys
from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def find_project_dir(start: Path) -> Path:
    """Return the nearest directory at or above ``start`` holding a meltano.yml (else ``start``)."""
    for candidate in (start, *start.parents):
        if (candidate / "meltano.yml").is_file():
            return candidate
    return start


def default_project_dir() -> Path:
    """The project Meltano named (``MELTANO_PROJECT_ROOT``, set for ``meltano invoke``), else the nearest."""
    root = os.environ.get("MELTANO_PROJECT_ROOT")
    return Path(root) if root else find_project_dir(Path.cwd())


def default_meltano_executable() -> str:
    """Prefer the meltano installed beside this Python, so a venv works without being activated."""
    beside = Path(sys.executable).with_name("meltano")
    if beside.exists():
        return str(beside)
    return shutil.which("meltano") or "meltano"


class Settings(BaseSettings):
    """What flx-meltano needs to know about where things are.

    Attributes:
        database_url: SQLAlchemy URL of the store; unset means the embedded PostgreSQL server.
        project_dir: the Meltano project (the directory holding meltano.yml); by default
            ``MELTANO_PROJECT_ROOT`` (under ``meltano invoke``), else the nearest one at or above
            the current directory.
        environment: the Meltano environment; by default ``MELTANO_ENVIRONMENT`` (which Meltano
            reads too, and sets for ``meltano --environment=... invoke``), else the project's
            default_environment.
        meltano_executable: the ``meltano`` command to run.
    """

    model_config = SettingsConfigDict(env_prefix="FLX_", extra="ignore")

    database_url: str | None = None
    project_dir: Path = Field(default_factory=default_project_dir)
    environment: str | None = Field(default_factory=lambda: os.environ.get("MELTANO_ENVIRONMENT") or None)
    meltano_executable: str = Field(default_factory=default_meltano_executable)

    @cached_property
    def embedded_data_dir(self) -> Path:
        """Where the embedded PostgreSQL server keeps its data."""
        return self.project_dir.resolve() / ".meltano" / "flx" / "pgdata"
