"""Domain events: immutable facts, each belonging to one event stream (an execution or a state id)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from datetime import datetime
from typing import Any, ClassVar

from flx_meltano.domain.snapshots import StateRef


@dataclass(frozen=True)
class DomainEvent:
    """Base of every domain event; ``stream_id`` names the event stream it is appended to."""

    registry: ClassVar[dict[str, type[DomainEvent]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        DomainEvent.registry[cls.__name__] = cls

    @property
    def stream_id(self) -> str:
        """The event stream this event belongs to."""
        raise NotImplementedError

    @property
    def occurred_at(self) -> datetime:
        """When it happened."""
        raise NotImplementedError

    def to_payload(self) -> dict[str, Any]:
        """A JSON-ready dict of the event's fields."""
        payload: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            elif is_dataclass(value) and not isinstance(value, type):
                value = asdict(value)
            payload[f.name] = value
        return payload

    @classmethod
    def from_payload(cls, type_name: str, payload: Mapping[str, Any]) -> DomainEvent:
        """Rebuild an event from its stored type name and payload."""
        event_type = DomainEvent.registry[type_name]
        values: dict[str, Any] = {}
        for f in fields(event_type):
            if f.name not in payload:
                continue
            value = payload[f.name]
            annotation = str(f.type)
            if "datetime" in annotation and isinstance(value, str):
                value = datetime.fromisoformat(value)
            elif "tuple" in annotation and isinstance(value, list):
                value = tuple(value)
            elif "StateRef" in annotation and isinstance(value, Mapping):
                value = StateRef(int(value["snapshot_id"]), str(value["checksum"]))
            values[f.name] = value
        return event_type(**values)


@dataclass(frozen=True)
class ExecutionEvent(DomainEvent):
    """An event in the life of one execution."""

    execution_id: str
    at: datetime

    @property
    def stream_id(self) -> str:
        return f"execution-{self.execution_id}"

    @property
    def occurred_at(self) -> datetime:
        return self.at


@dataclass(frozen=True)
class ExecutionStarted(ExecutionEvent):
    """An execution of a pipeline began."""

    pipeline_id: str
    trigger: str
    streams: tuple[str, ...] = ()
    full_refresh: bool = False
    dagster_run_id: str | None = None
    state_before: StateRef | None = None
    runner_host: str | None = None
    runner_pid: int | None = None
    lease_seconds: float | None = None
    partition: str | None = None


@dataclass(frozen=True)
class StreamSynced(ExecutionEvent):
    """The loader confirmed one stream of an execution (or it failed)."""

    stream: str
    records: int | None
    status: str
    duration_seconds: float | None = None
    bookmark: Any = None


@dataclass(frozen=True)
class ExecutionSucceeded(ExecutionEvent):
    """Every block of the execution succeeded."""

    state_after: StateRef | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class ExecutionFailed(ExecutionEvent):
    """A plugin failed; the state reached is kept."""

    error: str
    failed_plugin: str | None = None
    exit_code: int | None = None
    state_after: StateRef | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class ExecutionCancelled(ExecutionEvent):
    """Somebody stopped the execution."""

    reason: str = "cancelled"
    state_after: StateRef | None = None


@dataclass(frozen=True)
class ExecutionCrashed(ExecutionEvent):
    """The process running the execution died without closing it."""

    reason: str
    state_after: StateRef | None = None


@dataclass(frozen=True)
class StateEvent(DomainEvent):
    """An event about one state id's Singer state."""

    state_id: str
    at: datetime

    @property
    def stream_id(self) -> str:
        return f"state-{self.state_id}"

    @property
    def occurred_at(self) -> datetime:
        return self.at


@dataclass(frozen=True)
class StateSnapshotTaken(StateEvent):
    """A copy of the state was stored."""

    snapshot_id: int
    reason: str
    checksum: str
    label: str | None = None


@dataclass(frozen=True)
class StateRestored(StateEvent):
    """A snapshot was written back through Meltano's state backend."""

    snapshot_id: int
    source_state_id: str
    pre_restore_snapshot_id: int | None = None
