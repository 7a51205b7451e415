"""Partitions: meltano.yml config (and its mistakes), windows and state ids, and real partitioned runs.

The end-to-end tests run real meltano and tap-shopsim/target-jsonlines through real Dagster
(``materialize(..., partition_key=...)``) in a copy of the reference project whose extractor is
partitioned daily; its plugins are the reference project's installed ones.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, build_schedule_context, materialize

from flx_meltano.application import queries
from flx_meltano.application.pipelines import resolve
from flx_meltano.application.run import RunOptions, partitioned, run_pipeline, window_env
from flx_meltano.bootstrap import app_context
from flx_meltano.domain.errors import InvalidOption
from flx_meltano.domain.partitions import PartitionKind, PartitionScheme, state_id_suffix
from flx_meltano.domain.project import PipelineDefinition
from flx_meltano.domain.values import ExecutionStatus
from flx_meltano.integration.errors import ProjectError
from flx_meltano.integration.launcher import RunRequest
from flx_meltano.integration.project_reader import read_project
from flx_meltano.orchestration import MeltanoResource, build_definitions
from flx_meltano.orchestration import metadata as md
from flx_meltano.orchestration.assets import pool_for
from flx_meltano.orchestration.builder import build_location
from flx_meltano.orchestration.component import DbtSettings, MeltanoProjectComponent
from flx_meltano.orchestration.partitions import partitions_definition
from flx_meltano.settings import Settings

REPO = Path(__file__).resolve().parents[1]
PIPELINE = "tap-shopsim-to-target-jsonlines"
DAILY = '{type: daily, start: "2024-01-02", start_setting: start_date, end_setting: end_date}'
KEYS = ("2024-01-02", "2024-01-03", "2024-01-04")


def _project(root: Path, partitions: str = DAILY) -> Path:
    """The reference project (plugins, one job and its schedule) with tap-shopsim partitioned."""
    root.mkdir(parents=True, exist_ok=True)
    text = (REPO / "meltano.yml").read_text()
    text = text[: text.index("  utilities:")]
    marker = "        freshness_hours: 24\n"
    assert marker in text
    text = text.replace(marker, f"{marker}        partitions: {partitions}\n", 1)
    text += (
        "jobs:\n- name: shop-to-files\n  tasks:\n  - tap-shopsim target-jsonlines\n"
        'schedules:\n- name: shop-to-files-daily\n  interval: "@daily"\n  job: shop-to-files\n'
    )
    (root / "meltano.yml").write_text(text)
    return root


def _installed_copy(root: Path) -> Path:
    """A partitioned project that runs: the reference project's sources and installed plugins."""
    _project(root)
    for name in ("taps", "targets"):
        (root / name).symlink_to(REPO / name)
    (root / ".meltano").mkdir()
    for kind in ("extractors", "loaders"):
        (root / ".meltano" / kind).symlink_to(REPO / ".meltano" / kind)
    return root


def _pipeline(root: Path) -> PipelineDefinition:
    (step,) = resolve(read_project(root), PIPELINE, "dev")
    assert step.pipeline is not None
    return step.pipeline


# --- configuration --------------------------------------------------------------------------


def test_the_partition_config_is_read_into_the_extractor(tmp_path):
    scheme = _pipeline(_project(tmp_path)).extractor.partitions
    assert scheme == PartitionScheme(
        PartitionKind.DAILY,
        start=datetime(2024, 1, 2, tzinfo=UTC),
        start_setting="start_date",
        end_setting="end_date",
    )


