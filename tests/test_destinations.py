"""Where a loader puts a stream: SDK SQL and pipelinewise naming rules, file targets, unknown loaders."""

from __future__ import annotations

import pytest

from flx_meltano.domain.destinations import UNKNOWN_DESTINATION, StreamDestination
from flx_meltano.domain.plugins import Plugin, PluginType
from flx_meltano.integration.destinations import destination_of, package_name


def loader(pip_url: str | None, name: str = "target-x", **config: object) -> Plugin:
    return Plugin(name=name, type=PluginType.LOADER, namespace="ns", pip_url=pip_url, config=config)


@pytest.mark.parametrize(
    ("pip_url", "package"),
    [
        ("meltanolabs-target-postgres==0.8.1", "meltanolabs-target-postgres"),
        ("meltanolabs-target-postgres[psycopg]>=0.8", "meltanolabs-target-postgres"),
        (
            "git+https://github.com/transferwise/pipelinewise-target-postgres.git@v2.1.2",
            "pipelinewise-target-postgres",
        ),
        ("-e ./targets/target-jsonlines", "target-jsonlines"),
        ("target-jsonl==0.1.4 some-extra-dependency", "target-jsonl"),
        (None, "target-x"),
    ],
)
def test_the_package_a_loader_is_installed_from(pip_url, package):
    assert package_name(loader(pip_url)) == package


@pytest.mark.parametrize(
    ("config", "stream", "expected"),
    [
        # default_target_schema wins; the table is the last "-" part, as target-postgres writes it.
        ({"default_target_schema": "raw"}, "public-events", StreamDestination("events", "raw")),
        ({"default_target_schema": "raw"}, "customers", StreamDestination("customers", "raw")),
        # No default schema: the stream id's schema part (<schema>-<table>, <db>-<schema>-<table>).
        ({}, "public-events", StreamDestination("events", "public")),
        ({}, "db-sales-Orders", StreamDestination("Orders", "sales")),
        ({}, "customers", StreamDestination("customers", None)),
        # A schema given by an environment variable that is not set here is not known.
        (
            {"default_target_schema": "$FLX_TEST_UNSET_SCHEMA"},
            "public-events",
            StreamDestination("events", None),
        ),
    ],
)
def test_meltanolabs_target_postgres_tables(config, stream, expected):
    assert destination_of(loader("meltanolabs-target-postgres==0.8.1", **config), stream, "/p") == expected


def test_sdk_targets_conform_names_like_the_sdk():
    target = loader("meltanolabs-target-snowflake", default_target_schema="RAW")
    assert destination_of(target, "public-Order Items", "/p") == StreamDestination("order_items", "RAW")


def test_pipelinewise_targets_use_the_schema_mapping_of_the_source_schema():
    target = loader(
        "pipelinewise-target-postgres==2.1.2",
        default_target_schema="fallback",
        schema_mapping={"public": {"target_schema": "raw_public"}},
    )
    assert destination_of(target, "public-Events", "/p") == StreamDestination("events", "raw_public")
    assert destination_of(target, "other-events", "/p") == StreamDestination("events", "fallback")


def test_file_targets_write_a_file_per_stream():
    jsonl = loader("target-jsonl==0.1.4", destination_path="/data/out")
    assert destination_of(jsonl, "public-events", "/p") == StreamDestination(
        path="/data/out/public-events.jsonl"
    )
    ours = loader("-e ./targets/target-jsonlines", destination_path="$MELTANO_PROJECT_ROOT/output/jsonl")
    assert destination_of(ours, "customers", "/proj") == StreamDestination(
        path="/proj/output/jsonl/customers.jsonl"
    )


def test_environment_variables_in_settings_are_expanded_as_meltano_does(monkeypatch):
    monkeypatch.setenv("FLX_TEST_SCHEMA", "analytics")
    monkeypatch.setenv("FLX_TEST_DIR", "/data")
    target = loader("meltanolabs-target-postgres", default_target_schema="${FLX_TEST_SCHEMA}")
    assert destination_of(target, "public-events", "/p") == StreamDestination("events", "analytics")
    files = loader("target-jsonl", destination_path="$FLX_TEST_DIR/jsonl")
    assert destination_of(files, "s", "/p") == StreamDestination(path="/data/jsonl/s.jsonl")


def test_a_timestamped_file_or_an_unknown_loader_has_no_known_destination():
    assert destination_of(
        loader("target-jsonl", destination_path="/d", do_timestamp_file=True), "s", "/p"
    ) == (UNKNOWN_DESTINATION)
    assert destination_of(loader("target-mystery==1.0"), "s", "/p") == UNKNOWN_DESTINATION


def test_qualified_table():
    assert StreamDestination("events", "raw").qualified_table == "raw.events"
    assert StreamDestination("events").qualified_table == "events"
    assert StreamDestination(path="/x").qualified_table is None
