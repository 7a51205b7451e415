"""In-memory adapters for the application's ports: unit of work, state store, a replaying launcher."""

from __future__ import annotations

import copy
import fnmatch
import itertools
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
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
from flx_meltano.domain.logs import LogChunk, LogKept, LogLine, LogSize
from flx_meltano.domain.pipeline import Pipeline
from flx_meltano.domain.project import ProjectModel
from flx_meltano.domain.snapshots import SnapshotReason, StateRef, StateSnapshot
from flx_meltano.domain.state import SingerState
from flx_meltano.domain.values import ExecutionStatus
from flx_meltano.integration.launcher import RunRequest
from flx_meltano.integration.run_events import RunEvent, parse_line
from flx_meltano.integration.state_access import MeltanoRunRecord
from flx_meltano.persistence.errors import ConcurrencyConflict, NotFound
from flx_meltano.persistence.execution_repository import CLOSING_EVENTS
from flx_meltano.persistence.log_repository import COMPRESSION_LEVEL, HEADER_SEQ, decode, encode
from flx_meltano.settings import Settings

MELTANO_LOGS = Path(__file__).parent / "fixtures" / "meltano_logs"


@dataclass(frozen=True)
class StoredChunk:
    """One stored chunk of an execution's log (an ``flx.execution_logs`` row, seq from 1): its lines
    encoded and compressed as the real repository stores them, so they read back the same."""

    raw: bytes
    stored_bytes: int
    line_count: int


@dataclass(frozen=True)
class MeltanoRunRow:
    """One ``flx.meltano_runs`` row."""

    source: str
    row_id: int
    state_id: str
    execution_id: str
    launched_by_flx: bool
    meltano_status: str


@dataclass
class StoreData:
    """What an in-memory store holds (committed, or one unit of work's working copy).

    Each dict is a table keyed by its primary key; a commit applies a unit's changes row by row
    (as PostgreSQL would), so concurrent units (the heartbeat and log threads) lose nothing.
    """

    executions: dict[str, PipelineExecution] = field(default_factory=dict)
    heartbeats: dict[str, datetime | None] = field(default_factory=dict)  # written by heartbeat alone
    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    snapshots: dict[int, StateSnapshot] = field(default_factory=dict)
    logs: dict[tuple[str, int], StoredChunk] = field(default_factory=dict)
    log_headers: dict[str, LogKept] = field(default_factory=dict)
    meltano_runs: dict[str, MeltanoRunRow] = field(default_factory=dict)
    events: dict[str, list[DomainEvent]] = field(default_factory=dict)
    log: list[tuple[str, DomainEvent]] = field(default_factory=list)  # position = index + 1

    TABLES = ("executions", "heartbeats", "pipelines", "snapshots", "logs", "log_headers", "meltano_runs")

    def append(self, stream_id: str, new_events: Sequence[DomainEvent]) -> None:
        self.events.setdefault(stream_id, []).extend(new_events)
        self.log.extend((stream_id, event) for event in new_events)


def _newest_first(executions: Sequence[PipelineExecution]) -> list[PipelineExecution]:
    return sorted(executions, key=lambda e: (e.started_at, e.id), reverse=True)


