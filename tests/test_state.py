"""State backup and restore over every Meltano state backend: API, CLI, bad input, real runs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from flx_meltano import state as state_api
from flx_meltano.application import state_backup
from flx_meltano.application.context import AppContext
from flx_meltano.application.pipelines import aggregate, resolve
from flx_meltano.application.run import RunOptions, open_execution, run
from flx_meltano.application.state_guard import regression_warnings, snapshot_if_changed
from flx_meltano.domain.errors import InvalidOption, InvalidState
from flx_meltano.domain.events import StateSnapshotTaken
from flx_meltano.domain.execution import PipelineExecution
from flx_meltano.domain.snapshots import SnapshotReason, StateRef
from flx_meltano.domain.state import BookmarkChange, SingerState
from flx_meltano.domain.values import ExecutionStatus
from flx_meltano.integration.errors import StateAccessError
from flx_meltano.integration.state_access import MeltanoStateStore
from flx_meltano.persistence import database
from flx_meltano.persistence.event_store import EventStore
from flx_meltano.persistence.snapshot_repository import SnapshotRepository
from flx_meltano.settings import Settings

REPO = Path(__file__).resolve().parents[1]
FLX = str(REPO / ".venv" / "bin" / "flx-meltano")
FILES_PIPELINE = "dev:tap-shopsim-to-target-jsonlines"
DAY_2 = "2024-01-03T00:00:00Z"
BACKENDS = ["systemdb-sqlite", "systemdb-postgres", "file"]
MISSING_SNAPSHOT = 987654321

A, B, C = "dev:shop-a", "dev:shop-b", "prod:shop-c"


def bookmarks(**values: Any) -> SingerState:
    """A Singer state with one incremental bookmark per keyword (stream=replication key value)."""
    return SingerState(
        {
            "bookmarks": {
                stream: {"replication_key": "updated_at", "replication_key_value": value}
                for stream, value in values.items()
            }
        }
    )


OLD = bookmarks(orders="2024-01-01T00:00:00+00:00", customers="2024-01-01T00:00:00+00:00")
NEW = bookmarks(orders="2024-01-02T00:00:00+00:00", customers="2024-01-02T00:00:00+00:00")
OTHER = bookmarks(products=7)


@dataclass
class Backend:
    """One isolated Meltano state backend, with a store database and an AppContext over both."""

    name: str
    env: dict[str, str]
    ctx: AppContext
    store_url: str
    sandbox_env: dict[str, str]
    tmp: Path
    stores: list[MeltanoStateStore] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    def seed(self, **states: SingerState) -> None:
        for state_id, value in states.items():
            self.set(state_id, value)

    def set(self, state_id: str, value: SingerState) -> None:
        """Seed a live state (test set-up; restore and import are tested through the product).

        MeltanoStateStore.set cannot write to a non-systemdb backend (see
        test_the_state_store_writes_through_the_backend), so the file backend is seeded through
        Meltano's state store manager directly.
        """
        if self.name == "file":
            _write_directly(self.env, state_id, value)
        else:
            self.ctx.state_store.set(state_id, value)

    def fresh(self) -> MeltanoStateStore:
        """A new MeltanoStateStore on this backend (reads what is really in the backend)."""
        store = MeltanoStateStore(REPO, "dev", env=self.env)
        self.stores.append(store)
        return store

    def live(self, *state_ids: str) -> dict[str, SingerState | None]:
        store = self.fresh()
        return {state_id: store.get(state_id) for state_id in state_ids}

    def snapshots(self) -> list[tuple[int, str, str, str]]:
        """Every snapshot row as (id, state id, reason, checksum), oldest first."""
        with database.engine_for(self.store_url).connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id, state_id, reason, checksum FROM flx.state_snapshots ORDER BY id")
            )
            return [tuple(row) for row in rows]

    def events(self, state_id: str) -> list[tuple[str, dict[str, Any]]]:
        """The (type, payload) of every event in stream ``state-<state_id>``, oldest first."""
        with database.engine_for(self.store_url).connect() as conn:
            rows = conn.execute(
                sa.text("SELECT type, payload FROM flx.events WHERE stream_id = :s ORDER BY version"),
                {"s": f"state-{state_id}"},
            )
            return [(row.type, row.payload) for row in rows]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            **self.sandbox_env,
            **self.env,
            "FLX_DATABASE_URL": self.store_url,
            "COLUMNS": "200",
        }
        return subprocess.run(
            [FLX, "state", *args],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
        )


def _write_directly(env: dict[str, str], state_id: str, value: SingerState) -> None:
    """Write a complete state with Meltano's own state store manager for the configured backend."""
    from meltano.core.project import Project
    from meltano.core.state_store import MeltanoState, state_store_manager_from_project_settings

    assert all(os.environ.get(key) == val for key, val in env.items())
    project = Project(REPO)
    project.activate_environment("dev")
    manager = state_store_manager_from_project_settings(project.settings)
    manager.update(MeltanoState(state_id=state_id, partial_state={}, completed_state=value.payload()))


