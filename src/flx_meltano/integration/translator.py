"""Translate a run's events into the domain: per-stream results, the failing plugin, the outcome.

A stream counts as loaded only once the loader has confirmed it: its extraction finished and
Meltano then persisted a STATE from the loader that moved the stream's bookmark (targets emit
STATE only after the records it covers are written), or the block succeeded. Counts come from the
loader where it reports them, else from the tap, else they are unknown (None): a count that no
plugin reported is never guessed as 0.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flx_meltano.domain.execution import StreamResult
from flx_meltano.domain.plugins import PluginType
from flx_meltano.domain.state import BookmarkChange, SingerState, compare_bookmark
from flx_meltano.domain.values import Duration, StreamStatus
from flx_meltano.integration.run_events import (
    BlockCompleted,
    LogRecord,
    Metric,
    RunCompleted,
    RunEvent,
    StateWritten,
    StreamNotFound,
)

TAIL_LINES_KEPT = 20  # per plugin, for naming a failure (run.ERROR_TAIL_LINES of them are stored)
MELTANO_ERROR_LINES = 5
MAX_LINE_CHARS = 500  # one logged line kept with an error (a plugin may log a whole traceback as one)
COUNTS_UNKNOWN = "record counts unknown"
# The last line of a Python traceback, e.g. ``target_x.sinks.LoadError: table is locked``.
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b(:.*)?$")


@dataclass(frozen=True)
class StreamProgress:
    """Records seen so far for one stream (extracted and loaded; None where nobody reported)."""

    stream: str
    extracted: int | None
    loaded: int | None


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


def _seconds(timestamp: str | None) -> float | None:
    """A log line's ISO time stamp as epoch seconds (None when absent or unreadable)."""
    if not timestamp:
        return None
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _bounded(line: str) -> str:
    line = line.rstrip()
    return line if len(line) <= MAX_LINE_CHARS else line[: MAX_LINE_CHARS - 1] + "…"


@dataclass
class _Stream:
    extracted: int | None = None
    loaded: int | None = None
    timed: float = 0.0  # sum of the tap's sync_duration timers
    started: float | None = None  # epoch seconds: when its first timer started
    ended: float | None = None  # when its last timer ended
    extraction_done: bool = False
    failed: bool = False
    missing: bool = False

    @property
    def records(self) -> int | None:
        return self.loaded if self.loaded is not None else self.extracted

    @property
    def duration(self) -> Duration | None:
        """From the start of its first timer to the end of its last (a child stream's timers run
        once per parent record, so their sum is not the time the stream took)."""
        if self.started is not None and self.ended is not None:
            return Duration(round(max(self.ended - self.started, self.timed), 6))
        return Duration(round(self.timed, 6)) if self.timed else None


