"""meltanolabs tap-postgres -> target-postgres through real Dagster: row counts, subsets, table names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from dagster import materialize

from flx_meltano.domain.execution import PipelineExecution
from flx_meltano.domain.values import ExecutionStatus, Trigger
from tests.conformance.conftest import (
    CUSTOMERS,
    EVENTS,
    PLAIN_STATE_ID,
    Sandbox,
    Source,
    dagster_failures,
    materializations,
    specs_by_stream,
)

pytestmark = pytest.mark.slow

# Two events move past the bookmark (one of them the bookmark's own row) and one is new.
CHANGES = """
UPDATE public.events SET updated_at = timestamptz '2024-01-03 00:00:00+00' + id * interval '1 ms'
WHERE id IN (7, 1000);
INSERT INTO public.events VALUES (1001, 'buy', 'payload 1001', timestamptz '2024-01-03 06:00:00+00');
"""
CHANGED = 3


@dataclass(frozen=True)
class Materialized:
    sandbox: Sandbox
    specs: dict[str, Any]  # by stream
    full: Any
    subset: Any
    customers_loaded_at_before_subset: Any

    def counts(self, result: Any) -> dict[str, Any]:
        streams = {"/".join(spec.key.path): stream for stream, spec in self.specs.items()}
        return {
            streams[key]: metadata["dagster/row_count"].value if "dagster/row_count" in metadata else None
            for key, metadata in materializations(result).items()
        }


@pytest.fixture(scope="module")
def runs(new_sandbox, source: Source) -> Materialized:
    """Every stream materialized, then only public-events after a few rows changed."""
    sandbox = new_sandbox()
    defs = sandbox.definitions()
    specs = specs_by_stream(defs, "target-postgres")
    assert set(specs) == {"public-events", "public-customers"}
    events_key = specs["public-events"].key
    assets = [defs.resolve_assets_def(events_key)]  # bound to the definitions' meltano resource
    full = materialize(assets, raise_on_error=False)
    [(loaded_at,)] = sandbox.warehouse("SELECT max(_sdc_batched_at) FROM raw.customers")
    source.execute(CHANGES)
    subset = materialize(assets, selection=[events_key], raise_on_error=False)
    return Materialized(sandbox, specs, full, subset, loaded_at)


def _execution(sandbox: Sandbox, result: Any) -> PipelineExecution:
    [execution_id] = {m["meltano/execution_id"].value for m in materializations(result).values()}
    return sandbox.execution(execution_id)


def test_materializing_every_stream_reports_its_row_count(runs: Materialized):
    assert runs.full.success, dagster_failures(runs.full)
    assert runs.counts(runs.full) == {"public-events": EVENTS, "public-customers": CUSTOMERS}
    execution = _execution(runs.sandbox, runs.full)
    assert (execution.pipeline_id, execution.status, execution.trigger) == (
        PLAIN_STATE_ID,
        ExecutionStatus.SUCCEEDED,
        Trigger.DAGSTER,
    )
    assert execution.dagster_run_id == runs.full.run_id
    assert {s: r.records for s, r in execution.results.items()} == {
        "public-events": EVENTS,
        "public-customers": CUSTOMERS,
    }


def test_materializing_one_stream_runs_only_that_stream_from_its_bookmark(runs: Materialized):
    assert runs.subset.success, dagster_failures(runs.subset)
    assert runs.counts(runs.subset) == {"public-events": CHANGED}
    execution = _execution(runs.sandbox, runs.subset)
    assert execution.streams == ("public-events",)
    assert list(execution.results) == ["public-events"]
    assert runs.sandbox.warehouse("SELECT count(*) FROM raw.events") == [(EVENTS + 1,)]
    # public-customers was not loaded again
    assert runs.sandbox.warehouse("SELECT max(_sdc_batched_at) FROM raw.customers") == [
        (runs.customers_loaded_at_before_subset,)
    ]
    bookmark = execution.results["public-events"].bookmark
    assert bookmark["replication_key_value"].startswith("2024-01-03T06:00:00")


def test_the_asset_key_names_the_table_the_loader_wrote(runs: Materialized):
    """INTERFACES item 4: key [schema, table] and dagster/table_name schema.table, as target-postgres
    names the table (the last `-` part of the stream id)."""
    events = runs.specs["public-events"]
    assert events.key.path == ["raw", "events"]
    assert events.metadata["dagster/table_name"] == "raw.events"
    expected = {"public-events": EVENTS + 1, "public-customers": CUSTOMERS}
    for stream, spec in runs.specs.items():
        table = spec.metadata["dagster/table_name"]
        assert table.split(".") == spec.key.path
        assert runs.sandbox.table_exists(table), f"{stream}: no table {table} in the warehouse"
        assert runs.sandbox.warehouse(f"SELECT count(*) FROM {table}") == [(expected[stream],)]