@pytest.mark.parametrize(
    ("partitions", "message"),
    [
        ("{type: weekly, start: 2024-01-01}", "type 'weekly' is not one of daily, hourly, monthly, static"),
        ("{type: daily, start_setting: start_date, end_setting: end_date}", "need a 'start'"),
        ("{type: daily, start: soon, start_setting: start_date, end_setting: end_date}", "start 'soon'"),
        ("{type: daily, start: 2024-01-01, end_setting: end_date}", "need 'start_setting'"),
        (
            "{type: daily, start: 2024-01-01, start_setting: start_date, end_setting: stop}",
            "end_setting 'stop' is not a setting of tap-shopsim",
        ),
        ("{type: static, key_setting: seed}", "static partitions need 'keys'"),
        ("{type: static, keys: [a, a], key_setting: seed}", "holds a name twice"),
        ("{type: hourly, start: 2024-01-01, every: 2}", "unknown key 'every' for hourly partitions"),
        ("daily", "must be a mapping"),
    ],
)
def test_bad_partition_config_names_meltano_yml_the_extractor_and_the_line(tmp_path, partitions, message):
    root = _project(tmp_path, partitions)
    lines = (root / "meltano.yml").read_text().splitlines()
    line = next(number for number, text in enumerate(lines, 1) if "partitions:" in text)
    with pytest.raises(ProjectError) as caught:
        read_project(root)
    error = str(caught.value)
    assert error.startswith(f"meltano.yml:{line}: extractor 'tap-shopsim': meta.dagster.partitions: ")
    assert message in error


# --- windows, state ids, options ------------------------------------------------------------


def test_a_partition_gets_its_window_as_tap_env_vars_and_its_own_state_id(tmp_path):
    main = _pipeline(_project(tmp_path))
    definition, window = partitioned(main, "2024-01-03")
    assert window is not None
    assert str(definition.state_id) == f"dev:{PIPELINE}:partition-2024-01-03"
    assert definition.state_id.suffix == "partition-2024-01-03"
    assert str(main.state_id) == f"dev:{PIPELINE}"  # the main pipeline is untouched
    assert window_env(definition, window) == {
        "TAP_SHOPSIM_START_DATE": "2024-01-03T00:00:00Z",
        "TAP_SHOPSIM_END_DATE": "2024-01-04T00:00:00Z",
    }
    assert partitioned(main, None) == (main, None)
    with pytest.raises(InvalidOption, match="before the partitions' start"):
        partitioned(main, "2024-01-01")
    with pytest.raises(InvalidOption, match="not a daily partition key"):
        partitioned(main, "January")


def test_windows_of_each_kind_and_the_suffix_of_keys_a_state_id_cannot_hold():
    start = datetime(2024, 1, 1, tzinfo=UTC)
    hourly = PartitionScheme(PartitionKind.HOURLY, start=start, start_setting="a", end_setting="b")
    last_hour = {"a": "2024-01-01T23:00:00Z", "b": "2024-01-02T00:00:00Z"}
    assert hourly.window("2024-01-01-23:00").settings == last_hour
    assert hourly.window("2024-01-01-23:00").state_id_suffix == "partition-2024-01-01-2300"
    monthly = PartitionScheme(PartitionKind.MONTHLY, start=start, start_setting="a", end_setting="b")
    december = {"a": "2024-12-01T00:00:00Z", "b": "2025-01-01T00:00:00Z"}
    assert monthly.window("2024-12-01").settings == december
    with pytest.raises(InvalidOption, match="1st of a month"):
        monthly.window("2024-12-02")
    static = PartitionScheme(PartitionKind.STATIC, keys=("eu", "us west"), key_setting="region")
    assert static.window("us west").settings == {"region": "us west"}
    assert static.window("us west").state_id_suffix == state_id_suffix("us west") == "partition-us_west"
    with pytest.raises(InvalidOption, match="not one of eu, us west"):
        static.window("asia")


def test_run_options_refuse_a_blank_partition_and_an_unpartitioned_extractor_refuses_one():
    for bad in ("", " 2024-01-02"):
        with pytest.raises(InvalidOption, match="partition key"):
            RunOptions(partition=bad)
    (step,) = resolve(read_project(REPO), PIPELINE, "dev")
    assert step.pipeline is not None
    with pytest.raises(InvalidOption, match="has no partitions"):
        partitioned(step.pipeline, "2024-01-02")


