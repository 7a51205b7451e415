"""Execution logs in the store: the keeper's chunks, the bound, the query's filters, prune (no meltano)."""

from __future__ import annotations

import dataclasses
import time
import zlib
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
import sqlalchemy as sa

from flx_meltano.application import logs as logs_module
from flx_meltano.application.context import AppContext
from flx_meltano.application.log_keeper import LogKeeper
from flx_meltano.application.logs import LogFilter, execution_logs, parse_age, parse_since, prune_logs
from flx_meltano.bootstrap import app_context
from flx_meltano.domain.errors import InvalidOption
from flx_meltano.domain.execution import PipelineExecution
from flx_meltano.domain.values import Trigger
from flx_meltano.persistence import database
from flx_meltano.persistence.errors import NotFound
from flx_meltano.persistence.log_repository import decode
from flx_meltano.persistence.tables import execution_logs as log_table
from flx_meltano.settings import Settings
from tests.conftest import REPO

PIPELINE = "dev:tap-shopsim-to-target-jsonlines"


@pytest.fixture
def ctx(store_url: str) -> AppContext:
    return app_context(Settings(database_url=store_url, project_dir=REPO, environment="dev"))


def stored(ctx: AppContext, execution_id: str, *, ended: datetime | None = None) -> PipelineExecution:
    """A recorded execution (closed at ``ended`` if given)."""
    started = (ended or datetime.now(UTC)) - timedelta(minutes=1)
    execution = PipelineExecution.start(execution_id, PIPELINE, at=started, streams=("customers",))
    if ended is not None:
        execution.succeed(at=ended, state_after=None)
    with ctx.unit_of_work() as uow:
        uow.executions.save(execution)
        uow.commit()
    return execution


def raw_rows(ctx: AppContext, execution_id: str) -> list[sa.Row]:
    engine = database.ready_engine(ctx.store_url())
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(log_table).where(log_table.c.execution_id == execution_id).order_by(log_table.c.seq)
            )
        )


def test_the_keeper_writes_compressed_chunks_and_completes_the_log(ctx):
    execution = stored(ctx, "exec-chunks")
    keeper = LogKeeper(ctx.unit_of_work, execution.id, max_bytes=10_000_000, flush_seconds=0.05)
    keeper.add("info", None, "Running job")
    keeper.add("warning", "tap-shopsim", "a warning")
    for n in range(500):
        keeper.add("info", "target-jsonlines", f"Writing record {n}")
    keeper.close(("info", "execution SUCCEEDED"))

    rows = raw_rows(ctx, execution.id)
    header, chunks = rows[0], rows[1:]
    assert (header.seq, header.complete, header.dropped_lines) == (0, True, 0)
    lines = [line for row in chunks for line in decode(zlib.decompress(row.data))]
    assert [(line.level, line.plugin, line.message) for line in lines[:2]] == [
        ("info", None, "Running job"),
        ("warning", "tap-shopsim", "a warning"),
    ]
    assert [line.message for line in lines[2:-1]] == [f"Writing record {n}" for n in range(500)]
    assert lines[-1].message == "execution SUCCEEDED"
    assert sum(row.line_count for row in chunks) == 503
    assert sum(len(row.data) for row in chunks) < sum(row.raw_bytes for row in chunks) / 3
    assert all(a.at <= b.at for a, b in pairwise(lines))

    log = execution_logs(ctx, "exec-ch")  # a unique prefix is enough, as everywhere
    assert log.available
    assert log.kept.complete
    assert [line.message for line in log.lines] == [line.message for line in lines]


def test_the_bound_drops_the_oldest_lines_keeps_the_newest_and_counts_what_it_dropped(ctx):
    execution = stored(ctx, "exec-bound")
    bound = 8192
    keeper = LogKeeper(ctx.unit_of_work, execution.id, max_bytes=bound, flush_seconds=0.05)
    for n in range(2000):
        keeper.add("info", "tap-shopsim", f"line {n:05d} " + "x" * 40)
    keeper.add("error", "tap-shopsim", "Traceback: the error tail")
    keeper.close(("error", "execution FAILED: tap-shopsim exited with code 1"))

    log = execution_logs(ctx, execution.id)
    kept = [line.message for line in log.lines]
    assert kept[-2:] == ["Traceback: the error tail", "execution FAILED: tap-shopsim exited with code 1"]
    first = int(kept[0].split()[1])
    assert kept[:-2] == [f"line {n:05d} " + "x" * 40 for n in range(first, 2000)]  # newest, none missing
    assert log.kept.dropped_lines == first > 0
    assert len(kept) + log.kept.dropped_lines == 2002
    assert sum(row.raw_bytes for row in raw_rows(ctx, execution.id)) <= bound
    assert f"{first:,} older lines" in (log.dropped_note or "")


