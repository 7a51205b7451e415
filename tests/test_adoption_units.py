"""Fast tests of adoption: init's files, the shipped Dagster settings, the UI supervisor, settings, CLI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path, PurePosixPath

import pytest
import yaml
from typer.testing import CliRunner

from flx_meltano.application import scaffold
from flx_meltano.application.ui import PACKAGED_CODE_LOCATION, prepare_dagster_home, prepare_ui
from flx_meltano.cli.about import version_text
from flx_meltano.cli.app import app, main
from flx_meltano.settings import Settings

REPO = Path(__file__).resolve().parents[1]
CODE_LOCATION = REPO / "orchestrate" / "dagster"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with a minimal meltano.yml."""
    (tmp_path / "meltano.yml").write_text("default_environment: dev\nenvironments:\n- name: dev\n")
    return tmp_path


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


# --- flx-meltano init ---------------------------------------------------------------------------


def test_the_repository_code_location_is_exactly_what_init_writes():
    generated = {str(f.path): f.content for f in scaffold.code_location_files()}
    assert sorted(generated) == [
        "orchestrate/dagster/dg.toml",
        "orchestrate/dagster/instance/dagster.yaml",
        "orchestrate/dagster/meltano_location/__init__.py",
        "orchestrate/dagster/meltano_location/definitions.py",
        "orchestrate/dagster/meltano_location/defs/__init__.py",
        "orchestrate/dagster/meltano_location/defs/meltano/defs.yaml",
        "orchestrate/dagster/workspace.yaml",
    ]
    for path, content in generated.items():
        assert (REPO / path).read_text() == content, f"{path} differs from what flx-meltano init writes"


def test_the_component_finds_the_project_however_deep_its_directory():
    files = {
        str(f.path): f.content for f in scaffold.code_location_files(PurePosixPath("deploy/dagster/code"))
    }
    defs_yaml = files["deploy/dagster/code/meltano_location/defs/meltano/defs.yaml"]
    assert 'project_dir: "{{ context.project_root }}/../../.."' in defs_yaml


def test_definitions_find_the_project_however_deep_their_directory(project: Path):
    [definitions, *_] = scaffold.code_location_files(PurePosixPath("deploy/dagster/code"), "definitions")
    assert definitions.path == PurePosixPath("deploy/dagster/code/definitions.py")
    assert "Path(__file__).resolve().parents[3])" in definitions.content
    scaffold.write_code_location(project, [definitions])
    file = project / "deploy" / "dagster" / "code" / "definitions.py"
    assert Path(file).resolve().parents[3] == project.resolve()


def test_init_writes_three_files_and_refuses_to_overwrite_any_writing_nothing(project: Path):
    (project / "orchestrate").mkdir()
    (project / "orchestrate" / "README").write_text("mine\n")
    before = _files(project)
    written = scaffold.write_code_location(project, scaffold.code_location_files(style="definitions"))
    assert [p.name for p in written] == ["definitions.py", "dagster.yaml", "workspace.yaml"]
    assert written[1].parent.name == "instance"
    after = _files(project)
    assert {k: v for k, v in after.items() if k in before} == before

    # One of the three exists (the others were moved away): refused, naming only that one.
    (project / "orchestrate" / "dagster" / "definitions.py").unlink()
    (project / "orchestrate" / "dagster" / "workspace.yaml").unlink()
    (project / "orchestrate" / "dagster" / "instance" / "dagster.yaml").write_text("my own\n")
    kept = _files(project)
    with pytest.raises(scaffold.ScaffoldError) as refused:
        scaffold.write_code_location(project, scaffold.code_location_files(style="definitions"))
    assert str(refused.value).startswith("orchestrate/dagster/instance/dagster.yaml already exists in ")
    assert "nothing was written" in str(refused.value)
    assert _files(project) == kept


@pytest.mark.parametrize(
    ("directory", "style", "message"),
    [
        ("/etc/dagster", "definitions", "give a directory inside the project"),
        ("../elsewhere", "definitions", "give a directory inside the project"),
        (
            "orchestrate/dagster",
            "components",
            "unknown code location style 'components': one of component, definitions",
        ),
    ],
)
def test_init_refuses_a_directory_outside_the_project_or_an_unknown_style(directory, style, message):
    with pytest.raises(scaffold.ScaffoldError, match=message):
        scaffold.code_location_files(PurePosixPath(directory), style)


