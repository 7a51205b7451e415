"""The store: pipelines, executions, stream results, state snapshots and the event log."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "flx"
JSONB = postgresql.JSONB(astext_type=sa.Text())
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "pipelines",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("environment", sa.Text, nullable=False),
        sa.Column("extractor", sa.Text, nullable=False),
        sa.Column("loader", sa.Text, nullable=False),
        sa.Column("definition", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        schema=SCHEMA,
    )
    op.create_table(
        "executions",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("pipeline_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("trigger", sa.Text, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("duration_seconds", sa.Float),
        sa.Column("streams", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("full_refresh", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("error", sa.Text),
        sa.Column("failed_plugin", sa.Text),
        sa.Column("exit_code", sa.Integer),
        sa.Column("dagster_run_id", sa.Text),
        sa.Column("runner_host", sa.Text),
        sa.Column("runner_pid", sa.Integer),
        sa.Column("state_before", JSONB),
        sa.Column("state_after", JSONB),
        sa.Column("warnings", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("version", sa.Integer, nullable=False),
        schema=SCHEMA,
    )
    op.create_index(
        "executions_pipeline_started",
        "executions",
        ["pipeline_id", sa.text("started_at DESC")],
        schema=SCHEMA,
    )
    op.create_index(
        "executions_status_started",
        "executions",
        ["status", sa.text("started_at DESC")],
        schema=SCHEMA,
    )
    op.create_index("executions_started", "executions", [sa.text("started_at DESC")], schema=SCHEMA)
    op.create_table(
        "stream_results",
        sa.Column(
            "execution_id",
            sa.Text,
            sa.ForeignKey(f"{SCHEMA}.executions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("stream", sa.Text, primary_key=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("records", sa.BigInteger, nullable=False),
        sa.Column("duration_seconds", sa.Float),
        sa.Column("bookmark", JSONB),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.create_table(
        "state_snapshots",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("state_id", sa.Text, nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("label", sa.Text),
        sa.Column("checksum", sa.Text, nullable=False),
        sa.Column("state", JSONB, nullable=False),
        sa.Column("execution_id", sa.Text),
        schema=SCHEMA,
    )
    op.create_index(
        "state_snapshots_state_taken",
        "state_snapshots",
        ["state_id", sa.text("taken_at DESC")],
        schema=SCHEMA,
    )
    op.create_table(
        "events",
        sa.Column("position", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("stream_id", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.UniqueConstraint("stream_id", "version", name="events_stream_version"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    for table in ("events", "state_snapshots", "stream_results", "executions", "pipelines"):
        op.drop_table(table, schema=SCHEMA)
