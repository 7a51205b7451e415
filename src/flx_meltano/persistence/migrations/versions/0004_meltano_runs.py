"""Meltano's own runs read from its system database: one row per Meltano run id, once."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SCHEMA = "flx"


def upgrade() -> None:
    op.create_table(
        "meltano_runs",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("row_id", sa.BigInteger, nullable=False),
        sa.Column("state_id", sa.Text, nullable=False),
        sa.Column("execution_id", sa.Text, nullable=False),
        sa.Column("launched_by_flx", sa.Boolean, nullable=False),
        sa.Column("meltano_status", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        schema=SCHEMA,
    )
    op.create_index("meltano_runs_source_row", "meltano_runs", ["source", "row_id"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("meltano_runs", schema=SCHEMA)
