"""The composition root: AppContexts wired to the real adapters (PostgreSQL store, Meltano, clock)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

from flx_meltano.application.context import AppContext
from flx_meltano.application.ports import Clock, LaunchedRun, Launcher, StateStore, UnitOfWork
from flx_meltano.application.secrets import Redactor
from flx_meltano.domain.project import ProjectModel
from flx_meltano.settings import Settings

if TYPE_CHECKING:
    from flx_meltano.integration.launcher import RunRequest
    from flx_meltano.persistence.database import DatabaseLocation

# The adapters are imported when first used, not here: `flx-meltano run` spawns meltano before
# it pays for sqlalchemy, alembic or meltano.core (see integration/launcher.py's gate).


def launch_meltano(request: RunRequest) -> LaunchedRun:
    """The real launcher: ``meltano run`` under the supervisor, in JSON log mode."""
    from flx_meltano.integration.launcher import MeltanoRun

    return MeltanoRun(request)


def utc_now() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


class RealAdapters:
    """The store of ``settings`` (embedded or not), the project's Meltano state backend, meltano."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.launcher: Launcher = launch_meltano
        self.clock: Clock = utc_now

    @cached_property
    def location(self) -> DatabaseLocation:
        """Where the store and the warehouse are (starts the embedded server if needed)."""
        from flx_meltano.persistence import database

        return database.locate(self.settings)

    def store_url(self) -> str:
        """The store's URL (with its password)."""
        return self.location.store_url

    def read_project(self) -> ProjectModel:
        """meltano.yml with its include_paths and environment (no meltano process)."""
        from flx_meltano.integration.project_reader import read_project

        return read_project(self.settings.project_dir, self.settings.environment)

    def unit_of_work(self) -> UnitOfWork:
        """A SqlUnitOfWork on the store (migrated on first use in this process)."""
        from flx_meltano.persistence import database
        from flx_meltano.persistence.unit_of_work import SqlUnitOfWork

        return SqlUnitOfWork(database.ready_engine(self.location.store_url))

    def run_env(self, extra: Mapping[str, str]) -> dict[str, str]:
        """The warehouse beside the store, unless set explicitly.

        Values exported in the process environment win over the computed ones, and ``extra``
        over both. The warehouse database is created only on the embedded server, which
        flx-meltano owns; on your own server it is yours to create (``flx-meltano db env`` does).
        """
        from flx_meltano.persistence import database

        computed = database.warehouse_environment(self.location)
        if self.location.embedded and "FLX_WAREHOUSE_URL" not in extra:
            database.ensure_database_exists(self.location.warehouse_url)
        exported = {key: os.environ[key] for key in computed if os.environ.get(key)}
        return {**computed, **exported, **extra}

    def state_store(self, environment: str, env: Mapping[str, str]) -> StateStore:
        """Singer state through the project's Meltano state backend, as configured by ``env``."""
        from flx_meltano.integration.state_access import MeltanoStateStore

        # Backend errors can quote the backend URI (credentials included): mask them.
        redact = Redactor.for_plugins((), env)
        return MeltanoStateStore(self.settings.project_dir, environment, env=env, redact=redact)


def app_context(settings: Settings | None = None, env: Mapping[str, str] | None = None) -> AppContext:
    """An AppContext on the real adapters of ``settings`` (default: from FLX_* variables)."""
    settings = settings or Settings()
    return AppContext(adapters=RealAdapters(settings), settings=settings, env=dict(env or {}))


@contextmanager
def open_context(settings: Settings | None = None) -> Iterator[AppContext]:
    """An AppContext for one API call, closed afterwards."""
    ctx = app_context(settings)
    try:
        yield ctx
    finally:
        ctx.close()
