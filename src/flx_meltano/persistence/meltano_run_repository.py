"""Meltano's runs flx has read: where reading resumes, which are still followed, claimed once each."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from flx_meltano.persistence.tables import meltano_runs


class MeltanoRunRepository:
    """Rows of ``flx.meltano_runs`` on the unit of work's connection."""

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection

    def last_row_id(self, source: str) -> int:
        """The newest Meltano row id read from ``source`` (0: none yet)."""
        value = self.connection.execute(
            sa.select(sa.func.max(meltano_runs.c.row_id)).where(meltano_runs.c.source == source)
        ).scalar()
        return int(value or 0)

    def followed(self, source: str) -> dict[str, str]:
        """Bare runs recorded while still RUNNING: Meltano run id -> execution id."""
        rows = self.connection.execute(
            sa.select(meltano_runs.c.run_id, meltano_runs.c.execution_id).where(
                meltano_runs.c.source == source,
                meltano_runs.c.meltano_status == "RUNNING",
                meltano_runs.c.launched_by_flx.is_(False),
            )
        )
        return {run_id: execution_id for run_id, execution_id in rows}

    def claim(
        self,
        *,
        run_id: str,
        source: str,
        row_id: int,
        state_id: str,
        execution_id: str,
        launched_by_flx: bool,
        meltano_status: str,
    ) -> bool:
        """Note a Meltano run once; False when it was noted already (by this or a concurrent sync)."""
        statement = (
            insert(meltano_runs)
            .values(
                run_id=run_id,
                source=source,
                row_id=row_id,
                state_id=state_id,
                execution_id=execution_id,
                launched_by_flx=launched_by_flx,
                meltano_status=meltano_status,
            )
            .on_conflict_do_nothing(index_elements=[meltano_runs.c.run_id])
            .returning(meltano_runs.c.run_id)
        )
        return self.connection.execute(statement).scalar() is not None

    def set_status(self, run_id: str, meltano_status: str) -> None:
        """The Meltano status last seen of a followed run."""
        self.connection.execute(
            sa.update(meltano_runs)
            .where(meltano_runs.c.run_id == run_id)
            .values(meltano_status=meltano_status)
        )
