"""In-memory adapters for the application's ports: unit of work, state store, a replaying launcher."""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from flx_meltano.application.context import AppContext
from flx_meltano.application.ports import LaunchedRun
from flx_meltano.domain.events import DomainEvent, StateSnapshotTaken
from flx_meltano.domain.execution import PipelineExecution, StreamResult
from flx_meltano.domain.history import ExecutionFilter
from flx_meltano.domain.identifiers import StateId
from flx_meltano.domain.pipeline import Pipeline
from flx_meltano.domain.project import ProjectModel
from flx_meltano.domain.snapshots import SnapshotReason, StateSnapshot
from flx_meltano.domain.state import SingerState
from flx_meltano.domain.values import ExecutionStatus
from flx_meltano.integration.launcher import RunRequest
from flx_meltano.integration.run_events import RunEvent, parse_line
from flx_meltano.persistence.errors import ConcurrencyConflict, NotFound
from flx_meltano.settings import Settings

MELTANO_LOGS = Path(__file__).parent / "fixtures" / "meltano_logs"


@dataclass
class StoreData:
    """What an in-memory store holds (committed, or one unit of work's working copy)."""

    executions: dict[str, PipelineExecution] = field(default_factory=dict)
    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    snapshots: dict[int, StateSnapshot] = field(default_factory=dict)
    events: dict[str, list[DomainEvent]] = field(default_factory=dict)
    next_snapshot_id: int = 1


def _newest_first(executions: Sequence[PipelineExecution]) -> list[PipelineExecution]:
    return sorted(executions, key=lambda e: (e.started_at, e.id), reverse=True)


class InMemoryExecutionRepository:
    """ExecutionRepository on a StoreData; executions are copied in and out, as rows would be."""

    def __init__(self, data: StoreData) -> None:
        self.data = data

    def save(self, execution: PipelineExecution) -> None:
        pending = execution.pending_events
        if not pending:
            return
        stream = self.data.events.setdefault(f"execution-{execution.id}", [])
        if len(stream) != execution.version:
            raise ConcurrencyConflict(f"execution-{execution.id} is at version {len(stream)}")
        stream.extend(pending)
        execution.version = len(stream)
        execution.pending_events = []
        self.data.executions[execution.id] = copy.deepcopy(execution)

    def get(self, execution_id: str, *, for_update: bool = False) -> PipelineExecution:
        if execution_id not in self.data.executions:
            raise NotFound(f"no execution {execution_id!r}")
        return copy.deepcopy(self.data.executions[execution_id])

    def find(self, prefix: str) -> PipelineExecution:
        found = [i for i in self.data.executions if i.startswith(prefix)]
        if not found:
            raise NotFound(f"no execution {prefix!r}")
        if len(found) > 1:
            raise NotFound(f"execution id prefix {prefix!r} is ambiguous; give more characters")
        return self.get(found[0])

    def history(self, query: ExecutionFilter) -> list[PipelineExecution]:
        chosen = [
            e
            for e in self.data.executions.values()
            if (not query.pipeline_id or e.pipeline_id == query.pipeline_id)
            and (not query.status or e.status is query.status)
            and (not query.since or e.started_at >= query.since)
        ]
        return [copy.deepcopy(e) for e in _newest_first(chosen)[: query.limit]]

    def history_of(self, pipeline_id: str, limit: int = 20) -> list[PipelineExecution]:
        return self.history(ExecutionFilter(pipeline_id=pipeline_id, limit=limit))

    def active(self, pipeline_id: str | None = None) -> list[PipelineExecution]:
        return [
            copy.deepcopy(e)
            for e in self.data.executions.values()
            if e.status in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)
            and (not pipeline_id or e.pipeline_id == pipeline_id)
        ]

    def last_by_pipeline(self) -> dict[str, PipelineExecution]:
        last: dict[str, PipelineExecution] = {}
        for execution in reversed(_newest_first(list(self.data.executions.values()))):
            last[execution.pipeline_id] = copy.deepcopy(execution)
        return last

    def last_success_by_pipeline(self) -> dict[str, datetime]:
        ended: dict[str, datetime] = {}
        for e in self.data.executions.values():
            if e.status is ExecutionStatus.SUCCEEDED and e.ended_at is not None:
                ended[e.pipeline_id] = max(e.ended_at, ended.get(e.pipeline_id, e.ended_at))
        return ended

    def stream_metrics(
        self, pipeline_id: str, stream: str | None = None, limit: int = 100
    ) -> list[tuple[datetime, str, str, StreamResult]]:
        rows = [
            (e.started_at, e.id, str(e.status), result)
            for e in _newest_first([e for e in self.data.executions.values() if e.pipeline_id == pipeline_id])
            for _, result in sorted(e.results.items())
            if stream is None or result.stream == stream
        ]
        return rows[:limit]


