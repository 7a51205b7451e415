"""Execution logs: every execution's lines, zlib-compressed in chunks, with a header row per execution."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SCHEMA = "flx"


def upgrade() -> None:
    op.create_table(
        "execution_logs",
        sa.Column(
            "execution_id",
            sa.Text,
            sa.ForeignKey(f"{SCHEMA}.executions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("first_at", sa.DateTime(timezone=True)),
        sa.Column("last_at", sa.DateTime(timezone=True)),
        sa.Column("line_count", sa.Integer, nullable=False),
        sa.Column("raw_bytes", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("dropped_lines", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("dropped_bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("complete", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("pruned_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("execution_logs", schema=SCHEMA)
