"""SQLAlchemy Core tables of the store (the ``flx`` schema); migrations create them."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA = "flx"
metadata = sa.MetaData(schema=SCHEMA)

pipelines = sa.Table(
    "pipelines",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("environment", sa.Text, nullable=False),
    sa.Column("extractor", sa.Text, nullable=False),
    sa.Column("loader", sa.Text, nullable=False),
    sa.Column("definition", JSONB, nullable=False),
    sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

executions = sa.Table(
    "executions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("pipeline_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("trigger", sa.Text, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Column("duration_seconds", sa.Float),
    sa.Column("streams", JSONB, nullable=False),
    sa.Column("full_refresh", sa.Boolean, nullable=False),
    sa.Column("partition", sa.Text),  # the Dagster partition key of a partitioned run
    sa.Column("error", sa.Text),
    sa.Column("failed_plugin", sa.Text),
    sa.Column("exit_code", sa.Integer),
    sa.Column("dagster_run_id", sa.Text),
    sa.Column("runner_host", sa.Text),
    sa.Column("runner_pid", sa.Integer),
    # States by reference (migration 0003): the snapshot holding it and its checksum (which still
    # names the state if the snapshot was pruned since).
    sa.Column("state_before_snapshot_id", sa.BigInteger),
    sa.Column("state_before_checksum", sa.Text),
    sa.Column("state_after_snapshot_id", sa.BigInteger),
    sa.Column("state_after_checksum", sa.Text),
    # The runner's lease: alive while heartbeat_at (server time) + lease_seconds is in the future.
    sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
    sa.Column("lease_seconds", sa.Float),
    sa.Column("warnings", JSONB, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)

stream_results = sa.Table(
    "stream_results",
    metadata,
    sa.Column(
        "execution_id",
        sa.Text,
        sa.ForeignKey("executions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("stream", sa.Text, primary_key=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("records", sa.BigInteger),  # NULL: no plugin reported a count
    sa.Column("duration_seconds", sa.Float),
    sa.Column("bookmark", JSONB),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)

state_snapshots = sa.Table(
    "state_snapshots",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("state_id", sa.Text, nullable=False),
    sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("label", sa.Text),
    sa.Column("checksum", sa.Text, nullable=False),
    sa.Column("state", JSONB, nullable=False),
    sa.Column("execution_id", sa.Text),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("position", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("stream_id", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("payload", JSONB, nullable=False),
    sa.UniqueConstraint("stream_id", "version", name="events_stream_version"),
)

# Meltano's runs as flx has read them (from Meltano's system database, ``source``): flx's own runs
# are noted with their execution, bare ``meltano run``s were recorded as one (trigger meltano).
meltano_runs = sa.Table(
    "meltano_runs",
    metadata,
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("row_id", sa.BigInteger, nullable=False),
    sa.Column("state_id", sa.Text, nullable=False),
    sa.Column("execution_id", sa.Text, nullable=False),
    sa.Column("launched_by_flx", sa.Boolean, nullable=False),
    sa.Column("meltano_status", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

# An execution's log in chunks of zlib-compressed lines (one JSON array per line, newline-separated).
# seq 0 is the execution's header row: no lines, only what was dropped, pruned or completed.
execution_logs = sa.Table(
    "execution_logs",
    metadata,
    sa.Column(
        "execution_id",
        sa.Text,
        sa.ForeignKey("executions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("first_at", sa.DateTime(timezone=True)),
    sa.Column("last_at", sa.DateTime(timezone=True)),
    sa.Column("line_count", sa.Integer, nullable=False),
    sa.Column("raw_bytes", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("dropped_lines", sa.BigInteger, nullable=False),
    sa.Column("dropped_bytes", sa.BigInteger, nullable=False),
    sa.Column("complete", sa.Boolean, nullable=False),
    sa.Column("pruned_at", sa.DateTime(timezone=True)),
)
