"""Record the ``meltano run``s flx did not launch, from Meltano's own records, once each.

Meltano keeps a row per extract-load run in its system database. Each one flx has not seen
becomes an execution with trigger ``meltano`` (its id is Meltano's run id): Meltano's status and
times, the state before and after (as snapshots), a result per stream whose bookmark moved, and
unknown record counts (nobody watched the run). A run still RUNNING is recorded RUNNING and
closed by a later sync. flx's own runs (their execution id is Meltano's run id) are only noted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flx_meltano.application.context import AppContext
from flx_meltano.application.ports import UnitOfWork
from flx_meltano.application.state_guard import regression_warnings, snapshot_if_changed, state_of
from flx_meltano.domain.errors import InvalidState
from flx_meltano.domain.execution import PipelineExecution, StreamResult
from flx_meltano.domain.meltano_runs import MeltanoRunRecord, MeltanoRunStatus, state_before
from flx_meltano.domain.snapshots import SnapshotReason, StateRef
from flx_meltano.domain.state import BookmarkChange, SingerState, diff_states
from flx_meltano.domain.values import StreamStatus, Trigger
from flx_meltano.integration.meltano_runs import system_database_uri
from flx_meltano.persistence.database import mask_password
from flx_meltano.persistence.errors import NotFound
from flx_meltano.persistence.meltano_system_db import MeltanoDatabaseUnreadable, MeltanoSystemDb

__all__ = ["MeltanoDatabaseUnreadable", "SyncReport", "sync_meltano_runs"]

LOST_HEARTBEAT = "meltano stopped heartbeating for 5 minutes while RUNNING: it was most likely killed"
FOLLOWING = "RUNNING"
LOST = "LOST"


@dataclass(frozen=True)
class SyncReport:
    """What one sync did: executions recorded, closed, still followed; flx's own runs noted."""

    source: str
    recorded: tuple[str, ...] = ()
    closed: tuple[str, ...] = ()
    running: tuple[str, ...] = ()
    own: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether anything was written."""
        return bool(self.recorded or self.closed or self.own)


def system_db(ctx: AppContext) -> MeltanoSystemDb:
    """Meltano's system database of the context's project, as meltano itself would find it."""
    uri = system_database_uri(ctx.settings.project_dir, dict(ctx.env))
    return MeltanoSystemDb(uri, redact=mask_password)


def _state(payload: Any, where: str) -> SingerState | None:
    """A run's state as a value; None when it has none, or none that is Singer state."""
    if payload is None:
        return None
    try:
        return SingerState.from_payload({"singer_state": payload}, where=where)
    except InvalidState:
        return None


def _now() -> datetime:
    return datetime.now(UTC)


def _close(
    execution: PipelineExecution,
    record: MeltanoRunRecord,
    before: SingerState | None,
    after: SingerState | None,
    after_ref: StateRef | None,
) -> None:
    """Close a bare run's execution as Meltano ended it, with the streams whose bookmark moved."""
    now = _now()
    if record.heartbeat_lost(now):
        execution.crash(LOST_HEARTBEAT, at=record.last_heartbeat_at or record.started_at)
        return
    if record.status is MeltanoRunStatus.DEAD:
        execution.crash("meltano recorded the run DEAD", at=record.ended_at or now)
        return
    ended = record.ended_at or now
    for diff in diff_states(before, after):
        if diff.change in (BookmarkChange.UNCHANGED, BookmarkChange.REMOVED):
            continue
        # A bookmark moves only once the loader confirmed the records before it.
        execution.record_stream(
            StreamResult(
                stream=diff.stream, records=None, status=StreamStatus.SUCCEEDED, bookmark=diff.after
            ),
            at=ended,
        )
    warnings = regression_warnings(before, after, full_refresh=False)
    if record.status is MeltanoRunStatus.SUCCESS:
        execution.succeed(at=ended, state_after=after_ref, warnings=warnings)
    else:
        execution.fail(
            record.error or f"meltano recorded the run {record.status}",
            at=ended,
            state_after=after_ref,
            warnings=warnings,
        )


def _close_with_state(
    uow: UnitOfWork,
    execution: PipelineExecution,
    record: MeltanoRunRecord,
    before: SingerState | None,
    where: str,
) -> None:
    """Close ``execution`` with the state Meltano's run wrote, stored as a snapshot (once)."""
    after = _state(record.state_after(before.singer_state if before else None), f"{where}: state after")
    after_ref = (
        snapshot_if_changed(uow, record.state_id, after, SnapshotReason.POST_RUN, execution.id)
        if after is not None
        else None
    )
    _close(execution, record, before, after, after_ref)


