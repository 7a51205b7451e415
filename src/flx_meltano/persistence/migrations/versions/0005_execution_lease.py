"""Executions carry a lease: the runner's last heartbeat and how long it stays valid."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = "flx"


def upgrade() -> None:
    # Executions of older runners have neither: the reconciler falls back to their runner's pid.
    op.add_column("executions", sa.Column("heartbeat_at", sa.DateTime(timezone=True)), schema=SCHEMA)
    op.add_column("executions", sa.Column("lease_seconds", sa.Float), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("executions", "lease_seconds", schema=SCHEMA)
    op.drop_column("executions", "heartbeat_at", schema=SCHEMA)
