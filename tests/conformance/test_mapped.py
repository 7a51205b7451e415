"""meltano-map-transform between tap-postgres and target-postgres: the mapping really runs, and shows.

The mapping `hide-kind` removes the column `kind` of `public-events`. The mapped chain loads through
`target-postgres-masked` (inherits from target-postgres, schema `masked`), so it has its own state
id and assets (INTERFACES item 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.conformance.conftest import (
    CUSTOMERS,
    EVENTS,
    MAPPED_STATE_ID,
    PLAIN_STATE_ID,
    Run,
    Sandbox,
    dagster_failures,
    materializations,
    specs_by_stream,
    table_cells,
    table_header,
)

pytestmark = pytest.mark.slow

MAPPER = "meltano-map-transformer"
MAPPING = "hide-kind"
MASKED = "target-postgres-masked"


@dataclass(frozen=True)
class CliRun:
    sandbox: Sandbox
    run: Run


@dataclass(frozen=True)
class DagsterRun:
    sandbox: Sandbox
    specs: dict[str, Any]  # by stream
    result: Any


@pytest.fixture(scope="module")
def cli(new_sandbox) -> CliRun:
    """`flx-meltano run mapped` once, in its own sandbox."""
    sandbox = new_sandbox()
    return CliRun(sandbox, sandbox.run("mapped"))


@pytest.fixture(scope="module")
def dagster(new_sandbox) -> DagsterRun:
    """The Dagster job `mapped` executed once, in its own sandbox (its own warehouse and state)."""
    sandbox = new_sandbox()
    defs = sandbox.definitions()
    result = defs.resolve_job_def("mapped").execute_in_process(raise_on_error=False)
    return DagsterRun(sandbox, specs_by_stream(defs, MASKED), result)


def test_cli_run_of_the_mapped_job_succeeds(cli: CliRun):
    assert cli.run.process.returncode == 0, cli.run.output
    execution = cli.run.execution
    assert (execution["pipeline_id"], execution["status"]) == (MAPPED_STATE_ID, "SUCCEEDED"), cli.run.output
    assert cli.run.records() == {"public-events": EVENTS, "public-customers": CUSTOMERS}


def test_cli_run_loads_the_table_without_the_mapped_out_column(cli: CliRun):
    columns = cli.sandbox.columns("masked", "events")
    assert columns, f"no table masked.events in the warehouse\n{cli.run.output}"
    assert "kind" not in columns
    assert {"id", "payload", "updated_at"} <= set(columns)
    assert cli.sandbox.warehouse("SELECT count(*) FROM masked.events") == [(EVENTS,)]


def test_dagster_job_of_the_mapped_chain_succeeds_with_row_counts(dagster: DagsterRun):
    assert dagster.result.success, dagster_failures(dagster.result)
    streams = {"/".join(spec.key.path): stream for stream, spec in dagster.specs.items()}
    counts = {
        streams[key]: metadata["dagster/row_count"].value
        for key, metadata in materializations(dagster.result).items()
        if key in streams
    }
    assert counts == {"public-events": EVENTS, "public-customers": CUSTOMERS}


def test_dagster_job_loads_the_table_without_the_mapped_out_column(dagster: DagsterRun):
    columns = dagster.sandbox.columns("masked", "events")
    assert columns, "no table masked.events in the warehouse"
    assert "kind" not in columns
    assert dagster.sandbox.warehouse("SELECT count(*) FROM masked.events") == [(EVENTS,)]


def test_assets_carry_their_mappings(dagster: DagsterRun, cli: CliRun):
    """INTERFACES item 1: `meltano/mappings` on the mapped chain's assets, absent elsewhere."""
    for spec in dagster.specs.values():
        assert spec.metadata["meltano/mappings"] == MAPPING
    plain = specs_by_stream(cli.sandbox.definitions(), "target-postgres")
    assert plain
    assert all("meltano/mappings" not in spec.metadata for spec in plain.values())


def test_pipelines_show_mappings_as_a_table_and_json(cli: CliRun):
    pipelines = {p["id"]: p for p in cli.sandbox.flx_json("pipelines")}
    assert pipelines[MAPPED_STATE_ID]["mappings"] == [MAPPING]
    assert pipelines[PLAIN_STATE_ID]["mappings"] == []
    table = cli.sandbox.flx("pipelines").stdout
    [row] = table_cells(table, MAPPED_STATE_ID)
    assert row[table_header(table).index("mappings")] == MAPPING


def test_plugins_list_the_mapper_with_its_mappings(cli: CliRun):
    [mapper] = [p for p in cli.sandbox.flx_json("plugins") if p["name"] == MAPPER]
    assert mapper["type"] == "mapper"
    assert MAPPING in str(mapper)
    [row] = table_cells(cli.sandbox.flx("plugins").stdout, f" {MAPPER} ")
    assert any(MAPPING in cell for cell in row)


def test_the_stored_pipeline_definition_has_its_mappings(cli: CliRun):
    [(mappings,)] = cli.sandbox.store(
        "SELECT definition -> 'mappings' FROM flx.pipelines WHERE id = %s", (MAPPED_STATE_ID,)
    )
    assert mappings == [MAPPING]
