"""Keep a running execution's log in the store: buffer lines, write a chunk every second, bounded."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from flx_meltano.application.ports import UnitOfWork
from flx_meltano.domain.execution import PipelineExecution
from flx_meltano.domain.logs import LogLine

FLUSH_SECONDS = 1.0  # a live run's lines reach the store (and `logs --follow`) within this
FLUSH_LINES = 2000  # ... or as soon as this many are waiting
MAX_LINE_CHARS = 16_000  # a plugin may log a whole payload as one line
CHUNK_BYTES = 512 * 1024  # most raw bytes of one chunk (a chunk is never split when dropped)

_log = logging.getLogger(__name__)


def _bounded(message: str) -> str:
    return message if len(message) <= MAX_LINE_CHARS else message[: MAX_LINE_CHARS - 1] + "…"


@dataclass
class _Written:
    seq: int
    lines: int
    raw_bytes: int


class LogKeeper:
    """Writes one execution's (already masked) log lines to the store from a thread of its own.

    ``add`` only appends to a buffer, so the run never waits for the store. Every
    ``flush_seconds`` (or ``flush_lines`` lines) the buffer becomes one compressed chunk. Past
    ``max_bytes`` of raw lines the oldest chunks are deleted and counted as dropped: the newest
    lines, where an error's tail is, are always kept. A store that fails keeps the lines buffered
    (within the bound) for the next try; the run goes on either way.
    """

    def __init__(
        self,
        unit_of_work: Callable[[], UnitOfWork],
        execution_id: str,
        *,
        max_bytes: int,
        flush_seconds: float = FLUSH_SECONDS,
        flush_lines: int = FLUSH_LINES,
    ) -> None:
        self.unit_of_work = unit_of_work
        self.execution_id = execution_id
        self.max_bytes = max_bytes
        self.flush_seconds = flush_seconds
        self.flush_lines = flush_lines
        self.chunk_bytes = max(1024, min(CHUNK_BYTES, max_bytes // 8))
        self._buffer: list[LogLine] = []
        self._buffered_bytes = 0
        self._written: deque[_Written] = deque()
        self._kept_bytes = 0
        self._seq = 0
        self._unwritten_drops = (0, 0)  # dropped from the buffer while the store failed
        self._wake = threading.Condition()
        self._closing = False
        self._flush_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=f"flx-log-{execution_id[:8]}", daemon=True)
        self._thread.start()

    def add(self, level: str, plugin: str | None, message: str) -> None:
        """One (masked) line, stamped now."""
        line = LogLine(datetime.now(UTC), level, plugin, _bounded(message))
        with self._wake:
            self._buffer.append(line)
            self._buffered_bytes += len(message) + 40
            if len(self._buffer) >= self.flush_lines or self._buffered_bytes >= self.chunk_bytes:
                self._wake.notify()

    def close(self, last_line: tuple[str, str] | None = None) -> None:
        """Write what is buffered (and ``last_line``: level, message), and mark the log complete."""
        if last_line is not None:
            self.add(last_line[0], None, last_line[1])
        with self._wake:
            if self._closing:
                return
            self._closing = True
            self._wake.notify()
        self._thread.join()
        try:
            self._flush()
            with self.unit_of_work() as uow:
                uow.logs.complete(self.execution_id)
                uow.commit()
        except Exception as exc:  # the run's outcome matters more than its log
            _log.warning("the log of execution %s could not be completed: %s", self.execution_id, exc)

    def _loop(self) -> None:
        while True:
            with self._wake:
                if not self._closing:
                    self._wake.wait(self.flush_seconds)
                if self._closing:
                    return
            try:
                self._flush()
            except Exception as exc:  # retried at the next tick
                _log.warning("the log of execution %s could not be written: %s", self.execution_id, exc)

    def _take(self) -> list[LogLine]:
        with self._wake:
            lines, self._buffer, self._buffered_bytes = self._buffer, [], 0
        return lines

    def _give_back(self, lines: list[LogLine]) -> None:
        """Lines the store did not take: first in line again, the oldest dropped past the bound."""
        with self._wake:
            self._buffer[:0] = lines
            size = sum(len(line.message) + 40 for line in self._buffer)
            dropped_lines, dropped_bytes = self._unwritten_drops
            while self._buffer and size > self.max_bytes:
                gone = self._buffer.pop(0)
                size -= len(gone.message) + 40
                dropped_lines, dropped_bytes = dropped_lines + 1, dropped_bytes + len(gone.message) + 40
            self._unwritten_drops = (dropped_lines, dropped_bytes)
            self._buffered_bytes = size

    def _flush(self) -> None:
        with self._flush_lock:
            lines = self._take()
            if not lines:
                return
            try:
                self._write(lines)
            except Exception:
                self._give_back(lines)
                raise

    def _pieces(self, lines: list[LogLine]) -> list[list[LogLine]]:
        """``lines`` cut into chunks of about ``chunk_bytes`` each, so the bound drops little at a time."""
        pieces: list[list[LogLine]] = [[]]
        size = 0
        for line in lines:
            if pieces[-1] and size + len(line.message) + 40 > self.chunk_bytes:
                pieces.append([])
                size = 0
            pieces[-1].append(line)
            size += len(line.message) + 40
        return pieces

    def _write(self, lines: list[LogLine]) -> None:
        with self.unit_of_work() as uow:
            seq = self._seq
            written = list(self._written)
            kept = self._kept_bytes
            for piece in self._pieces(lines):
                seq += 1
                raw = uow.logs.append(self.execution_id, seq, piece)
                written.append(_Written(seq, len(piece), raw))
                kept += raw
            drop: list[_Written] = []
            while kept > self.max_bytes and len(written) > 1:
                oldest = written.pop(0)
                drop.append(oldest)
                kept -= oldest.raw_bytes
            buffer_lines, buffer_bytes = self._unwritten_drops
            if drop or buffer_lines:
                uow.logs.drop(
                    self.execution_id,
                    [w.seq for w in drop],
                    sum(w.lines for w in drop) + buffer_lines,
                    sum(w.raw_bytes for w in drop) + buffer_bytes,
                )
            uow.commit()
        self._seq, self._written, self._kept_bytes = seq, deque(written), kept
        self._unwritten_drops = (0, 0)


def closing_line(execution: PipelineExecution) -> tuple[str, str]:
    """The log's last line: how the execution ended (level, message; its error is masked already)."""
    if execution.error:
        return "error", f"execution {execution.status}: {execution.error}"
    return "info", f"execution {execution.status}"
