"""Bare `meltano run`s (no flx) are recorded from Meltano's system database, once each."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from flx_meltano.application import commands, queries
from flx_meltano.application.run import RunOptions, run
from flx_meltano.application.sync import sync_meltano_runs
from flx_meltano.domain.values import ExecutionStatus, Trigger
from flx_meltano.integration.meltano_runs import system_database_uri
from flx_meltano.persistence.meltano_system_db import source_label

REPO = Path(__file__).resolve().parents[1]
MELTANO = str(REPO / ".venv" / "bin" / "meltano")
FLX = str(REPO / ".venv" / "bin" / "flx-meltano")
PIPELINE = "dev:tap-shopsim-to-target-jsonlines"
DAY_1 = "2024-01-02T00:00:00"  # tap-shopsim's default as_of: start_date + 1 day
DAY_2 = "2024-01-02T12:00:00"


def bare_meltano_run(env: dict[str, str], **extra: str) -> subprocess.CompletedProcess[str]:
    """``meltano run tap-shopsim target-jsonlines`` as a Meltano user types it, no flx around."""
    return subprocess.run(
        [MELTANO, "run", "tap-shopsim", "target-jsonlines"],
        cwd=REPO,
        env={**os.environ, **env, **extra},
        capture_output=True,
        text=True,
        timeout=300,
    )


def flx_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLX, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_two_bare_meltano_runs_become_two_executions_with_their_state(meltano_sandbox, default_store_url):
    env = meltano_sandbox.env
    first = bare_meltano_run(env)
    assert first.returncode == 0, first.stderr[-3000:]
    second = bare_meltano_run(env, TAP_SHOPSIM_AS_OF=f"{DAY_2}Z")
    assert second.returncode == 0, second.stderr[-3000:]

    ctx = meltano_sandbox.context(default_store_url)
    report = sync_meltano_runs(ctx)
    assert len(report.recorded) == 2
    assert not report.own
    assert not report.running
    assert source_label(system_database_uri(REPO, env)) == report.source

    older, newer = sorted(queries.execution_history(ctx, pipeline=PIPELINE), key=lambda e: e.started_at)
    for execution in (older, newer):
        assert execution.trigger is Trigger.MELTANO
        assert execution.status is ExecutionStatus.SUCCEEDED
        assert execution.ended_at is not None
        assert execution.started_at < execution.ended_at
        assert execution.records is None  # nobody counted: unknown, never 0
    # The first run starts from nothing and adds every incremental bookmark.
    assert older.state_before is None
    assert older.results["orders"].bookmark["replication_key_value"].startswith(DAY_1)
    assert older.results["orders"].records is None
    assert newer.state_before == older.state_after
    assert newer.results["orders"].bookmark["replication_key_value"].startswith(DAY_2)
    assert "products" not in newer.results  # full table: no bookmark moved
    assert newer.state_after.checksum == ctx.state_store.get(PIPELINE).checksum  # type: ignore[union-attr]
    snapshots = ctx.unit_of_work()
    with snapshots as uow:
        taken = {s.checksum for s in uow.snapshots.list(PIPELINE)}
    assert len(taken) == 2  # the state after each run (the second run's before is the first's after)

    # Nothing new: nothing recorded, also when asked again.
    again = sync_meltano_runs(ctx)
    assert not again.changed
    assert len(queries.execution_history(ctx, pipeline=PIPELINE)) == 2

    # The CLI lists them (it syncs first) as a person and a program read them.
    cli_env = {**os.environ, **env, "FLX_DATABASE_URL": default_store_url, "FLX_PROJECT_DIR": str(REPO)}
    table = flx_cli(cli_env, "executions", "--pipeline", PIPELINE)
    assert table.returncode == 0, table.stderr
    assert table.stdout.count("meltano") >= 2
    assert older.id[:8] in table.stdout
    listed = json.loads(flx_cli(cli_env, "executions", "--json").stdout)
    assert [e["trigger"] for e in listed] == ["meltano", "meltano"]
    assert listed[0]["id"] == newer.id
    orders = next(r for r in listed[0]["results"] if r["stream"] == "orders")
    assert orders["records"] is None
    assert orders["bookmark"]["replication_key_value"].startswith(DAY_2)
    synced = json.loads(flx_cli(cli_env, "sync", "--json").stdout)
    assert synced["recorded"] == []
    assert synced["closed"] == []
    ctx.close()


def test_flx_runs_are_not_recorded_twice(meltano_sandbox, default_store_url):
    ctx = meltano_sandbox.context(default_store_url)
    [own] = run(ctx, PIPELINE, RunOptions())
    bare = bare_meltano_run(meltano_sandbox.env, TAP_SHOPSIM_AS_OF=f"{DAY_2}Z")
    assert bare.returncode == 0, bare.stderr[-3000:]
    report = sync_meltano_runs(ctx)
    assert report.own == (own.id,)
    [recorded] = report.recorded
    newest, oldest = queries.execution_history(ctx, pipeline=PIPELINE)
    assert (oldest.id, oldest.trigger) == (own.id, Trigger.API)
    assert (newest.id, newest.trigger) == (recorded, Trigger.MELTANO)
    assert newest.state_before == own.state_after  # the chain runs through flx's own run
    assert not sync_meltano_runs(ctx).changed
    ctx.close()


def test_a_running_meltano_run_is_followed_until_it_ends(meltano_sandbox, default_store_url):
    ctx = meltano_sandbox.context(default_store_url)
    slow = subprocess.Popen(
        [MELTANO, "run", "tap-shopsim", "target-jsonlines"],
        cwd=REPO,
        env={**os.environ, **meltano_sandbox.env, "TAP_SHOPSIM_RECORD_DELAY_MS": "20"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        report = sync_meltano_runs(ctx)
        while not report.recorded:  # Meltano writes its row once it starts the block
            assert slow.poll() is None, "meltano ended before its run was seen RUNNING"
            assert time.monotonic() < deadline
            time.sleep(0.2)
            report = sync_meltano_runs(ctx)
        [execution_id] = report.recorded
        assert report.running == (execution_id,)
        assert queries.get_execution(ctx, execution_id).status is ExecutionStatus.RUNNING
        # Not flx's to cancel, nor to mark crashed: Meltano's heartbeat says whether it lives.
        with pytest.raises(commands.CannotCancel, match="bare 'meltano run'"):
            commands.cancel_execution(ctx, execution_id)
        assert execution_id not in [e.id for e in commands.reconcile_crashed(ctx, lambda run_id: False)]
        assert slow.wait(timeout=300) == 0, slow.stderr.read()[-3000:] if slow.stderr else ""
    finally:
        if slow.poll() is None:
            slow.kill()
    closing = sync_meltano_runs(ctx)
    assert closing.closed == (execution_id,)
    assert not closing.recorded
    execution = queries.get_execution(ctx, execution_id)
    assert execution.status is ExecutionStatus.SUCCEEDED
    assert execution.results["orders"].bookmark["replication_key_value"].startswith(DAY_1)
    assert not sync_meltano_runs(ctx).changed
    ctx.close()


def test_concurrent_syncs_record_each_run_once(meltano_sandbox, default_store_url):
    assert bare_meltano_run(meltano_sandbox.env).returncode == 0
    contexts = [meltano_sandbox.context(default_store_url) for _ in range(4)]
    reports = []
    threads = [threading.Thread(target=lambda c=c: reports.append(sync_meltano_runs(c))) for c in contexts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(len(r.recorded) for r in reports) == 1
    assert len(queries.execution_history(contexts[0], pipeline=PIPELINE)) == 1
    for c in contexts:
        c.close()


@pytest.fixture
def meltano_postgres_uri() -> Iterator[str]:
    """A fresh database on 127.0.0.1:5432 for Meltano's system database (dropped afterwards)."""
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=2"
    name = f"flx_meltano_sysdb_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"the PostgreSQL server at 127.0.0.1:5432 is needed: {exc}")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_bare_runs_on_a_postgresql_system_database(
    meltano_sandbox, default_store_url, meltano_postgres_uri, monkeypatch
):
    monkeypatch.setenv("MELTANO_DATABASE_URI", meltano_postgres_uri)
    env = {**meltano_sandbox.env, "MELTANO_DATABASE_URI": meltano_postgres_uri}
    assert bare_meltano_run(env).returncode == 0
    second = bare_meltano_run(env, TAP_SHOPSIM_AS_OF=f"{DAY_2}Z")
    assert second.returncode == 0, second.stderr[-3000:]
    ctx = meltano_sandbox.context(default_store_url, MELTANO_DATABASE_URI=meltano_postgres_uri)
    report = sync_meltano_runs(ctx)
    assert report.source.startswith("postgresql://postgres@127.0.0.1:5432/flx_meltano_sysdb_")
    assert len(report.recorded) == 2
    older, newer = sorted(queries.execution_history(ctx, pipeline=PIPELINE), key=lambda e: e.started_at)
    assert {older.trigger, newer.trigger} == {Trigger.MELTANO}
    assert newer.state_before == older.state_after
    assert newer.results["orders"].bookmark["replication_key_value"].startswith(DAY_2)
    assert not sync_meltano_runs(ctx).changed
    ctx.close()


def test_an_unreachable_meltano_database_is_a_warning_for_listings_and_an_error_for_sync(
    meltano_sandbox, default_store_url
):
    unreachable = "postgresql://meltano:s3cret-pw@127.0.0.1:1/meltano"  # nothing listens on port 1
    env = {
        **os.environ,
        **meltano_sandbox.env,
        "MELTANO_DATABASE_URI": unreachable,
        "FLX_DATABASE_URL": default_store_url,
        "FLX_PROJECT_DIR": str(REPO),
    }
    listing = flx_cli(env, "executions")
    assert listing.returncode == 0, listing.stderr
    assert "warning: bare meltano runs not synced" in listing.stderr
    assert "127.0.0.1:1/meltano" in listing.stderr
    sync = flx_cli(env, "sync", "--json")
    assert sync.returncode == 1
    assert json.loads(sync.stdout)["error"]["type"] == "MeltanoDatabaseUnreadable"
    for output in (listing.stdout, listing.stderr, sync.stdout, sync.stderr):
        assert "s3cret-pw" not in output
        assert "Traceback" not in output