class InMemoryExecutionRepository:
    """ExecutionRepository on a StoreData; executions are copied in and out, as rows would be."""

    def __init__(self, data: StoreData, clock: Callable[[], datetime]) -> None:
        self.data = data
        self.clock = clock

    def save(self, execution: PipelineExecution) -> None:
        pending = execution.pending_events
        if not pending:
            return
        stream_id = f"execution-{execution.id}"
        stream = self.data.events.get(stream_id, [])
        if len(stream) != execution.version:
            raise ConcurrencyConflict(f"event stream {stream_id!r} is at version {len(stream)}")
        self.data.append(stream_id, pending)
        execution.version += len(pending)
        execution.pending_events = []
        self.data.heartbeats.setdefault(execution.id, execution.heartbeat_at)  # a save keeps the beat
        self.data.executions[execution.id] = copy.deepcopy(execution)

    def _read(self, execution_id: str) -> PipelineExecution:
        execution = copy.deepcopy(self.data.executions[execution_id])
        execution.heartbeat_at = self.data.heartbeats.get(execution_id)
        return execution

    def heartbeat(self, execution_id: str) -> bool:
        execution = self.data.executions.get(execution_id)
        if execution is None or not execution.status.is_active:
            return False
        self.data.heartbeats[execution_id] = self.now()
        return True

    def now(self) -> datetime:
        return self.clock()

    def get(self, execution_id: str, *, for_update: bool = False) -> PipelineExecution:
        if execution_id not in self.data.executions:
            raise NotFound(f"no execution {execution_id!r}")
        return self._read(execution_id)

    def find(self, prefix: str) -> PipelineExecution:
        found = [i for i in self.data.executions if i.startswith(prefix)]
        if not found:
            raise NotFound(f"no execution {prefix!r}")
        if len(found) > 1:
            raise NotFound(f"execution id prefix {prefix!r} is ambiguous; give more characters")
        return self.get(found[0])

    def _all(self) -> list[PipelineExecution]:
        return _newest_first([self._read(i) for i in self.data.executions])

    def history(self, query: ExecutionFilter) -> list[PipelineExecution]:
        return [
            e
            for e in self._all()
            if (not query.pipeline_id or e.pipeline_id == query.pipeline_id)
            and (not query.status or e.status is query.status)
            and (not query.since or e.started_at >= query.since)
        ][: query.limit]

    def history_of(self, pipeline_id: str, limit: int = 20) -> list[PipelineExecution]:
        return self.history(ExecutionFilter(pipeline_id=pipeline_id, limit=limit))

    def active(self, pipeline_id: str | None = None) -> list[PipelineExecution]:
        chosen = [
            e for e in self._all() if e.status.is_active and (not pipeline_id or e.pipeline_id == pipeline_id)
        ]
        for execution in chosen:
            execution.results = {}  # as the real one: active executions come without stream results
        return chosen

    def last_by_pipeline(self) -> dict[str, PipelineExecution]:
        last: dict[str, PipelineExecution] = {}
        for execution in self._all():
            last.setdefault(execution.pipeline_id, execution)
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
            for e in self._all()
            if e.pipeline_id == pipeline_id
            for _, result in sorted(e.results.items())
            if stream is None or result.stream == stream
        ]
        return rows[:limit]

    def covering(self, pipeline_id: str, at: datetime, *, exclude_trigger: str) -> str | None:
        for e in self._all():
            if (
                e.pipeline_id == pipeline_id
                and str(e.trigger) != exclude_trigger
                and e.started_at <= at
                and (e.ended_at is None or e.ended_at >= at)
            ):
                return e.id
        return None

    def newest_state_refs(self) -> set[int]:
        newest: dict[str, PipelineExecution] = {}
        for e in self._all():
            if e.status.is_terminal:
                newest.setdefault(e.pipeline_id, e)
        return {
            ref.snapshot_id
            for e in newest.values()
            for ref in (e.state_before, e.state_after)
            if ref is not None
        }

    def last_position(self) -> int:
        return len(self.data.log)

    def closed_after(self, position: int, limit: int = 500) -> list[tuple[int, PipelineExecution]]:
        found = [
            (number, stream_id.removeprefix("execution-"))
            for number, (stream_id, event) in enumerate(self.data.log, start=1)
            if number > position
            and stream_id.startswith("execution-")
            and type(event).__name__ in CLOSING_EVENTS
        ][:limit]
        return [(p, self._read(i)) for p, i in found if i in self.data.executions]


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
    """SnapshotRepository on a StoreData, with a StateSnapshotTaken event per snapshot; ids come
    from the store's sequence (never reused, as an identity column's)."""

    def __init__(self, data: StoreData, next_id: Callable[[], int]) -> None:
        self.data = data
        self.next_id = next_id

    def append_state_events(
        self, state_id: str, new_events: Sequence[Any], version: int | None = None
    ) -> None:
        self.data.append(f"state-{state_id}", new_events)

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
            snapshot_id = self.next_id()
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

    def latest_ref(self, state_id: str) -> StateRef | None:
        newest = self.latest(state_id)
        return newest.ref if newest else None

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


