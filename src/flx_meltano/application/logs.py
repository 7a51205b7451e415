"""Execution logs: read one (GetExecutionLogs), follow a live one, prune old ones."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from flx_meltano.application.context import AppContext
from flx_meltano.application.queries import find_execution
from flx_meltano.domain.errors import InvalidOption
from flx_meltano.domain.execution import PipelineExecution
from flx_meltano.domain.logs import LogKept, LogLine, level_rank, parse_level
from flx_meltano.domain.values import Trigger

FOLLOW_POLL_SECONDS = 0.25
# A closed execution whose log never completes (its runner was killed): stop following after this.
FOLLOW_GRACE_SECONDS = 5.0
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``15m``, ``90s``, ``2w`` as a timedelta; InvalidOption otherwise."""
    match = _AGE.match(text)
    if match is None:
        raise InvalidOption(f"age {text!r}: give a number and a unit (s, m, h, d, w), e.g. 30d or 12h")
    return timedelta(**{_UNITS[match[2]]: float(match[1])})


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An instant (ISO 8601; without a zone, local time) or an age before now (``15m``, ``2h``)."""
    if _AGE.match(text):
        return (now or datetime.now(UTC)) - parse_age(text)
    try:
        instant = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidOption(
            f"since {text!r}: give an instant (2026-12-01T03:12, local time unless a zone is given) "
            "or an age (15m, 2h, 1d)"
        ) from None
    return instant if instant.tzinfo else instant.astimezone()


@dataclass(frozen=True)
class LogFilter:
    """Which lines of a log to return.

    Attributes:
        plugin: only this plugin's lines (``meltano`` for meltano's own).
        level: only lines at or above this level.
        since: only lines from this instant on.
        tail: only the last N lines (after the other filters).
    """

    plugin: str | None = None
    level: str | None = None
    since: datetime | None = None
    tail: int | None = None

    def __post_init__(self) -> None:
        if self.level is not None:
            object.__setattr__(self, "level", parse_level(self.level))
        if self.tail is not None and self.tail < 1:
            raise InvalidOption(f"tail {self.tail}: give at least 1 line")

    def keeps(self, line: LogLine) -> bool:
        """Whether ``line`` passes every filter but ``tail``."""
        if self.plugin is not None and (line.plugin or "meltano") != self.plugin:
            return False
        if self.level is not None and level_rank(line.level) < level_rank(self.level):
            return False
        return self.since is None or line.at >= self.since


@dataclass(frozen=True)
class ExecutionLog:
    """An execution's log as the store keeps it (GetExecutionLogs' answer).

    Attributes:
        lines: the lines that pass the filter, oldest first.
        available: whether the store has a log for the execution; if not, ``reason`` says why.
        kept: what was dropped (bound) or pruned, and whether the runner finished the log.
        cursor: the last chunk read, to read only newer lines next (``after=``).
    """

    execution: PipelineExecution
    lines: list[LogLine]
    available: bool
    reason: str | None
    kept: LogKept = field(default_factory=LogKept)
    cursor: int = 0

    @property
    def dropped_note(self) -> str | None:
        """What the bound dropped, for people; None if nothing was."""
        if not self.kept.dropped_lines:
            return None
        return (
            f"{self.kept.dropped_lines:,} older lines ({self.kept.dropped_bytes:,} bytes) were dropped "
            "to keep this log within its bound (FLX_LOG_MAX_BYTES); the newest lines are all here"
        )


def _unavailable(execution: PipelineExecution, kept: LogKept | None) -> str:
    if kept is not None and kept.pruned_at is not None:
        return f"its log was pruned on {kept.pruned_at:%Y-%m-%d %H:%M} UTC ('flx-meltano logs prune')"
    if execution.trigger is Trigger.MELTANO:
        return (
            "it was a bare 'meltano run', recorded from Meltano's own run record: flx-meltano did not "
            "run it, so it never saw its output (run it with 'flx-meltano run' to keep its log)"
        )
    return (
        "the store has no log for it: it ran before flx-meltano kept execution logs, or its runner "
        "could not write any"
    )


def execution_logs(
    ctx: AppContext, execution_id: str, query: LogFilter | None = None, *, after: int = 0
) -> ExecutionLog:
    """GetExecutionLogs: an execution's stored log (by id or unique prefix), filtered.

    NotFound (a usage error naming the id) if there is no such execution. ``after``: only lines of
    chunks after this cursor (a previous answer's ``cursor``).
    """
    query = query or LogFilter()
    execution = find_execution(ctx, execution_id)
    with ctx.unit_of_work() as uow:
        kept = uow.logs.kept(execution.id)
        chunks = uow.logs.chunks(execution.id, after_seq=after)
    cursor = chunks[-1].seq if chunks else after
    available = (
        bool(chunks)
        or after > 0
        or execution.status.is_active
        or (kept is not None and kept.pruned_at is None)
    )
    if not available:
        return ExecutionLog(execution, [], False, _unavailable(execution, kept), kept or LogKept(), cursor)
    lines = [line for chunk in chunks for line in chunk.lines if query.keeps(line)]
    if query.tail is not None:
        lines = lines[-query.tail :]
    return ExecutionLog(execution, lines, True, None, kept or LogKept(), cursor)


def follow_execution_logs(
    ctx: AppContext,
    execution_id: str,
    query: LogFilter | None = None,
    *,
    poll_seconds: float = FOLLOW_POLL_SECONDS,
    grace_seconds: float = FOLLOW_GRACE_SECONDS,
) -> Iterator[LogLine]:
    """The log's lines as the store receives them, until the execution has closed and its runner
    wrote the last line (or, if the runner died, ``grace_seconds`` after the execution closed).

    The first answer honours ``tail``; later lines all come (filtered otherwise).
    """
    query = query or LogFilter()
    first = execution_logs(ctx, execution_id, query)
    yield from first.lines
    if not first.available:
        return
    rest = LogFilter(plugin=query.plugin, level=query.level, since=query.since)
    cursor, closed_at = first.cursor, None
    execution_id = first.execution.id
    log = first
    while True:
        if log.kept.complete:
            return
        if not log.execution.status.is_active:
            closed_at = closed_at or time.monotonic()
            if time.monotonic() - closed_at > grace_seconds:
                return
        time.sleep(poll_seconds)
        log = execution_logs(ctx, execution_id, rest, after=cursor)
        cursor = log.cursor
        yield from log.lines


@dataclass(frozen=True)
class Pruned:
    """What ``prune_logs`` did."""

    ended_before: datetime
    execution_ids: list[str]


def prune_logs(ctx: AppContext, older_than: timedelta | None = None) -> Pruned:
    """Delete the logs of executions that ended more than ``older_than`` ago (default: the
    retention setting, FLX_LOG_RETENTION_DAYS); each keeps a note that it was pruned."""
    age = older_than if older_than is not None else timedelta(days=ctx.settings.log_retention_days)
    if age <= timedelta(0):
        raise InvalidOption(f"older than {age}: give an age of more than 0")
    now = datetime.now(UTC)
    with ctx.unit_of_work() as uow:
        ids = uow.logs.prune(now - age, at=now)
        uow.commit()
    return Pruned(now - age, ids)
