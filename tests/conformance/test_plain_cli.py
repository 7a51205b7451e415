"""meltanolabs tap-postgres -> target-postgres through the flx-meltano CLI: counts, increments, restore."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.conformance.conftest import CUSTOMERS, EVENTS, PLAIN_STATE_ID, Run, Sandbox, Source, table_cells

pytestmark = pytest.mark.slow

FIRST_BOOKMARK = "2024-01-01T16:40:00"  # event 1000 happened at minute 1000
# Event 1000 (the one at the bookmark) and 500 move forward, three are new: 5 rows since the bookmark.
# Moving the bookmark's own row matters: SDK taps select `replication_key >= bookmark`.
CHANGES = """
UPDATE public.events
SET kind = 'refund', updated_at = timestamptz '2024-01-02 00:00:00+00' + id * interval '1 ms'
WHERE id IN (500, 1000);
INSERT INTO public.events
SELECT i, 'view', 'payload ' || i, timestamptz '2024-01-02 01:00:00+00' + i * interval '1 second'
FROM generate_series(1001, 1003) AS i;
"""
CHANGED = 5


@dataclass(frozen=True)
class TwoRuns:
    sandbox: Sandbox
    first: Run
    second: Run
    since_first_bookmark: int


@pytest.fixture(scope="module")
def runs(new_sandbox, source: Source) -> TwoRuns:
    """The plain job run twice: on the seeded rows, then after a few rows changed."""
    sandbox = new_sandbox()
    first = sandbox.run("plain")
    source.execute(CHANGES)
    [(since,)] = source.fetch(
        "SELECT count(*) FROM public.events WHERE updated_at >= timestamptz '2024-01-01 16:40:00+00'"
    )
    second = sandbox.run("plain")
    return TwoRuns(sandbox, first, second, since)


def test_first_run_records_exact_counts_per_stream(runs: TwoRuns):
    assert runs.first.process.returncode == 0, runs.first.output
    execution = runs.first.execution
    assert (execution["pipeline_id"], execution["status"]) == (PLAIN_STATE_ID, "SUCCEEDED")
    assert runs.first.records() == {"public-events": EVENTS, "public-customers": CUSTOMERS}
    assert execution["records"] == EVENTS + CUSTOMERS
    assert {r["stream"]: r["status"] for r in execution["results"]} == {
        "public-events": "SUCCEEDED",
        "public-customers": "SUCCEEDED",
    }
    events = next(r for r in execution["results"] if r["stream"] == "public-events")
    assert events["bookmark"]["replication_key_value"].startswith(FIRST_BOOKMARK)


def test_second_run_loads_only_the_rows_changed_since_the_bookmark(runs: TwoRuns):
    assert runs.since_first_bookmark == CHANGED  # what an inclusive (>=) bookmark re-reads
    assert runs.second.process.returncode == 0, runs.second.output
    assert runs.second.execution["status"] == "SUCCEEDED"
    assert runs.second.records() == {"public-events": CHANGED, "public-customers": CUSTOMERS}  # full table
    assert runs.second.execution["state_before"] == runs.first.execution["state_after"]
    events = next(r for r in runs.second.execution["results"] if r["stream"] == "public-events")
    assert events["bookmark"]["replication_key_value"].startswith("2024-01-02T01:16:43")


def test_the_warehouse_holds_every_source_row_once(runs: TwoRuns):
    sandbox = runs.sandbox
    assert sandbox.warehouse("SELECT count(*), count(DISTINCT id) FROM raw.events") == [
        (EVENTS + 3, EVENTS + 3)
    ]
    assert sandbox.warehouse("SELECT count(*) FROM raw.customers") == [(CUSTOMERS,)]
    assert sandbox.warehouse("SELECT kind FROM raw.events WHERE id IN (500, 1000)") == [
        ("refund",),
        ("refund",),
    ]


def test_executions_are_stored_and_listed(runs: TwoRuns):
    sandbox = runs.sandbox
    first, second = runs.first.execution, runs.second.execution
    listed = sandbox.flx_json("executions", "--pipeline", PLAIN_STATE_ID)
    assert [e["id"] for e in listed] == [second["id"], first["id"]]
    assert [e["records"] for e in listed] == [CHANGED + CUSTOMERS, EVENTS + CUSTOMERS]
    assert [e["trigger"] for e in listed] == ["cli", "cli"]
    stored = sandbox.store(
        "SELECT stream, records FROM flx.stream_results WHERE execution_id = %s ORDER BY stream",
        (first["id"],),
    )
    assert stored == [("public-customers", CUSTOMERS), ("public-events", EVENTS)]
    [row] = table_cells(sandbox.flx("executions", "--pipeline", PLAIN_STATE_ID).stdout, first["id"][:8])
    assert row[6] == f"{EVENTS + CUSTOMERS:,}"


def test_state_restore_round_trip_is_exact(runs: TwoRuns):
    """Restoring the snapshot taken after the first run gives Meltano exactly that state back."""
    sandbox = runs.sandbox
    first = runs.first.execution
    snapshots = sandbox.flx_json("state", "list", PLAIN_STATE_ID)
    [after_first] = [s for s in snapshots if s["execution_id"] == first["id"] and s["reason"] == "post-run"]
    snapshot = sandbox.flx_json("state", "show", str(after_first["id"]))
    bookmarks = snapshot["state"]["singer_state"]["bookmarks"]
    assert bookmarks["public-events"]["replication_key_value"].startswith(FIRST_BOOKMARK)
    assert runs.second.execution["state_after"] != snapshot["state"]  # the second run moved it on

    restored = sandbox.flx_json("state", "restore", str(after_first["id"]), "--yes")
    assert (restored["state_id"], restored["dry_run"]) == (PLAIN_STATE_ID, False)
    assert restored["pre_restore_snapshot_id"]
    assert sandbox.live_state(PLAIN_STATE_ID) == snapshot["state"]  # as Meltano itself reads it


def test_the_run_keeps_its_log_with_each_third_party_plugins_lines(runs: TwoRuns):
    execution_id = runs.first.execution["id"]
    log = runs.sandbox.flx_json("logs", execution_id)
    assert (log["available"], log["complete"], log["dropped_lines"]) == (True, True, 0)
    plugins = {line["plugin"] for line in log["lines"]}
    assert {"meltano", "tap-postgres", "target-postgres"} <= plugins
    assert log["lines"][-1]["message"] == "execution SUCCEEDED"
    tap = runs.sandbox.flx_json("logs", execution_id, "--plugin", "tap-postgres")["lines"]
    assert tap == [line for line in log["lines"] if line["plugin"] == "tap-postgres"]
