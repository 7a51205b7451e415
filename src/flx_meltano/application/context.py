"""What every use case needs: settings, and the ports it is wired to (see ``flx_meltano.bootstrap``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from flx_meltano.application.ports import Adapters, Launcher, StateStore, UnitOfWork
from flx_meltano.domain.project import ProjectModel
from flx_meltano.settings import Settings


@dataclass
class AppContext:
    """One project in one environment, with its store; cheap to create, expensive parts lazy.

    Build it with ``flx_meltano.bootstrap.app_context`` (real adapters) or over fakes in tests.
    """

    adapters: Adapters
    settings: Settings = field(default_factory=Settings)
    env: Mapping[str, str] = field(default_factory=dict)

    @cached_property
    def project(self) -> ProjectModel:
        """meltano.yml, read once (no meltano process)."""
        return self.adapters.read_project()

    @property
    def environment(self) -> str:
        """The Meltano environment in use."""
        return self.settings.environment or self.project.environment

    def unit_of_work(self) -> UnitOfWork:
        """A new unit of work on the store."""
        return self.adapters.unit_of_work()

    @cached_property
    def run_env(self) -> dict[str, str]:
        """Environment for meltano processes: the warehouse beside the store, unless set explicitly;
        values exported in the process environment win over the computed ones, ``env`` over both."""
        return self.adapters.run_env(self.env)

    @cached_property
    def state_store(self) -> StateStore:
        """Singer state through the project's configured Meltano state backend."""
        return self.adapters.state_store(self.environment, self.run_env)

    @property
    def launcher(self) -> Launcher:
        """Launches ``meltano run`` for a run request."""
        return self.adapters.launcher

    def now(self) -> datetime:
        """The time now (the adapters' clock)."""
        return self.adapters.clock()

    def store_url(self) -> str:
        """The store's URL (with its password: mask it before showing it)."""
        return self.adapters.store_url()

    def close(self) -> None:
        """Release the state backend connection."""
        if "state_store" in self.__dict__:
            self.state_store.close()