class InMemoryLogRepository:
    """ExecutionLogRepository on a StoreData: chunks by (execution id, seq) and a header per log,
    as ``persistence/log_repository.py`` keeps them (the header only once something was dropped,
    pruned or completed)."""

    def __init__(self, data: StoreData) -> None:
        self.data = data

    def _header(self, execution_id: str) -> LogKept:
        return self.data.log_headers.get(execution_id, LogKept())

    def append(self, execution_id: str, seq: int, lines: Sequence[LogLine]) -> int:
        if execution_id not in self.data.executions:
            raise NotFound(f"no execution {execution_id!r} to keep a log of")  # the foreign key
        if seq <= HEADER_SEQ or (execution_id, seq) in self.data.logs:
            raise ValueError(f"log chunk {seq} of {execution_id} exists or is the header")  # the key
        raw = encode(lines)
        self.data.logs[(execution_id, seq)] = StoredChunk(
            raw, len(zlib.compress(raw, COMPRESSION_LEVEL)), len(lines)
        )
        return len(raw)

    def drop(self, execution_id: str, seqs: Sequence[int], lines: int, raw_bytes: int) -> None:
        for seq in seqs:
            self.data.logs.pop((execution_id, seq), None)
        kept = self._header(execution_id)
        self.data.log_headers[execution_id] = replace(
            kept, dropped_lines=kept.dropped_lines + lines, dropped_bytes=kept.dropped_bytes + raw_bytes
        )

    def complete(self, execution_id: str) -> None:
        self.data.log_headers[execution_id] = replace(self._header(execution_id), complete=True)

    def kept(self, execution_id: str) -> LogKept | None:
        return self.data.log_headers.get(execution_id)

    def _chunks(self, execution_id: str) -> list[tuple[int, StoredChunk]]:
        return sorted((seq, chunk) for (owner, seq), chunk in self.data.logs.items() if owner == execution_id)

    def chunks(self, execution_id: str, after_seq: int = HEADER_SEQ) -> list[LogChunk]:
        return [LogChunk(seq, decode(c.raw)) for seq, c in self._chunks(execution_id) if seq > after_seq]

    def size(self, execution_id: str) -> LogSize:
        chunks = [c for _, c in self._chunks(execution_id)]
        return LogSize(
            sum(c.line_count for c in chunks),
            sum(len(c.raw) for c in chunks),
            sum(c.stored_bytes for c in chunks),
        )

    def prune(self, ended_before: datetime, at: datetime) -> list[str]:
        old = {
            i for i, e in self.data.executions.items() if e.ended_at is not None and e.ended_at < ended_before
        }
        ids = sorted({owner for owner, _ in self.data.logs if owner in old})
        for owner, seq in [key for key in self.data.logs if key[0] in ids]:
            del self.data.logs[(owner, seq)]
        for execution_id in ids:
            self.data.log_headers[execution_id] = replace(self._header(execution_id), pruned_at=at)
        return ids


class InMemoryMeltanoRunRepository:
    """MeltanoRunRepository on a StoreData (rows by Meltano run id, claimed once each)."""

    def __init__(self, data: StoreData) -> None:
        self.data = data

    def last_row_id(self, source: str) -> int:
        return max((r.row_id for r in self.data.meltano_runs.values() if r.source == source), default=0)

    def followed(self, source: str) -> dict[str, str]:
        return {
            run_id: r.execution_id
            for run_id, r in self.data.meltano_runs.items()
            if r.source == source and r.meltano_status == "RUNNING" and not r.launched_by_flx
        }

    def claim(
        self,
        *,
        run_id: str,
        source: str,
        row_id: int,
        state_id: str,
        execution_id: str,
        launched_by_flx: bool,
        meltano_status: str,
    ) -> bool:
        if run_id in self.data.meltano_runs:
            return False
        self.data.meltano_runs[run_id] = MeltanoRunRow(
            source, row_id, state_id, execution_id, launched_by_flx, meltano_status
        )
        return True

    def set_status(self, run_id: str, meltano_status: str) -> None:
        if run_id in self.data.meltano_runs:
            self.data.meltano_runs[run_id] = replace(
                self.data.meltano_runs[run_id], meltano_status=meltano_status
            )


