"""pipelinewise-tap-postgres -> target-jsonl (singer-python plugins): counts are unknown, never a made-up 0.

What these plugins really emit (recorded in tests/fixtures/meltano_logs/pipelinewise_to_jsonl.jsonl):
the tap logs `METRIC: {"type": "counter", "metric": "record_count", "value": N, "tags": {}}` once per
stream, with empty tags (no `endpoint`, no `stream`), so no count can be attributed to a stream;
target-jsonl logs no metric at all. So every per-stream count is unknown (INTERFACES item 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dagster import materialize

from tests.conformance.conftest import (
    CUSTOMERS,
    EVENTS,
    PIPELINEWISE_STATE_ID,
    Run,
    Sandbox,
    dagster_failures,
    materializations,
    specs_by_stream,
    table_cells,
)

pytestmark = pytest.mark.slow

STREAMS = ("public-events", "public-customers")
UNKNOWN_WARNING = "record counts unknown"


@dataclass(frozen=True)
class CliRun:
    sandbox: Sandbox
    run: Run


@dataclass(frozen=True)
class DagsterRun:
    sandbox: Sandbox
    specs: dict[str, Any]
    result: Any


@pytest.fixture(scope="module")
def cli(new_sandbox) -> CliRun:
    sandbox = new_sandbox()
    return CliRun(sandbox, sandbox.run("pipelinewise"))


@pytest.fixture(scope="module")
def dagster(new_sandbox) -> DagsterRun:
    sandbox = new_sandbox()
    defs = sandbox.definitions()
    specs = specs_by_stream(defs, "target-jsonl")
    assert set(specs) == set(STREAMS)
    result = materialize([defs.resolve_assets_def(specs["public-events"].key)], raise_on_error=False)
    return DagsterRun(sandbox, specs, result)


def _assert_every_source_row_written_once(sandbox: Sandbox) -> None:
    events = sandbox.jsonl("public-events")
    assert sorted(row["id"] for row in events) == list(range(1, EVENTS + 1))
    assert {row["kind"] for row in events} == {"view", "click", "buy"}
    customers = sandbox.jsonl("public-customers")
    assert sorted(row["id"] for row in customers) == list(range(1, CUSTOMERS + 1))


def test_cli_run_succeeds_and_writes_every_source_row(cli: CliRun):
    assert cli.run.process.returncode == 0, cli.run.output
    assert (cli.run.execution["pipeline_id"], cli.run.execution["status"]) == (
        PIPELINEWISE_STATE_ID,
        "SUCCEEDED",
    )
    _assert_every_source_row_written_once(cli.sandbox)


def test_cli_run_records_unknown_counts_not_zero(cli: CliRun):
    execution = cli.run.execution
    assert cli.run.records() == dict.fromkeys(STREAMS)
    assert execution["records"] is None
    assert any(w.startswith(UNKNOWN_WARNING) for w in execution["warnings"]), execution["warnings"]


def test_unknown_counts_are_null_in_the_store(cli: CliRun):
    stored = cli.sandbox.store(
        "SELECT stream, records FROM flx.stream_results WHERE execution_id = %s ORDER BY stream",
        (cli.run.execution["id"],),
    )
    assert stored == [("public-customers", None), ("public-events", None)]


def test_unknown_counts_show_as_a_question_mark(cli: CliRun):
    execution_id = cli.run.execution["id"]
    [row] = table_cells(cli.sandbox.flx("executions").stdout, execution_id[:8])
    assert row[6] == "?"
    listed = cli.sandbox.flx_json("executions", "--pipeline", PIPELINEWISE_STATE_ID)
    assert [(e["id"], e["records"]) for e in listed] == [(execution_id, None)]


def test_dagster_materializes_every_stream_and_writes_every_source_row(dagster: DagsterRun):
    assert dagster.result.success, dagster_failures(dagster.result)
    assert set(materializations(dagster.result)) == {
        "/".join(spec.key.path) for spec in dagster.specs.values()
    }
    _assert_every_source_row_written_once(dagster.sandbox)


def test_dagster_materializations_say_the_count_is_unknown(dagster: DagsterRun):
    by_key = materializations(dagster.result)
    assert by_key
    for key, metadata in by_key.items():
        assert "dagster/row_count" not in metadata, key
        assert metadata["meltano/records_unknown"].value, key
    [execution_id] = {m["meltano/execution_id"].value for m in by_key.values()}
    execution = dagster.sandbox.execution(execution_id)
    assert execution.records is None
    assert any(w.startswith(UNKNOWN_WARNING) for w in execution.warnings), execution.warnings


def test_file_target_assets_keep_their_key_and_name_their_file(dagster: DagsterRun):
    """INTERFACES item 4: file targets keep [<load schema>, <stream>] and get `meltano/path`."""
    for stream, spec in dagster.specs.items():
        assert spec.key.path == ["tap_postgres_pipelinewise", stream]
        path = spec.metadata["meltano/path"]
        assert Path(str(getattr(path, "value", path))).name == f"{stream}.jsonl"