@dataclass
class ExecutionTracker:
    """Consumes RunEvents of one extract-load block; tells what to record as it happens.

    Args:
        extractor, loader: the plugins of the block (to name the one that failed).
        read_state: reads the pipeline's state from Meltano's backend after each STATE write.
        expected_streams: the streams selected for this run (reported even with 0 records).
        mappers: the names the block's mappers log under (mapping and mapper plugin names).
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
    _counted: bool = False  # a plugin of the block reported record_count metrics
    _meltano_errors: deque[str] = field(default_factory=lambda: deque(maxlen=MELTANO_ERROR_LINES))

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
                self._tails.setdefault(event.plugin, deque(maxlen=TAIL_LINES_KEPT)).append(event.message)
            elif event.level in ("error", "critical"):
                self._meltano_errors.append(_bounded(event.message.splitlines()[0] if event.message else ""))
            return []
        if isinstance(event, StateWritten):
            return self._state_written()
        if isinstance(event, StreamNotFound):
            if event.stream in self.streams:
                self.streams[event.stream].missing = True
            return []
        if isinstance(event, BlockCompleted):
            return self._block_completed(event)
        if isinstance(event, RunCompleted) and self.outcome is None:
            self.outcome = Outcome(success=True) if event.success else self._crash_outcome()
        return []

    def meltano_exited(self, exit_code: int | None) -> None:
        """meltano ended; a failure it never reported as a block or run result is decided here."""
        if self.outcome is None and exit_code:
            crash = self._crash_outcome()
            self.outcome = Outcome(
                crash.success, crash.error, crash.failed_plugin, exit_code, crash.error_lines
            )

    @property
    def meltano_errors(self) -> tuple[str, ...]:
        """Meltano's own last error lines (not a plugin's), e.g. a setting it could not read."""
        return tuple(self._meltano_errors)

    def _crash_outcome(self) -> Outcome:
        """A run that ended without a block result: meltano itself failed, usually with a
        BrokenPipeError because a plugin died. Name the plugin whose output ends in a traceback,
        the loader first (when it dies, meltano and the tap fail writing to it); else keep
        meltano's own error line (it failed before starting any plugin)."""
        for plugin in (self.loader, *self.mappers, self.extractor):
            tail = tuple(self._tails.get(plugin, ()))
            crash = next(
                (line.strip() for line in reversed(tail) if _EXCEPTION_LINE.match(line.strip())), None
            )
            if crash is not None:
                return Outcome(False, f"{plugin} failed: {_bounded(crash)}", plugin, None, tail)
        if self._meltano_errors:
            return Outcome(False, f"meltano failed: {self._meltano_errors[-1]}")
        return Outcome(False, "run failed")

    def _metric(self, metric: Metric) -> list[Notification]:
        stream_name = metric.stream
        if stream_name is None:
            return []
        stream = self._stream(stream_name)
        if metric.name == "record_count":
            if metric.plugin_role is PluginType.LOADER or metric.plugin == self.loader:
                stream.loaded = (stream.loaded or 0) + int(metric.value)
            elif metric.plugin == self.extractor:
                stream.extracted = (stream.extracted or 0) + int(metric.value)
            else:  # a mapper's count is neither extracted nor loaded
                return []
            self._counted = True
            return [StreamProgress(stream_name, stream.extracted, stream.loaded)]
        if metric.name == "sync_duration" and metric.plugin == self.extractor:
            stream.timed += metric.value
            end = _seconds(metric.timestamp)
            if end is not None:
                stream.started = min(stream.started or end, end - metric.value)
                stream.ended = max(stream.ended or end, end)
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
            and not stream.missing
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

    def _records(self, stream: _Stream) -> int | None:
        """The stream's count: the loader's, else the tap's; 0 when a plugin that counts (it
        reported other streams) reported nothing for it (a child stream with no parent records);
        None when no plugin of the block counts at all, or the tap never had the stream."""
        if stream.missing:
            return None
        if stream.records is None and self._counted:
            return 0
        return stream.records

    def _result(self, name: str, status: StreamStatus) -> StreamResult:
        stream = self.streams[name]
        bookmark = self.last_state.bookmarks.get(name) if self.last_state else None
        return StreamResult(
            stream=name,
            records=self._records(stream),
            status=StreamStatus.MISSING if stream.missing else status,
            duration=stream.duration,
            bookmark=bookmark if bookmark else None,
            finished_at=datetime.now(UTC),
        )

    def _confirm(self, name: str) -> StreamConfirmed:
        result = self.confirmed[name] = self._result(name, StreamStatus.SUCCEEDED)
        return StreamConfirmed(result)

    def _block_completed(self, event: BlockCompleted) -> list[Notification]:
        if event.success:
            self.outcome = Outcome(success=True)
            # Meltano persisted the final STATE before reporting success: everything is loaded.
            if self.last_state is None:
                self.last_state = self.read_state()
            return [self._confirm(name) for name in self.streams if name not in self.confirmed]
        failed_role, exit_code = self._failing_role(event.exit_codes)
        plugins = {PluginType.EXTRACTOR: self.extractor, PluginType.LOADER: self.loader}
        plugin = plugins.get(failed_role) if failed_role else None
        if failed_role is PluginType.MAPPER and self.mappers:
            plugin = next((m for m in self.mappers if m in self._tails), self.mappers[0])
        tail = tuple(self._tails.get(plugin or "", ()))
        last_line = next((line.strip() for line in reversed(tail) if line.strip()), "")
        error = _bounded(event.error or "block failed")
        if plugin:
            error = f"{plugin} exited with code {exit_code}: {_bounded(last_line) or error}"
        elif self._meltano_errors:
            error = f"meltano: {self._meltano_errors[-1]}"
        self.outcome = Outcome(False, error, plugin, exit_code, tail)
        return []

    @staticmethod
    def _failing_role(exit_codes: dict[str, int] | object) -> tuple[PluginType | None, int | None]:
        """The plugin type (Meltano's exit-code keys are the plural types) that failed first."""
        if not isinstance(exit_codes, dict):
            return None, None
        for key, code in exit_codes.items():
            if code:
                return (PluginType(key) if key in PluginType.__members__.values() else None), code
        return None, None

    def unconfirmed_results(self) -> list[StreamResult]:
        """Streams the loader never confirmed, as FAILED (or MISSING) results, for a failed or
        cancelled run."""
        return [
            self._result(name, StreamStatus.FAILED) for name in self.streams if name not in self.confirmed
        ]

    def warnings(self) -> list[str]:
        """What the record should say about this run besides its outcome: streams the tap never
        had, counts nobody reported."""
        found: list[str] = []
        missing = sorted(name for name, stream in self.streams.items() if stream.missing)
        if missing:
            found.append(
                f"streams not in {self.extractor}'s catalog: {', '.join(missing)} (Meltano: \"was not "
                f'found in the catalog"); check the select rules of {self.extractor} in meltano.yml'
            )
        unknown = sorted(
            name
            for name, stream in self.streams.items()
            if self._records(stream) is None and not stream.missing
        )
        if unknown:
            found.append(
                f"{COUNTS_UNKNOWN} for {', '.join(unknown)}: neither {self.extractor} nor {self.loader} "
                "reported per-stream record_count metrics"
            )
        return found