def test_the_meltano_command_line_carries_the_state_id_suffix(tmp_path):
    meltano = str(REPO / ".venv" / "bin" / "meltano")
    request = RunRequest(
        project_dir=tmp_path, environment="dev", blocks=("tap-a", "target-b"), run_id="r",
        meltano_executable=meltano, state_id_suffix="partition-2024-01-02",
    )  # fmt: skip
    assert "--state-id-suffix=partition-2024-01-02" in request.argv()
    plain = RunRequest(tmp_path, "dev", ("x",), "r", meltano_executable=meltano)
    assert not any(a.startswith("--state-id-suffix") for a in plain.argv())


def test_partitioned_assets_keep_the_extractor_pool_and_a_backfill_asks_one_run_per_partition(tmp_path):
    defs = build_definitions(project_dir=_project(tmp_path), dbt=None)
    (assets,) = [a for a in defs.assets if AssetKey(["files", "shop", "orders"]) in a.keys]
    assert assets.partitions_def is not None
    assert assets.partitions_def.get_partition_keys()[:3] == list(KEYS)
    assert assets.op.pool == pool_for(_pipeline(tmp_path)) == "meltano/tap-shopsim"
    # Dagster's default backfill policy for these assets runs each partition in its own run, so
    # each run is one window and every run waits for the extractor's pool.
    assert assets.backfill_policy is None or assets.backfill_policy.max_partitions_per_run == 1


def test_the_component_builds_the_same_partitioned_assets(tmp_path):
    root = _project(tmp_path)
    component = MeltanoProjectComponent(project_dir=root, dbt=DbtSettings(enabled=False))
    defs = build_location(component.location_options())
    (assets,) = [a for a in defs.assets if AssetKey(["files", "shop", "orders"]) in a.keys]
    assert assets.partitions_def == partitions_definition(_pipeline(root).extractor.partitions)
    assert assets.partitions_def.get_partition_keys()[:3] == list(KEYS)


def test_the_schedule_of_a_partitioned_job_runs_the_window_that_just_ended(tmp_path):
    defs = build_definitions(project_dir=_project(tmp_path), dbt=None)
    (schedule,) = defs.schedules
    with DagsterInstance.ephemeral() as instance:

        def tick(at: datetime):
            context = build_schedule_context(
                instance=instance, scheduled_execution_time=at, repository_def=defs.get_repository_def()
            )
            return schedule.evaluate_tick(context)

        (request,) = tick(datetime(2024, 1, 5, tzinfo=UTC)).run_requests
        assert request.partition_key == "2024-01-04"
        assert request.tags[md.TAG_SCHEDULE] == "shop-to-files-daily"
        too_early = tick(datetime(2024, 1, 2, 12, tzinfo=UTC))
        # no stale-pipeline runs of windows
        assert {s.name for s in defs.sensors} == {"meltano_crash_reconciler", "meltano_outside_runs"}
        assert too_early.run_requests == []
        assert too_early.skip_message == "no partition has ended yet"


# --- real runs ------------------------------------------------------------------------------


def _dates(output: Path, stream: str) -> Counter[str]:
    path = output / f"{stream}.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter(json.loads(line)["updated_at"][:10] for line in lines)


