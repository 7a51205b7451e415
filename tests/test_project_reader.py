"""Unit tests of integration.project_reader.read_project and the select-rule helpers.

Every project is written into ``tmp_path`` (or is the repository's own meltano.yml); nothing here
starts ``meltano``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from flx_meltano.domain.plugins import PluginType
from flx_meltano.domain.project import (
    Command,
    ExtractLoad,
    ProjectModel,
    Source,
    selected_streams,
    streams_named_by,
)
from flx_meltano.integration.errors import ProjectError
from flx_meltano.integration.project_reader import read_project

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "projects"

# A small project every inline test builds on; tests append jobs, schedules or more plugins.
BASE = """\
version: 1
default_environment: dev
environments:
- name: dev
- name: prod
plugins:
  extractors:
  - name: tap-a
    namespace: tap_a
    pip_url: tap-a==1.0
    executable: tap-a
  - name: tap-c
    namespace: tap_c
    pip_url: tap-c
  loaders:
  - name: target-b
    namespace: target_b
    pip_url: target-b
  - name: target-d
    namespace: target_d
    pip_url: target-d
  mappers:
  - name: meltano-map-transformer
    namespace: meltano_map_transformer
    pip_url: meltano-map-transform
    mappings:
    - name: mapping-a
      config:
        stream_maps: {}
    - name: mapping-b
  utilities:
  - name: dbt
    namespace: dbt
    pip_url: dbt-core
    commands:
      run: run
      test: test
