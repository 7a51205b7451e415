"""The partition key of a partitioned run, on its execution."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SCHEMA = "flx"


def upgrade() -> None:
    op.add_column("executions", sa.Column("partition", sa.Text), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("executions", "partition", schema=SCHEMA)
