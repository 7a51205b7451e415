"""Settings for every layer, read from FLX_* environment variables."""

from __future__ import annotations

import os
import shutil
import sys
from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from flx_meltano.errors import UsageError


class ProjectNotFound(UsageError):
    """No meltano.yml where flx-meltano looked: nothing that needs the project may start."""


def find_project_dir(start: Path) -> Path:
    """Return the nearest directory at or above ``start`` holding a meltano.yml (else ``start``).

    ``Settings.require_project`` refuses the fallback, so nothing runs outside a project.
    """
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
        log_max_bytes: the most of one execution's log the store keeps (raw bytes, before
            compression); beyond it the oldest lines are dropped, the newest always kept, and the
            log says how much was dropped (``FLX_LOG_MAX_BYTES``).
        log_retention_days: ``flx-meltano logs prune`` deletes the logs of executions that ended
            longer ago than this (``FLX_LOG_RETENTION_DAYS``).
        heartbeat_seconds: how often a runner renews its execution's lease while meltano runs.
        lease_seconds: how long an execution stays alive without a heartbeat; after that the crash
            reconciler may close it (from any host). Keep it well above ``heartbeat_seconds``.
        store_retry_seconds: when the store is unreachable as a run ends, how long the runner keeps
            retrying to write the record before it leaves the execution to the reconciler.
    """

    model_config = SettingsConfigDict(env_prefix="FLX_", extra="ignore")

    database_url: str | None = None
    project_dir: Path = Field(default_factory=default_project_dir)
    environment: str | None = Field(default_factory=lambda: os.environ.get("MELTANO_ENVIRONMENT") or None)
    meltano_executable: str = Field(default_factory=default_meltano_executable)
    log_max_bytes: int = Field(default=64 * 1024 * 1024, ge=4096)
    log_retention_days: float = Field(default=30, gt=0)
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    lease_seconds: float = Field(default=60.0, gt=0)
    store_retry_seconds: float = Field(default=120.0, ge=0)

    def require_project(self) -> Path:
        """The project directory; ProjectNotFound unless it holds a meltano.yml.

        Called before anything that needs the project (reading meltano.yml, the embedded server
        under ``.meltano/``): run outside a project, flx-meltano starts nothing there.
        """
        if (self.project_dir / "meltano.yml").is_file():
            return self.project_dir
        if "project_dir" in self.model_fields_set:
            raise ProjectNotFound(
                f"no meltano.yml in {self.project_dir} (given as the project directory, e.g. by "
                "FLX_PROJECT_DIR); point it at the directory holding meltano.yml"
            )
        raise ProjectNotFound(
            f"no meltano.yml in {self.project_dir} or its parents; run flx-meltano inside a Meltano "
            "project, or set FLX_PROJECT_DIR"
        )

    @cached_property
    def embedded_data_dir(self) -> Path:
        """Where the embedded PostgreSQL server keeps its data (inside the project only)."""
        return self.require_project().resolve() / ".meltano" / "flx" / "pgdata"