class InMemoryPipelineRepository:
    """PipelineRepository on a StoreData (``lock`` loads the active executions, as the real one)."""

    def __init__(self, data: StoreData, executions: InMemoryExecutionRepository) -> None:
        self.data = data
        self.executions = executions

    def register(self, pipeline: Pipeline, definition: dict[str, Any] | None = None) -> None:
        self.data.pipelines[pipeline.id] = Pipeline(
            state_id=pipeline.state_id,
            extractor=pipeline.extractor,
            loader=pipeline.loader,
            mappings=pipeline.mappings,
            streams=pipeline.streams,
        )

    def lock(self, pipeline: Pipeline) -> Pipeline:
        self.register(pipeline)
        pipeline.active = self.executions.active(pipeline.id)
        return pipeline

    def all(self) -> list[Pipeline]:
        return [copy.deepcopy(p) for _, p in sorted(self.data.pipelines.items())]


class InMemorySnapshotRepository:
    """SnapshotRepository on a StoreData, with a StateSnapshotTaken event per snapshot."""

    def __init__(self, data: StoreData) -> None:
        self.data = data

    def append_state_events(
        self, state_id: str, new_events: Sequence[Any], version: int | None = None
    ) -> None:
        self.data.events.setdefault(f"state-{state_id}", []).extend(new_events)

    def add(
        self,
        state_id: str,
        state: SingerState,
        *,
        reason: SnapshotReason,
        at: datetime,
        label: str | None = None,
        execution_id: str | None = None,
    ) -> StateSnapshot:
        [snapshot] = self.add_many(
            {state_id: state}, reason=reason, at=at, label=label, execution_id=execution_id
        )
        return snapshot

    def add_many(
        self,
        states: Mapping[str, SingerState],
        *,
        reason: SnapshotReason,
        at: datetime,
        label: str | None = None,
        execution_id: str | None = None,
    ) -> list[StateSnapshot]:
        taken = []
        for state_id, state in sorted(states.items()):
            snapshot_id = self.data.next_snapshot_id
            self.data.next_snapshot_id += 1
            snapshot = StateSnapshot(
                snapshot_id, state_id, at, reason, state.checksum, state, label, execution_id
            )
            self.data.snapshots[snapshot_id] = snapshot
            event = StateSnapshotTaken(
                state_id,
                at,
                snapshot_id=snapshot_id,
                reason=str(reason),
                checksum=state.checksum,
                label=label,
            )
            self.append_state_events(state_id, [event])
            taken.append(snapshot)
        return taken

    def get(self, snapshot_id: int) -> StateSnapshot:
        if snapshot_id not in self.data.snapshots:
            raise NotFound(f"no snapshot {snapshot_id}")
        return self.data.snapshots[snapshot_id]

    def latest(self, state_id: str) -> StateSnapshot | None:
        found = self.list(state_id, limit=1)
        return found[0] if found else None

    def latest_checksums(self, state_ids: Sequence[str] | None = None) -> dict[str, str]:
        newest: dict[str, str] = {}
        for snapshot in reversed(self.list()):
            if state_ids is None or snapshot.state_id in state_ids:
                newest[snapshot.state_id] = snapshot.checksum
        return newest

    def list(
        self,
        state_id: str | None = None,
        *,
        since: datetime | None = None,
        label: str | None = None,
        limit: int | None = None,
    ) -> list[StateSnapshot]:
        chosen = sorted(
            (
                s
                for s in self.data.snapshots.values()
                if (not state_id or s.state_id == state_id)
                and (not since or s.taken_at >= since)
                and (not label or s.label == label)
            ),
            key=lambda s: (s.taken_at, s.id),
            reverse=True,
        )
        return chosen[:limit] if limit else chosen

    def delete(self, snapshot_ids: Sequence[int]) -> int:
        gone = [i for i in snapshot_ids if self.data.snapshots.pop(i, None) is not None]
        return len(gone)


class InMemoryStore:
    """The committed data shared by every unit of work of one fake store."""

    def __init__(self) -> None:
        self.data = StoreData()
        self.commits = 0

    def unit_of_work(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self)


class InMemoryUnitOfWork:
    """UnitOfWork on a working copy of an InMemoryStore's data; ``commit`` publishes it atomically."""

    def __init__(self, store: InMemoryStore) -> None:
        self.store = store
        self._data: StoreData | None = None

    def _begin(self) -> None:
        self._data = copy.deepcopy(self.store.data)
        self.executions = InMemoryExecutionRepository(self._data)
        self.pipelines = InMemoryPipelineRepository(self._data, self.executions)
        self.snapshots = InMemorySnapshotRepository(self._data)

    def __enter__(self) -> Self:
        self._begin()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._data = None

    def commit(self) -> None:
        assert self._data is not None, "commit outside 'with'"
        self.store.data = copy.deepcopy(self._data)
        self.store.commits += 1

    def rollback(self) -> None:
        assert self._data is not None
        self._begin()


