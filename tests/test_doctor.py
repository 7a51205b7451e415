"""Tests of ``flx-meltano doctor`` (as real subprocesses) and of application.doctor's checks.

Stores are fresh databases on the server conftest picks (127.0.0.1:5432 when it answers, else the
embedded one). Every subprocess gets FLX_DATABASE_URL, so none of them starts a server of its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import psycopg
import pytest

from flx_meltano.application.doctor import Check, check_database, check_meltano, check_project
from flx_meltano.persistence import database
from flx_meltano.settings import Settings

REPO = Path(__file__).resolve().parents[1]
FLX = REPO / ".venv" / "bin" / "flx-meltano"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "projects"

# Nothing listens on port 1; the password must never be shown.
UNREACHABLE_URL = "postgresql://postgres:s3cret@127.0.0.1:1/nowhere"


def doctor_env(**extra: str) -> dict[str, str]:
    """This process's environment without any FLX_* or colour settings, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("FLX_") and key not in {"FORCE_COLOR", "TTY_COMPATIBLE"}
    }
    env.update(
        MELTANO_CLI_DISABLE_VERSION_CHECK="true",
        MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
        NO_COLOR="1",
        COLUMNS="200",
    )
    env.update(extra)
    return env


def flx(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FLX), *args],
        cwd=cwd,
        env=doctor_env(**env),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def copy_fixture(name: str, destination: Path) -> Path:
    project = destination / name
    shutil.copytree(FIXTURES / name, project)
    return project


def fixture_line(name: str, needle: str) -> int:
    lines = (FIXTURES / name / "meltano.yml").read_text().splitlines()
    found = [number for number, line in enumerate(lines, 1) if needle in line]
    assert len(found) == 1, found
    return found[0]


def has_line(output: str, pattern: str) -> bool:
    return re.search(pattern, output, flags=re.MULTILINE) is not None


