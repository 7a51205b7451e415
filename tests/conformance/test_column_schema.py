"""Column schemas of third-party taps' streams, from the catalog Meltano cached on their last run.

meltanolabs-tap-postgres (Singer SDK) and pipelinewise-tap-postgres (singer-python) describe the
same source tables in their own words; both become ``dagster/column_schema`` with the primary key
and the replication key marked, and every stream asset gets its three checks.
"""

from __future__ import annotations

import pytest

from tests.conformance.conftest import EXTRACTOR, PIPELINEWISE, PROJECT, specs_by_stream

pytestmark = pytest.mark.slow


def _columns(spec):
    schema = spec.metadata["dagster/column_schema"]
    return {c.name: c for c in schema.columns}, schema


@pytest.fixture(scope="module")
def sandbox(new_sandbox):
    sandbox = new_sandbox()
    for job in ("plain", "pipelinewise"):
        run = sandbox.run(job)
        assert run.process.returncode == 0, run.output
    for extractor in (EXTRACTOR, PIPELINEWISE):
        assert (PROJECT / ".meltano" / "run" / extractor / "tap.properties.json").exists()
    return sandbox


def test_an_sdk_taps_streams_have_their_column_schema(sandbox):
    defs = sandbox.definitions(dbt=None)
    specs = specs_by_stream(defs, "target-postgres")
    events, schema = _columns(specs["public-events"])
    assert list(events) == ["id", "kind", "payload", "updated_at"]
    assert (events["id"].type, events["id"].constraints.nullable) == ("integer", False)
    assert "primary_key" in events["id"].tags
    # NOT NULL in the source, but the tap's catalog says nullable: the schema is the tap's word.
    assert (events["kind"].type, events["kind"].constraints.nullable) == ("string", True)
    assert events["updated_at"].type == "string(date-time)"
    assert "replication_key" in events["updated_at"].tags  # meltano.yml's metadata, applied by Meltano
    assert schema.constraints.other == ["primary key (id)", "replication key (updated_at)"]
    customers, _ = _columns(specs["public-customers"])
    assert list(customers) == ["id", "name", "email"]
    assert not any("replication_key" in c.tags for c in customers.values())  # FULL_TABLE
    graph = defs.resolve_asset_graph()
    key = specs["public-events"].key
    assert {k.name for k in graph.asset_check_keys if k.asset_key == key} == {
        "schema_drift",
        "bookmark_regression",
        "row_count_anomaly",
    }


def test_a_singer_python_taps_streams_have_their_column_schema(sandbox):
    specs = specs_by_stream(sandbox.definitions(dbt=None), "target-jsonl")
    events, _ = _columns(specs["public-events"])
    assert set(events) == {"id", "kind", "payload", "updated_at"}
    assert "primary_key" in events["id"].tags  # from the catalog's table-key-properties metadata
    assert (events["id"].type, events["id"].constraints.nullable) == ("integer", False)
    assert events["kind"].constraints.nullable is True  # ["null", "string"]
    assert events["updated_at"].type == "string(date-time)"