def test_cli_init_outside_a_project_and_over_existing_files_exits_2_naming_them(
    project: Path, tmp_path_factory, monkeypatch, capsys
):
    def flx(*args: str) -> tuple[int, str]:
        """The command line's own entry point, where errors become ``error: ...`` and exit codes."""
        with pytest.raises(SystemExit) as done:
            main(list(args))
        captured = capsys.readouterr()
        return int(done.value.code or 0), " ".join((captured.out + captured.err).split())

    monkeypatch.setenv("FLX_PROJECT_DIR", str(tmp_path_factory.mktemp("not-a-project")))
    code, output = flx("init")
    assert code == 2
    assert "no meltano.yml here" in output

    monkeypatch.setenv("FLX_PROJECT_DIR", str(project))
    code, output = flx("init")
    assert code == 0, output
    assert "wrote orchestrate/dagster/workspace.yaml" in output
    code, text = flx("init")
    assert code == 2
    assert "orchestrate/dagster/dg.toml, orchestrate/dagster/meltano_location/__init__.py, " in text
    assert "orchestrate/dagster/workspace.yaml already exist in" in text


# --- the shipped Dagster settings ----------------------------------------------------------------


def test_the_shipped_dagster_yaml_is_valid_and_frees_slots_and_monitors_runs(tmp_path, monkeypatch):
    from dagster._core.instance.config import dagster_instance_config

    monkeypatch.setenv("FLX_DAGSTER_PG_URL", "postgresql://u:p@db/dagster")
    (tmp_path / "dagster.yaml").write_text(scaffold.template("dagster.yaml"))
    config, _ = dagster_instance_config(str(tmp_path))
    monitoring = config["run_monitoring"]
    assert monitoring["enabled"] is True
    assert 0 < monitoring["free_slots_after_run_end_seconds"] <= 60
    assert monitoring["poll_interval_seconds"] <= 30
    assert monitoring["max_resume_run_attempts"] == 0
    assert config["concurrency"]["pools"]["default_limit"] == 1
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "FLX_DAGSTER_PG_URL"}


def test_the_shipped_workspace_yaml_names_a_grpc_code_server_from_the_environment(monkeypatch):
    from dagster._core.workspace.config_schema import ensure_workspace_config

    monkeypatch.setenv("FLX_CODE_SERVER_HOST", "code")
    monkeypatch.setenv("FLX_CODE_SERVER_PORT", "4000")
    raw = yaml.safe_load(scaffold.template("workspace.yaml"))
    processed = ensure_workspace_config(raw, "workspace.yaml")
    [entry] = processed["load_from"]
    assert entry["grpc_server"] == {"host": "code", "port": 4000, "location_name": "meltano"}


# --- flx-meltano ui -------------------------------------------------------------------------------


