"""What every use case needs, built lazily from Settings: project, store, state access, run env."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

from flx_meltano.application.secrets import Redactor
from flx_meltano.domain.project import ProjectModel
from flx_meltano.integration.project_reader import read_project
from flx_meltano.integration.state_access import MeltanoStateStore
from flx_meltano.persistence import database
from flx_meltano.persistence.unit_of_work import SqlUnitOfWork
from flx_meltano.settings import Settings


@dataclass
class AppContext:
    """One project in one environment, with its store; cheap to create, expensive parts lazy."""

    settings: Settings = field(default_factory=Settings)
    env: Mapping[str, str] = field(default_factory=dict)

    @cached_property
    def project(self) -> ProjectModel:
        """meltano.yml, read once (no meltano process)."""
        return read_project(self.settings.project_dir, self.settings.environment)

    @property
    def environment(self) -> str:
        """The Meltano environment in use."""
        return self.settings.environment or self.project.environment

    @cached_property
    def location(self) -> database.DatabaseLocation:
        """Where the store and the warehouse are (starts the embedded server if needed)."""
        return database.locate(self.settings)

    def unit_of_work(self) -> SqlUnitOfWork:
        """A new unit of work on the store (migrated on first use in this process)."""
        return SqlUnitOfWork(database.ready_engine(self.location.store_url))

    @cached_property
    def run_env(self) -> dict[str, str]:
        """Environment for meltano processes: the warehouse beside the store, unless set explicitly.

        Values exported in the process environment win over the computed ones, and the caller's
        ``env`` over both. The warehouse database is created only on the embedded server, which
        flx-meltano owns; on your own server it is yours to create (``flx-meltano db env`` does).
        """
        computed = database.warehouse_environment(self.location)
        if self.location.embedded and "FLX_WAREHOUSE_URL" not in self.env:
            database.ensure_database_exists(self.location.warehouse_url)
        exported = {key: os.environ[key] for key in computed if os.environ.get(key)}
        return {**computed, **exported, **self.env}

    @cached_property
    def state_store(self) -> MeltanoStateStore:
        """Singer state through the project's configured Meltano state backend."""
        env = self.run_env
        # Backend errors can quote the backend URI (credentials included): mask them.
        redact = Redactor.for_plugins((), env)
        return MeltanoStateStore(self.settings.project_dir, self.environment, env=env, redact=redact)

    def close(self) -> None:
        """Release the state backend connection."""
        if "state_store" in self.__dict__:
            self.state_store.close()


@contextmanager
def open_context(settings: Settings | None = None) -> Iterator[AppContext]:
    """An AppContext for one API call, closed afterwards."""
    ctx = AppContext(settings=settings or Settings())
    try:
        yield ctx
    finally:
        ctx.close()