class InMemoryStateStore:
    """StateStore over a dict (Meltano's backends, in memory)."""

    def __init__(self, states: Mapping[str, SingerState] | None = None) -> None:
        self.states: dict[str, SingerState] = dict(states or {})
        self.closed = False

    @property
    def backend_label(self) -> str:
        return "memory"

    def get(self, state_id: StateId | str) -> SingerState | None:
        return self.states.get(str(state_id))

    def set(self, state_id: StateId | str, state: SingerState) -> None:
        self.states[str(state_id)] = state

    def clear(self, state_id: StateId | str) -> None:
        self.states.pop(str(state_id), None)

    def state_ids(self, pattern: str | None = None) -> list[str]:
        ids = sorted(self.states)
        return ids if pattern is None else [i for i in ids if fnmatch.fnmatchcase(i, pattern)]

    def get_many(self, pattern: str | None = None) -> dict[str, SingerState]:
        return {i: self.states[i] for i in self.state_ids(pattern)}

    def close(self) -> None:
        self.closed = True


@dataclass
class Recording:
    """A recorded Meltano JSON log to replay, and what the run leaves behind."""

    log: str  # a file name in tests/fixtures/meltano_logs
    exit_code: int = 0
    state_after: SingerState | None = None  # written to the state store as the log ends
    fail_at_line: int | None = None  # raise RuntimeError after this many lines (the launcher broke)


class ReplayedRun:
    """LaunchedRun replaying a Recording: its events, then its exit code and state."""

    def __init__(self, request: RunRequest, recording: Recording, states: InMemoryStateStore | None) -> None:
        self.request = request
        self.recording = recording
        self.states = states
        self.cancelled = False
        self.timed_out = False
        self.spawned = self.started = self.aborted = False
        self._returncode: int | None = None

    def spawn(self) -> Self:
        self.spawned = True
        return self

    def start(self, on_wait: Callable[[str], None] | None = None) -> Self:
        self.started = True
        return self

    def events(self) -> Iterator[RunEvent]:
        lines = (MELTANO_LOGS / self.recording.log).read_text().splitlines()
        for number, line in enumerate(lines, start=1):
            if self.cancelled:
                break
            event = parse_line(line)
            if event is not None:
                yield event
            if self.recording.fail_at_line == number:
                raise RuntimeError(f"replay broke at line {number}")
        if self.cancelled:
            self._returncode = -15
            return
        if self.states is not None and self.recording.state_after is not None:
            pipeline_state_id = self.request.run_id and self._state_id()
            if pipeline_state_id:
                self.states.set(pipeline_state_id, self.recording.state_after)
        self._returncode = self.recording.exit_code

    def _state_id(self) -> str | None:
        blocks = self.request.blocks
        return f"{self.request.environment}:{blocks[0]}-to-{blocks[-1]}" if len(blocks) >= 2 else None

    def abort(self) -> None:
        self.aborted = True

    def cancel(self, grace_seconds: float | None = None) -> None:
        self.cancelled = True

    @property
    def returncode(self) -> int | None:
        return self._returncode


class ReplayLauncher:
    """Launcher replaying one Recording per launch, in order; keeps the requests and runs."""

    def __init__(self, *recordings: Recording, states: InMemoryStateStore | None = None) -> None:
        self.recordings = list(recordings)
        self.states = states
        self.runs: list[ReplayedRun] = []

    def __call__(self, request: RunRequest) -> LaunchedRun:
        run = ReplayedRun(request, self.recordings.pop(0), self.states)
        self.runs.append(run)
        return run


class FakeClock:
    """A clock that moves one second per reading (times are distinct and ordered)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.time = start or datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.time += timedelta(seconds=1)
        return self.time


@dataclass
class FakeAdapters:
    """Adapters of a fast test: a project read from disk, everything else in memory."""

    project: ProjectModel
    store: InMemoryStore = field(default_factory=InMemoryStore)
    states: InMemoryStateStore = field(default_factory=InMemoryStateStore)
    launcher: ReplayLauncher = field(default_factory=ReplayLauncher)
    clock: FakeClock = field(default_factory=FakeClock)
    state_stores: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def read_project(self) -> ProjectModel:
        return self.project

    def store_url(self) -> str:
        return "memory://"

    def unit_of_work(self) -> InMemoryUnitOfWork:
        return self.store.unit_of_work()

    def run_env(self, extra: Mapping[str, str]) -> dict[str, str]:
        return dict(extra)

    def state_store(self, environment: str, env: Mapping[str, str]) -> InMemoryStateStore:
        self.state_stores.append((environment, dict(env)))
        return self.states


def fake_context(project: ProjectModel, project_dir: Path, environment: str, **adapters: Any) -> AppContext:
    """An AppContext on FakeAdapters over ``project``."""
    fake = FakeAdapters(project=project, **adapters)
    if fake.launcher.states is None:
        fake.launcher.states = fake.states
    return AppContext(
        adapters=fake,  # type: ignore[arg-type]  # tests are not type-checked; the contract tests check it
        settings=Settings(
            project_dir=project_dir, environment=environment, database_url="postgresql://fake/none"
        ),
    )