def test_filters_by_plugin_level_since_and_tail(ctx):
    execution = stored(ctx, "exec-filters")
    keeper = LogKeeper(ctx.unit_of_work, execution.id, max_bytes=1_000_000)
    keeper.add("info", None, "meltano starts")
    keeper.add("debug", "tap-shopsim", "tap debug")
    keeper.add("warning", "tap-shopsim", "tap warning")
    keeper.add("error", "target-jsonlines", "target error")
    keeper.close()
    messages = lambda query: [line.message for line in execution_logs(ctx, execution.id, query).lines]  # noqa: E731
    assert messages(LogFilter(plugin="tap-shopsim")) == ["tap debug", "tap warning"]
    assert messages(LogFilter(plugin="meltano")) == ["meltano starts"]
    assert messages(LogFilter(level="WARNING")) == ["tap warning", "target error"]
    assert messages(LogFilter(tail=2)) == ["tap warning", "target error"]
    assert messages(LogFilter(since=datetime.now(UTC) + timedelta(minutes=1))) == []
    assert len(messages(LogFilter(since=datetime.now(UTC) - timedelta(minutes=1)))) == 4
    with pytest.raises(InvalidOption, match="level 'loud' is not one of debug, info, warning"):
        LogFilter(level="loud")
    with pytest.raises(InvalidOption, match="tail 0"):
        LogFilter(tail=0)


def test_ages_and_instants_people_type():
    assert parse_age("30d") == timedelta(days=30)
    assert parse_age("1.5h") == timedelta(hours=1.5)
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert parse_since("15m", now) == now - timedelta(minutes=15)
    assert parse_since("2026-12-01T03:12:00+00:00") == datetime(2026, 12, 1, 3, 12, tzinfo=UTC)
    assert parse_since("2026-12-01T03:12").tzinfo is not None  # local time, made explicit
    with pytest.raises(InvalidOption, match="age '30 days'"):
        parse_age("30 days")
    with pytest.raises(InvalidOption, match="since 'yesterday'"):
        parse_since("yesterday")


def test_an_execution_without_a_stored_log_says_so_and_an_unknown_one_is_an_error(ctx):
    stored(ctx, "exec-nolog", ended=datetime.now(UTC))
    log = execution_logs(ctx, "exec-nolog")
    assert not log.available
    assert log.lines == []
    assert "the store has no log for it" in (log.reason or "")
    running = stored(ctx, "exec-running")
    assert execution_logs(ctx, running.id).available  # a live log may have no line yet
    with pytest.raises(NotFound, match="no execution 'nope-123'"):
        execution_logs(ctx, "nope-123")


def test_prune_deletes_old_logs_only_and_leaves_a_note(ctx):
    now = datetime.now(UTC)
    old = stored(ctx, "exec-old", ended=now - timedelta(days=40))
    new = stored(ctx, "exec-new", ended=now - timedelta(days=1))
    running = stored(ctx, "exec-live")
    for execution in (old, new, running):
        keeper = LogKeeper(ctx.unit_of_work, execution.id, max_bytes=1_000_000)
        keeper.add("info", None, f"line of {execution.id}")
        keeper.close()

    pruned = prune_logs(ctx)  # the retention setting: 30 days
    assert pruned.execution_ids == ["exec-old"]
    assert [row.seq for row in raw_rows(ctx, "exec-old")] == [0]
    log = execution_logs(ctx, "exec-old")
    assert not log.available
    assert "pruned on" in (log.reason or "")
    assert [line.message for line in execution_logs(ctx, "exec-new").lines] == ["line of exec-new"]
    assert prune_logs(ctx, timedelta(hours=1)).execution_ids == ["exec-new"]  # never a running one
    assert [line.message for line in execution_logs(ctx, "exec-live").lines] == ["line of exec-live"]


def test_lines_the_store_refused_are_kept_for_the_next_write(ctx):
    execution = stored(ctx, "exec-outage")
    failures = {"left": 2}

    def flaky_unit_of_work():
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("the store is away")
        return ctx.unit_of_work()

    keeper = LogKeeper(flaky_unit_of_work, execution.id, max_bytes=1_000_000, flush_seconds=0.05)
    for n in range(5):
        keeper.add("info", "tap-shopsim", f"line {n}")
        time.sleep(0.06)
    keeper.close(("info", "execution SUCCEEDED"))
    assert failures["left"] == 0  # the store did refuse twice
    log = execution_logs(ctx, execution.id)
    assert [line.message for line in log.lines] == [*(f"line {n}" for n in range(5)), "execution SUCCEEDED"]
    assert log.kept.complete


def test_a_bare_meltano_run_says_its_log_was_never_seen(ctx):
    # Executions recorded from Meltano's own run record (trigger "meltano", the adoption issue's
    # bare `meltano run`s) have no log: flx-meltano never saw their output.
    bare = stored(ctx, "exec-bare", ended=datetime.now(UTC))
    execution = dataclasses.replace(bare, trigger=Trigger.MELTANO)
    reason = logs_module._unavailable(execution, None)  # type: ignore[arg-type]
    assert reason.startswith("it was a bare 'meltano run'")
    assert "flx-meltano did not run it" in reason