def test_prepare_ui_serves_the_packaged_code_location_until_the_project_has_its_own(
    project: Path, default_store_url: str, tmp_path_factory
):
    settings = Settings(database_url=default_store_url, project_dir=project)
    environ = {"PATH": os.environ["PATH"], "FLX_DAGSTER_PG_URL": "postgresql://elsewhere/dagster"}
    launch = prepare_ui(settings, host="127.0.0.1", port=3999, environ=environ)
    host_port = ["-h", "127.0.0.1", "-p", "3999"]
    assert launch.argv[1:] == ["-m", "dagster", "dev", "-m", PACKAGED_CODE_LOCATION, *host_port]
    assert launch.env["FLX_PROJECT_DIR"] == str(project.resolve())
    assert launch.env["FLX_DAGSTER_PG_URL"] == "postgresql://elsewhere/dagster"  # what was exported wins
    assert launch.env["FLX_WAREHOUSE_URL"].endswith("/warehouse")
    assert launch.dagster_home == project.resolve() / ".meltano" / "flx" / "dagster_home"
    assert (launch.dagster_home / "dagster.yaml").read_text() == scaffold.template("dagster.yaml")

    scaffold.write_code_location(project, scaffold.code_location_files(style="definitions"))
    own = project / "orchestrate" / "dagster"
    (own / "instance" / "dagster.yaml").write_text(scaffold.template("dagster.yaml") + "# tuned\n")
    launch = prepare_ui(settings, host="0.0.0.0", port=3000, environ=environ)
    assert launch.argv[4:6] == ["-f", str(own.resolve() / "definitions.py")]
    assert (launch.dagster_home / "dagster.yaml").read_text().endswith("# tuned\n")

    # A dg project (init's default) is served by dg dev.
    (own / "definitions.py").unlink()
    scaffold.write_code_location(project, scaffold._dg_project(PurePosixPath("orchestrate/dagster")))
    launch = prepare_ui(settings, host="0.0.0.0", port=3000, environ=environ)
    assert launch.argv[1:4] == ["dev", "--target-path", str(own.resolve())]
    assert Path(launch.argv[0]).name == "dg"

    # A home of the user's keeps its dagster.yaml.
    home = tmp_path_factory.mktemp("home")
    (home / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    assert prepare_dagster_home(project, home) == (home, f"{home / 'dagster.yaml'} (kept as it is)")
    assert (home / "dagster.yaml").read_text() == "telemetry: {enabled: false}\n"


SUPERVISE = """
import sys
from pathlib import Path
from flx_meltano.integration.process_group import run_supervised
grace = float(sys.argv[1])
code = run_supervised(sys.argv[2:], env={"PATH": "/usr/bin:/bin"}, cwd=Path.cwd(), grace_seconds=grace)
print("EXIT", code, flush=True)
sys.exit(code)
"""

# A child with a grandchild in its process group; it reports its SIGINT disposition, then waits.
CHILD = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    mode = sys.argv[1]
    print("SIGINT", "ignored" if signal.getsignal(signal.SIGINT) is signal.SIG_IGN else "default", flush=True)
    if mode == "deaf":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print("CHILD", os.getpid(), flush=True)
    print("GRANDCHILD", grandchild.pid, flush=True)
    if mode == "quit":
        sys.exit(3)
    time.sleep(600)
    """
)


def _supervise(
    tmp_path: Path, mode: str, grace: float, *, ignore_sigint: bool = False
) -> subprocess.Popen[str]:
    child = tmp_path / "child.py"
    child.write_text(CHILD)

    def background_job() -> None:  # what a non-interactive shell does to `cmd &`
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    return subprocess.Popen(
        [sys.executable, "-c", SUPERVISE, str(grace), sys.executable, str(child), mode],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=background_job if ignore_sigint else None,
    )


def _read_until(process: subprocess.Popen[str], prefix: str) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(prefix):
            return line.split(" ", 1)[1].strip()
    pytest.fail(f"no {prefix} line")


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[-1].split()[0] == "Z":
                    return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_reaches_the_whole_group_even_when_sigint_was_ignored(tmp_path, stop):
    supervisor = _supervise(tmp_path, "polite", grace=10, ignore_sigint=True)
    assert _read_until(supervisor, "SIGINT") == "default"
    grandchild = int(_read_until(supervisor, "GRANDCHILD"))
    started = time.monotonic()
    supervisor.send_signal(stop)
    assert _read_until(supervisor, "EXIT") == "0"
    assert supervisor.wait(timeout=10) == 0
    assert _gone(grandchild, within=2)
    assert time.monotonic() - started < 5  # the group obeyed SIGINT: no waiting for the grace period


def test_what_ignores_sigint_is_killed_after_the_grace_period(tmp_path):
    supervisor = _supervise(tmp_path, "deaf", grace=1.5)
    grandchild = int(_read_until(supervisor, "GRANDCHILD"))
    started = time.monotonic()
    supervisor.send_signal(signal.SIGTERM)
    assert _read_until(supervisor, "EXIT") == "0"
    assert 1.4 < time.monotonic() - started < 6
    assert _gone(grandchild, within=2)


def test_the_childs_exit_code_is_returned_and_its_leftovers_killed(tmp_path):
    supervisor = _supervise(tmp_path, "quit", grace=5)
    grandchild = int(_read_until(supervisor, "GRANDCHILD"))
    assert _read_until(supervisor, "EXIT") == "3"
    assert supervisor.wait(timeout=10) == 3
    assert _gone(grandchild, within=2)


def test_the_child_gets_sigint_when_the_supervisor_is_killed(tmp_path):
    supervisor = _supervise(tmp_path, "polite", grace=5)
    child = int(_read_until(supervisor, "CHILD"))
    grandchild = int(_read_until(supervisor, "GRANDCHILD"))
    try:
        supervisor.kill()
        supervisor.wait(timeout=10)
        # PR_SET_PDEATHSIG: the child (dagster dev) is told to stop, and stops its own children.
        assert _gone(child, within=5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(grandchild, signal.SIGKILL)


# --- settings, version, the metrics group ---------------------------------------------------------


def test_under_meltano_invoke_the_project_and_environment_are_meltanos(tmp_path, monkeypatch):
    for key in ("FLX_PROJECT_DIR", "FLX_ENVIRONMENT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MELTANO_PROJECT_ROOT", str(tmp_path))
    monkeypatch.setenv("MELTANO_ENVIRONMENT", "prod")
    settings = Settings()
    assert (settings.project_dir, settings.environment) == (tmp_path, "prod")
    monkeypatch.setenv("FLX_PROJECT_DIR", str(REPO))
    monkeypatch.setenv("FLX_ENVIRONMENT", "staging")
    settings = Settings()
    assert (settings.project_dir, settings.environment) == (REPO, "staging")


def test_version_names_flx_meltano_meltano_and_dagster():
    from importlib.metadata import version

    lines = version_text().splitlines()
    names = ("flx-meltano", "meltano", "dagster")
    assert lines[:3] == [f"{name} {version(name)}" for name in names]
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.splitlines()[:3] == lines[:3]


def test_metrics_pipeline_still_works_beside_metrics_serve(default_store_url, monkeypatch):
    monkeypatch.setenv("FLX_DATABASE_URL", default_store_url)
    monkeypatch.setenv("FLX_PROJECT_DIR", str(REPO))
    runner = CliRunner()
    for argv in (
        ["metrics", "dev:tap-shopsim-to-target-jsonlines", "--json"],
        ["metrics", "--json", "dev:tap-shopsim-to-target-jsonlines"],
        ["metrics", "show", "dev:tap-shopsim-to-target-jsonlines", "--json"],
    ):
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, (argv, result.output)
        assert json.loads(result.output) == []
    usage = runner.invoke(app, ["metrics", "--help"])
    assert usage.exit_code == 0
    assert "serve" in usage.output
    assert "show" in usage.output
    serve_help = runner.invoke(app, ["metrics", "serve", "--help"])
    assert "--port" in serve_help.output


# --- the exporter's figures ---------------------------------------------------------------------


def test_figures_buckets_are_upper_inclusive_cumulative_and_only_of_finished_executions(default_store_url):
    import sqlalchemy as sa

    from flx_meltano.persistence import database
    from flx_meltano.persistence.metrics_repository import read_figures

    engine = database.ready_engine(default_store_url)
    rows = [  # id, status, duration, warnings
        ("a", "SUCCEEDED", 1.0, []),
        ("b", "SUCCEEDED", 30.0, ["state regression: bookmark of orders moved backward"]),
        ("c", "FAILED", 30.5, ["record counts unknown: not a regression"]),
        ("d", "RUNNING", None, []),
    ]
    with engine.begin() as conn:
        for i, (execution_id, status, duration, warnings) in enumerate(rows):
            conn.execute(
                sa.text(
                    "INSERT INTO flx.executions (id, pipeline_id, status, trigger, started_at, ended_at,"
                    " duration_seconds, streams, full_refresh, warnings, version) VALUES (:id, 'dev:t-to-u',"
                    " :status, 'cli', now() - make_interval(mins => :age),"
                    " CASE WHEN CAST(:d AS float) IS NULL THEN NULL ELSE now() END,"
                    " :d, '[]', false, CAST(:w AS jsonb), 1)"
                ),
                {"id": execution_id, "status": status, "age": 10 - i, "d": duration,
                 "w": json.dumps(warnings)},
            )  # fmt: skip
            conn.execute(
                sa.text(
                    "INSERT INTO flx.stream_results (execution_id, stream, status, records, duration_seconds)"
                    " VALUES (:id, 'orders', :status, :records, :d)"
                ),
                {"id": execution_id, "status": "FAILED" if status == "FAILED" else "SUCCEEDED",
                 "records": 10 * (i + 1), "d": duration},
            )  # fmt: skip
    figures = read_figures(engine, (1.0, 30.0, 60.0))
    [pipeline] = figures.pipelines
    assert pipeline.executions_by_status == {"SUCCEEDED": 2, "FAILED": 1, "RUNNING": 1}
    assert pipeline.state_regressions == 1
    assert pipeline.duration is not None
    assert pipeline.duration.buckets == ((1.0, 1), (30.0, 2), (60.0, 3))  # 1.0 <= 1, 30.0 <= 30
    assert (pipeline.duration.count, pipeline.duration.total) == (3, 61.5)
    [orders] = figures.streams
    assert orders.results_by_status == {"SUCCEEDED": 3, "FAILED": 1}
    assert orders.records_loaded == 100
    assert orders.last_records == 40  # the RUNNING execution is the newest one with the stream
    assert orders.duration is not None
    assert orders.duration.count == 3