class InMemoryStore:
    """The committed data shared by every unit of work of one fake store, and the store's clock.

    Units of work run on several threads (the run's, its heartbeat's, its log keeper's): a commit
    applies what its unit changed, row by row, under a lock; two units appending to one execution's
    event stream, or claiming one Meltano run, conflict as the database's unique keys make them.
    """

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.data = StoreData()
        self.commits = 0
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.lock = threading.Lock()
        self._ids = itertools.count(1)

    def unit_of_work(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self)

    def next_id(self) -> int:
        with self.lock:
            return next(self._ids)

    def begin(self) -> tuple[StoreData, StoreData]:
        """What a unit starts from: the committed data, twice (its base and its working copy)."""
        with self.lock:
            return copy.deepcopy(self.data), copy.deepcopy(self.data)

    def apply(self, base: StoreData, work: StoreData) -> None:
        """Publish what changed from ``base`` to ``work`` onto the committed data, atomically."""
        with self.lock:
            new_events = work.log[len(base.log) :]
            for stream_id in {s for s, _ in new_events if s.startswith("execution-")}:
                if len(self.data.events.get(stream_id, [])) != len(base.events.get(stream_id, [])):
                    raise ConcurrencyConflict(
                        f"event stream {stream_id!r} moved on: another writer changed it"
                    )
            for run_id in work.meltano_runs.keys() - base.meltano_runs.keys():
                if run_id in self.data.meltano_runs:
                    raise ConcurrencyConflict(f"Meltano run {run_id} was claimed by another unit of work")
            for name in StoreData.TABLES:
                before, after, committed = getattr(base, name), getattr(work, name), getattr(self.data, name)
                for key in before.keys() | after.keys():
                    if key not in after:
                        committed.pop(key, None)
                    elif key not in before or after[key] != before[key]:
                        committed[key] = copy.deepcopy(after[key])
            for stream_id, event in new_events:
                self.data.append(stream_id, [copy.deepcopy(event)])
            self.commits += 1


class InMemoryUnitOfWork:
    """UnitOfWork on a working copy of an InMemoryStore's data; ``commit`` publishes it atomically,
    then the unit goes on from the newest committed data (as a new transaction would)."""

    def __init__(self, store: InMemoryStore) -> None:
        self.store = store
        self._base: StoreData | None = None
        self._data: StoreData | None = None

    def _begin(self) -> None:
        """Start from the committed data; the repositories (made once, as the real unit's are
        for its connection) work on the new copy."""
        self._base, self._data = self.store.begin()
        for repository in (self.executions, self.pipelines, self.snapshots, self.logs, self.meltano_runs):
            repository.data = self._data

    def __enter__(self) -> Self:
        empty = StoreData()
        self.executions = InMemoryExecutionRepository(empty, lambda: self.store.clock())
        self.pipelines = InMemoryPipelineRepository(empty, self.executions)
        self.snapshots = InMemorySnapshotRepository(empty, self.store.next_id)
        self.logs = InMemoryLogRepository(empty)
        self.meltano_runs = InMemoryMeltanoRunRepository(empty)
        self._begin()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._base = self._data = None

    def commit(self) -> None:
        assert self._base is not None, "commit outside 'with'"
        assert self._data is not None
        self.store.apply(self._base, self._data)
        self._begin()

    def rollback(self) -> None:
        assert self._data is not None
        self._begin()


class InMemoryStateStore:
    """StateStore over a dict (Meltano's backends, in memory)."""

    def __init__(
        self,
        states: Mapping[str, SingerState] | None = None,
        runs: Sequence[MeltanoRunRecord] = (),
    ) -> None:
        self.states: dict[str, SingerState] = dict(states or {})
        self.meltano_runs: list[MeltanoRunRecord] = list(runs)  # Meltano's runs rows, newest first
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

    def runs(self, state_id: StateId | str, *, running_only: bool = False) -> list[MeltanoRunRecord]:
        return [
            r
            for r in self.meltano_runs
            if r.state_id == str(state_id) and (not running_only or r.status == "RUNNING")
        ][:50]

    def run(self, run_id: str) -> MeltanoRunRecord | None:
        return next((r for r in self.meltano_runs if r.run_id == run_id), None)

    def record_run(self, record: MeltanoRunRecord) -> None:
        """What Meltano does as a run starts or ends: its row, newest first (replaced by run id)."""
        self.meltano_runs = [record, *(r for r in self.meltano_runs if r.run_id != record.run_id)]

    def close(self) -> None:
        self.closed = True