@pytest.mark.slow
def test_three_daily_partitions_load_only_their_window_and_never_move_the_main_bookmark(
    tmp_path, meltano_sandbox, default_store_url, monkeypatch
):
    root = _installed_copy(tmp_path / "project")
    monkeypatch.setenv("TARGET_JSONLINES_UPSERT", "false")  # ids repeat from window to window
    settings = Settings(database_url=default_store_url, project_dir=root, environment="dev")
    ctx = app_context(settings, env={**meltano_sandbox.env, "TARGET_JSONLINES_UPSERT": "false"})
    main = _pipeline(root)

    first = run_pipeline(ctx, main, RunOptions())  # the main bookmark, from an unpartitioned run
    assert first.status is ExecutionStatus.SUCCEEDED, first.error
    main_state = ctx.state_store.get(main.state_id)
    assert main_state is not None
    for path in meltano_sandbox.output.glob("*.jsonl"):
        path.unlink()

    defs = build_definitions(project_dir=root, database_url=default_store_url, dbt=None)
    (assets,) = [a for a in defs.assets if AssetKey(["files", "shop", "orders"]) in a.keys]
    resource = MeltanoResource(
        project_dir=str(root), database_url=default_store_url, env={"TARGET_JSONLINES_UPSERT": "false"}
    )
    instance = DagsterInstance.ephemeral()
    execution_ids = []
    for key in KEYS:
        before = _dates(meltano_sandbox.output, "orders")
        result = materialize([assets], partition_key=key, resources={"meltano": resource}, instance=instance)
        assert result.success
        added = _dates(meltano_sandbox.output, "orders") - before
        assert set(added) == {key}, f"partition {key} loaded orders of {sorted(added)}"
        assert added[key] == 99  # (start, end): the record at the end belongs to the next day
        events = {e.asset_key.path[-1]: e for e in result.get_asset_materialization_events()}
        assert {e.partition for e in events.values()} == {key}
        orders = events["orders"].materialization.metadata
        assert orders[md.PARTITION_ROW_COUNT].value == orders[md.ROW_COUNT].value == 99
        assert orders[md.PARTITION].value == key
        assert orders[md.STATE_ID].value == f"dev:{PIPELINE}:partition-{key}"
        execution_ids.append(orders[md.EXECUTION_ID].value)

    assert set(_dates(meltano_sandbox.output, "customers")) == set(KEYS)
    after = ctx.state_store.get(main.state_id)
    assert after is not None
    assert after.payload() == main_state.payload()  # the main bookmark never moved
    bookmarks = set()
    for key, execution_id in zip(KEYS, execution_ids, strict=True):
        stored = queries.get_execution(ctx, execution_id)
        assert stored.partition == key
        assert stored.pipeline_id == f"dev:{PIPELINE}:partition-{key}"
        state, _ = partitioned(main, key)
        partition_state = ctx.state_store.get(state.state_id)
        assert partition_state is not None
        bookmark = partition_state.payload()["singer_state"]["bookmarks"]["orders"]["replication_key_value"]
        assert bookmark.startswith(key)  # each partition's bookmark inside its own window
        bookmarks.add(bookmark)
    assert len(bookmarks) == len(KEYS)
    assert queries.get_execution(ctx, first.id).partition is None
    assert os.environ.get("TAP_SHOPSIM_START_DATE") is None  # the window never leaked into ours


def _flx(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "flx-meltano"), *args],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_the_cli_runs_one_partition_and_shows_it(tmp_path, meltano_sandbox, default_store_url):
    root = _installed_copy(tmp_path / "project")
    env = {
        **os.environ,
        "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
        "FLX_DATABASE_URL": default_store_url,
        "FLX_PROJECT_DIR": str(root),
    }
    done = _flx(root, env, "run", PIPELINE, "--partition", "2024-01-03", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    (execution,) = json.loads(done.stdout)
    assert execution["partition"] == "2024-01-03"
    assert execution["pipeline_id"] == f"dev:{PIPELINE}:partition-2024-01-03"
    assert set(_dates(meltano_sandbox.output, "orders")) == {"2024-01-03"}
    shown = _flx(root, env, "execution", execution["id"])
    assert shown.returncode == 0, shown.stderr
    assert "partition 2024-01-03" in shown.stdout
    as_json = json.loads(_flx(root, env, "execution", execution["id"], "--json").stdout)
    assert as_json["partition"] == "2024-01-03"
    refused = _flx(root, env, "run", PIPELINE, "--partition", "2023-12-31")
    assert refused.returncode != 0
    assert "before the partitions' start" in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr
