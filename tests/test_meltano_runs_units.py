"""Fast tier: a Meltano run's state before and after, the system database's URI, the sensor cursor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from flx_meltano.application.sync import FOLLOWING, LOST, status_to_remember
from flx_meltano.domain.meltano_runs import MeltanoRunRecord, MeltanoRunStatus, state_before
from flx_meltano.integration.meltano_runs import system_database_uri
from flx_meltano.orchestration.outside_runs import WINDOW, OutsideCursor

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _row(row_id: int, state: dict | None, *, complete: bool = True, **kw) -> MeltanoRunRecord:
    values = {
        "row_id": row_id,
        "run_id": f"run-{row_id}",
        "state_id": "dev:tap-to-target",
        "status": MeltanoRunStatus.SUCCESS,
        "started_at": T0,
        "ended_at": T0 + timedelta(seconds=5),
        "last_heartbeat_at": T0 + timedelta(seconds=4),
        "error": None,
        "singer_state": state,
        "complete_state": complete,
    }
    return MeltanoRunRecord(**{**values, **kw})


def _bookmarks(**values: str) -> dict:
    return {"bookmarks": {s: {"replication_key_value": v} for s, v in values.items()}}


def test_state_before_is_the_newest_complete_state_with_later_partials_merged():
    newest_first = [
        _row(4, _bookmarks(b="3"), complete=False),
        _row(3, None),  # wrote no state
        _row(2, _bookmarks(a="2"), complete=False),
        _row(1, _bookmarks(a="1", b="1")),
        _row(0, _bookmarks(a="0", b="0", c="0")),  # older than the complete one: ignored
    ]
    assert state_before(newest_first) == _bookmarks(a="2", b="3")
    assert state_before([]) is None


def test_state_after_is_the_runs_own_complete_state_or_its_partial_merged():
    before = _bookmarks(a="1", b="1")
    assert _row(5, _bookmarks(a="2")).state_after(before) == _bookmarks(a="2")
    assert _row(5, _bookmarks(a="2"), complete=False).state_after(before) == _bookmarks(a="2", b="1")
    assert _row(5, None).state_after(before) == before  # no state written: nothing moved
    assert _row(5, None).state_after(None) is None


def test_a_running_row_without_heartbeat_for_five_minutes_is_lost():
    running = _row(1, None, status=MeltanoRunStatus.RUNNING, ended_at=None)
    assert not running.heartbeat_lost(T0 + timedelta(minutes=4))
    assert running.heartbeat_lost(T0 + timedelta(minutes=6))
    assert not _row(1, None).heartbeat_lost(T0 + timedelta(hours=1))  # ended: not running
    # A lost run is remembered as such, not followed for ever; a live one is followed.
    assert status_to_remember(running, T0 + timedelta(minutes=6)) == LOST
    assert status_to_remember(running, T0 + timedelta(minutes=1)) == FOLLOWING
    assert status_to_remember(_row(1, None)) == "SUCCESS"


def test_the_system_database_is_found_as_meltano_finds_it(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MELTANO_DATABASE_URI", raising=False)
    monkeypatch.delenv("MELTANO_SYS_DIR_ROOT", raising=False)
    (tmp_path / "meltano.yml").write_text("default_environment: dev\n")
    assert system_database_uri(tmp_path) == f"sqlite:///{tmp_path}/.meltano/meltano.db"
    (tmp_path / "meltano.yml").write_text("database_uri: sqlite:///$MELTANO_PROJECT_ROOT/sys.db\n")
    assert system_database_uri(tmp_path) == f"sqlite:///{tmp_path}/sys.db"
    (tmp_path / ".env").write_text("MELTANO_DATABASE_URI='postgresql://u:p@db:5432/meltano'\n")
    assert system_database_uri(tmp_path) == "postgresql://u:p@db:5432/meltano"
    assert system_database_uri(tmp_path, {"MELTANO_DATABASE_URI": "sqlite:////x.db"}) == "sqlite:////x.db"


def test_the_sensor_cursor_round_trips_and_keeps_only_its_window():
    cursor = OutsideCursor(WINDOW + 10, {"old": 5, "recent": WINDOW + 9})
    parsed = OutsideCursor.parse(cursor.dump())
    assert parsed == OutsideCursor(WINDOW + 10, {"recent": WINDOW + 9})
    for garbage in (None, "", "not json", "[]", '{"reported": {}}'):
        assert OutsideCursor.parse(garbage) is None
