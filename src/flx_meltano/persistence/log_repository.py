"""Execution logs in the store: chunks of zlib-compressed lines per execution, and a header row."""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from flx_meltano.domain.logs import LogChunk, LogKept, LogLine, LogSize
from flx_meltano.persistence.tables import execution_logs, executions

HEADER_SEQ = 0  # the header row; chunks of lines count from 1
COMPRESSION_LEVEL = 6
_EMPTY = zlib.compress(b"")


def encode(lines: Sequence[LogLine]) -> bytes:
    """Lines as text: one JSON array ``[epoch milliseconds, level, plugin, message]`` a line."""
    return "\n".join(
        json.dumps(
            [round(line.at.timestamp() * 1000), line.level, line.plugin, line.message], ensure_ascii=False
        )
        for line in lines
    ).encode()


def decode(text: bytes) -> list[LogLine]:
    """The lines ``encode`` wrote."""
    lines = []
    for row in text.decode().splitlines():
        at, level, plugin, message = json.loads(row)
        lines.append(LogLine(datetime.fromtimestamp(at / 1000, UTC), level, plugin, message))
    return lines


def _header(execution_id: str, **values: object) -> sa.Insert:
    """Insert the header row of ``execution_id`` or, if it exists, update these columns of it."""
    row: dict[str, object] = {
        "execution_id": execution_id,
        "seq": HEADER_SEQ,
        "line_count": 0,
        "raw_bytes": 0,
        "data": _EMPTY,
        "dropped_lines": 0,
        "dropped_bytes": 0,
        "complete": False,
    }
    statement = insert(execution_logs).values({**row, **values})
    updates = {
        key: (execution_logs.c[key] + statement.excluded[key]) if key.startswith("dropped_") else value
        for key, value in values.items()
    }
    return statement.on_conflict_do_update(index_elements=["execution_id", "seq"], set_=updates)


class ExecutionLogRepository:
    """Reads and writes ``flx.execution_logs`` on one connection (the unit of work's)."""

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection

    def append(self, execution_id: str, seq: int, lines: Sequence[LogLine]) -> int:
        """Store ``lines`` as chunk ``seq`` (from 1); the raw bytes they took."""
        raw = encode(lines)
        self.connection.execute(
            execution_logs.insert().values(
                execution_id=execution_id,
                seq=seq,
                first_at=lines[0].at,
                last_at=lines[-1].at,
                line_count=len(lines),
                raw_bytes=len(raw),
                data=zlib.compress(raw, COMPRESSION_LEVEL),
                dropped_lines=0,
                dropped_bytes=0,
                complete=False,
            )
        )
        return len(raw)

    def drop(self, execution_id: str, seqs: Sequence[int], lines: int, raw_bytes: int) -> None:
        """Delete chunks ``seqs`` and count their ``lines`` and ``raw_bytes`` as dropped."""
        self.connection.execute(
            execution_logs.delete().where(
                execution_logs.c.execution_id == execution_id, execution_logs.c.seq.in_(list(seqs))
            )
        )
        self.connection.execute(_header(execution_id, dropped_lines=lines, dropped_bytes=raw_bytes))

    def complete(self, execution_id: str) -> None:
        """Note that the runner wrote the log's last line."""
        self.connection.execute(_header(execution_id, complete=True))

    def kept(self, execution_id: str) -> LogKept | None:
        """The header of an execution's log; None if it has none (no line was ever dropped,
        pruned, nor the log completed)."""
        row = self.connection.execute(
            sa.select(execution_logs).where(
                execution_logs.c.execution_id == execution_id, execution_logs.c.seq == HEADER_SEQ
            )
        ).first()
        if row is None:
            return None
        return LogKept(row.dropped_lines, row.dropped_bytes, row.complete, row.pruned_at)

    def chunks(self, execution_id: str, after_seq: int = HEADER_SEQ) -> list[LogChunk]:
        """The chunks of lines after ``after_seq``, in order."""
        rows = self.connection.execute(
            sa.select(execution_logs.c.seq, execution_logs.c.data)
            .where(execution_logs.c.execution_id == execution_id, execution_logs.c.seq > after_seq)
            .order_by(execution_logs.c.seq)
        )
        return [LogChunk(row.seq, decode(zlib.decompress(row.data))) for row in rows]

    def size(self, execution_id: str) -> LogSize:
        """Lines, raw bytes and stored (compressed) bytes of an execution's log."""
        row = self.connection.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(execution_logs.c.line_count), 0),
                sa.func.coalesce(sa.func.sum(execution_logs.c.raw_bytes), 0),
                sa.func.coalesce(sa.func.sum(sa.func.octet_length(execution_logs.c.data)), 0),
            ).where(execution_logs.c.execution_id == execution_id, execution_logs.c.seq > HEADER_SEQ)
        ).one()
        return LogSize(int(row[0]), int(row[1]), int(row[2]))

    def prune(self, ended_before: datetime, at: datetime) -> list[str]:
        """Delete the lines of every closed execution that ended before ``ended_before``, keeping
        a header that says when; the ids of the executions pruned."""
        old = (
            sa.select(executions.c.id)
            .where(executions.c.ended_at.is_not(None), executions.c.ended_at < ended_before)
            .scalar_subquery()
        )
        pruned = [
            row.execution_id
            for row in self.connection.execute(
                execution_logs.delete()
                .where(execution_logs.c.seq > HEADER_SEQ, execution_logs.c.execution_id.in_(old))
                .returning(execution_logs.c.execution_id)
            )
        ]
        ids = sorted(set(pruned))
        for execution_id in ids:
            self.connection.execute(_header(execution_id, pruned_at=at))
        return ids