@pytest.fixture
def clean_flx_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FLX_* variable of the calling shell leaks into Settings()."""
    for key in list(os.environ):
        if key.startswith("FLX_"):
            monkeypatch.delenv(key)


def settings_for(project_dir: Path, **values: object) -> Settings:
    return Settings(project_dir=project_dir, environment=None, **values)


def shown(url: str) -> str:
    """How doctor names a store URL given as FLX_DATABASE_URL (driver made explicit, password hidden)."""
    return database.redact_url(database.normalise_url(url))


@contextmanager
def new_database(server, *, migrated: bool) -> Iterator[str]:
    """A fresh database on ``server`` (conftest's Server), dropped afterwards."""
    name = f"flx_doctor_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.admin_conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server.url(name)
    try:
        if migrated:
            database.ready_engine(url)
        yield url
    finally:
        database.engine_for.cache_clear()
        with psycopg.connect(server.admin_conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def module_store_url(default_server) -> Iterator[str]:
    """A migrated store on the default server, shared by this module's read-only doctor runs."""
    with new_database(default_server, migrated=True) as url:
        yield url


@pytest.fixture
def unmigrated_store_url(default_server) -> Iterator[str]:
    """A fresh, never migrated database on the default server."""
    with new_database(default_server, migrated=False) as url:
        yield url


# --- the CLI, as a subprocess ------------------------------------------------------------------


def test_version() -> None:
    result = flx("--version", cwd=REPO)
    assert result.returncode == 0, result.stderr
    names = ("flx-meltano", "meltano", "dagster")
    assert result.stdout.splitlines()[:3] == [f"{name} {version(name)}" for name in names]
    assert version("flx-meltano") == "0.1.0"


def test_broken_meltano_yml_names_the_line(tmp_path: Path, module_store_url: str) -> None:
    project = copy_fixture("broken_indent", tmp_path)
    result = flx("doctor", cwd=project, FLX_DATABASE_URL=module_store_url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert has_line(result.stdout, r"^FAIL meltano\.yml: meltano\.yml:10: invalid YAML: ")
    assert has_line(result.stdout, r"^ +fix: fix the file at the line named$")
    assert "Traceback" not in result.stderr


def test_project_dir_from_environment_and_json_on_a_broken_project(
    tmp_path: Path, module_store_url: str
) -> None:
    project = copy_fixture("broken_indent", tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = flx(
        "doctor",
        "--json",
        cwd=elsewhere,
        FLX_PROJECT_DIR=str(project),
        FLX_DATABASE_URL=module_store_url,
    )
    assert result.returncode == 1, result.stderr
    checks = {check["name"]: check for check in json.loads(result.stdout)}
    assert checks["meltano.yml"]["ok"] is False
    assert checks["meltano.yml"]["detail"].startswith("meltano.yml:10: invalid YAML")
    assert checks["meltano.yml"]["fix"] == "fix the file at the line named"
    # With meltano.yml unreadable there is nothing to say about plugins.
    assert not any(name.startswith("plugin ") for name in checks)


@pytest.fixture(scope="module")
def uninstalled_run(
    tmp_path_factory: pytest.TempPathFactory, module_store_url: str
) -> subprocess.CompletedProcess[str]:
    project = copy_fixture("uninstalled", tmp_path_factory.mktemp("doctor"))
    assert not (project / ".meltano").exists()
    return flx("doctor", cwd=project, FLX_DATABASE_URL=module_store_url)


def test_uninstalled_plugins_are_named_with_their_install_command(
    uninstalled_run: subprocess.CompletedProcess[str],
) -> None:
    out = uninstalled_run.stdout
    assert uninstalled_run.returncode == 1, out + uninstalled_run.stderr
    assert has_line(out, r"^ok +meltano\.yml: 3 plugins, 1 jobs, 0 schedules; environment dev$")
    assert has_line(
        out,
        r"^FAIL plugin tap-custom: not installed "
        r"\(\.meltano/extractors/tap-custom/venv/bin/tap-custom is missing\)$",
    )
    assert has_line(out, r"^ +fix: meltano install extractor tap-custom$")
    assert has_line(
        out,
        r"^FAIL plugin target-custom: not installed "
        r"\(\.meltano/loaders/target-custom/venv/bin/target-custom is missing\)$",
    )
    assert has_line(out, r"^ +fix: meltano install loader target-custom$")
    assert has_line(out, r"^\d+ ok, \d+ to fix$")


def test_plugin_without_custom_definition_needs_meltano_hub(
    uninstalled_run: subprocess.CompletedProcess[str],
) -> None:
    line = fixture_line("uninstalled", "name: tap-github")
    assert has_line(
        uninstalled_run.stdout,
        rf"^FAIL plugin tap-github: meltano\.yml:{line}: no namespace/pip_url, "
        r"so Meltano would look it up on Meltano Hub$",
    )
    assert has_line(
        uninstalled_run.stdout,
        r"^ +fix: give the plugin a custom definition \(namespace, pip_url, executable, "
        r"capabilities\)$",
    )
    assert "meltano install extractor tap-github" not in uninstalled_run.stdout


def test_unreachable_database_is_reported_without_its_password(tmp_path: Path) -> None:
    project = copy_fixture("uninstalled", tmp_path)
    result = flx("doctor", cwd=project, FLX_DATABASE_URL=UNREACHABLE_URL)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert has_line(
        result.stdout,
        r"^FAIL database: cannot reach postgresql\+psycopg://postgres:\*\*\*@127\.0\.0\.1:1/nowhere "
        r"\(FLX_DATABASE_URL\): ",
    )
    assert has_line(
        result.stdout,
        r"^ +fix: start that PostgreSQL server, correct FLX_DATABASE_URL, or unset it",
    )
    assert "s3cret" not in output
    # An unreachable store has no schema to check.
    assert "database schema" not in result.stdout
    assert "Traceback" not in result.stderr


def test_an_unmigrated_store_is_a_warning_and_doctor_exits_0_on_warnings_only(
    unmigrated_store_url: str,
) -> None:
    result = flx("doctor", cwd=REPO, FLX_DATABASE_URL=unmigrated_store_url)
    out = result.stdout
    assert has_line(
        out,
        rf"^warn database schema: at migration none, code expects {database.HEAD_REVISION}; "
        "it is migrated on first use$",
    ), out
    assert not has_line(out, r"^FAIL database")
    checks = json.loads(flx("doctor", "--json", cwd=REPO, FLX_DATABASE_URL=unmigrated_store_url).stdout)
    schema = next(check for check in checks if check["name"] == "database schema")
    assert (schema["ok"], schema["warning"]) == (True, True)
    # Only warnings (and whatever else this machine lacks): the exit code follows the failures alone.
    assert result.returncode == (0 if all(check["ok"] for check in checks) else 1)
    assert has_line(out, r"1 warning\(s\)")
    assert database.current_revision(database.engine_for(unmigrated_store_url)) is None


def test_outside_a_project_doctor_says_so_and_starts_no_server(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = flx("doctor", cwd=empty)
    assert result.returncode == 1, result.stdout + result.stderr
    assert has_line(
        result.stdout,
        rf"^FAIL meltano\.yml: no meltano\.yml in {re.escape(str(empty))} or its parents; .*FLX_PROJECT_DIR",
    )
    assert has_line(result.stdout, r"^FAIL database: not checked: ")
    assert list(empty.iterdir()) == []  # no .meltano/, no embedded server started here
    assert "Traceback" not in result.stderr


def test_healthy_setup_meltano_and_database_are_ok(module_store_url: str) -> None:
    result = flx("doctor", cwd=REPO, FLX_DATABASE_URL=module_store_url)
    out = result.stdout
    assert has_line(out, r"^ok +meltano executable: meltano, version \d+\.\d+"), out + result.stderr
    assert has_line(out, r"^ok +meltano\.yml: \d+ plugins, \d+ jobs, \d+ schedules; environment dev$")
    assert has_line(out, rf"^ok +database: {re.escape(shown(module_store_url))} \(FLX_DATABASE_URL\)$")
    assert has_line(out, rf"^ok +database schema: at migration {database.HEAD_REVISION}$")
    assert result.returncode in (0, 1)
    assert (result.returncode == 0) == has_line(out, r"^all \d+ checks ok$")


def test_json_output_is_parseable(module_store_url: str) -> None:
    result = flx("doctor", "--json", cwd=REPO, FLX_DATABASE_URL=module_store_url)
    checks = json.loads(result.stdout)
    assert isinstance(checks, list)
    assert checks
    for check in checks:
        assert set(check) == {"name", "ok", "detail", "fix", "warning"}
        assert isinstance(check["name"], str)
        assert isinstance(check["ok"], bool)
        assert isinstance(check["warning"], bool)
        assert isinstance(check["detail"], str)
        assert check["fix"] is None or isinstance(check["fix"], str)
        if not check["ok"]:
            assert check["fix"], check
    names = [check["name"] for check in checks]
    assert names[0] == "meltano executable"
    assert names[1] == "meltano.yml"
    assert "database" in names
    by_name = {check["name"]: check for check in checks}
    assert by_name["meltano executable"]["ok"] is True
    assert by_name["database"]["ok"] is True
    assert by_name["database"]["fix"] is None
    # The exit status agrees with the findings.
    assert result.returncode == (0 if all(check["ok"] for check in checks) else 1)


# --- the application's checks, called directly ------------------------------------------------


@pytest.mark.usefixtures("clean_flx_env")
def test_check_project_on_an_uninstalled_project(tmp_path: Path) -> None:
    project = copy_fixture("uninstalled", tmp_path)
    checks = check_project(settings_for(project))
    assert [(c.name, c.ok) for c in checks] == [
        ("meltano.yml", True),
        ("plugin tap-custom", False),
        ("plugin tap-github", False),
        ("plugin target-custom", False),
    ]
    assert checks[1].fix == "meltano install extractor tap-custom"
    line = fixture_line("uninstalled", "name: tap-github")
    assert checks[2].detail.startswith(f"meltano.yml:{line}: no namespace/pip_url")
    assert "Meltano Hub" in checks[2].detail


def _fake_install(project: Path, kind: str, directory: str, executable: str) -> None:
    path = project / ".meltano" / kind / directory / "venv" / "bin" / executable
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)


@pytest.mark.usefixtures("clean_flx_env")
def test_check_project_sees_installed_plugins(tmp_path: Path) -> None:
    project = copy_fixture("uninstalled", tmp_path)
    _fake_install(project, "extractors", "tap-custom", "tap-custom")
    _fake_install(project, "loaders", "target-custom", "target-custom")
    checks = {c.name: c for c in check_project(settings_for(project))}
    assert checks["plugin tap-custom"] == Check("plugin tap-custom", True, "extractor, installed")
    assert checks["plugin target-custom"] == Check("plugin target-custom", True, "loader, installed")
    assert checks["plugin tap-github"].ok is False


@pytest.mark.usefixtures("clean_flx_env")
def test_inheriting_plugin_is_installed_in_its_parents_directory(tmp_path: Path) -> None:
    # Meltano's ProjectPlugin.plugin_dir_name: a plugin that inherits from another with the same
    # (or no) pip_url shares the parent's directory, so `meltano install` creates only
    # .meltano/extractors/tap-parent/venv.
    project = copy_fixture("inherited", tmp_path)
    _fake_install(project, "extractors", "tap-parent", "tap-parent")
    checks = {c.name: c for c in check_project(settings_for(project))}
    assert checks["plugin tap-parent"].ok, checks["plugin tap-parent"]
    assert checks["plugin tap-parent--child"].ok, checks["plugin tap-parent--child"]


@pytest.mark.usefixtures("clean_flx_env")
def test_namespace_without_pip_url_is_a_custom_definition(tmp_path: Path) -> None:
    # Meltano builds a custom definition from `namespace` alone (ProjectPlugin.__init__), runs the
    # executable from PATH and never consults Meltano Hub; there is nothing to install.
    project = copy_fixture("namespace_only", tmp_path)
    checks = {c.name: c for c in check_project(settings_for(project))}
    assert checks["plugin my-tool"].ok, checks["plugin my-tool"]


@pytest.mark.usefixtures("clean_flx_env")
def test_check_project_unknown_environment(tmp_path: Path) -> None:
    project = copy_fixture("uninstalled", tmp_path)
    (check,) = check_project(Settings(project_dir=project, environment="prod"))
    assert check.name == "meltano.yml"
    assert check.ok is False
    line = fixture_line("uninstalled", "environments:")
    assert check.detail == (
        f"meltano.yml:{line}: unknown environment 'prod'; meltano.yml defines dev "
        "(choose one with -e or FLX_ENVIRONMENT)"
    )


@pytest.mark.usefixtures("clean_flx_env")
def test_check_database_unreachable_hides_the_password(tmp_path: Path) -> None:
    checks = check_database(settings_for(tmp_path, database_url=UNREACHABLE_URL))
    assert len(checks) == 1
    (check,) = checks
    assert check.name == "database"
    assert check.ok is False
    assert check.detail.startswith(
        "cannot reach postgresql+psycopg://postgres:***@127.0.0.1:1/nowhere (FLX_DATABASE_URL): "
    )
    assert "s3cret" not in check.detail
    assert "s3cret" not in (check.fix or "")
    assert check.fix is not None
    assert "FLX_DATABASE_URL" in check.fix


@pytest.mark.usefixtures("clean_flx_env")
def test_check_database_reachable_and_migrated(tmp_path: Path, default_store_url: str) -> None:
    checks = check_database(settings_for(tmp_path, database_url=default_store_url))
    assert checks == [
        Check("database", True, f"{shown(default_store_url)} (FLX_DATABASE_URL)"),
        Check("database schema", True, f"at migration {database.HEAD_REVISION}"),
    ]


@pytest.mark.usefixtures("clean_flx_env")
def test_check_database_reachable_but_never_migrated(tmp_path: Path, unmigrated_store_url: str) -> None:
    checks = check_database(settings_for(tmp_path, database_url=unmigrated_store_url))
    assert checks == [
        Check("database", True, f"{shown(unmigrated_store_url)} (FLX_DATABASE_URL)"),
        # Every command migrates the store on first use: a warning that says so, not a failure.
        Check(
            "database schema",
            True,
            f"at migration none, code expects {database.HEAD_REVISION}; it is migrated on first use",
            "flx-meltano db migrate (to migrate it now)",
            warning=True,
        ),
    ]
    # doctor only looks: the database is still unmigrated afterwards.
    assert database.current_revision(database.engine_for(unmigrated_store_url)) is None


@pytest.mark.usefixtures("clean_flx_env")
def test_check_meltano_missing_executable(tmp_path: Path) -> None:
    check = check_meltano(settings_for(tmp_path, meltano_executable="no-such-meltano-here"))
    assert check.name == "meltano executable"
    assert check.ok is False
    assert "'no-such-meltano-here' was not found" in check.detail
    assert check.fix is not None
    assert "FLX_MELTANO_EXECUTABLE" in check.fix