@dataclass
class Recording:
    """A recorded Meltano JSON log to replay, and what the run leaves behind."""

    log: str  # a file name in tests/fixtures/meltano_logs
    exit_code: int = 0
    state_after: SingerState | None = None  # written to the state store as the log ends
    fail_at_line: int | None = None  # raise RuntimeError after this many lines (the launcher broke)
    held_by: str | None = None  # the run id holding the plugin lock when the run starts


class ReplayedRun:
    """LaunchedRun replaying a Recording: its events, then its exit code and state."""

    def __init__(self, request: RunRequest, recording: Recording, states: InMemoryStateStore | None) -> None:
        self.request = request
        self.recording = recording
        self.states = states
        self.cancelled = False
        self.timed_out = False
        self.spawned = self.started = self.aborted = False
        self.force: bool | None = None  # whether meltano was given --force (None: not started)
        self.waits: list[str] = []
        self._returncode: int | None = None

    def spawn(self) -> Self:
        self.spawned = True
        return self

    def start(
        self,
        on_wait: Callable[[str], None] | None = None,
        *,
        on_held: Callable[[str], None] | None = None,
        decide_force: Callable[[], bool] | None = None,
    ) -> Self:
        """As MeltanoRun.start: the plugin locks (a recording's ``held_by`` holds them: ``on_held``
        may refuse, else the run waits), then ``decide_force``; a refusal leaves meltano unstarted."""
        try:
            holder = self.recording.held_by
            if holder is not None:
                if on_held is not None:
                    on_held(holder)
                message = f"waiting for the plugin lock held by run {holder}"
                self.waits.append(message)
                if on_wait is not None:
                    on_wait(message)
            decided = decide_force() if decide_force is not None else False
        except BaseException:
            self.aborted = True  # refused: the spawned meltano is stopped before it ran
            raise
        self.force = self.request.force or decided
        self.started = True
        return self

    def _meltano_row(self, status: str, state: SingerState | None) -> None:
        """Meltano's row of this run in its system database (as ``meltano run`` writes it)."""
        state_id = self._state_id()
        if self.states is not None and state_id and self.request.run_id:
            record = MeltanoRunRecord(self.request.run_id, state_id, status, 0.0, state, state is not None)
            self.states.record_run(record)

    def events(self) -> Iterator[RunEvent]:
        lines = (MELTANO_LOGS / self.recording.log).read_text().splitlines()
        self._meltano_row("RUNNING", None)
        for number, line in enumerate(lines, start=1):
            if self.cancelled:
                break
            event = parse_line(line)
            if event is not None:
                yield event
            if self.recording.fail_at_line == number:
                raise RuntimeError(f"replay broke at line {number}")
        if self.cancelled:
            self._meltano_row("FAIL", None)
            self._returncode = -15
            return
        if self.states is not None and self.recording.state_after is not None:
            pipeline_state_id = self.request.run_id and self._state_id()
            if pipeline_state_id:
                self.states.set(pipeline_state_id, self.recording.state_after)
        self._meltano_row("SUCCESS" if self.recording.exit_code == 0 else "FAIL", self.recording.state_after)
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
    """A clock that moves one second per reading (times are distinct and ordered, on any thread)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.time = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
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
    fake.store.clock = fake.clock  # the store's clock (leases, heartbeats) is the adapters' clock
    if fake.launcher.states is None:
        fake.launcher.states = fake.states
    return AppContext(
        adapters=fake,  # type: ignore[arg-type]  # tests are not type-checked; the contract tests check it
        settings=Settings(
            project_dir=project_dir, environment=environment, database_url="postgresql://fake/none"
        ),
    )
