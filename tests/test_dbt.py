"""dbt through dagster-dbt: model assets with lineage from the streams, tests as checks, real runs.

The runs load tap-shopsim into a fresh warehouse database with target-postgres, then run the
Meltano utility's dbt over it. The failing-test and asset-key-override cases use one throw-away
copy of transform/, parsed once (by loading definitions in dev mode, as ``dg dev`` does).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance, materialize
from sqlalchemy.engine import make_url

from flx_meltano.orchestration import MeltanoResource, build_definitions
from flx_meltano.orchestration import metadata as md
from flx_meltano.orchestration.checks import BOOKMARK_REGRESSION, ROW_COUNT_ANOMALY, SCHEMA_DRIFT
from flx_meltano.orchestration.dbt import DbtError
from flx_meltano.orchestration.dbt_options import DbtOptions

STREAM_CHECKS = {SCHEMA_DRIFT, BOOKMARK_REGRESSION, ROW_COUNT_ANOMALY}  # each stream asset's own

REPO = Path(__file__).resolve().parents[1]
STREAMS = ("customers", "products", "orders", "order_items")
STG_CUSTOMERS = AssetKey(["staging", "stg_customers"])
STG_ORDERS = AssetKey(["staging", "stg_orders"])
STG_PRODUCTS = AssetKey(["staging", "stg_products"])
REVENUE = AssetKey(["customer_revenue"])
FAILING_CHECK = AssetCheckKey(STG_CUSTOMERS, "accepted_values_stg_customers_country__XX")


def _specs(defs):
    return {spec.key: spec for spec in defs.resolve_all_asset_specs()}


def _copy_transform(root: Path) -> Path:
    copy = root / "transform"
    shutil.copytree(REPO / "transform", copy, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    return copy


def _options(copy: Path) -> DbtOptions:
    return DbtOptions(project_dir=copy, profiles_dir=copy / "profiles")


@pytest.fixture(scope="module")
def changed_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """transform/ plus a model whose source names its own asset key and a test that fails, parsed.

    Parsed by loading definitions under DAGSTER_IS_DEV_CLI (what dg and dagster dev set): a
    missing manifest is then built with the utility's dbt.
    """
    copy = _copy_transform(tmp_path_factory.mktemp("dbt-changed"))
    sources = copy / "models" / "staging" / "sources.yml"
    sources.write_text(
        sources.read_text().replace(
            "      - name: products\n",
            "      - name: products\n        meta: {dagster: {asset_key: [lake, products]}}\n",
        )
    )
    (copy / "models" / "staging" / "stg_products.sql").write_text(
        "select id as product_id, name from {{ source('raw_shop', 'products') }}\n"
    )
    schema = copy / "models" / "staging" / "schema.yml"
    schema.write_text(
        schema.read_text().replace(
            "  - name: stg_orders\n",
            "      - name: country\n        data_tests: [{accepted_values: {values: [XX]}}]\n"
            "  - name: stg_orders\n",
        )
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_IS_DEV_CLI", "1")
        build_definitions(project_dir=REPO, dbt=_options(copy))
    assert (copy / "target" / "manifest.json").is_file()
    return copy


@dataclass
class Warehouse:
    name: str
    env: dict[str, str]
    conninfo: str

    def count(self, table: str) -> int:
        with psycopg.connect(self.conninfo) as conn:
            row = conn.execute(f"select count(*) from {table}").fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def warehouse(default_server) -> Iterator[Warehouse]:
    """A fresh warehouse database and the FLX_WAREHOUSE_* variables target-postgres and dbt read."""
    name = f"flx_wh_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(default_server.admin_conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(default_server.url(name))
    env = {
        "FLX_WAREHOUSE_URL": default_server.url(name),
        "FLX_WAREHOUSE_HOST": str(url.query.get("host") or url.host),
        "FLX_WAREHOUSE_PORT": str(url.port or 5432),
        "FLX_WAREHOUSE_USER": "postgres",
        "FLX_WAREHOUSE_PASSWORD": "",
        "FLX_WAREHOUSE_DBNAME": name,
    }
    conninfo = default_server.admin_conninfo.replace("dbname=postgres", f"dbname={name}")
    try:
        yield Warehouse(name, env, conninfo)
    finally:
        with psycopg.connect(default_server.admin_conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.usefixtures("dbt_manifest")
def test_each_model_is_an_asset_downstream_of_the_streams_that_load_its_sources():
    defs = build_definitions(project_dir=REPO)
    specs = _specs(defs)
    assert {d.asset_key for d in specs[STG_CUSTOMERS].deps} == {AssetKey(["raw_shop", "customers"])}
    assert {d.asset_key for d in specs[STG_ORDERS].deps} == {AssetKey(["raw_shop", "orders"])}
    assert {d.asset_key for d in specs[REVENUE].deps} == {STG_CUSTOMERS, STG_ORDERS}
    # The sources' keys are the target-postgres stream assets themselves, not new external assets.
    graph = defs.resolve_asset_graph()
    assert graph.get(AssetKey(["raw_shop", "orders"])).is_materializable
    assert STG_ORDERS in graph.get(AssetKey(["raw_shop", "orders"])).child_keys
    assert specs[REVENUE].kinds == {"dbt", "postgres"}
    assert specs[REVENUE].group_name == "dbt_shop"
    assert specs[REVENUE].tags[md.UTILITY] == "dbt-postgres"

    checks = {key for key in graph.asset_check_keys}
    assert AssetCheckKey(STG_CUSTOMERS, "unique_stg_customers_customer_id") in checks
    assert AssetCheckKey(REVENUE, "not_null_customer_revenue_customer_id") in checks

    job = defs.resolve_job_def("shop_to_warehouse")  # tasks: tap-shopsim target-postgres; dbt-postgres:run
    streams = {AssetKey(["raw_shop", s]) for s in STREAMS}
    assert job.asset_layer.selected_asset_keys == streams | {STG_CUSTOMERS, STG_ORDERS, REVENUE}
    # `dbt run` runs no dbt tests: the job's checks are the stream assets' own
    job_checks = job.asset_layer.asset_graph.asset_check_keys
    assert {key.asset_key for key in job_checks} == streams
    assert {key.name for key in job_checks} == STREAM_CHECKS
    assert job.tags[md.TAG_DBT_COMMAND] == "run"


@pytest.mark.usefixtures("dbt_manifest")
def test_without_dbt_the_command_block_stays_one_command_asset():
    specs = _specs(build_definitions(project_dir=REPO, dbt=None))
    command = AssetKey(["meltano", "shop_to_warehouse", "dbt_postgres_run"])
    assert {d.asset_key for d in specs[command].deps} == {AssetKey(["raw_shop", s]) for s in STREAMS}
    assert STG_ORDERS not in specs


def test_a_project_without_dbt_utility_gets_no_dbt_assets(tmp_path):
    text = (REPO / "meltano.yml").read_text()
    jobs = "jobs:\n- name: files\n  tasks:\n  - tap-shopsim target-jsonlines\n"
    plain = text[: text.index("  utilities:")] + jobs
    (tmp_path / "meltano.yml").write_text(plain)
    specs = _specs(build_definitions(project_dir=tmp_path))
    assert set(specs) == {AssetKey(["files", "shop", s]) for s in STREAMS}


def test_a_missing_manifest_is_a_clear_error_outside_dev(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_IS_DEV_CLI", raising=False)
    copy = _copy_transform(tmp_path)
    expected = r"no dbt manifest at .*/target/manifest.json .*'meltano invoke dbt-postgres parse'"
    with pytest.raises(DbtError, match=expected):
        build_definitions(project_dir=REPO, dbt=_options(copy))


def test_a_source_naming_its_asset_key_keeps_it(changed_copy):
    specs = _specs(build_definitions(project_dir=REPO, dbt=_options(changed_copy)))
    assert {d.asset_key for d in specs[STG_PRODUCTS].deps} == {AssetKey(["lake", "products"])}
    assert {d.asset_key for d in specs[STG_CUSTOMERS].deps} == {AssetKey(["raw_shop", "customers"])}


@pytest.mark.slow
def test_the_warehouse_job_loads_streams_then_models_and_a_failing_test_fails_its_check(
    changed_copy, warehouse, meltano_sandbox, default_store_url
):
    defs = build_definitions(
        project_dir=REPO, database_url=default_store_url, env=warehouse.env, dbt=_options(changed_copy)
    )
    instance = DagsterInstance.ephemeral()
    run = defs.resolve_job_def("shop_to_warehouse").execute_in_process(instance=instance)
    assert run.success
    materialized = {e.asset_key for e in run.get_asset_materialization_events()}
    assert materialized == {AssetKey(["raw_shop", s]) for s in STREAMS} | {
        STG_CUSTOMERS,
        STG_ORDERS,
        STG_PRODUCTS,
        REVENUE,
    }
    steps = [e.step_key for e in run.all_events if e.event_type_value == "STEP_SUCCESS"]
    assert steps == ["tap_shopsim_to_target_postgres", "dbt_postgres"]  # streams, then dbt
    assert warehouse.count("raw_shop.orders") == 100
    assert warehouse.count("analytics.customer_revenue") == 100
    evaluations = run.get_asset_check_evaluations()  # `dbt run`: no dbt tests, the streams' checks
    assert {(e.asset_key, e.check_name) for e in evaluations} == {
        (AssetKey(["raw_shop", s]), check) for s in STREAMS for check in STREAM_CHECKS
    }

    logs = [r.user_message for r in instance.all_logs(run.run_id)]
    dbt_lines = [line for line in logs if line.startswith("[dbt-postgres]")]
    assert any("OK created sql table model analytics.customer_revenue" in line for line in dbt_lines)
    assert not [line for line in logs if "\x1b[" in line]

    # Materialize all the dbt assets (dbt build): the failing test fails its check and the step.
    [dbt] = [a for a in defs.assets if hasattr(a, "keys") and REVENUE in a.keys]
    resource = MeltanoResource(project_dir=str(REPO), database_url=default_store_url, env=warehouse.env)
    build = materialize([dbt], resources={"meltano": resource}, instance=instance, raise_on_error=False)
    assert not build.success
    checks = {e.asset_check_key: e for e in build.get_asset_check_evaluations()}
    assert checks[FAILING_CHECK].passed is False
    assert checks[AssetCheckKey(STG_ORDERS, "unique_stg_orders_order_id")].passed is True
    assert REVENUE not in {e.asset_key for e in build.get_asset_materialization_events()}  # skipped by dbt


@pytest.mark.usefixtures("dbt_manifest")
def test_dbt_command_blocks_pick_what_their_job_runs(tmp_path):
    text = (REPO / "meltano.yml").read_text()
    jobs = text[: text.index("jobs:")] + (
        "jobs:\n"
        "- name: load-and-test\n  tasks:\n  - tap-shopsim target-postgres\n  - dbt-postgres:test\n"
        "- name: run-and-test\n  tasks:\n  - tap-shopsim target-postgres dbt-postgres:run dbt-postgres:test\n"
        "- name: debug\n  tasks:\n  - tap-shopsim target-postgres dbt-postgres:debug\n"
    )
    (tmp_path / "meltano.yml").write_text(jobs)
    defs = build_definitions(project_dir=tmp_path, dbt=_options(REPO / "transform"))
    streams = {AssetKey(["raw_shop", s]) for s in STREAMS}

    tested = defs.resolve_job_def("load_and_test")
    assert tested.tags[md.TAG_DBT_COMMAND] == "test"
    assert tested.asset_layer.selected_asset_keys == streams  # the models' checks, not the models
    checks = tested.asset_layer.asset_graph.asset_check_keys
    assert AssetCheckKey(STG_ORDERS, "unique_stg_orders_order_id") in checks

    both = defs.resolve_job_def("run_and_test")
    assert both.tags[md.TAG_DBT_COMMAND] == "build"  # dbt build runs models and tests in order
    assert {STG_CUSTOMERS, STG_ORDERS, REVENUE} <= both.asset_layer.selected_asset_keys

    debug = defs.resolve_job_def("debug")  # not a dbt command flx runs as assets: one command asset
    assert md.TAG_DBT_COMMAND not in debug.tags
    assert AssetKey(["meltano", "debug", "dbt_postgres_debug"]) in debug.asset_layer.selected_asset_keys


def test_a_missing_dbt_executable_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_IS_DEV_CLI", "1")  # a stale manifest would be parsed: no dbt to do it
    copy = _copy_transform(tmp_path)
    options = DbtOptions(project_dir=copy, profiles_dir=copy / "profiles", executable="/nonexistent/dbt")
    expected = r"not found at /nonexistent/dbt: run 'meltano install utility dbt-postgres'"
    with pytest.raises(DbtError, match=expected):
        build_definitions(project_dir=REPO, dbt=options)