@pytest.fixture(params=BACKENDS)
def state_backend(
    request: pytest.FixtureRequest,
    meltano_sandbox,
    default_store_url: str,
    default_server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Backend]:
    """Each Meltano state backend in turn, isolated per test; the store on the default server."""
    env: dict[str, str] = {}
    system_db: str | None = None
    if request.param == "systemdb-sqlite":
        env["MELTANO_DATABASE_URI"] = meltano_sandbox.env["MELTANO_DATABASE_URI"]
    elif request.param == "systemdb-postgres":
        system_db = f"flx_msys_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(default_server.admin_conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{system_db}"')
        env["MELTANO_DATABASE_URI"] = default_server.url(system_db)
    else:
        env["MELTANO_STATE_BACKEND_URI"] = f"file://{tmp_path / 'state'}"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ctx = meltano_sandbox.context(default_store_url, **env)
    backend = Backend(request.param, env, ctx, default_store_url, dict(meltano_sandbox.env), tmp_path)
    yield backend
    for store in backend.stores:
        store.close()
    ctx.close()
    if system_db is not None:
        with psycopg.connect(default_server.admin_conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{system_db}" WITH (FORCE)')


def only(backend_name: str) -> pytest.MarkDecorator:
    """Run a test on one backend only (the fixture's other parameters are not collected)."""
    return pytest.mark.parametrize("state_backend", [backend_name], indirect=True)


def changes(diffs: list[Any]) -> dict[str, BookmarkChange]:
    return {d.stream: d.change for d in diffs}


def sha(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# --- A. the API's shape -----------------------------------------------------------------------


def test_the_state_api_is_the_state_module_and_its_headline_operations_are_top_level():
    import flx_meltano
    from flx_meltano import backup, restore, restore_previous, state

    assert flx_meltano.state is state is state_api
    assert sorted(state.__all__) == sorted(
        [
            *("BackupReport", "ExecutionRunning", "ExportReport", "ImportReport", "InvalidStateFile"),
            *("RestoreResult", "StateError", "UnknownStateId", "backup", "copy", "diff", "diff_live"),
            *("export", "get", "import_", "latest", "list_snapshots", "prune", "restore"),
            "restore_previous",
        ]
    )
    assert all(callable(getattr(state, name)) for name in state.__all__)
    assert (backup, restore, restore_previous) == (state.backup, state.restore, state.restore_previous)
    assert {"state", "backup", "restore", "restore_previous"} <= set(flx_meltano.__all__)
    with pytest.raises(AttributeError, match="no attribute 'prune'"):
        flx_meltano.prune  # noqa: B018 - the generic names stay in flx_meltano.state


def test_a_state_without_bookmarks_is_valid_and_empty_one_without_singer_state_is_not():
    """Meltano asks only for "singer_state" (StateService.validate_state); taps may keep any shape."""
    for payload in ({"singer_state": {}}, {"singer_state": {"currently_syncing": None}}):
        state = SingerState.from_payload(payload)
        assert state.is_empty
        assert state.payload() == payload
        assert regression_warnings(OLD, state, full_refresh=False), "a wipe must still be flagged"
    for payload, message in [
        ({"bookmarks": {}}, r"states\[1\] \(dev:x\): no 'singer_state' key"),
        ({"singer_state": []}, r"states\[1\] \(dev:x\): 'singer_state' must be an object"),
        ({"singer_state": {"bookmarks": []}}, r"states\[1\] \(dev:x\): 'singer_state.bookmarks' must be"),
    ]:
        with pytest.raises(InvalidState, match=message):
            SingerState.from_payload(payload, where="states[1] (dev:x)")


# --- B. every call, on every backend ----------------------------------------------------------


def test_the_state_store_writes_through_the_backend(state_backend):
    b = state_backend
    store = b.ctx.state_store
    store.set(A, OLD)
    store.set(B, NEW)
    assert store.get(A) == OLD
    assert b.live(A, B, C) == {A: OLD, B: NEW, C: None}
    assert b.fresh().state_ids("dev:*") == [A, B]
    store.clear(A)
    assert b.live(A, B) == {A: None, B: NEW}
    no_bookmarks = SingerState({"currently_syncing": None})  # Meltano stores it as it is
    store.set(C, no_bookmarks)
    assert b.live(C) == {C: no_bookmarks}


def test_backup_one_pattern_all_dedup_label_and_unknown_id(state_backend):
    b = state_backend
    b.seed(**{A: OLD, B: NEW, C: OTHER})
    settings = b.settings

    one = state_api.backup([A], settings=settings)
    assert [(s.state_id, s.reason, s.state, s.checksum) for s in one.taken] == [
        (A, SnapshotReason.MANUAL, OLD, OLD.checksum)
    ]
    assert one.unchanged == []

    by_glob = state_api.backup(pattern="dev:*", settings=settings)
    assert [s.state_id for s in by_glob.taken] == [B]
    assert by_glob.unchanged == [A]

    everything = state_api.backup(settings=settings)
    assert [s.state_id for s in everything.taken] == [C]
    assert everything.taken[0].state == OTHER
    assert everything.unchanged == [A, B]

    again = state_api.backup(settings=settings)  # nothing changed: no duplicate snapshot
    assert again.taken == []
    assert again.unchanged == [A, B, C]
    assert len(b.snapshots()) == 3

    # A label names this moment: every state it covers gets a snapshot with that label, the
    # unchanged ones too (once: again with the same label adds nothing).
    b.set(A, NEW)
    labelled = state_api.backup(label="after-change", settings=settings)
    assert [(s.state_id, s.label, s.state) for s in labelled.taken] == [
        (A, "after-change", NEW),
        (B, "after-change", NEW),
        (C, "after-change", OTHER),
    ]
    assert labelled.unchanged == []
    assert len(b.snapshots()) == 6
    relabelled = state_api.backup(label="after-change", settings=settings)
    assert (relabelled.taken, relabelled.unchanged) == ([], [A, B, C])
    assert len(b.snapshots()) == 6

    # An unknown state id is refused, naming it, and nothing at all is snapshotted.
    b.set(A, OLD)
    before = b.snapshots()
    with pytest.raises(state_api.UnknownStateId, match="dev:no-such-state"):
        state_api.backup([A, "dev:no-such-state"], settings=settings)
    assert b.snapshots() == before
    assert state_api.backup(pattern="nomatch:*", settings=settings).taken == []
    assert b.snapshots() == before


def test_list_get_latest_with_filters(state_backend):
    b = state_backend
    b.seed(**{A: OLD, B: OTHER})
    first = state_api.backup(label="first", settings=b.settings).taken
    cut = datetime.now(UTC)
    b.set(A, NEW)
    [second] = state_api.backup([A], label="second", settings=b.settings).taken
    first_a = next(s for s in first if s.state_id == A)

    listed = state_api.list_snapshots(settings=b.settings)
    assert [s.id for s in listed] == [second.id, *sorted((s.id for s in first), reverse=True)]
    assert [s.id for s in state_api.list_snapshots(A, settings=b.settings)] == [second.id, first_a.id]
    assert [s.id for s in state_api.list_snapshots(since=cut, settings=b.settings)] == [second.id]
    naive_cut = cut.replace(tzinfo=None)  # a date-time without a time zone is UTC
    assert [s.id for s in state_api.list_snapshots(since=naive_cut, settings=b.settings)] == [second.id]
    assert {s.id for s in state_api.list_snapshots(label="first", settings=b.settings)} == {
        s.id for s in first
    }
    assert state_api.list_snapshots(B, label="second", settings=b.settings) == []

    got = state_api.get(first_a.id, settings=b.settings)
    assert (got.state_id, got.state, got.label, got.reason) == (A, OLD, "first", SnapshotReason.MANUAL)
    assert got.checksum == OLD.checksum
    latest = state_api.latest(A, settings=b.settings)
    assert latest is not None
    assert (latest.id, latest.state) == (second.id, NEW)
    assert state_api.latest("dev:never-backed-up", settings=b.settings) is None


def test_diff_between_snapshots_and_against_live(state_backend):
    b = state_backend
    before = SingerState(
        {
            "bookmarks": {
                "orders": {"replication_key_value": "2024-01-01T00:00:00Z"},
                "customers": {"replication_key_value": "2024-01-05T00:00:00+00:00"},
                "products": {"replication_key_value": 10},
                "refunds": {"replication_key_value": 3},
            }
        }
    )
    after = SingerState(
        {
            "bookmarks": {
                "orders": {"replication_key_value": "2024-01-02T00:00:00Z"},
                "customers": {"replication_key_value": "2024-01-04T00:00:00+00:00"},
                "products": {"replication_key_value": 10},
                "reviews": {"replication_key_value": 1},
            }
        }
    )
    b.seed(**{A: before})
    [s1] = state_api.backup([A], settings=b.settings).taken
    b.set(A, after)
    [s2] = state_api.backup([A], settings=b.settings).taken

    forward = state_api.diff(s1.id, s2.id, settings=b.settings)
    assert changes(forward) == {
        "customers": BookmarkChange.BACKWARD,
        "orders": BookmarkChange.FORWARD,
        "products": BookmarkChange.UNCHANGED,
        "refunds": BookmarkChange.REMOVED,
        "reviews": BookmarkChange.ADDED,
    }
    orders = next(d for d in forward if d.stream == "orders")
    assert orders.before == {"replication_key_value": "2024-01-01T00:00:00Z"}
    assert orders.after == {"replication_key_value": "2024-01-02T00:00:00Z"}
    assert changes(state_api.diff(s2.id, s1.id, settings=b.settings)) == {
        "customers": BookmarkChange.FORWARD,
        "orders": BookmarkChange.BACKWARD,
        "products": BookmarkChange.UNCHANGED,
        "refunds": BookmarkChange.ADDED,
        "reviews": BookmarkChange.REMOVED,
    }
    # The live state is ``after``: diffing it against s1 is the same as s1 -> s2.
    assert state_api.diff_live(s1.id, settings=b.settings) == forward
    assert all(d.change is BookmarkChange.UNCHANGED for d in state_api.diff_live(s2.id, settings=b.settings))


def test_restore_writes_through_the_backend_with_pre_restore_snapshot_and_event(state_backend):
    b = state_backend
    b.seed(**{A: OLD})
    [snapshot] = state_api.backup([A], settings=b.settings).taken
    b.set(A, NEW)

    before = b.snapshots()
    preview = state_api.restore(snapshot.id, dry_run=True, settings=b.settings)
    assert preview.dry_run is True
    assert preview.pre_restore_snapshot_id is None
    assert changes(preview.changes) == {
        "customers": BookmarkChange.BACKWARD,
        "orders": BookmarkChange.BACKWARD,
    }
    assert b.live(A) == {A: NEW}
    assert b.snapshots() == before
    assert [t for t, _ in b.events(A)] == ["StateSnapshotTaken"]

    result = state_api.restore(snapshot.id, settings=b.settings)
    assert (result.state_id, result.dry_run, result.snapshot.id) == (A, False, snapshot.id)
    assert b.live(A) == {A: OLD}
    assert result.pre_restore_snapshot_id is not None
    pre = state_api.get(result.pre_restore_snapshot_id, settings=b.settings)
    assert (pre.state_id, pre.state, pre.reason) == (A, NEW, SnapshotReason.PRE_RESTORE)
    types = [t for t, _ in b.events(A)]
    assert types == ["StateSnapshotTaken", "StateSnapshotTaken", "StateRestored"]
    restored = b.events(A)[-1][1]
    assert restored["snapshot_id"] == snapshot.id
    assert restored["source_state_id"] == A
    assert restored["pre_restore_snapshot_id"] == result.pre_restore_snapshot_id

    # Into another state id (which has no state yet: no pre-restore snapshot needed).
    copy = "dev:shop-a-copy"
    into = state_api.restore(snapshot.id, to_state_id=copy, settings=b.settings)
    assert (into.state_id, into.pre_restore_snapshot_id) == (copy, None)
    assert b.live(A, copy) == {A: OLD, copy: OLD}
    [(kind, payload)] = b.events(copy)
    assert kind == "StateRestored"
    assert (payload["snapshot_id"], payload["source_state_id"]) == (snapshot.id, A)

    # restore_previous with no run flagged: the newest snapshot with bookmarks that is not live.
    b.set(A, SingerState.empty())
    state_api.backup([A], settings=b.settings)  # the newest snapshot is now the empty state
    previous = state_api.restore_previous(A, settings=b.settings)
    assert previous.snapshot.state == NEW
    assert b.live(A) == {A: NEW}
    with pytest.raises(state_api.StateError, match="dev:never-seen"):
        state_api.restore_previous("dev:never-seen", settings=b.settings)


def test_restore_is_refused_while_an_execution_runs_unless_forced(state_backend):
    b = state_backend
    b.seed(**{FILES_PIPELINE: OLD})
    [snapshot] = state_api.backup([FILES_PIPELINE], settings=b.settings).taken
    b.set(FILES_PIPELINE, NEW)
    [step] = resolve(b.ctx.project, FILES_PIPELINE)
    assert step.pipeline is not None
    execution, _ = open_execution(b.ctx, step.pipeline, RunOptions())
    assert execution.status is ExecutionStatus.RUNNING

    before = b.snapshots()
    with pytest.raises(state_api.ExecutionRunning, match=FILES_PIPELINE):
        state_api.restore(snapshot.id, settings=b.settings)
    assert b.live(FILES_PIPELINE) == {FILES_PIPELINE: NEW}
    assert b.snapshots() == before
    assert "StateRestored" not in [t for t, _ in b.events(FILES_PIPELINE)]

    exported = b.tmp / "running.json"
    state_api.export(exported, [FILES_PIPELINE], settings=b.settings)
    b.set(FILES_PIPELINE, OTHER)
    with pytest.raises(state_api.ExecutionRunning, match=FILES_PIPELINE):
        state_api.import_(exported, settings=b.settings)
    assert b.live(FILES_PIPELINE) == {FILES_PIPELINE: OTHER}
    assert b.snapshots() == before

    forced = state_api.restore(snapshot.id, force=True, settings=b.settings)
    assert forced.dry_run is False
    assert b.live(FILES_PIPELINE) == {FILES_PIPELINE: OLD}


def _run_without_meltano(b: Backend, ends_with: SingerState) -> PipelineExecution:
    """A run of FILES_PIPELINE as flx records one (pre-run snapshot, regression guard, post-run
    snapshot), with the state it ends with written directly instead of by meltano."""
    [step] = resolve(b.ctx.project, FILES_PIPELINE)
    assert step.pipeline is not None
    execution, before = open_execution(b.ctx, step.pipeline, RunOptions())
    b.set(FILES_PIPELINE, ends_with)
    with b.ctx.unit_of_work() as uow:
        execution.succeed(
            at=datetime.now(UTC),
            state_after=snapshot_if_changed(
                uow, FILES_PIPELINE, ends_with, SnapshotReason.POST_RUN, execution.id
            ),
            warnings=regression_warnings(before, ends_with, full_refresh=False),
        )
        uow.executions.save(execution)
        uow.commit()
    return execution


@only("systemdb-sqlite")
def test_restore_previous_refuses_when_good_runs_followed_the_flagged_one(state_backend):
    b = state_backend
    b.seed(**{FILES_PIPELINE: OLD})
    wiped = _run_without_meltano(b, SingerState.empty())
    assert wiped.warnings
    good = _run_without_meltano(b, NEW)  # a full reload after the wipe: fine, not flagged
    assert not good.warnings
    before = b.snapshots()
    for dry_run in (True, False):
        with pytest.raises(state_api.StateError, match=f"latest run of .*{good.id}.* was not flagged"):
            state_api.restore_previous(FILES_PIPELINE, dry_run=dry_run, settings=b.settings)
    assert b.live(FILES_PIPELINE) == {FILES_PIPELINE: NEW}, "good bookmarks were rewound"
    assert b.snapshots() == before


@only("systemdb-sqlite")
def test_prune_keeps_the_state_the_newest_run_references_so_restore_previous_still_works(state_backend):
    b = state_backend
    b.seed(**{FILES_PIPELINE: OLD})
    wiped = _run_without_meltano(b, SingerState.empty())
    assert wiped.warnings
    assert wiped.state_before is not None
    # keep-last 1 would take the pre-run snapshot holding OLD: the flagged run references it.
    assert state_api.prune(1, settings=b.settings) == 0
    kept = state_api.get(wiped.state_before.snapshot_id, settings=b.settings)
    assert (kept.state, kept.checksum, kept.reason) == (OLD, OLD.checksum, SnapshotReason.PRE_RUN)
    before = b.snapshots()
    preview = state_api.restore_previous(FILES_PIPELINE, dry_run=True, settings=b.settings)
    assert (preview.dry_run, preview.snapshot.id, preview.snapshot.state) == (True, kept.id, OLD)
    assert b.snapshots() == before
    assert b.live(FILES_PIPELINE) == {FILES_PIPELINE: SingerState.empty()}

    result = _json(b.cli("restore", "--previous", FILES_PIPELINE, "--yes", "--json"))
    assert b.live(FILES_PIPELINE) == {FILES_PIPELINE: OLD}
    assert result["snapshot_id"] == kept.id
    kind, payload = b.events(FILES_PIPELINE)[-1]
    assert (kind, payload["snapshot_id"]) == ("StateRestored", kept.id)

    # A later run that is not flagged releases it: the next prune may take it.
    _run_without_meltano(b, NEW)
    assert state_api.prune(1, settings=b.settings) >= 1
    assert kept.id not in {s.id for s in state_api.list_snapshots(FILES_PIPELINE, settings=b.settings)}


@only("systemdb-sqlite")
def test_restore_and_import_wait_for_a_run_opening_its_execution_then_refuse(state_backend):
    b = state_backend
    b.seed(**{FILES_PIPELINE: OLD})
    [snapshot] = state_api.backup([FILES_PIPELINE], settings=b.settings).taken
    exported = b.tmp / "old.json"
    state_api.export(exported, [FILES_PIPELINE], settings=b.settings)
    b.set(FILES_PIPELINE, NEW)
    [step] = resolve(b.ctx.project, FILES_PIPELINE)
    assert step.pipeline is not None
    before = b.snapshots()
    # A run caught opening its execution: the pipeline row locked, RUNNING not committed yet.
    with b.ctx.unit_of_work() as uow, ThreadPoolExecutor(max_workers=2) as pool:
        pipeline = uow.pipelines.lock(aggregate(step.pipeline))
        execution = pipeline.start_execution(str(uuid.uuid4()), at=datetime.now(UTC))
        uow.executions.save(execution)
        restoring = pool.submit(state_api.restore, snapshot.id, settings=b.settings)
        importing = pool.submit(state_api.import_, exported, settings=b.settings)
        _wait_for_lock_waits(b.store_url, sessions=2, timeout=30)
        assert not restoring.done()
        assert not importing.done()
        uow.commit()
        with pytest.raises(state_api.ExecutionRunning, match=FILES_PIPELINE):
            restoring.result(timeout=120)
        with pytest.raises(state_api.ExecutionRunning, match=FILES_PIPELINE):
            importing.result(timeout=120)
    assert b.live(FILES_PIPELINE) == {FILES_PIPELINE: NEW}
    assert b.snapshots() == before
    assert "StateRestored" not in [t for t, _ in b.events(FILES_PIPELINE)]


@only("systemdb-sqlite")
def test_a_run_cannot_open_its_execution_while_a_restore_writes(state_backend, monkeypatch):
    b = state_backend
    b.seed(**{FILES_PIPELINE: OLD})
    [snapshot] = state_api.backup([FILES_PIPELINE], settings=b.settings).taken
    b.set(FILES_PIPELINE, NEW)
    [step] = resolve(b.ctx.project, FILES_PIPELINE)
    assert step.pipeline is not None
    writing, release = threading.Event(), threading.Event()
    write = MeltanoStateStore.set

    def slow_write(self: MeltanoStateStore, state_id: str, value: SingerState) -> None:
        writing.set()
        assert release.wait(60)
        write(self, state_id, value)

    monkeypatch.setattr(MeltanoStateStore, "set", slow_write)
    with ThreadPoolExecutor(max_workers=2) as pool:
        restoring = pool.submit(state_api.restore, snapshot.id, settings=b.settings)
        assert writing.wait(60)
        opening = pool.submit(open_execution, b.ctx, step.pipeline, RunOptions())
        _wait_for_lock_waits(b.store_url, timeout=30)
        assert not opening.done()
        release.set()
        restored = restoring.result(timeout=120)
        execution, _ = opening.result(timeout=120)
    assert execution.status is ExecutionStatus.RUNNING
    assert b.live(FILES_PIPELINE) == {FILES_PIPELINE: OLD}
    # The run read its state under the same lock, after the restore wrote it.
    assert execution.state_before is not None
    assert execution.state_before.checksum == OLD.checksum
    _, payload = [event for event in b.events(FILES_PIPELINE) if event[0] == "StateRestored"][-1]
    assert (payload["snapshot_id"], payload["pre_restore_snapshot_id"]) == (
        snapshot.id,
        restored.pre_restore_snapshot_id,
    )


def test_a_restore_or_import_that_cannot_be_recorded_writes_nothing(state_backend, monkeypatch):
    b = state_backend
    b.seed(**{A: OLD})
    [snapshot] = state_api.backup([A], settings=b.settings).taken
    exported = b.tmp / "old.json"
    state_api.export(exported, [A], settings=b.settings)
    b.set(A, NEW)
    before_rows, before_events = b.snapshots(), b.events(A)

    def store_down(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the store went away")

    monkeypatch.setattr(SnapshotRepository, "append_state_events", store_down)
    with pytest.raises(RuntimeError, match="the store went away"):
        state_api.restore(snapshot.id, settings=b.settings)
    with pytest.raises(RuntimeError, match="the store went away"):
        state_api.restore(snapshot.id, to_state_id="dev:shop-a-copy", settings=b.settings)
    monkeypatch.undo()
    monkeypatch.setattr(state_backup, "snapshot_if_changed", store_down)
    with pytest.raises(RuntimeError, match="the store went away"):
        state_api.import_(exported, settings=b.settings)
    # The state is what it was, and the store records nothing: no snapshot, no event.
    assert b.live(A, "dev:shop-a-copy") == {A: NEW, "dev:shop-a-copy": None}
    assert b.snapshots() == before_rows
    assert b.events(A) == before_events


def test_export_import_round_trip(state_backend):
    b = state_backend
    b.seed(**{A: OLD, B: NEW, C: OTHER})
    path = b.tmp / "exports" / "dev.json"
    report = state_api.export(path, pattern="dev:*", settings=b.settings)
    assert report.state_ids == [A, B]
    assert report.path == path
    document = json.loads(path.read_text())
    assert (document["format"], document["version"]) == ("flx-meltano-state", 1)
    assert [(e["state_id"], e["checksum"]) for e in document["states"]] == [
        (A, OLD.checksum),
        (B, NEW.checksum),
    ]
    assert document["states"][0]["state"] == OLD.payload()
    assert document["checksum"] == sha(document["states"])
    assert document["source"]["environment"] == "dev"
    assert [p.name for p in path.parent.iterdir()] == ["dev.json"]  # no temp file left behind
    only_a = state_api.export(b.tmp / "a.json", [A], settings=b.settings)
    assert [e["state_id"] for e in json.loads(only_a.path.read_text())["states"]] == [A]

    # Alter one state, clear the other: a dry run reports and writes nothing.
    b.set(A, OTHER)
    b.ctx.state_store.clear(B)
    before = b.snapshots()
    dry = state_api.import_(path, dry_run=True, settings=b.settings)
    assert dry.dry_run is True
    assert changes(dry.changes[A]) == {
        "customers": BookmarkChange.ADDED,
        "orders": BookmarkChange.ADDED,
        "products": BookmarkChange.REMOVED,
    }
    assert changes(dry.changes[B]) == {"customers": BookmarkChange.ADDED, "orders": BookmarkChange.ADDED}
    assert b.live(A, B) == {A: OTHER, B: None}
    assert b.snapshots() == before

    imported = state_api.import_(path, settings=b.settings)
    assert imported.dry_run is False
    assert b.live(A, B, C) == {A: OLD, B: NEW, C: OTHER}
    new_rows = b.snapshots()[len(before) :]
    assert [(sid, reason) for _, sid, reason, _ in new_rows] == [
        (A, "pre-import"),  # the altered live state of A, kept before overwriting it
        (A, "import"),
        (B, "import"),
    ]
    assert new_rows[0][3] == OTHER.checksum
    latest_a = state_api.latest(A, settings=b.settings)
    assert latest_a is not None
    assert (latest_a.reason, latest_a.state) == (SnapshotReason.IMPORT, OLD)

    # Importing the same file again changes nothing: no new snapshots, no new events.
    rows, events_a = b.snapshots(), b.events(A)
    assert state_api.import_(path, settings=b.settings).dry_run is False
    assert b.snapshots() == rows
    assert b.events(A) == events_a
    assert b.live(A, B, C) == {A: OLD, B: NEW, C: OTHER}


def test_copy_to_a_file_backend(state_backend):
    b = state_backend
    b.seed(**{A: OLD, B: NEW, C: OTHER})
    uri = f"file://{b.tmp / 'copied-state'}"
    copied = state_api.copy("dev:*", uri, settings=b.settings)
    assert copied == [A, B]
    destination = MeltanoStateStore(REPO, env={"MELTANO_STATE_BACKEND_URI": uri})
    b.stores.append(destination)
    assert destination.state_ids() == [A, B]
    assert {sid: destination.get(sid) for sid in [A, B, C]} == {A: OLD, B: NEW, C: None}
    assert b.live(A, B, C) == {A: OLD, B: NEW, C: OTHER}  # the source is untouched


def test_prune_keeps_the_newest_per_state_id(state_backend):
    b = state_backend
    b.seed(**{B: OTHER})
    state_api.backup([B], settings=b.settings)
    ids: list[int] = []
    cut: datetime | None = None
    for day in range(1, 5):
        b.set(A, bookmarks(orders=f"2024-01-0{day}T00:00:00+00:00"))
        [snap] = state_api.backup([A], settings=b.settings).taken
        ids.append(snap.id)
        if day == 2:
            cut = datetime.now(UTC)
    assert cut is not None

    def remaining(state_id: str) -> list[int]:
        return [s.id for s in state_api.list_snapshots(state_id, settings=b.settings)]

    far_past = datetime.now(UTC) - timedelta(days=365)
    assert state_api.prune(1, older_than=far_past, settings=b.settings) == 0
    assert state_api.prune(1, older_than=far_past.replace(tzinfo=None), settings=b.settings) == 0
    # keep_last=1 but only snapshots older than the cut (naive: UTC): snapshots 1 and 2 go, 3 stays.
    assert state_api.prune(1, older_than=cut.replace(tzinfo=None), settings=b.settings) == 2
    assert remaining(A) == [ids[3], ids[2]]
    assert state_api.prune(5, settings=b.settings) == 0
    # keep_last below 1 is refused (the newest snapshot of every state id is always kept).
    for keep_last in (0, -1):
        with pytest.raises(InvalidOption, match=f"keep_last {keep_last}: .*give 1 or more"):
            state_api.prune(keep_last, settings=b.settings)
    assert remaining(A) == [ids[3], ids[2]]
    assert state_api.prune(1, settings=b.settings) == 1
    assert remaining(A) == [ids[3]]
    assert len(remaining(B)) == 1
    assert state_api.prune(1, settings=b.settings) == 0


# --- C. bad input: a clear error naming the item, and nothing written ----------------------------


def _rewrite(document: dict[str, Any], path: Path, *, fix_file_checksum: bool) -> Path:
    if fix_file_checksum:
        document["checksum"] = sha(document["states"])
    path.write_text(json.dumps(document, indent=2))
    return path


def bad_files(good: Path, where: Path) -> dict[str, tuple[Path, str]]:
    """Broken copies of a good two-state export (A then B): name -> (file, expected message regex)."""
    where.mkdir(parents=True, exist_ok=True)
    text = good.read_text()
    files: dict[str, tuple[Path, str]] = {}

    malformed = where / "malformed.json"
    malformed.write_text(text[: len(text) // 2])
    files["malformed"] = (malformed, r"malformed\.json: not JSON")

    doc = json.loads(text)
    doc["version"] = 2
    files["version"] = (
        _rewrite(doc, where / "version.json", fix_file_checksum=False),
        r"version\.json: unknown format version 2",
    )

    doc = json.loads(text)
    doc["states"][1]["state"]["singer_state"]["bookmarks"]["orders"]["replication_key_value"] = "2030-01-01"
    files["file-checksum"] = (
        _rewrite(doc, where / "file-checksum.json", fix_file_checksum=False),
        r"file-checksum\.json: checksum mismatch for the file",
    )

    doc = json.loads(text)
    doc["states"][1]["state"]["singer_state"]["bookmarks"]["orders"]["replication_key_value"] = "2030-01-01"
    files["state-checksum"] = (
        _rewrite(doc, where / "state-checksum.json", fix_file_checksum=True),
        r"states\[1\] \(dev:shop-b\): checksum mismatch",
    )

    doc = json.loads(text)
    doc["states"][1]["state"] = {"bookmarks": {}}
    files["no-singer-state"] = (
        _rewrite(doc, where / "no-singer-state.json", fix_file_checksum=True),
        r"states\[1\] \(dev:shop-b\).*singer_state",
    )

    doc = json.loads(text)
    doc["states"][1]["state_id"] = "this is not a state id!"
    files["not-a-state-id"] = (
        _rewrite(doc, where / "not-a-state-id.json", fix_file_checksum=True),
        r"not-a-state-id\.json: states\[1\]: 'this is not a state id!' is not a Meltano state id",
    )

    doc = json.loads(text)
    doc["states"][1]["state"]["singer_state"]["bookmarks"] = ["orders", "customers"]
    files["bookmarks-not-object"] = (
        _rewrite(doc, where / "bookmarks-not-object.json", fix_file_checksum=True),
        r"states\[1\] \(dev:shop-b\).*bookmarks.*must be an object",
    )
    return files


def test_bad_input_is_refused_naming_the_item_and_writes_nothing(state_backend):
    b = state_backend
    b.seed(**{A: OLD, B: NEW})
    [snapshot] = state_api.backup([A], settings=b.settings).taken
    good = b.tmp / "good.json"
    state_api.export(good, pattern="dev:*", settings=b.settings)
    # Change the live states so that any partial import would show.
    b.set(A, OTHER)
    b.set(B, OTHER)
    before_rows, before_live = b.snapshots(), b.live(A, B)

    for name, (path, message) in bad_files(good, b.tmp / "bad").items():
        for dry_run in (True, False):
            with pytest.raises(state_api.InvalidStateFile, match=message):
                state_api.import_(path, dry_run=dry_run, settings=b.settings)
        assert b.snapshots() == before_rows, name
    with pytest.raises(state_api.StateError, match=r"cannot read .*no-such-file\.json"):
        state_api.import_(b.tmp / "no-such-file.json", settings=b.settings)

    for call in (
        lambda: state_api.get(MISSING_SNAPSHOT, settings=b.settings),
        lambda: state_api.restore(MISSING_SNAPSHOT, settings=b.settings),
        lambda: state_api.diff(snapshot.id, MISSING_SNAPSHOT, settings=b.settings),
        lambda: state_api.diff_live(MISSING_SNAPSHOT, settings=b.settings),
    ):
        with pytest.raises(state_api.StateError, match=str(MISSING_SNAPSHOT)):
            call()

    unwritten = b.tmp / "unknown.json"
    with pytest.raises(state_api.UnknownStateId, match="dev:no-such-state"):
        state_api.export(unwritten, [A, "dev:no-such-state"], settings=b.settings)
    assert not unwritten.exists()

    a_file = b.tmp / "a-regular-file"
    a_file.write_text("not a directory\n")
    under_file = a_file / "export.json"
    with pytest.raises(state_api.StateError, match=str(under_file)):
        state_api.export(under_file, settings=b.settings)
    assert a_file.read_text() == "not a directory\n"

    assert b.snapshots() == before_rows
    assert b.live(A, B) == before_live
    assert [t for t, _ in b.events(A)] == ["StateSnapshotTaken"]


@only("systemdb-sqlite")
def test_export_onto_a_directory_fails_and_leaves_no_temp_file(state_backend):
    b = state_backend
    b.seed(**{A: OLD})
    parent = b.tmp / "exports"
    target = parent / "already-a-directory"
    target.mkdir(parents=True)
    with pytest.raises(state_api.StateError, match="already-a-directory"):
        state_api.export(target, settings=b.settings)
    assert sorted(p.name for p in parent.iterdir()) == ["already-a-directory"]
    assert list(target.iterdir()) == []


# --- C (CLI). the same through ``flx-meltano state`` -------------------------------------------


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"{' '.join(result.args[1:])}: stdout is not JSON only:\n{result.stdout}")


@only("systemdb-postgres")
def test_cli_backup_list_diff_restore_import(state_backend):
    b = state_backend
    b.seed(**{A: OLD, B: OTHER})
    exported = b.tmp / "a.json"
    state_api.export(exported, [A], settings=b.settings)
    taken = _json(b.cli("backup", "--label", "cli", "--json"))
    assert sorted(s["state_id"] for s in taken["taken"]) == [A, B]
    assert taken["unchanged"] == []
    snap_a = next(s["id"] for s in taken["taken"] if s["state_id"] == A)
    b.set(A, NEW)
    before = b.snapshots()
    calls = [["list", A, "--json"], ["diff", str(snap_a), "--json"], ["restore", str(snap_a)]]
    with ThreadPoolExecutor(max_workers=2) as pool:
        listed, live_diff, refused = pool.map(lambda args: b.cli(*args), calls)
    assert [(r["id"], r["label"], r["reason"]) for r in _json(listed)] == [(snap_a, "cli", "manual")]
    assert {d["stream"]: d["change"] for d in _json(live_diff)} == {
        "customers": "forward",
        "orders": "forward",
    }
    # A restore without --yes, with no stdin to confirm on: refused, nothing written.
    assert refused.returncode != 0
    assert b.live(A) == {A: NEW}
    assert b.snapshots() == before
    assert "StateRestored" not in [t for t, _ in b.events(A)]

    restore = b.cli("restore", str(snap_a), "--yes", "--json")
    assert restore.returncode == 0, restore.stderr
    assert b.live(A) == {A: OLD}
    assert [t for t, _ in b.events(A)][-1] == "StateRestored"
    b.set(A, NEW)
    imported = b.cli("import", str(exported), "--yes", "--json")
    assert imported.returncode == 0, imported.stderr
    assert b.live(A) == {A: OLD}
    assert latest_reason(b, A) == SnapshotReason.IMPORT
    # --json prints JSON only, so that scripts can parse it.
    restored = _json(restore)
    assert (restored["state_id"], restored["dry_run"], restored["snapshot_id"]) == (A, False, snap_a)
    assert restored["pre_restore_snapshot_id"] is not None
    assert _json(imported)["dry_run"] is False


def latest_reason(b: Backend, state_id: str) -> SnapshotReason | None:
    latest = state_api.latest(state_id, settings=b.settings)
    return latest.reason if latest else None


@only("systemdb-sqlite")
def test_cli_tables_show_export_and_json_without_yes(state_backend):
    b = state_backend
    b.seed(**{A: OLD, B: OTHER})
    backed_up = b.cli("backup", "--label", "tables")
    assert backed_up.returncode == 0, backed_up.stderr
    snap_a = next(s for s in state_api.list_snapshots(A, settings=b.settings))
    exported = b.tmp / "out" / "dev.json"
    importable = state_api.export(b.tmp / "a.json", [A], settings=b.settings).path
    before = b.snapshots()
    calls = [
        ["list"],
        ["show", str(snap_a.id)],
        ["show", str(snap_a.id), "--json"],
        ["export", str(exported), "--pattern", "dev:*"],
        # Destructive, with --json and without --yes: no one to ask, so refused with exit code 2.
        ["prune", "--keep-last", "1", "--json"],
        ["restore", str(snap_a.id), "--json"],
        ["import", str(importable), "--json"],
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        listed, shown, shown_json, export, *refused = pool.map(lambda args: b.cli(*args), calls)

    table = " ".join(backed_up.stdout.split())
    assert "2 snapshot(s) taken" in table
    for header in ("id", "state id", "taken", "reason", "label", "streams", "checksum"):
        assert f" {header} " in f" {table} ", header
    row = rf"{snap_a.id} .*{re.escape(A)} .* manual .* tables .* 2 .* {snap_a.checksum[:12]}"
    assert re.search(row, table), table
    assert listed.returncode == 0, listed.stderr
    assert A in listed.stdout
    assert B in listed.stdout
    assert shown.returncode == 0, shown.stderr
    assert f"snapshot {snap_a.id} of {A}, manual" in shown.stdout
    assert re.search(r"orders .* 2024-01-01T00:00:00\+00:00", " ".join(shown.stdout.split()))
    detail = _json(shown_json)
    assert (detail["id"], detail["state_id"], detail["state"]) == (snap_a.id, A, OLD.payload())
    assert export.returncode == 0, export.stderr
    assert f"exported 2 state(s) to {exported}" in " ".join(export.stdout.split())
    assert [e["state_id"] for e in json.loads(exported.read_text())["states"]] == [A, B]
    for result in refused:
        assert result.returncode == 2, (result.args, result.stdout, result.stderr)
        assert "needs --yes together with --json" in " ".join(result.stderr.split())
        # stdout holds the error as JSON, and nothing else.
        error = json.loads(result.stdout)["error"]
        assert error["type"] == "UsageError"
        assert "needs --yes together with --json" in error["message"]
    assert b.snapshots() == before
    assert b.live(A, B) == {A: OLD, B: OTHER}


@only("systemdb-sqlite")
def test_backup_export_and_import_report_progress_per_state_id(state_backend):
    b = state_backend
    b.seed(**{A: OLD, B: NEW, "dev:shop-d": OTHER})
    calls: list[tuple[int, int]] = []
    every_one = [(1, 3), (2, 3), (3, 3)]

    def progress(done: int, total: int) -> None:
        calls.append((done, total))

    state_backup.backup(b.ctx, pattern="dev:*", progress=progress)
    assert calls == every_one
    calls.clear()
    path = b.tmp / "dev.json"
    state_backup.export(b.ctx, path, pattern="dev:*", progress=progress)
    assert calls == every_one
    calls.clear()
    b.set(A, OTHER)
    state_backup.import_(b.ctx, path, progress=progress)
    assert calls == every_one
    assert b.live(A) == {A: OLD}


@only("systemdb-sqlite")
def test_cli_bad_input_exits_non_zero_naming_the_item_and_writes_nothing(state_backend):
    b = state_backend
    b.seed(**{A: OLD, B: NEW})
    [snapshot] = state_api.backup([A], settings=b.settings).taken
    good = b.tmp / "good.json"
    state_api.export(good, pattern="dev:*", settings=b.settings)
    b.set(A, OTHER)
    b.set(B, OTHER)
    before_rows, before_live = b.snapshots(), b.live(A, B)
    a_file = b.tmp / "a-regular-file"
    a_file.write_text("x\n")

    # A bad file is failed work (exit 1); naming a snapshot or state id that does not exist is a
    # usage error (exit 2).
    cases: list[tuple[list[str], str, int]] = [
        (["import", str(path), "--yes"], message, 1)
        for path, message in bad_files(good, b.tmp / "bad").values()
    ]
    cases += [
        (["restore", str(MISSING_SNAPSHOT), "--yes"], str(MISSING_SNAPSHOT), 2),
        (["diff", str(snapshot.id), str(MISSING_SNAPSHOT), "--json"], str(MISSING_SNAPSHOT), 2),
        (["backup", "dev:no-such-state", "--json"], "dev:no-such-state", 2),
        (["export", str(b.tmp / "unknown.json"), "-s", "dev:no-such-state"], "dev:no-such-state", 2),
        (["export", str(a_file / "export.json")], "a-regular-file/export.json", 1),
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda case: b.cli(*case[0]), cases))
    for (args, message, code), result in zip(cases, results, strict=True):
        assert result.returncode == code, (args, result.stdout, result.stderr)
        error = " ".join(result.stderr.split())  # undo rich's line wrapping
        assert "error:" in error, (args, result.stderr)
        assert re.search(message, error), (args, message, result.stderr)
        assert "Traceback" not in result.stderr

    assert not (b.tmp / "unknown.json").exists()
    assert a_file.read_text() == "x\n"
    assert b.snapshots() == before_rows
    assert b.live(A, B) == before_live


@only("systemdb-sqlite")
def test_export_writes_only_a_new_path_or_a_regular_file(state_backend):
    b = state_backend
    b.seed(**{A: OLD})
    where = b.tmp / "targets"
    where.mkdir()
    regular = where / "regular.json"
    regular.write_text("kept\n")
    link = where / "link.json"
    link.symlink_to(regular)
    fifo = where / "fifo"
    os.mkfifo(fifo)
    directory = where / "a-directory"
    directory.mkdir()
    refused = {
        Path("/dev/null"): "a character device",
        link: "a symbolic link",
        fifo: "a FIFO",
        directory: "a directory",
    }
    for target, kind in refused.items():
        with pytest.raises(state_backup.InvalidExportPath, match=f"{re.escape(str(target))}: it is {kind}"):
            state_api.export(target, settings=b.settings)
    cli = {target: b.cli("export", str(target)) for target in (link, fifo)}
    for target, result in cli.items():
        assert result.returncode == 2, (target, result.stdout, result.stderr)
        assert f"refusing to export to {target}: it is {refused[target]}" in " ".join(result.stderr.split())
    # Nothing replaced or followed, no temp file left; a regular file or a new path is written.
    assert link.is_symlink()
    assert regular.read_text() == "kept\n"
    assert Path("/dev/null").is_char_device()
    assert fifo.is_fifo()
    assert list(directory.iterdir()) == []
    assert sorted(p.name for p in where.iterdir()) == ["a-directory", "fifo", "link.json", "regular.json"]
    state_api.export(regular, settings=b.settings)
    state_api.export(where / "new.json", settings=b.settings)
    for written in (regular, where / "new.json"):
        assert [e["state_id"] for e in json.loads(written.read_text())["states"]] == [A]


@only("systemdb-sqlite")
def test_cli_import_dry_run_shows_the_diff_and_writes_nothing(state_backend):
    b = state_backend
    b.seed(**{A: OLD})
    exported = state_api.export(b.tmp / "a.json", [A], settings=b.settings).path
    b.set(A, NEW)
    before = b.snapshots()
    table, as_json = (
        b.cli("import", str(exported), "--dry-run"),
        b.cli("import", str(exported), "--dry-run", "--json"),
    )
    assert table.returncode == 0, table.stderr
    text = " ".join(table.stdout.split())
    assert f"would import {A}" in text
    assert re.search(r"orders .*backward .*2024-01-02T00:00:00\+00:00 .*2024-01-01T00:00:00\+00:00", text), (
        text
    )
    assert "would import 1 state(s)" in text
    document = _json(as_json)
    assert document["dry_run"] is True
    assert {d["stream"]: d["change"] for d in document["changes"][A]} == {
        "customers": "backward",
        "orders": "backward",
    }
    assert b.live(A) == {A: NEW}
    assert b.snapshots() == before


@only("systemdb-sqlite")
def test_the_readme_state_history_example_runs_as_written(state_backend, monkeypatch, tmp_path):
    """The README's Python example, with its backup destination moved into the test's directory."""
    b = state_backend
    files = "dev:tap-shopsim-to-target-jsonlines"
    b.seed(**{"prod:tap-shopsim-to-target-jsonlines": OLD, files: OLD})
    state_api.backup(settings=b.settings)  # prod is unchanged when the example labels it
    b.set(files, NEW)  # ... and the files pipeline has a good state to go back to
    readme = (REPO / "README.md").read_text()
    [example] = re.findall(r"## State history.*?```python\n(.*?)```", readme, flags=re.DOTALL)
    backups = tmp_path / "backups" / "meltano-state"
    assert "file:///backups/meltano-state" in example
    code = example.replace("file:///backups/meltano-state", f"file://{backups}")
    for key, value in {**b.sandbox_env, **b.env, "FLX_DATABASE_URL": b.store_url}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FLX_PROJECT_DIR", str(REPO))
    monkeypatch.chdir(tmp_path)  # state.json lands here
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    report = namespace["report"]
    assert [(s.state_id, s.label) for s in report.taken] == [
        ("prod:tap-shopsim-to-target-jsonlines", "before-upgrade")
    ]
    assert (tmp_path / "state.json").exists()
    assert b.live(files) == {files: OLD}  # restore_previous put the good state back


@only("systemdb-sqlite")
def test_cli_restore_previous_dry_run_writes_nothing(state_backend):
    b = state_backend
    b.seed(**{A: NEW})
    state_api.backup([A], settings=b.settings)
    b.set(A, SingerState.empty())
    before = b.snapshots()
    result = b.cli("restore", "--previous", A, "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    assert b.live(A) == {A: SingerState.empty()}, "--dry-run wrote the state"
    assert b.snapshots() == before
    assert "StateRestored" not in [t for t, _ in b.events(A)]
    assert _json(result)["dry_run"] is True


@only("systemdb-sqlite")
def test_cli_copy_never_shows_the_destination_password(state_backend):
    b = state_backend
    b.seed(**{A: OLD, B: NEW})
    where = b.tmp / "copied"
    uri = f"file://AKIAKEY:SECRET-KEY-123@{where}"  # the file backend ignores the credentials
    calls = [
        ["copy", "dev:*", uri],  # no --yes and no stdin: asks, and is refused
        ["copy", "dev:*", uri, "--json"],  # no one to ask: --yes is required
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        asked, refused = pool.map(lambda args: b.cli(*args), calls)
    assert asked.returncode != 0
    assert "copy states matching" in asked.stdout + asked.stderr
    assert refused.returncode == 2, refused.stderr
    assert "--yes" in refused.stderr
    assert not where.exists()
    copied = b.cli("copy", "dev:*", uri, "--yes")
    assert copied.returncode == 0, copied.stderr
    assert "copied 2 state(s) to file://AKIAKEY:********@" in " ".join(copied.stdout.split())
    as_json = _json(b.cli("copy", "dev:*", uri, "--yes", "--json"))
    assert as_json == {"copied": [A, B], "to": f"file://AKIAKEY:********@{where}"}
    for result in (asked, refused, copied):
        assert "SECRET-KEY-123" not in result.stdout + result.stderr
    destination = MeltanoStateStore(REPO, env={"MELTANO_STATE_BACKEND_URI": f"file://{where}"})
    b.stores.append(destination)
    assert {sid: destination.get(sid) for sid in (A, B)} == {A: OLD, B: NEW}


@only("systemdb-sqlite")
def test_backend_errors_never_show_the_backend_password(state_backend, monkeypatch: pytest.MonkeyPatch):
    from meltano.core.state_service import StateService

    b = state_backend
    b.seed(**{A: OLD})
    uri = f"file://AKIAKEY:SECRET-KEY-123@{b.tmp / 'copied'}"

    def unreachable(self: Any, state_id: str, state: str) -> None:  # as boto or smart_open would say
        raise OSError(f"could not write {state_id} to {os.environ['MELTANO_STATE_BACKEND_URI']}")

    monkeypatch.setattr(StateService, "set_state", unreachable)
    with pytest.raises(StateAccessError) as caught:
        state_api.copy("dev:*", uri, settings=b.settings)
    text = "".join(traceback.format_exception(caught.value))
    assert f"could not write {A} to file://AKIAKEY:********@" in text
    assert "SECRET-KEY-123" not in text


@only("systemdb-sqlite")
def test_cli_dates_without_a_time_zone_are_utc(state_backend):
    b = state_backend
    for day in (1, 2, 3):
        b.set(A, bookmarks(orders=f"2024-01-0{day}T00:00:00+00:00"))
        state_api.backup([A], settings=b.settings)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    calls = [
        ["prune", "--keep-last", "1", "--older-than", "2024-06-01", "--yes"],
        ["list", A, "--since", "2024-06-01", "--json"],
        ["list", A, "--since", tomorrow, "--json"],
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        pruned_none, listed, listed_none = pool.map(lambda args: b.cli(*args), calls)
    assert pruned_none.returncode == 0, pruned_none.stderr
    assert "removed 0 snapshot(s)" in pruned_none.stdout
    assert len(_json(listed)) == 3
    assert _json(listed_none) == []
    pruned = _json(b.cli("prune", "--keep-last", "1", "--older-than", tomorrow, "--yes", "--json"))
    assert pruned == {"removed": 2}
    assert len(state_api.list_snapshots(A, settings=b.settings)) == 1


# --- D. end to end with real meltano runs (systemdb on SQLite) ------------------------------------


def _records(directory: Path, stream: str) -> list[dict[str, Any]]:
    lines = (directory / f"{stream}.jsonl").read_text().splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda r: r["id"])


def _counts(execution: Any) -> dict[str, int]:
    return {stream: result.records for stream, result in execution.results.items()}


def _run_snapshots(b: Backend, execution: PipelineExecution) -> dict[SnapshotReason, SingerState]:
    """The snapshots an execution took (pre-run, post-run), by reason."""
    return {
        s.reason: s.state
        for s in state_api.list_snapshots(FILES_PIPELINE, settings=b.settings)
        if s.execution_id == execution.id
    }


def _state(b: Backend, ref: StateRef | None) -> SingerState:
    """The state an execution references: its snapshot, whose checksum matches."""
    assert ref is not None
    snapshot = state_api.get(ref.snapshot_id, settings=b.settings)
    assert snapshot.checksum == ref.checksum == snapshot.state.checksum
    return snapshot.state


@pytest.mark.slow  # on every backend: the system database on SQLite and on PostgreSQL, and file://
def test_restored_backup_replays_exactly_the_same_records(state_backend):
    b = state_backend
    [first] = run(b.ctx, "shop-to-files", RunOptions())
    assert first.status is ExecutionStatus.SUCCEEDED
    # No state before the first run: nothing to snapshot before it, its new state after it.
    assert first.state_before is None
    assert _run_snapshots(b, first) == {SnapshotReason.POST_RUN: _state(b, first.state_after)}
    report = state_api.backup([FILES_PIPELINE], settings=b.settings)
    # The post-run snapshot already holds this state: the backup finds it unchanged.
    assert report.taken == []
    assert report.unchanged == [FILES_PIPELINE]
    backup = state_api.latest(FILES_PIPELINE, settings=b.settings)
    assert backup is not None
    assert (backup.reason, backup.execution_id) == (SnapshotReason.POST_RUN, first.id)
    assert backup.ref == first.state_after  # the run references the very snapshot

    dir_a, dir_b = b.tmp / "out-a", b.tmp / "out-b"
    day_2 = {"TAP_SHOPSIM_AS_OF": DAY_2}
    [second] = run(
        b.ctx, FILES_PIPELINE, RunOptions(env={**day_2, "TARGET_JSONLINES_DESTINATION_PATH": str(dir_a)})
    )
    assert second.status is ExecutionStatus.SUCCEEDED
    assert second.results["orders"].records > 0
    # Its state before is the first run's post-run snapshot (no duplicate); its new state is kept.
    assert second.state_before == first.state_after
    assert _run_snapshots(b, second) == {SnapshotReason.POST_RUN: _state(b, second.state_after)}

    restored = state_api.restore(backup.id, settings=b.settings)
    assert b.live(FILES_PIPELINE) == {FILES_PIPELINE: backup.state}
    assert restored.pre_restore_snapshot_id is not None

    [third] = run(
        b.ctx, FILES_PIPELINE, RunOptions(env={**day_2, "TARGET_JSONLINES_DESTINATION_PATH": str(dir_b)})
    )
    assert third.status is ExecutionStatus.SUCCEEDED
    assert third.state_before is not None
    assert first.state_after is not None
    assert third.state_before.checksum == first.state_after.checksum
    # The restore changed the state since the newest snapshot: both sides of this run are kept.
    assert _run_snapshots(b, third) == {
        SnapshotReason.PRE_RUN: _state(b, first.state_after),
        SnapshotReason.POST_RUN: _state(b, third.state_after),
    }
    assert _counts(third) == _counts(second)
    for stream in ("orders", "customers"):
        assert _records(dir_b, stream) == _records(dir_a, stream), stream
        assert len(_records(dir_a, stream)) == second.results[stream].records


@pytest.mark.slow
@only("systemdb-sqlite")
def test_regression_guard_then_restore_previous(state_backend, meltano_sandbox):
    b = state_backend
    [first] = run(b.ctx, "shop-to-files", RunOptions())
    assert first.status is ExecutionStatus.SUCCEEDED
    assert first.state_after is not None
    good = _state(b, first.state_after)
    assert not good.is_empty

    [wiped] = run(b.ctx, FILES_PIPELINE, RunOptions(env={"TARGET_JSONLINES_EMIT_EMPTY_FINAL_STATE": "true"}))
    assert wiped.status is ExecutionStatus.SUCCEEDED
    assert any("state regression" in w for w in wiped.warnings), wiped.warnings
    live = b.live(FILES_PIPELINE)[FILES_PIPELINE]
    assert live is not None
    assert live.is_empty
    # The wiped state is kept as the run's post-run snapshot; its state before is the first run's.
    assert wiped.state_before == first.state_after
    assert _run_snapshots(b, wiped) == {SnapshotReason.POST_RUN: live}

    result = state_api.restore_previous(FILES_PIPELINE, settings=b.settings)
    assert result.snapshot.state == good
    assert (result.snapshot.reason, result.snapshot.execution_id) == (SnapshotReason.POST_RUN, first.id)
    assert b.live(FILES_PIPELINE) == {FILES_PIPELINE: good}

    orders_before = meltano_sandbox.lines("orders")
    [third] = run(b.ctx, FILES_PIPELINE, RunOptions())
    assert third.status is ExecutionStatus.SUCCEEDED
    assert third.state_before is not None
    assert first.state_after is not None
    assert third.state_before.checksum == first.state_after.checksum
    # The restore changed the state since the newest snapshot: the run kept it as its pre-run one.
    # (Its post-run snapshot only if its new state differs: no duplicate of the pre-run one.)
    after = _state(b, third.state_after)
    expected = {SnapshotReason.PRE_RUN: good}
    if after != good:
        expected[SnapshotReason.POST_RUN] = after
    assert _run_snapshots(b, third) == expected
    assert third.results["orders"].records == 0
    assert meltano_sandbox.lines("orders") == orders_before


# --- E. the store under load and under concurrent writers --------------------------------------


@only("systemdb-sqlite")
def test_a_backup_of_many_ids_appends_their_events_in_one_insert(state_backend):
    b = state_backend
    ids = [f"dev:bulk-{n}" for n in range(6)]
    b.seed(**{state_id: bookmarks(orders=n) for n, state_id in enumerate(ids)})
    inserts: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO FLX.EVENTS"):
            inserts.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    try:
        report = state_api.backup(pattern="dev:bulk-*", settings=b.settings)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)
    assert [s.state_id for s in report.taken] == ids
    assert len(inserts) == 1, inserts
    for state_id, snapshot in zip(ids, report.taken, strict=True):
        [(kind, payload)] = b.events(state_id)
        assert (kind, payload["snapshot_id"]) == ("StateSnapshotTaken", snapshot.id)


def _wait_for_lock_waits(store_url: str, sessions: int = 1, timeout: float = 60) -> None:
    """Until ``sessions`` sessions of the store's database wait on a lock (a row, an index entry)."""
    deadline = time.monotonic() + timeout
    with database.engine_for(store_url).connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            if waiting >= sessions:
                return
            conn.rollback()
            time.sleep(0.05)
    pytest.fail(f"fewer than {sessions} session(s) waited on a lock within {timeout:g}s")


@only("systemdb-sqlite")
def test_a_snapshot_event_is_appended_after_a_concurrent_writer_of_its_stream(state_backend):
    """The batched event insert keeps the old semantics: another writer's event is kept, ours follows."""
    b = state_backend
    b.seed(**{A: OLD, B: NEW})
    other = database.engine_for(b.store_url).connect()
    transaction = other.begin()
    theirs = StateSnapshotTaken(A, datetime.now(UTC), snapshot_id=1, reason="manual", checksum="x")
    EventStore(other).append(f"state-{A}", 0, [theirs])  # not committed yet: the backup waits on it
    with ThreadPoolExecutor(max_workers=1) as pool:
        backup = pool.submit(state_api.backup, [A, B], settings=b.settings)
        _wait_for_lock_waits(b.store_url)
        transaction.commit()
        report = backup.result(timeout=120)
    other.close()
    assert [s.state_id for s in report.taken] == [A, B]
    assert [(t, p["snapshot_id"]) for t, p in b.events(A)] == [
        ("StateSnapshotTaken", 1),
        ("StateSnapshotTaken", report.taken[0].id),
    ]
    assert [t for t, _ in b.events(B)] == ["StateSnapshotTaken"]


class _FakeService:
    """A stand-in for Meltano's StateService: records the variable it saw, slowly."""

    def __init__(self, seen: list[str | None], inside: threading.Event) -> None:
        self.seen, self.inside = seen, inside

    def get_state(self, key: str) -> dict[str, Any]:
        self.inside.set()
        self.seen.append(os.environ.get("FLX_TEST_STORE_VAR"))
        time.sleep(0.5)
        self.seen.append(os.environ.get("FLX_TEST_STORE_VAR"))
        return {}


def test_two_state_stores_never_see_each_others_environment(monkeypatch: pytest.MonkeyPatch):
    """os.environ is process-wide, so the lock around a store's temporary environment must be too."""
    monkeypatch.delenv("FLX_TEST_STORE_VAR", raising=False)
    seen: dict[str, list[str | None]] = {"a": [], "b": []}
    inside = {"a": threading.Event(), "b": threading.Event()}
    stores = {}
    for name in ("a", "b"):
        store = MeltanoStateStore(REPO, "dev", env={"FLX_TEST_STORE_VAR": name})
        service = _FakeService(seen[name], inside[name])
        monkeypatch.setattr(store, "_state_service", lambda service=service: service)
        stores[name] = store
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(stores["a"].get, A)
        assert inside["a"].wait(30)
        second = pool.submit(stores["b"].get, A)  # starts while the first is inside its environment
        assert (first.result(30), second.result(30)) == (None, None)
    assert seen == {"a": ["a", "a"], "b": ["b", "b"]}
    assert "FLX_TEST_STORE_VAR" not in os.environ, "a store's variable leaked into the process"
