"""Translate a run's events into the domain: per-stream results, the failing plugin, the outcome.

A stream counts as loaded only once the loader has confirmed it: its extraction finished and
Meltano then persisted a STATE from the loader that moved the stream's bookmark (targets emit
STATE only after the records it covers are written), or the block succeeded. Counts come from the
loader where it reports them, else from the tap.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flx_meltano.domain.execution import StreamResult
from flx_meltano.domain.state import BookmarkChange, SingerState, compare_bookmark
from flx_meltano.domain.values import Duration, StreamStatus
from flx_meltano.integration.run_events import (
    BlockCompleted,
    LogRecord,
    Metric,
    RunCompleted,
    RunEvent,
    StateWritten,
)

ROLE_BY_EXIT_KEY = {"extractors": "extractor", "loaders": "loader", "mappers": "mapper"}
ERROR_TAIL_LINES = 20
# The last line of a Python traceback, e.g. ``target_x.sinks.LoadError: table is locked``.
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b(:.*)?$")


@dataclass(frozen=True)
class StreamProgress:
    """Records seen so far for one stream (extracted and loaded)."""

    stream: str
    extracted: int
    loaded: int


@dataclass(frozen=True)
class StreamConfirmed:
    """The loader confirmed one stream: it can be reported as materialized."""

    result: StreamResult


@dataclass(frozen=True)
class Outcome:
    """How the extract-load block ended."""

    success: bool
    error: str | None = None
    failed_plugin: str | None = None
    exit_code: int | None = None
    error_lines: tuple[str, ...] = ()


Notification = StreamProgress | StreamConfirmed


@dataclass
class _Stream:
    extracted: int = 0
    loaded: int | None = None
    duration: float = 0.0
    extraction_done: bool = False
    failed: bool = False

    @property
    def records(self) -> int:
        return self.loaded if self.loaded is not None else self.extracted


@dataclass
class ExecutionTracker:
    """Consumes RunEvents of one extract-load block; tells what to record as it happens.

    Args:
        extractor, loader: the plugins of the block (to name the one that failed).
        read_state: reads the pipeline's state from Meltano's backend after each STATE write.
        expected_streams: the streams selected for this run (reported even with 0 records).
        state_before: the pipeline's state before the run (SingerState.empty() for none); read
            with read_state when the tracker is made, before meltano starts, if not given.
    """

    extractor: str
    loader: str
    read_state: Callable[[], SingerState | None]
    expected_streams: Iterable[str] = ()
    mappers: tuple[str, ...] = ()
    state_before: SingerState | None = None
    streams: dict[str, _Stream] = field(default_factory=dict)
    confirmed: dict[str, StreamResult] = field(default_factory=dict)
    last_state: SingerState | None = None
    outcome: Outcome | None = None
    _tails: dict[str, deque[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.state_before is None:
            self.state_before = self.read_state() or SingerState.empty()
        for stream in self.expected_streams:
            self.streams.setdefault(stream, _Stream())

    def _stream(self, name: str) -> _Stream:
        return self.streams.setdefault(name, _Stream())

    def feed(self, event: RunEvent) -> list[Notification]:
        """Take one event; return what became known because of it."""
        if isinstance(event, Metric):
            return self._metric(event)
        if isinstance(event, LogRecord):
            if event.plugin is not None:
                self._tails.setdefault(event.plugin, deque(maxlen=ERROR_TAIL_LINES)).append(event.message)
            return []
        if isinstance(event, StateWritten):
            return self._state_written()
        if isinstance(event, BlockCompleted):
            return self._block_completed(event)
        if isinstance(event, RunCompleted) and self.outcome is None:
            self.outcome = Outcome(success=True) if event.success else self._crash_outcome()
        return []

    def _crash_outcome(self) -> Outcome:
        """A run that ended without a block result: meltano itself failed, usually with a
        BrokenPipeError because a plugin died. Name the plugin whose output ends in a traceback,
        the loader first (when it dies, meltano and the tap fail writing to it)."""
        for plugin in (self.loader, *self.mappers, self.extractor):
            tail = tuple(self._tails.get(plugin, ()))
            crash = next(
                (line.strip() for line in reversed(tail) if _EXCEPTION_LINE.match(line.strip())), None
            )
            if crash is not None:
                return Outcome(False, f"{plugin} failed: {crash}", plugin, None, tail)
        return Outcome(False, "run failed")

    def _metric(self, metric: Metric) -> list[Notification]:
        stream_name = metric.stream
        if stream_name is None:
            return []
        stream = self._stream(stream_name)
        if metric.name == "record_count":
            if metric.plugin_role == "loader" or metric.plugin == self.loader:
                stream.loaded = (stream.loaded or 0) + int(metric.value)
            elif metric.plugin == self.extractor:
                stream.extracted += int(metric.value)
            return [StreamProgress(stream_name, stream.extracted, stream.loaded or 0)]
        if metric.name == "sync_duration" and metric.plugin == self.extractor:
            stream.duration += metric.value
            if metric.tags.get("status") not in (None, "succeeded"):
                stream.failed = True
            # A top-level stream ends with one timer without context; child streams time each
            # parent record, so they are confirmed when the block ends.
            if not metric.context:
                stream.extraction_done = True
        return []

    def _state_written(self) -> list[Notification]:
        self.last_state = self.read_state()
        return [
            self._confirm(name)
            for name, stream in self.streams.items()
            if stream.extraction_done
            and not stream.failed
            and name not in self.confirmed
            and self._bookmark_advanced(name)
        ]

    def _bookmark_advanced(self, name: str) -> bool:
        """Whether the state just written moved the stream's bookmark away from the pre-run one.

        Any STATE after a stream's extraction is no proof that its records were loaded: Meltano
        merges partial STATEs, so the stored state may hold the stream's pre-run bookmark or none.
        Only a new or moved replication key value shows the loader got past the stream's records.
        Streams without one (full-table, child or partitioned streams) wait for the block's success.
        """
        after = self.last_state.bookmark_value(name) if self.last_state else None
        before = self.state_before.bookmark_value(name) if self.state_before else None
        return after is not None and compare_bookmark(before, after) is not BookmarkChange.UNCHANGED

    def _confirm(self, name: str, status: StreamStatus = StreamStatus.SUCCEEDED) -> StreamConfirmed:
        stream = self.streams[name]
        bookmark = self.last_state.bookmarks.get(name) if self.last_state else None
        result = StreamResult(
            stream=name,
            records=stream.records,
            status=status,
            duration=Duration(round(stream.duration, 6)),
            bookmark=bookmark if bookmark else None,
            finished_at=datetime.now(UTC),
        )
        self.confirmed[name] = result
        return StreamConfirmed(result)

    def _block_completed(self, event: BlockCompleted) -> list[Notification]:
        if event.success:
            self.outcome = Outcome(success=True)
            # Meltano persisted the final STATE before reporting success: everything is loaded.
            if self.last_state is None:
                self.last_state = self.read_state()
            return [self._confirm(name) for name in self.streams if name not in self.confirmed]
        failed_role, exit_code = self._failing_role(event.exit_codes)
        plugin = {"extractor": self.extractor, "loader": self.loader}.get(failed_role or "")
        if failed_role == "mapper" and self.mappers:
            plugin = self.mappers[0]
        tail = tuple(self._tails.get(plugin or "", ()))
        last_line = next((line.strip() for line in reversed(tail) if line.strip()), "")
        error = event.error or "block failed"
        if plugin:
            error = f"{plugin} exited with code {exit_code}: {last_line or error}"
        self.outcome = Outcome(False, error, plugin, exit_code, tail)
        return []

    @staticmethod
    def _failing_role(exit_codes: dict[str, int] | object) -> tuple[str | None, int | None]:
        if not isinstance(exit_codes, dict):
            return None, None
        for key, code in exit_codes.items():
            if code:
                return ROLE_BY_EXIT_KEY.get(key, key), code
        return None, None

    def unconfirmed_results(self) -> list[StreamResult]:
        """Streams the loader never confirmed, as FAILED results (for a failed or cancelled run)."""
        return [
            StreamResult(name, stream.records, StreamStatus.FAILED, Duration(round(stream.duration, 6)))
            for name, stream in self.streams.items()
            if name not in self.confirmed
        ]
