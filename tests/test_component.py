"""MeltanoProjectComponent: defs.yaml attributes in-process, and a throw-away dg project end to end."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, AssetSpec, DefaultScheduleStatus
from dagster.components.testing.utils import component_defs

from flx_meltano.orchestration.component import MeltanoProjectComponent
from flx_meltano.orchestration.resource import MeltanoResource

REPO = Path(__file__).resolve().parents[1]
DG = REPO / ".venv" / "bin" / "dg"
STREAMS = ("customers", "products", "orders", "order_items")


def _defs(**attributes):
    component = MeltanoProjectComponent.from_attributes_dict(
        attributes={"project_dir": str(REPO), "dbt": {"enabled": False}, **attributes}
    )
    return component_defs(component=component)


def _specs(defs) -> dict[AssetKey, AssetSpec]:
    return {spec.key: spec for spec in defs.resolve_all_asset_specs()}


def test_translation_is_templated_per_stream():
    specs = _specs(
        _defs(
            translation={
                "key_prefix": "lake",
                "group_name": "{{ pipeline.loader.name | replace('-', '_') }}",
                "tags": {"stream": "{{ stream.name }}"},
                "owners": ["team:shop"],
                "kinds": ["meltano", "shop"],
            }
        )
    )
    orders = specs[AssetKey(["lake", "files", "shop", "orders"])]
    assert orders.group_name == "target_jsonlines"
    assert orders.tags["stream"] == "orders"
    assert orders.tags["meltano/state_id"] == "dev.tap-shopsim-to-target-jsonlines"  # merged, not replaced
    assert orders.owners == ["team:shop"]
    assert orders.kinds == {"meltano", "shop"}
    assert specs[AssetKey(["lake", "raw_shop", "customers"])].group_name == "target_postgres"


def test_pipelines_are_chosen_by_include_and_exclude_and_their_jobs_follow():
    defs = _defs(pipelines={"include": ["dev:tap-shopsim-*"], "exclude": ["*-to-target-postgres"]})
    assert set(_specs(defs)) == {AssetKey(["files", "shop", s]) for s in STREAMS}
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert "shop_to_files" in jobs
    assert "shop_to_warehouse" not in jobs  # its pipeline is excluded, so the whole job is
    assert {s.name for s in defs.schedules} == {"shop_to_files_daily"}


def test_environment_resource_and_schedule_settings_reach_the_definitions():
    defs = _defs(
        environment="prod",
        resource={"timeout_seconds": 600, "env": {"TAP_SHOPSIM_SCALE": "5"}, "full_refresh": True},
        schedules={"default_status": "RUNNING", "execution_timezone": "Europe/Paris"},
    )
    spec = _specs(defs)[AssetKey(["files", "shop", "orders"])]
    assert spec.tags["meltano/state_id"] == "prod.tap-shopsim-to-target-jsonlines"
    resource = defs.resources["meltano"]
    assert isinstance(resource, MeltanoResource)
    assert (resource.environment, resource.timeout_seconds, resource.full_refresh) == ("prod", 600, True)
    assert resource.env == {"TAP_SHOPSIM_SCALE": "5"}
    schedule = next(s for s in defs.schedules if s.name == "shop_to_files_daily")
    assert schedule.default_status == DefaultScheduleStatus.RUNNING
    assert schedule.execution_timezone == "Europe/Paris"


def test_a_subclass_overrides_get_asset_spec_before_translation():
    class Tagged(MeltanoProjectComponent):
        def get_asset_spec(self, stream):
            return super().get_asset_spec(stream).merge_attributes(tags={"custom": stream.name})

    component = Tagged.from_attributes_dict(
        attributes={"project_dir": str(REPO), "dbt": {"enabled": False}, "translation": {"tags": {"t": "1"}}}
    )
    spec = _specs(component_defs(component=component))[AssetKey(["raw_shop", "orders"])]
    assert (spec.tags["custom"], spec.tags["t"]) == ("orders", "1")


def test_check_settings_choose_the_streams_checks():
    def names(defs) -> set[str]:
        graph = defs.resolve_asset_graph()
        return {
            k.name for k in graph.asset_check_keys if k.asset_key == AssetKey(["files", "shop", "orders"])
        }

    assert names(_defs()) == {"schema_drift", "bookmark_regression", "row_count_anomaly"}
    assert names(_defs(checks={"row_count_history": 0, "schema_drift": False})) == {"bookmark_regression"}
    assert names(_defs(checks={"enabled": False})) == set()


def test_a_bad_attribute_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"attribute sensors\.stale_pipelines: 'SOMETIMES' is not RUNNING"):
        _defs(sensors={"stale_pipelines": "SOMETIMES"})


def _dg(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAGSTER_HOME": str(project / ".dagster_home"), "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [str(DG), *args], cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.slow
@pytest.mark.usefixtures("dbt_manifest")
def test_a_scaffolded_dg_project_checks_and_lists_the_stream_assets(tmp_path):
    project = tmp_path / "location"
    module = project / "location"
    (module / "defs").mkdir(parents=True)
    (project / "dg.toml").write_text('directory_type = "project"\n\n[project]\nroot_module = "location"\n')
    (module / "__init__.py").write_text("")
    (module / "defs" / "__init__.py").write_text("")
    (module / "definitions.py").write_text(
        "from pathlib import Path\n\nimport dagster as dg\n\n\n@dg.definitions\ndef defs():\n"
        "    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)\n"
    )
    (project / ".dagster_home").mkdir()
    (project / ".dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    scaffolded = _dg(project, "scaffold", "defs", "flx_meltano.MeltanoProjectComponent", "meltano",
                     "--project-path", str(REPO))  # fmt: skip
    assert scaffolded.returncode == 0, scaffolded.stderr[-3000:]
    defs_yaml = yaml.safe_load((module / "defs" / "meltano" / "defs.yaml").read_text())
    assert defs_yaml == {
        "type": "flx_meltano.MeltanoProjectComponent",
        "attributes": {"project_dir": str(REPO)},
    }

    checked = _dg(project, "check", "defs")
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr

    listed = _dg(project, "list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr[-3000:]
    found = json.loads(listed.stdout)
    keys = {asset["asset_key"] for asset in found["assets"]}
    for stream in STREAMS:
        assert f"files/shop/{stream}" in keys
        assert f"raw_shop/{stream}" in keys
    assert {"staging/stg_customers", "staging/stg_orders", "customer_revenue"} <= keys
    checks = {check["key"] for check in found["asset_checks"]}
    assert "customer_revenue:unique_customer_revenue_customer_id" in checks
    for stream in STREAMS:  # the stream assets' own checks
        for name in ("schema_drift", "bookmark_regression", "row_count_anomaly"):
            assert f"files/shop/{stream}:{name}" in checks
            assert f"raw_shop/{stream}:{name}" in checks
    assert {job["name"] for job in found["jobs"]} >= {"shop_to_files", "shop_to_warehouse"}