"""


def write_project(root: Path, text: str, **files: str) -> Path:
    """Write meltano.yml (and other files, by relative path) into ``root``."""
    (root / "meltano.yml").write_text(text)
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def read(root: Path, text: str, environment: str | None = None, **files: str) -> ProjectModel:
    return read_project(write_project(root, text, **files), environment)


def line_of(text: str, needle: str) -> int:
    """The 1-based number of the only line of ``text`` containing ``needle``."""
    found = [number for number, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(found) == 1, f"{needle!r} is on lines {found}, expected exactly one"
    return found[0]


def exact_line_of(text: str, line_text: str) -> int:
    """The 1-based number of the only line of ``text`` equal to ``line_text``."""
    found = [number for number, line in enumerate(text.splitlines(), 1) if line == line_text]
    assert len(found) == 1, f"{line_text!r} is on lines {found}, expected exactly one"
    return found[0]


def read_error(root: Path, text: str, environment: str | None = None, **files: str) -> ProjectError:
    with pytest.raises(ProjectError) as caught:
        read(root, text, environment, **files)
    return caught.value


def jobs_yaml(body: str) -> str:
    return BASE + textwrap.dedent(body)


# --- the repository's own meltano.yml ---------------------------------------------------------


@pytest.fixture(scope="module")
def repo_text() -> str:
    return (REPO / "meltano.yml").read_text()


@pytest.fixture(scope="module")
def repo() -> ProjectModel:
    return read_project(REPO)


def test_repo_plugins_have_their_types(repo: ProjectModel) -> None:
    kinds = {plugin.name: plugin.type for plugin in repo.plugins}
    assert kinds == {
        "tap-shopsim": PluginType.EXTRACTOR,
        "target-jsonlines": PluginType.LOADER,
        "target-postgres": PluginType.LOADER,
        "dbt-postgres": PluginType.UTILITY,
    }
    assert [p.name for p in repo.plugins_of(PluginType.LOADER)] == [
        "target-jsonlines",
        "target-postgres",
    ]
    assert repo.root == str(REPO)


def test_repo_plugins_are_custom_definitions(repo: ProjectModel) -> None:
    tap = repo.plugin("tap-shopsim", PluginType.EXTRACTOR)
    assert tap.namespace == "tap_shopsim"
    assert tap.pip_url == "-e ./taps/tap-shopsim"
    assert tap.executable == "tap-shopsim"
    assert "state" in tap.capabilities
    assert tap.select == ("customers.*", "products.*", "orders.*", "order_items.*")
    assert all(plugin.is_custom for plugin in repo.plugins)
    dbt = repo.plugin("dbt-postgres")
    assert dbt.executable == "dbt"
    assert dbt.commands == ("run", "test", "debug")
    assert {s.name: s.env for s in dbt.settings} == {
        "project_dir": "DBT_PROJECT_DIR",
        "profiles_dir": "DBT_PROFILES_DIR",
    }


def test_repo_plugin_lookup_errors_name_the_plugin(repo: ProjectModel) -> None:
    with pytest.raises(KeyError, match="tap-nothing"):
        repo.plugin("tap-nothing")
    with pytest.raises(KeyError, match="loader 'tap-shopsim'"):
        repo.plugin("tap-shopsim", PluginType.LOADER)
    with pytest.raises(KeyError, match="no job 'nope'"):
        repo.job("nope")


def test_repo_jobs_and_their_blocks(repo: ProjectModel) -> None:
    assert [job.name for job in repo.jobs] == ["shop-to-files", "shop-to-warehouse"]

    files = repo.job("shop-to-files")
    assert len(files.tasks) == 1
    assert files.tasks[0].text == "tap-shopsim target-jsonlines"
    assert files.tasks[0].blocks == (ExtractLoad("tap-shopsim", "target-jsonlines"),)

    warehouse = repo.job("shop-to-warehouse")
    assert [task.text for task in warehouse.tasks] == [
        "tap-shopsim target-postgres",
        "dbt-postgres:run",
    ]
    assert warehouse.tasks[0].blocks == (ExtractLoad("tap-shopsim", "target-postgres"),)
    assert warehouse.tasks[1].blocks == (Command("dbt-postgres", "run"),)
    assert warehouse.tasks[1].extract_loads == ()
    assert str(warehouse.tasks[1].blocks[0]) == "dbt-postgres:run"


def test_repo_extract_loads_and_state_ids(repo: ProjectModel) -> None:
    pairs = repo.extract_loads()
    assert pairs == (
        ExtractLoad("tap-shopsim", "target-jsonlines"),
        ExtractLoad("tap-shopsim", "target-postgres"),
    )
    assert str(pairs[0].state_id("dev")) == "dev:tap-shopsim-to-target-jsonlines"


def test_repo_schedules_with_cron(repo: ProjectModel) -> None:
    by_name = {schedule.name: schedule for schedule in repo.schedules}
    assert list(by_name) == ["shop-to-files-daily", "shop-to-warehouse-6h"]
    daily = by_name["shop-to-files-daily"]
    assert daily.interval == "@daily"
    assert daily.cron == "0 0 * * *"
    assert daily.job == "shop-to-files"
    assert daily.extract_load is None
    six_hourly = by_name["shop-to-warehouse-6h"]
    assert six_hourly.cron == "0 */6 * * *"
    assert six_hourly.job == "shop-to-warehouse"


def test_repo_environments(repo: ProjectModel) -> None:
    assert repo.environment == "dev"
    assert repo.environments == ("dev", "staging", "prod")
    assert repo.state_backend_uri is None


@pytest.mark.parametrize(
    ("environment", "scale"),
    [(None, 100), ("dev", 100), ("staging", 500), ("prod", 2000)],
)
def test_repo_environment_config_overrides_plugin_config(environment: str | None, scale: int) -> None:
    project = read_project(REPO, environment)
    config = project.plugin("tap-shopsim").config
    assert config["scale"] == scale
    # The override is merged into, not substituted for, the plugin's own config.
    assert config["seed"] == 42
    assert config["start_date"] == "2024-01-01T00:00:00Z"
    assert project.environment == (environment or "dev")


def test_repo_secret_settings(repo: ProjectModel) -> None:
    assert repo.plugin("tap-shopsim").secret_setting_names == frozenset({"api_key"})
    assert repo.plugin("target-postgres").secret_setting_names == frozenset({"sqlalchemy_url"})
    assert repo.plugin("target-jsonlines").secret_setting_names == frozenset()
    kinds = {s.name: s.kind for s in repo.plugin("tap-shopsim").settings}
    assert kinds["scale"] == "integer"
    assert kinds["api_key"] == "string"


def test_repo_load_schema_and_extras(repo: ProjectModel) -> None:
    tap = repo.plugin("tap-shopsim")
    assert tap.load_schema == "raw_shop"
    assert tap.extras["meta"] == {"dagster": {"owners": ["team:data-platform"], "freshness_hours": 24}}
    # Without a load_schema extra, the namespace is the schema.
    assert repo.plugin("target-jsonlines").load_schema == "target_jsonlines"


def test_repo_sources_point_at_definitions(repo: ProjectModel, repo_text: str) -> None:
    assert repo.sources["tap-shopsim"] == Source(
        "meltano.yml", exact_line_of(repo_text, "  - name: tap-shopsim")
    )
    assert repo.sources["dbt-postgres"] == Source(
        "meltano.yml", exact_line_of(repo_text, "  - name: dbt-postgres")
    )
    files_line = exact_line_of(repo_text, "- name: shop-to-files")
    assert repo.sources["job:shop-to-files"] == Source("meltano.yml", files_line)
    assert repo.job("shop-to-files").source == Source("meltano.yml", files_line)
    daily = next(s for s in repo.schedules if s.name == "shop-to-files-daily")
    assert daily.source == Source("meltano.yml", exact_line_of(repo_text, "- name: shop-to-files-daily"))
    assert str(daily.source).startswith("meltano.yml:")


# --- include_paths ------------------------------------------------------------------------------

INCLUDED = """\
plugins:
  extractors:
  - name: tap-included
    namespace: tap_included
    pip_url: tap-included
jobs:
- name: included-job
  tasks:
  - tap-included target-b
schedules:
- name: included-every-5
  interval: "*/5 * * * *"
  job: included-job
