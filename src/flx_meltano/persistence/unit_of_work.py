"""Unit of work: one connection and transaction, with every repository bound to it."""

from __future__ import annotations

from types import TracebackType

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from flx_meltano.persistence.event_store import EventStore
from flx_meltano.persistence.execution_repository import ExecutionRepository
from flx_meltano.persistence.log_repository import ExecutionLogRepository
from flx_meltano.persistence.meltano_run_repository import MeltanoRunRepository
from flx_meltano.persistence.pipeline_repository import PipelineRepository
from flx_meltano.persistence.snapshot_repository import SnapshotRepository


class SqlUnitOfWork:
    """``with SqlUnitOfWork(engine) as uow: ...; uow.commit()`` — rolled back unless committed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._connection: sa.Connection | None = None
        self._transaction: sa.RootTransaction | None = None

    def __enter__(self) -> SqlUnitOfWork:
        self._connection = self.engine.connect()
        self._transaction = self._connection.begin()
        self.events = EventStore(self._connection)
        self.executions = ExecutionRepository(self._connection, self.events)
        self.pipelines = PipelineRepository(self._connection, self.executions)
        self.snapshots = SnapshotRepository(self._connection, self.events)
        self.meltano_runs = MeltanoRunRepository(self._connection)
        self.logs = ExecutionLogRepository(self._connection)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._transaction is not None and self._transaction.is_active:
            self._transaction.rollback()
        if self._connection is not None:
            self._connection.close()
        self._connection = self._transaction = None

    def commit(self) -> None:
        """Make everything written in this unit of work durable, atomically."""
        assert self._transaction is not None, "commit outside 'with'"
        self._transaction.commit()
        assert self._connection is not None
        self._transaction = self._connection.begin()

    def rollback(self) -> None:
        """Discard everything written since the last commit."""
        assert self._transaction is not None
        assert self._connection is not None
        self._transaction.rollback()
        self._transaction = self._connection.begin()
