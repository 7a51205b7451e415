"""Liveness by lease: the heartbeat renews it, reconciliation closes only executions whose load is dead."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from flx_meltano.application import reconcile
from flx_meltano.application.context import AppContext
from flx_meltano.application.liveness import (
    Heartbeat,
    RecordNotWritten,
    StoreOutage,
    persist_retrying,
    try_save,
)
from flx_meltano.bootstrap import app_context
from flx_meltano.domain.execution import PipelineExecution, StreamResult
from flx_meltano.domain.values import ExecutionStatus, StreamStatus
from flx_meltano.integration.load_lock import PluginLock
from flx_meltano.integration.processes import this_host
from flx_meltano.persistence import database
from flx_meltano.persistence.tables import executions
from flx_meltano.settings import Settings

PIPELINE = "dev:tap-shopsim-to-target-jsonlines"


def _open(
    ctx: AppContext, *, host: str, pid: int, lease: float | None = 5.0, heartbeat_age: float = 0.0
) -> PipelineExecution:
    execution = PipelineExecution.start(
        str(uuid.uuid4()),
        PIPELINE,
        at=datetime.now(UTC),
        streams=("customers", "orders"),
        runner_host=host,
        runner_pid=pid,
        lease_seconds=lease,
    )
    with ctx.unit_of_work() as uow:
        uow.executions.save(execution)
        uow.commit()
    with database.ready_engine(ctx.store_url()).begin() as conn:
        conn.execute(
            sa.update(executions)
            .where(executions.c.id == execution.id)
            .values(heartbeat_at=sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, heartbeat_age))
        )
    return execution


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _status(ctx: AppContext, execution_id: str) -> PipelineExecution:
    with ctx.unit_of_work() as uow:
        return uow.executions.get(execution_id)


def test_the_heartbeat_renews_the_lease_on_the_stores_clock(meltano_sandbox, store_url):
    ctx = meltano_sandbox.context(store_url)
    execution = _open(ctx, host=this_host(), pid=os.getpid(), heartbeat_age=120)
    assert _status(ctx, execution.id).heartbeat_at < datetime.now(UTC) - timedelta(seconds=100)
    beat = Heartbeat(ctx, execution.id, 60, StoreOutage("the store"))
    assert beat.beat()
    stored = _status(ctx, execution.id)
    with ctx.unit_of_work() as uow:
        now = uow.executions.now()
    assert abs((now - stored.heartbeat_at).total_seconds()) < 5
    assert stored.lease_expired(now) is False
    assert stored.lease_seconds == 5.0


def test_reconcile_closes_only_executions_whose_load_is_dead(meltano_sandbox, store_url, tmp_path):
    ctx = meltano_sandbox.context(store_url)
    elsewhere_fresh = _open(ctx, host="another-host", pid=1, lease=600, heartbeat_age=1)
    elsewhere_expired = _open(ctx, host="another-host", pid=1, heartbeat_age=60)
    # On this host the runner's pid and the load's lock are trusted over the lease.
    here_runner_alive = _open(ctx, host=this_host(), pid=os.getpid(), heartbeat_age=60)
    here_load_alive = _open(ctx, host=this_host(), pid=_dead_pid(), heartbeat_age=60)
    here_dead_fresh_lease = _open(ctx, host=this_host(), pid=_dead_pid(), heartbeat_age=0)
    legacy_elsewhere = _open(ctx, host="another-host", pid=1, lease=None, heartbeat_age=600)
    lock = PluginLock.acquire(ctx.settings.project_dir, "flx-test-lease")
    try:
        lock.take(holder=here_load_alive.id)  # re-record the holder: the load of that run holds it
        closed = reconcile.reconcile(ctx)
    finally:
        lock.release()
    assert {e.id for e in closed} == {elsewhere_expired.id, here_dead_fresh_lease.id}
    for alive in (elsewhere_fresh, here_runner_alive, here_load_alive, legacy_elsewhere):
        assert _status(ctx, alive.id).status is ExecutionStatus.RUNNING
    crashed = _status(ctx, elsewhere_expired.id)
    assert crashed.status is ExecutionStatus.CRASHED
    assert "no heartbeat for" in (crashed.error or "")
    assert "Meltano kept no state" in (crashed.error or "")
    # Counts nobody saw are unknown, never 0.
    assert {r.stream: r.records for r in crashed.results.values()} == {"customers": None, "orders": None}
    assert all(r.status is StreamStatus.FAILED for r in crashed.results.values())
    # The lock's holder gone, the same execution is dead too.
    assert {e.id for e in reconcile.reconcile(ctx)} == {here_load_alive.id}


def test_a_store_outage_keeps_the_record_in_memory(meltano_sandbox, store_url):
    ctx = meltano_sandbox.context(store_url)
    execution = _open(ctx, host=this_host(), pid=os.getpid())
    with ctx.unit_of_work() as uow:
        execution = uow.executions.get(execution.id)
    down = app_context(
        Settings(
            database_url="postgresql://postgres@127.0.0.1:9/nowhere", project_dir=ctx.settings.project_dir
        ),
        env=meltano_sandbox.env,
    )
    outage = StoreOutage("the store at 127.0.0.1:9")
    execution.record_stream(StreamResult("customers", 3, StreamStatus.SUCCEEDED), at=datetime.now(UTC))
    version = execution.version
    assert not try_save(down, execution, outage)
    assert outage.down
    assert execution.version == version
    assert len(execution.pending_events) == 1
    line = outage.announcement(30)
    assert line is not None
    assert "127.0.0.1:9" in line
    assert "the load goes on" in line
    assert outage.announcement(30) is None  # said once
    with pytest.raises(RecordNotWritten, match="stayed unreachable for 1s"):
        persist_retrying(down, execution, lambda uow: uow.executions.save(execution), outage, 1.0)
    assert len(execution.pending_events) == 1  # nothing lost
    # The store is back: everything kept is written at once.
    persist_retrying(ctx, execution, lambda uow: uow.executions.save(execution), outage, 1.0)
    assert not outage.down
    assert _status(ctx, execution.id).results["customers"].records == 3


def test_an_outage_over_before_it_was_told_is_still_told_once():
    # The heartbeat fails and then succeeds again between two lines of meltano's output.
    outage = StoreOutage("the store at 127.0.0.1:9")
    assert outage.announcement(30) is None  # nothing happened
    outage.failed(ConnectionError("connection refused"))
    outage.recovered()
    assert not outage.down
    line = outage.announcement(30)
    assert line is not None
    assert "connection refused" in line
    assert outage.announcement(30) is None
