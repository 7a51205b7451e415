"""PipelineExecution: one run of a pipeline, whose every change is a recorded domain event."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flx_meltano.domain.errors import IllegalTransition
from flx_meltano.domain.events import (
    ExecutionCancelled,
    ExecutionCrashed,
    ExecutionEvent,
    ExecutionFailed,
    ExecutionStarted,
    ExecutionSucceeded,
    StreamSynced,
)
from flx_meltano.domain.snapshots import StateRef
from flx_meltano.domain.values import Duration, ExecutionStatus, StreamStatus, Trigger

# Every warning that flags a run's new state as a regression starts with this; other warnings
# (e.g. unknown record counts) say something about the run, not about its state.
REGRESSION_WARNING = "state regression:"


@dataclass(frozen=True)
class StreamResult:
    """How one stream of an execution went."""

    stream: str
    records: int | None  # None: no plugin reported a count for the stream (never a guessed 0)
    status: StreamStatus
    duration: Duration | None = None
    bookmark: Any = None
    finished_at: datetime | None = None


@dataclass
class PipelineExecution:
    """One run of one pipeline. Build it with ``start`` or ``replay``; never set fields directly."""

    id: str
    pipeline_id: str = ""
    status: ExecutionStatus = ExecutionStatus.PENDING
    trigger: Trigger = Trigger.MANUAL
    started_at: datetime | None = None
    ended_at: datetime | None = None
    streams: tuple[str, ...] = ()
    full_refresh: bool = False
    partition: str | None = None
    dagster_run_id: str | None = None
    runner_host: str | None = None
    runner_pid: int | None = None
    # The runner's lease: it heartbeats while meltano runs; the execution is alive while the last
    # heartbeat is younger than lease_seconds (None: an older runner without a lease).
    lease_seconds: float | None = None
    heartbeat_at: datetime | None = None
    state_before: StateRef | None = None
    state_after: StateRef | None = None
    error: str | None = None
    failed_plugin: str | None = None
    exit_code: int | None = None
    warnings: tuple[str, ...] = ()
    results: dict[str, StreamResult] = field(default_factory=dict)
    version: int = 0
    pending_events: list[ExecutionEvent] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        execution_id: str,
        pipeline_id: str,
        *,
        at: datetime,
        trigger: Trigger = Trigger.MANUAL,
        streams: Iterable[str] = (),
        full_refresh: bool = False,
        dagster_run_id: str | None = None,
        state_before: StateRef | None = None,
        runner_host: str | None = None,
        runner_pid: int | None = None,
        lease_seconds: float | None = None,
        partition: str | None = None,
    ) -> PipelineExecution:
        """A new RUNNING execution (prefer ``Pipeline.start_execution``, which guards overlap)."""
        execution = cls(id=execution_id)
        execution._record(
            ExecutionStarted(
                execution_id=execution_id,
                at=at,
                pipeline_id=pipeline_id,
                trigger=str(trigger),
                streams=tuple(streams),
                full_refresh=full_refresh,
                dagster_run_id=dagster_run_id,
                state_before=state_before,
                runner_host=runner_host,
                runner_pid=runner_pid,
                lease_seconds=lease_seconds,
                partition=partition,
            )
        )
        return execution

    @classmethod
    def replay(cls, events: Iterable[ExecutionEvent]) -> PipelineExecution:
        """Rebuild an execution from its stored events."""
        execution: PipelineExecution | None = None
        for event in events:
            if execution is None:
                execution = cls(id=event.execution_id)
            execution._apply(event)
            execution.version += 1
        if execution is None:
            raise ValueError("cannot replay an execution from no events")
        return execution

    @property
    def duration(self) -> Duration | None:
        """From start to end (None while running)."""
        if self.started_at is None or self.ended_at is None:
            return None
        return Duration.between(self.started_at, self.ended_at)

    def lease_expired(self, now: datetime) -> bool | None:
        """Whether the runner's lease ran out by ``now`` (None: the execution has no lease)."""
        if self.lease_seconds is None or self.heartbeat_at is None:
            return None
        return (now - self.heartbeat_at).total_seconds() > self.lease_seconds

    @property
    def records(self) -> int | None:
        """Records synced over all streams; None when the count of any stream is unknown, or when
        an execution that did not succeed has no stream result at all (a crashed runner's: what it
        loaded is not known, and 0 would be false)."""
        counts = [result.records for result in self.results.values()]
        if not counts and self.status is not ExecutionStatus.SUCCEEDED:
            return None
        if any(count is None for count in counts):
            return None
        return sum(count for count in counts if count is not None)

    @property
    def regression_warnings(self) -> tuple[str, ...]:
        """The warnings that flag the new state as a regression (see ``REGRESSION_WARNING``)."""
        return tuple(w for w in self.warnings if w.startswith(REGRESSION_WARNING))

    def record_stream(self, result: StreamResult, *, at: datetime) -> None:
        """Record one stream's outcome while the execution runs."""
        if self.status is not ExecutionStatus.RUNNING:
            raise IllegalTransition(
                f"execution {self.id} is {self.status}; stream results can only be added while RUNNING"
            )
        self._record(
            StreamSynced(
                execution_id=self.id,
                at=at,
                stream=result.stream,
                records=result.records,
                status=str(result.status),
                duration_seconds=result.duration.seconds if result.duration else None,
                bookmark=result.bookmark,
            )
        )

    def succeed(
        self,
        *,
        at: datetime,
        state_after: StateRef | None = None,
        warnings: Iterable[str] = (),
    ) -> None:
        """Close the execution as SUCCEEDED."""
        self.status.check_transition(ExecutionStatus.SUCCEEDED)
        self._record(ExecutionSucceeded(self.id, at, state_after=state_after, warnings=tuple(warnings)))

    def fail(
        self,
        error: str,
        *,
        at: datetime,
        failed_plugin: str | None = None,
        exit_code: int | None = None,
        state_after: StateRef | None = None,
        warnings: Iterable[str] = (),
    ) -> None:
        """Close the execution as FAILED, naming the plugin and error."""
        self.status.check_transition(ExecutionStatus.FAILED)
        self._record(
            ExecutionFailed(
                self.id,
                at,
                error=error,
                failed_plugin=failed_plugin,
                exit_code=exit_code,
                state_after=state_after,
                warnings=tuple(warnings),
            )
        )

    def cancel(
        self,
        *,
        at: datetime,
        reason: str = "cancelled",
        state_after: StateRef | None = None,
    ) -> None:
        """Close the execution as CANCELLED."""
        self.status.check_transition(ExecutionStatus.CANCELLED)
        self._record(ExecutionCancelled(self.id, at, reason=reason, state_after=state_after))

    def crash(self, reason: str, *, at: datetime, state_after: StateRef | None = None) -> None:
        """Close an execution whose process died as CRASHED (with the state its load left)."""
        self.status.check_transition(ExecutionStatus.CRASHED)
        self._record(ExecutionCrashed(self.id, at, reason=reason, state_after=state_after))

    def refer_state_after(self, state_after: StateRef) -> None:
        """Give the pending close event the state it ended with, once that state is stored (the
        outcome is decided before the store is reached, so it rides out a store outage)."""
        closing = self.pending_events[-1] if self.pending_events else None
        closes = ExecutionSucceeded | ExecutionFailed | ExecutionCancelled | ExecutionCrashed
        if not isinstance(closing, closes):
            raise IllegalTransition(f"execution {self.id}: no pending close to give a state after")
        self.pending_events[-1] = dataclasses.replace(closing, state_after=state_after)
        self.state_after = state_after

    def _record(self, event: ExecutionEvent) -> None:
        self._apply(event)
        self.pending_events.append(event)

    def _apply(self, event: ExecutionEvent) -> None:
        # Every field of the execution is derived here, so replaying the events reproduces it.
        if isinstance(event, ExecutionStarted):
            self.pipeline_id = event.pipeline_id
            self.status = ExecutionStatus.RUNNING
            self.trigger = Trigger(event.trigger)
            self.started_at = event.at
            self.streams = tuple(event.streams)
            self.full_refresh = event.full_refresh
            self.dagster_run_id = event.dagster_run_id
            self.state_before = event.state_before
            self.runner_host = event.runner_host
            self.runner_pid = event.runner_pid
            self.lease_seconds = event.lease_seconds
            self.heartbeat_at = event.at  # the lease starts with the execution
            self.partition = event.partition
        elif isinstance(event, StreamSynced):
            self.results[event.stream] = StreamResult(
                stream=event.stream,
                records=event.records,
                status=StreamStatus(event.status),
                duration=Duration(event.duration_seconds) if event.duration_seconds is not None else None,
                bookmark=event.bookmark,
                finished_at=event.at,
            )
        elif isinstance(event, ExecutionSucceeded):
            self._close(ExecutionStatus.SUCCEEDED, event.at)
            self.state_after = event.state_after
            self.warnings = tuple(event.warnings)
        elif isinstance(event, ExecutionFailed):
            self._close(ExecutionStatus.FAILED, event.at)
            self.error = event.error
            self.failed_plugin = event.failed_plugin
            self.exit_code = event.exit_code
            self.state_after = event.state_after
            self.warnings = tuple(event.warnings)
        elif isinstance(event, ExecutionCancelled):
            self._close(ExecutionStatus.CANCELLED, event.at)
            self.error = event.reason
            self.state_after = event.state_after
        elif isinstance(event, ExecutionCrashed):
            self._close(ExecutionStatus.CRASHED, event.at)
            self.error = event.reason
            self.state_after = event.state_after

    def _close(self, status: ExecutionStatus, at: datetime) -> None:
        self.status = status
        self.ended_at = at
