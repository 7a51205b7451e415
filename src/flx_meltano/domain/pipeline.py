"""Pipeline: the aggregate root, one extract-load pair in one environment, guarding its executions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from flx_meltano.domain.errors import ExecutionAlreadyRunning, UnknownStream
from flx_meltano.domain.execution import PipelineExecution
from flx_meltano.domain.identifiers import StateId
from flx_meltano.domain.snapshots import StateRef
from flx_meltano.domain.values import Trigger


@dataclass
class Pipeline:
    """One extract-load pipeline; its id is Meltano's state id.

    ``active`` holds the executions still PENDING or RUNNING, as the repository loaded them: the
    aggregate refuses a second one unless forced, because two runs of one state id would both
    write its state.
    """

    state_id: StateId
    extractor: str
    loader: str
    mappings: tuple[str, ...] = ()
    streams: tuple[str, ...] = ()
    active: list[PipelineExecution] = field(default_factory=list)

    @property
    def id(self) -> str:
        """The pipeline id (Meltano's state id)."""
        return str(self.state_id)

    def start_execution(
        self,
        execution_id: str,
        *,
        at: datetime,
        trigger: Trigger = Trigger.MANUAL,
        streams: Iterable[str] | None = None,
        full_refresh: bool = False,
        force: bool = False,
        dagster_run_id: str | None = None,
        state_before: StateRef | None = None,
        runner_host: str | None = None,
        runner_pid: int | None = None,
        lease_seconds: float | None = None,
        partition: str | None = None,
    ) -> PipelineExecution:
        """Open a RUNNING execution; ExecutionAlreadyRunning unless none is active or ``force``."""
        running = [e for e in self.active if e.status.is_active]
        if running and not force:
            other = running[0]
            since = f" since {other.started_at:%Y-%m-%d %H:%M:%S}" if other.started_at else ""
            raise ExecutionAlreadyRunning(
                f"pipeline {self.id} already has execution {other.id} {other.status}{since}; "
                "wait for it, cancel it, or force"
            )
        chosen = tuple(streams) if streams is not None else self.streams
        if self.streams:
            unknown = sorted(set(chosen) - set(self.streams))
            if unknown:
                raise UnknownStream(
                    f"pipeline {self.id} has no stream {', '.join(map(repr, unknown))}; "
                    f"its streams are {', '.join(self.streams)}"
                )
        execution = PipelineExecution.start(
            execution_id,
            self.id,
            at=at,
            trigger=trigger,
            streams=chosen,
            full_refresh=full_refresh,
            dagster_run_id=dagster_run_id,
            state_before=state_before,
            runner_host=runner_host,
            runner_pid=runner_pid,
            lease_seconds=lease_seconds,
            partition=partition,
        )
        self.active.append(execution)
        return execution
