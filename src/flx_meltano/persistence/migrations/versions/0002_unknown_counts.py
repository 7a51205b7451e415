"""Stream record counts may be unknown (NULL): some plugins report no per-stream counts."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "flx"


def upgrade() -> None:
    op.alter_column("stream_results", "records", existing_type=sa.BigInteger, nullable=True, schema=SCHEMA)


def downgrade() -> None:
    # Unknown counts have no honest value in the old schema: refuse rather than invent zeros.
    unknown = (
        op.get_bind()
        .execute(sa.text("SELECT count(*) FROM flx.stream_results WHERE records IS NULL"))
        .scalar()
    )
    if unknown:
        raise RuntimeError(f"{unknown} stream results have unknown record counts; 0001 cannot hold them")
    op.alter_column("stream_results", "records", existing_type=sa.BigInteger, nullable=False, schema=SCHEMA)