def status_to_remember(record: MeltanoRunRecord, now: datetime | None = None) -> str:
    """What to remember of a run: RUNNING ones are followed (FOLLOWING), one that stopped
    heartbeating is LOST (recorded CRASHED), the rest keep Meltano's status."""
    if record.is_running:
        return LOST if record.heartbeat_lost(now or _now()) else FOLLOWING
    return str(record.status)


def _own_execution(uow: UnitOfWork, record: MeltanoRunRecord) -> str | None:
    """The flx execution that launched this Meltano run, if any: same id, or (for a run id flx
    did not choose) an flx execution of the same state id that was running when it started."""
    try:
        return uow.executions.get(record.run_id).id
    except NotFound:
        pass
    return uow.executions.covering(record.state_id, record.started_at, exclude_trigger=str(Trigger.MELTANO))


def _record_new(
    uow: UnitOfWork, db: MeltanoSystemDb, record: MeltanoRunRecord
) -> tuple[str, PipelineExecution | None]:
    """Note one run not seen before: ('own'|'recorded'|'taken', the execution recorded)."""
    own = _own_execution(uow, record)
    if own is not None:
        uow.meltano_runs.claim(
            run_id=record.run_id,
            source=db.source,
            row_id=record.row_id,
            state_id=record.state_id,
            execution_id=own,
            launched_by_flx=True,
            meltano_status=str(record.status),
        )
        return "own", None
    if not uow.meltano_runs.claim(
        run_id=record.run_id,
        source=db.source,
        row_id=record.row_id,
        state_id=record.state_id,
        execution_id=record.run_id,
        launched_by_flx=False,
        meltano_status=status_to_remember(record),
    ):
        return "taken", None  # a concurrent sync recorded it
    where = f"Meltano run {record.run_id} of {record.state_id}"
    before = _state(state_before(db.earlier_states(record)), f"{where}: state before")
    before_ref = (
        snapshot_if_changed(uow, record.state_id, before, SnapshotReason.PRE_RUN, record.run_id)
        if before is not None
        else None
    )
    execution = PipelineExecution.start(
        record.run_id,
        record.state_id,
        at=record.started_at,
        trigger=Trigger.MELTANO,
        state_before=before_ref,
    )
    if status_to_remember(record) != FOLLOWING:
        _close_with_state(uow, execution, record, before, where)
    uow.executions.save(execution)
    return "recorded", execution


def _close_followed(
    uow: UnitOfWork, db: MeltanoSystemDb, record: MeltanoRunRecord, execution_id: str
) -> PipelineExecution | None:
    """Close a bare run recorded RUNNING once Meltano ended it (None: still running)."""
    status = status_to_remember(record)
    if status == FOLLOWING:
        return None
    uow.meltano_runs.set_status(record.run_id, status)
    execution = uow.executions.get(execution_id, for_update=True)
    if not execution.status.is_active:
        return None
    where = f"Meltano run {record.run_id} of {record.state_id}"
    before = state_of(uow, execution.state_before)
    _close_with_state(uow, execution, record, before, where)
    uow.executions.save(execution)
    return execution


def sync_meltano_runs(ctx: AppContext) -> SyncReport:
    """Record every Meltano run of the project's system database that flx has not recorded yet.

    Cheap when nothing is new: one query on the store, one on Meltano's system database.
    Idempotent by Meltano's run id, also with concurrent syncs.
    """
    db = system_db(ctx)
    try:
        with ctx.unit_of_work() as uow:
            last = uow.meltano_runs.last_row_id(db.source)
            followed = uow.meltano_runs.followed(db.source)
        records = db.runs_after(last, followed)
        if not records:
            return SyncReport(db.source)
        recorded: list[str] = []
        closed: list[str] = []
        running: list[str] = []
        own: list[str] = []
        with ctx.unit_of_work() as uow:
            for record in records:
                if record.run_id in followed:
                    execution = _close_followed(uow, db, record, followed[record.run_id])
                    if execution is not None:
                        closed.append(execution.id)
                    elif status_to_remember(record) == FOLLOWING:
                        running.append(record.run_id)
                elif record.row_id > last:
                    outcome, execution = _record_new(uow, db, record)
                    if outcome == "own":
                        own.append(record.run_id)
                    elif execution is not None:
                        recorded.append(execution.id)
                        if execution.status.is_active:
                            running.append(execution.id)
                uow.commit()  # run by run: what is recorded stays recorded
        return SyncReport(db.source, tuple(recorded), tuple(closed), tuple(running), tuple(own))
    finally:
        db.close()