"""


@pytest.mark.parametrize(
    "pattern", ["./conf/*.meltano.yml", "conf/*.meltano.yml", "./conf/extra.meltano.yml"]
)
def test_include_paths_bring_plugins_jobs_and_schedules(tmp_path: Path, pattern: str) -> None:
    text = BASE + f"include_paths:\n- {pattern!r}\n"
    project = read(tmp_path, text, **{"conf/extra.meltano.yml": INCLUDED})

    assert project.plugin("tap-included").type is PluginType.EXTRACTOR
    assert project.sources["tap-included"] == Source(
        "conf/extra.meltano.yml", line_of(INCLUDED, "name: tap-included")
    )
    job = project.job("included-job")
    assert job.tasks[0].blocks == (ExtractLoad("tap-included", "target-b"),)
    assert job.source == Source("conf/extra.meltano.yml", line_of(INCLUDED, "name: included-job"))
    (schedule,) = project.schedules
    assert schedule.name == "included-every-5"
    assert schedule.cron == "*/5 * * * *"
    assert schedule.source == Source("conf/extra.meltano.yml", line_of(INCLUDED, "name: included-every-5"))


def test_include_paths_can_use_main_file_plugins_and_jobs(tmp_path: Path) -> None:
    text = jobs_yaml(
        """\
        include_paths:
        - ./schedules/*.yml
        jobs:
        - name: main-job
          tasks:
          - tap-a target-b
        """
    )
    included = "schedules:\n- name: from-include\n  interval: '@hourly'\n  job: main-job\n"
    project = read(tmp_path, text, **{"schedules/hourly.yml": included})
    (schedule,) = project.schedules
    assert (schedule.job, schedule.cron) == ("main-job", "0 * * * *")
    assert schedule.source == Source("schedules/hourly.yml", 2)


# --- inherit_from ------------------------------------------------------------------------------


def _inherit_project(tmp_path: Path) -> ProjectModel:
    text = BASE.replace(
        "    executable: tap-a\n",
        "    executable: tap-a\n    settings:\n    - {name: token, kind: password}\n"
        "    config:\n      start_date: '2024-01-01'\n      region: us\n",
    )
    text = text.replace(
        "  - name: tap-c\n",
        "  - name: tap-a--eu\n    inherit_from: tap-a\n    config:\n      region: eu\n  - name: tap-c\n",
    )
    return read(tmp_path, text)


def test_inherit_from_takes_the_parents_definition_and_merges_config(tmp_path: Path) -> None:
    project = _inherit_project(tmp_path)
    child = project.plugin("tap-a--eu", PluginType.EXTRACTOR)
    assert child.inherit_from == "tap-a"
    assert child.type is PluginType.EXTRACTOR
    assert child.pip_url == "tap-a==1.0"
    assert child.executable == "tap-a"
    assert child.config == {"start_date": "2024-01-01", "region": "eu"}
    assert child.secret_setting_names == frozenset({"token"})
    assert child.is_custom
    # The parent is untouched.
    assert project.plugin("tap-a").config == {"start_date": "2024-01-01", "region": "us"}


def test_inherit_from_namespace_and_load_schema_are_the_childs_own_like_meltano(
    tmp_path: Path,
) -> None:
    # Meltano (ProjectPlugin.__init__): an inheriting plugin's namespace defaults to its own name
    # with "-" replaced by "_", so its load_schema is tap_a__eu, not the parent's tap_a.
    child = _inherit_project(tmp_path).plugin("tap-a--eu")
    assert child.namespace == "tap_a__eu"
    assert child.load_schema == "tap_a__eu"


def test_inherit_from_a_child_may_override_pip_url(tmp_path: Path) -> None:
    text = BASE.replace(
        "  - name: tap-c\n",
        "  - name: tap-a--next\n    inherit_from: tap-a\n    pip_url: tap-a==2.0\n  - name: tap-c\n",
    )
    child = read(tmp_path, text).plugin("tap-a--next")
    assert child.pip_url == "tap-a==2.0"
    assert child.executable == "tap-a"


def test_inherit_from_unknown_parent(tmp_path: Path) -> None:
    text = BASE.replace(
        "  - name: tap-c\n",
        "  - name: tap-orphan\n    inherit_from: tap-missing\n  - name: tap-c\n",
    )
    err = read_error(tmp_path, text)
    assert err.file == "meltano.yml"
    assert err.line == line_of(text, "name: tap-orphan")
    assert "inherits from unknown extractor 'tap-missing'" in str(err)
    assert str(err).startswith(f"meltano.yml:{err.line}: ")


# --- tasks, blocks, mappers, job references ------------------------------------------------------


def test_mapping_names_are_mappers_between_extractor_and_loader(tmp_path: Path) -> None:
    project = read(
        tmp_path,
        jobs_yaml(
            """\
            jobs:
            - name: mapped
              tasks:
              - tap-a mapping-a target-b
              - tap-c mapping-a mapping-b target-d dbt:test
            """
        ),
    )
    first, second = project.job("mapped").tasks
    assert first.blocks == (ExtractLoad("tap-a", "target-b", ("mapping-a",)),)
    assert second.blocks == (
        ExtractLoad("tap-c", "target-d", ("mapping-a", "mapping-b")),
        Command("dbt", "test"),
    )
    assert project.plugin("meltano-map-transformer").mappings == ("mapping-a", "mapping-b")
    assert project.plugin("meltano-map-transformer").type is PluginType.MAPPER


def test_a_task_naming_the_mapper_plugin_instead_of_a_mapping_is_refused(tmp_path: Path) -> None:
    text = jobs_yaml("jobs:\n- name: j\n  tasks:\n  - tap-a meltano-map-transformer target-b\n")
    err = read_error(tmp_path, text)
    assert err.line == line_of(text, "- tap-a meltano-map-transformer target-b")
    assert "mapper plugin 'meltano-map-transformer'" in str(err)
    assert "mapping-a, mapping-b" in str(err)


def test_two_chains_of_one_extractor_and_loader_are_refused_naming_both_jobs(tmp_path: Path) -> None:
    text = jobs_yaml(
        """\
        jobs:
        - name: plain
          tasks:
          - tap-a target-b
        - name: masked
          tasks:
          - tap-a mapping-a target-b
        """
    )
    err = read_error(tmp_path, text)
    message = str(err)
    assert "job 'plain' (tap-a target-b)" in message
    assert "job 'masked' (tap-a mapping-a target-b)" in message
    assert "dev:tap-a-to-target-b" in message
    assert "inherit_from: target-b" in message
    assert err.line == line_of(text, "- name: masked")


def test_one_chain_used_by_two_jobs_and_a_schedule_is_fine(tmp_path: Path) -> None:
    project = read(
        tmp_path,
        jobs_yaml(
            """\
            jobs:
            - name: one
              tasks:
              - tap-a mapping-a target-b
            - name: two
              tasks:
              - tap-a mapping-a target-b dbt:run
            """
        ),
    )
    assert project.extract_loads() == (ExtractLoad("tap-a", "target-b", ("mapping-a",)),)


def test_a_legacy_schedule_and_a_mapped_job_on_one_pair_are_refused(tmp_path: Path) -> None:
    text = jobs_yaml(
        """\
        jobs:
        - name: masked
          tasks:
          - tap-a mapping-a target-b
        schedules:
        - name: nightly
          interval: "@daily"
          extractor: tap-a
          loader: target-b
        """
    )
    assert "schedule 'nightly' (tap-a target-b)" in str(read_error(tmp_path, text))


def test_select_rule_sources_point_at_each_rule_and_environment_overrides(tmp_path: Path) -> None:
    text = BASE.replace(
        "    executable: tap-a\n", "    executable: tap-a\n    select:\n    - a.*\n    - '!b.*'\n", 1
    ) + textwrap.dedent(
        """\
        jobs:
        - name: j
          tasks:
          - tap-a target-b
        """
    )
    prod_select = "  config:\n    plugins:\n      extractors:\n      - name: tap-a\n"
    prod_select += "        select:\n        - c.*\n"
    text = text.replace("- name: prod\n", "- name: prod\n" + prod_select, 1)
    project = read(tmp_path, text)
    assert project.select_rule_source("tap-a", 0) == Source("meltano.yml", line_of(text, "- a.*"))
    assert project.select_rule_source("tap-a", 1) == Source("meltano.yml", line_of(text, "- '!b.*'"))
    assert project.select_rule_source("tap-a", 2) is None
    prod = read(tmp_path, text, "prod")
    assert prod.plugin("tap-a").select == ("c.*",)
    assert prod.select_rule_source("tap-a", 0) == Source("meltano.yml", line_of(text, "- c.*"))


def test_plugin_command_and_bare_plugin_blocks(tmp_path: Path) -> None:
    project = read(
        tmp_path,
        jobs_yaml(
            """\
            jobs:
            - name: commands
              tasks:
              - tap-a target-b dbt:run dbt:test dbt
            """
        ),
    )
    (task,) = project.job("commands").tasks
    assert task.blocks == (
        ExtractLoad("tap-a", "target-b"),
        Command("dbt", "run"),
        Command("dbt", "test"),
        Command("dbt"),
    )
    assert [str(b) for b in task.blocks[1:]] == ["dbt:run", "dbt:test", "dbt"]
    assert task.extract_loads == (ExtractLoad("tap-a", "target-b"),)


def test_tasks_as_a_single_string(tmp_path: Path) -> None:
    # Meltano's TASKS_JSON_SCHEMA allows `tasks` to be one string: one `meltano run`.
    project = read(
        tmp_path,
        jobs_yaml(
            """\
            jobs:
            - name: one-string
              tasks: tap-a target-b dbt:run
            """
        ),
    )
    (task,) = project.job("one-string").tasks
    assert task.blocks == (ExtractLoad("tap-a", "target-b"), Command("dbt", "run"))


def test_tasks_as_a_list_of_strings_is_one_run_each(tmp_path: Path) -> None:
    project = read(
        tmp_path,
        jobs_yaml(
            """\
            jobs:
            - name: strings
              tasks:
              - tap-a target-b
              - tap-c target-d
              - dbt:run
            """
        ),
    )
    tasks = project.job("strings").tasks
    assert [t.blocks for t in tasks] == [
        (ExtractLoad("tap-a", "target-b"),),
        (ExtractLoad("tap-c", "target-d"),),
        (Command("dbt", "run"),),
    ]


@pytest.mark.parametrize(
    ("tasks_yaml", "expected"),
    [
        # One inner list is one run: its strings are split and joined (Meltano's _flat_split).
        (
            '[[ "tap-a target-b", "dbt:run" ]]',
            [("tap-a target-b dbt:run", (ExtractLoad("tap-a", "target-b"), Command("dbt", "run")))],
        ),
        # Strings and lists may be mixed; each top-level entry is its own run.
        (
            '["tap-a target-b", ["tap-c target-d"]]',
            [
                ("tap-a target-b", (ExtractLoad("tap-a", "target-b"),)),
                ("tap-c target-d", (ExtractLoad("tap-c", "target-d"),)),
            ],
        ),
        # An inner list of separate tokens.
        (
            "[[tap-a, mapping-a, target-b], [dbt:test]]",
            [
                ("tap-a mapping-a target-b", (ExtractLoad("tap-a", "target-b", ("mapping-a",)),)),
                ("dbt:test", (Command("dbt", "test"),)),
            ],
        ),
    ],
)
def test_tasks_as_nested_lists(
    tmp_path: Path, tasks_yaml: str, expected: list[tuple[str, tuple[object, ...]]]
) -> None:
    project = read(tmp_path, BASE + f"jobs:\n- name: nested\n  tasks: {tasks_yaml}\n")
    tasks = project.job("nested").tasks
    assert [(t.text, t.blocks) for t in tasks] == expected


def test_tasks_nested_three_deep_are_rejected(tmp_path: Path) -> None:
    # Meltano's schema allows a string or a list of strings inside the top-level list, no deeper.
    text = BASE + "jobs:\n- name: too-deep\n  tasks:\n  - [[tap-a target-b]]\n"
    err = read_error(tmp_path, text)
    assert (err.file, err.line) == ("meltano.yml", line_of(text, "[[tap-a target-b]]"))
    assert "a task must be a string or a list of strings" in str(err)


def test_job_named_in_a_task_expands_to_its_tasks(tmp_path: Path) -> None:
    project = read(
        tmp_path,
        jobs_yaml(
            """\
            jobs:
            - name: load
              tasks:
              - tap-a target-b
              - tap-c target-d
            - name: load-then-transform
              tasks:
              - load
              - dbt:run
            - name: inline
              tasks:
              - load dbt:test
            """
        ),
    )
    assert project.job("load-then-transform").tasks[:2] == project.job("load").tasks
    assert [t.text for t in project.job("load-then-transform").tasks] == [
        "tap-a target-b",
        "tap-c target-d",
        "dbt:run",
    ]
    assert [t.text for t in project.job("inline").tasks] == [
        "tap-a target-b",
        "tap-c target-d",
        "dbt:test",
    ]


def test_job_reference_before_its_definition(tmp_path: Path) -> None:
    project = read(
        tmp_path,
        jobs_yaml(
            """\
            jobs:
            - name: outer
              tasks:
              - inner
            - name: inner
              tasks:
              - tap-a target-b
            """
        ),
    )
    assert [j.name for j in project.jobs] == ["outer", "inner"]
    assert project.job("outer").tasks == project.job("inner").tasks


def test_job_referring_to_itself_is_an_error(tmp_path: Path) -> None:
    text = jobs_yaml(
        """\
        jobs:
        - name: loop
          tasks:
          - tap-a target-b
          - loop
        """
    )
    err = read_error(tmp_path, text)
    assert (err.file, err.line) == ("meltano.yml", line_of(text, "name: loop"))
    assert "job 'loop' refers to itself" in str(err)


def test_jobs_referring_to_each_other_is_an_error(tmp_path: Path) -> None:
    text = jobs_yaml(
        """\
        jobs:
        - name: ping
          tasks:
          - pong
        - name: pong
          tasks:
          - ping
        """
    )
    err = read_error(tmp_path, text)
    assert (err.file, err.line) == ("meltano.yml", line_of(text, "name: ping"))
    assert "refers to itself: ping -> pong -> ping" in str(err)


# --- legacy schedules ---------------------------------------------------------------------------


def test_legacy_schedule_with_extractor_and_loader(tmp_path: Path) -> None:
    text = BASE + textwrap.dedent(
        """\
        schedules:
        - name: legacy
          interval: "@hourly"
          extractor: tap-a
          loader: target-b
          transform: skip
          environment: prod
        """
    )
    project = read(tmp_path, text)
    (schedule,) = project.schedules
    assert schedule.job is None
    assert schedule.extract_load == ExtractLoad("tap-a", "target-b")
    assert schedule.cron == "0 * * * *"
    assert schedule.environment == "prod"
    assert schedule.source == Source("meltano.yml", line_of(text, "name: legacy"))
    assert project.extract_loads() == (ExtractLoad("tap-a", "target-b"),)


def test_legacy_schedule_with_unknown_loader(tmp_path: Path) -> None:
    text = (
        BASE
        + "schedules:\n- name: legacy\n  interval: '@daily'\n"
        + "  extractor: tap-a\n  loader: target-zz\n"
    )
    err = read_error(tmp_path, text)
    assert (err.file, err.line) == ("meltano.yml", line_of(text, "loader: target-zz"))
    assert "schedule 'legacy' names unknown loader 'target-zz'" in str(err)


def test_legacy_schedule_with_a_loader_as_extractor(tmp_path: Path) -> None:
    text = (
        BASE
        + "schedules:\n- name: legacy\n  interval: '@daily'\n"
        + "  extractor: target-d\n  loader: target-b\n"
    )
    err = read_error(tmp_path, text)
    assert (err.file, err.line) == ("meltano.yml", line_of(text, "extractor: target-d"))
    assert "unknown extractor 'target-d'" in str(err)


# --- environments, secrets, state backend --------------------------------------------------------


def test_environment_overrides_select_config_and_state_backend(tmp_path: Path) -> None:
    text = BASE.replace(
        "- name: prod\n",
        textwrap.dedent(
            """\
            - name: prod
              config:
                state_backend:
                  uri: s3://bucket/state
                plugins:
                  extractors:
                  - name: tap-a
                    select: [orders.*]
                    config:
                      region: eu
                    load_schema: prod_raw
            """
        ),
    ).replace(
        "    executable: tap-a\n",
        "    executable: tap-a\n    select: ['*.*']\n    config: {region: us}\n",
    )
    text += "state_backend:\n  uri: file:///tmp/state\n"
    dev = read(tmp_path, text)
    assert dev.plugin("tap-a").select == ("*.*",)
    assert dev.plugin("tap-a").config == {"region": "us"}
    assert dev.state_backend_uri == "file:///tmp/state"
    prod = read_project(tmp_path, "prod")
    assert prod.plugin("tap-a").select == ("orders.*",)
    assert prod.plugin("tap-a").config == {"region": "eu"}
    assert prod.plugin("tap-a").load_schema == "prod_raw"
    assert prod.state_backend_uri == "s3://bucket/state"


def test_password_kind_settings_are_secret(tmp_path: Path) -> None:
    text = BASE.replace(
        "    executable: tap-a\n",
        "    executable: tap-a\n    settings:\n    - {name: password, kind: password}\n"
        "    - {name: client_secret, kind: oauth}\n    - {name: user}\n"
        "    - {name: key, sensitive: true}\n",
    )
    tap = read(tmp_path, text).plugin("tap-a")
    assert tap.secret_setting_names == frozenset({"password", "client_secret", "key"})
    assert {s.name: s.kind for s in tap.settings}["user"] == "string"


def test_load_schema_falls_back_to_namespace(tmp_path: Path) -> None:
    project = read(tmp_path, BASE)
    assert project.plugin("tap-a").load_schema == "tap_a"


# --- select-rule helpers ------------------------------------------------------------------------

STREAMS = ("customers", "orders", "order_items", "products")


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (("customers.*", "orders.*"), ("customers", "orders")),
        (("*.*",), STREAMS),
        (("*.*", "!orders.*"), ("customers", "order_items", "products")),
        (("order*.*",), ("orders", "order_items")),
        (("order*.*", "!order_items.*"), ("orders",)),
        # A property rule selects its stream; excluding a property does not drop the stream.
        (("orders.id", "orders.total"), ("orders",)),
        (("orders.*", "!orders.secret"), ("orders",)),
        # A bare stream name selects it; "stream." names no property and selects nothing.
        (("products",), ("products",)),
        (("products.",), ()),
        (("?roducts.*",), ("products",)),
        (("[cp]*.*",), ("customers", "products")),
        (("!orders.*",), ()),
        (("nothing.*",), ()),
    ],
)
def test_selected_streams(rules: tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert selected_streams(rules, STREAMS) == expected


def test_selected_streams_keep_catalog_order() -> None:
    assert selected_streams(("products.*", "customers.*"), STREAMS) == ("customers", "products")


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (("customers.*", "orders.id", "orders.total", "!products.*"), ("customers", "orders")),
        (("products",), ("products",)),
        (("!secret.*", "orders.*"), ("orders",)),
        ((), ()),
        (("*.*",), None),
        (("orders.*", "order?.id"), None),
        (("[co]rders.*",), None),
        (("cust*.*", "!cust_private.*"), None),
    ],
)
def test_streams_named_by(rules: tuple[str, ...], expected: tuple[str, ...] | None) -> None:
    assert streams_named_by(rules) == expected


def test_streams_named_by_repo_select(repo: ProjectModel) -> None:
    assert streams_named_by(repo.plugin("tap-shopsim").select) == (
        "customers",
        "products",
        "orders",
        "order_items",
    )


# --- errors name the file and line --------------------------------------------------------------


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        version: 1
        default_environment: dev
        plugins:
          extractors:
          - name: tap-a
            pip_url: tap-a
             namespace: tap_a
        """
    )
    err = read_error(tmp_path, text)
    assert err.file == "meltano.yml"
    assert err.line == 7 == line_of(text, "namespace: tap_a")
    assert str(err).startswith("meltano.yml:7: invalid YAML")


def test_invalid_yaml_fixture() -> None:
    with pytest.raises(ProjectError) as caught:
        read_project(FIXTURES / "broken_indent")
    err = caught.value
    assert (err.file, err.line) == ("meltano.yml", 10)
    assert str(err) == "meltano.yml:10: invalid YAML: mapping values are not allowed in this context"


def test_missing_meltano_yml(tmp_path: Path) -> None:
    with pytest.raises(ProjectError) as caught:
        read_project(tmp_path)
    assert caught.value.file == "meltano.yml"
    assert caught.value.line is None
    assert str(caught.value) == "meltano.yml: file not found"


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    err = read_error(tmp_path, "- just\n- a list\n")
    assert (err.file, err.line) == ("meltano.yml", 1)
    assert "expected a mapping at the top level" in str(err)


def test_job_naming_an_unknown_plugin(tmp_path: Path) -> None:
    text = jobs_yaml(
        """\
        jobs:
        - name: j
          tasks:
          - tap-a target-b
          - tap-a target-zz
        """
    )
    err = read_error(tmp_path, text)
    assert (err.file, err.line) == ("meltano.yml", line_of(text, "target-zz"))
    assert "task names unknown plugin or job 'target-zz'" in str(err)


def test_job_naming_an_unknown_plugin_command(tmp_path: Path) -> None:
    text = jobs_yaml(
        """\
        jobs:
        - name: j
          tasks:
          - tap-a target-b
          - dbt-nowhere:run
        """
    )
    err = read_error(tmp_path, text)
    assert (err.file, err.line) == ("meltano.yml", line_of(text, "dbt-nowhere:run"))
    assert "unknown plugin 'dbt-nowhere' in 'dbt-nowhere:run'" in str(err)


def test_loader_without_extractor(tmp_path: Path) -> None:
    text = jobs_yaml(
        """\
        jobs:
        - name: j
          tasks:
          - tap-a target-b
          - dbt:run target-d
        """
    )
    err = read_error(tmp_path, text)
    assert (err.file, err.line) == ("meltano.yml", line_of(text, "dbt:run target-d"))
    assert "loader 'target-d' has no extractor before it" in str(err)


def test_extractor_without_loader(tmp_path: Path) -> None:
    text = jobs_yaml(
        """\
        jobs:
        - name: j
          tasks:
          - tap-a target-b
          - tap-c dbt:run
        """
    )
    err = read_error(tmp_path, text)
    assert (err.file, err.line) == ("meltano.yml", line_of(text, "tap-c dbt:run"))
    # The parser meets dbt:run as a command block after tap-c, then ends with tap-c still open.
    assert "extractor 'tap-c' has no loader" in str(err)


def test_extractor_at_end_of_task(tmp_path: Path) -> None:
    text = jobs_yaml(
        """\
        jobs:
        - name: j
          tasks:
          - tap-a
        """
    )
    err = read_error(tmp_path, text)
    assert (err.file, err.line) == ("meltano.yml", exact_line_of(text, "  - tap-a"))
    assert "extractor 'tap-a' has no loader after it" in str(err)


def test_two_extractors_in_a_row(tmp_path: Path) -> None:
    text = jobs_yaml("jobs:\n- name: j\n  tasks:\n  - tap-a tap-c target-b\n")
    err = read_error(tmp_path, text)
    assert (err.file, err.line) == ("meltano.yml", line_of(text, "tap-a tap-c target-b"))
    assert "extractor 'tap-a' has no loader before 'tap-c'" in str(err)


def test_mapping_without_extractor(tmp_path: Path) -> None:
    text = jobs_yaml("jobs:\n- name: j\n  tasks:\n  - mapping-a target-b\n")
    err = read_error(tmp_path, text)
    assert (err.file, err.line) == ("meltano.yml", line_of(text, "mapping-a target-b"))
    assert "'mapping-a'" in str(err)


def test_job_without_tasks(tmp_path: Path) -> None:
    text = jobs_yaml("jobs:\n- name: empty\n  tasks: []\n")
    err = read_error(tmp_path, text)
    assert (err.file, err.line) == ("meltano.yml", line_of(text, "tasks: []"))
    assert "job 'empty' needs a non-empty 'tasks' list" in str(err)


def test_schedule_naming_an_unknown_job(tmp_path: Path) -> None:
    text = jobs_yaml(
        """\
        jobs:
        - name: real
          tasks:
          - tap-a target-b
        schedules:
        - name: s
          interval: "@daily"
          job: imaginary
        """
    )
    err = read_error(tmp_path, text)
    assert (err.file, err.line) == ("meltano.yml", line_of(text, "job: imaginary"))
    assert "schedule 's' names unknown job 'imaginary'" in str(err)


def one_schedule_yaml(interval: str) -> str:
    """A project with one job and one schedule of it at ``interval``."""
    return jobs_yaml(
        f"""\
        jobs:
        - name: real
          tasks:
          - tap-a target-b
        schedules:
        - name: s
          interval: "{interval}"
          job: real
        """
    )


@pytest.mark.parametrize(
    "interval",
    [
        "0 0 * *",  # four fields
        "0 0 * * * *",  # six fields
        "@fortnightly",  # not one of Meltano's aliases (meltano.core.schedule.CRON_INTERVALS)
        "61 * * * *",  # minute out of range (meltano.core.schedule.is_valid_cron rejects it)
    ],
)
def test_schedule_with_a_bad_cron(tmp_path: Path, interval: str) -> None:
    text = one_schedule_yaml(interval)
    err = read_error(tmp_path, text)
    assert (err.file, err.line) == ("meltano.yml", line_of(text, "interval:"))
    assert "schedule 's'" in str(err)
    assert repr(interval) in str(err)


def test_schedule_without_interval(tmp_path: Path) -> None:
    text = jobs_yaml("jobs:\n- name: real\n  tasks: [tap-a target-b]\nschedules:\n- name: s\n  job: real\n")
    err = read_error(tmp_path, text)
    assert (err.file, err.line) == ("meltano.yml", line_of(text, "- name: s"))
    assert "schedule 's' needs an 'interval'" in str(err)


def test_unknown_environment(tmp_path: Path) -> None:
    err = read_error(tmp_path, BASE, environment="qa")
    assert (err.file, err.line) == ("meltano.yml", line_of(BASE, "environments:"))
    assert "unknown environment 'qa'; meltano.yml defines dev, prod" in str(err)


def test_unknown_default_environment(tmp_path: Path) -> None:
    text = BASE.replace("default_environment: dev", "default_environment: staging")
    err = read_error(tmp_path, text)
    assert (err.file, err.line) == ("meltano.yml", line_of(text, "environments:"))
    assert "unknown environment 'staging'" in str(err)


def test_unknown_plugin_type(tmp_path: Path) -> None:
    text = BASE + "  widgets:\n  - name: spinner\n"
    err = read_error(tmp_path, text)
    assert (err.file, err.line) == ("meltano.yml", line_of(text, "widgets:"))
    assert "unknown plugin type 'widgets'" in str(err)


def test_unknown_plugin_type_in_environment(tmp_path: Path) -> None:
    text = BASE.replace(
        "- name: prod\n", "- name: prod\n  config:\n    plugins:\n      gadgets:\n      - name: x\n"
    )
    err = read_error(tmp_path, text, environment="prod")
    assert (err.file, err.line) == ("meltano.yml", line_of(text, "- name: prod"))
    assert "unknown plugin type 'gadgets' in environment config" in str(err)


def _prod_config(body: str) -> str:
    """BASE with the prod environment's ``config`` written as ``body`` (indented under it)."""
    return BASE.replace("- name: prod\n", "- name: prod\n" + textwrap.indent(textwrap.dedent(body), "  "))


@pytest.mark.parametrize(
    ("body", "at", "message"),
    [
        (
            "config:\n  plugins:\n    extractors:\n    - tap-a\n",
            "    - tap-a",
            "environment 'prod': each entry of 'extractors' in 'config.plugins' must be a mapping",
        ),
        (
            "config:\n  plugins:\n    extractors:\n    - [tap-a, tap-c]\n",
            "    - [tap-a, tap-c]",
            "environment 'prod': each entry of 'extractors' in 'config.plugins' must be a mapping",
        ),
        (
            "config:\n  plugins:\n    extractors:\n      name: tap-a\n",
            "    extractors:",
            "environment 'prod': 'extractors' in 'config.plugins' must be a list",
        ),
        (
            "config:\n  plugins:\n  - name: tap-a\n",
            "  plugins:",
            "environment 'prod': 'config.plugins' must be a mapping of plugin types",
        ),
        (
            "config: scale=2000\n",
            "config: scale=2000",
            "environment 'prod': 'config' must be a mapping",
        ),
        (
            "config:\n  plugins:\n    loaders:\n    - config: {batch: 10}\n",
            "    - config: {batch: 10}",
            "environment 'prod': a plugin under 'loaders' in 'config.plugins' needs a 'name'",
        ),
    ],
    ids=[
        "entry-is-a-string",
        "entry-is-a-list",
        "type-is-a-mapping",
        "plugins-is-a-list",
        "config-is-a-string",
        "no-name",
    ],
)
def test_malformed_environment_plugin_overrides_name_file_and_line(
    tmp_path: Path, body: str, at: str, message: str
) -> None:
    text = _prod_config(body)
    err = read_error(tmp_path, text, environment="prod")
    assert (err.file, err.line) == ("meltano.yml", exact_line_of(text, "  " + at))
    assert str(err) == f"meltano.yml:{err.line}: {message}"


def test_malformed_overrides_in_an_included_file_name_that_file(tmp_path: Path) -> None:
    included = "environments:\n- name: qa\n  config:\n    plugins:\n      extractors:\n      - tap-a\n"
    text = BASE + "include_paths:\n- ./conf/*.yml\n"
    err = read_error(tmp_path, text, "qa", **{"conf/envs.yml": included})
    assert (err.file, err.line) == ("conf/envs.yml", 6)
    assert "environment 'qa': each entry of 'extractors'" in str(err)


def test_empty_environment_plugin_overrides_are_no_overrides(tmp_path: Path) -> None:
    text = _prod_config("config:\n  plugins:\n    extractors:\n    loaders: []\n")
    assert read(tmp_path, text, "prod").plugin("tap-a").config == {}


@pytest.mark.parametrize(
    ("interval", "cron"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@once", None),
        ("@manual", None),
        ("@none", None),
    ],
)
def test_schedule_interval_aliases(tmp_path: Path, interval: str, cron: str | None) -> None:
    text = one_schedule_yaml(interval)
    (schedule,) = read(tmp_path, text).schedules
    assert schedule.interval == interval
    assert schedule.cron == cron


def test_plugin_without_a_name(tmp_path: Path) -> None:
    text = BASE.replace("  - name: target-d\n    namespace: target_d\n", "  - namespace: target_nameless\n")
    err = read_error(tmp_path, text)
    assert (err.file, err.line) == ("meltano.yml", line_of(text, "namespace: target_nameless"))
    assert "a plugin under 'loaders' needs a 'name'" in str(err)


def test_plugin_defined_twice(tmp_path: Path) -> None:
    text = BASE + "  - name: dbt\n    namespace: dbt_again\n"
    err = read_error(tmp_path, text)
    assert (err.file, err.line) == ("meltano.yml", line_of(text, "namespace: dbt_again") - 1)
    assert "utility 'dbt' is defined twice" in str(err)


def test_error_inside_an_included_file(tmp_path: Path) -> None:
    included = "jobs:\n- name: from-include\n  tasks:\n  - tap-a target-b\n  - tap-c target-nowhere\n"
    text = BASE + "include_paths:\n- ./conf/*.yml\n"
    err = read_error(tmp_path, text, **{"conf/jobs.yml": included})
    assert (err.file, err.line) == ("conf/jobs.yml", 5)
    assert str(err).startswith("conf/jobs.yml:5: task names unknown plugin or job 'target-nowhere'")


def test_invalid_yaml_inside_an_included_file(tmp_path: Path) -> None:
    included = "schedules:\n- name: s\n  interval: '@daily'\n   job: x\n"
    text = BASE + "include_paths:\n- ./conf/*.yml\n"
    err = read_error(tmp_path, text, **{"conf/schedules.yml": included})
    assert (err.file, err.line) == ("conf/schedules.yml", 4)
    assert "invalid YAML" in str(err)


def test_duplicate_job(tmp_path: Path) -> None:
    text = jobs_yaml(
        """\
        jobs:
        - name: twice
          tasks:
          - tap-a target-b
        - name: other
          tasks:
          - tap-c target-d
        - name: twice
          tasks:
          - tap-c target-b
        """
    )
    err = read_error(tmp_path, text)
    second = [n for n, line in enumerate(text.splitlines(), 1) if line == "- name: twice"][1]
    assert (err.file, err.line) == ("meltano.yml", second)
    assert "job 'twice' is defined twice" in str(err)


def test_duplicate_job_across_included_file(tmp_path: Path) -> None:
    text = jobs_yaml("include_paths:\n- ./conf/*.yml\njobs:\n- name: twice\n  tasks: [tap-a target-b]\n")
    included = "# the same job again\njobs:\n- name: twice\n  tasks: [tap-c target-d]\n"
    err = read_error(tmp_path, text, **{"conf/more.yml": included})
    assert (err.file, err.line) == ("conf/more.yml", 3)
    assert "job 'twice' is defined twice" in str(err)
