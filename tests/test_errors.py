"""The error tree, the options validated when built, and where the project and the store are."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from flx_meltano.application.commands import CannotCancel
from flx_meltano.application.database_admin import masked_environment, write_dotenv
from flx_meltano.application.pipelines import UnknownTarget
from flx_meltano.application.queries import UnknownPipeline, UnknownPlugin
from flx_meltano.application.run import CommandFailed, RunOptions
from flx_meltano.application.state_backup import (
    ExecutionRunning,
    InvalidExportPath,
    StateError,
    UnknownSnapshot,
    UnknownStateId,
)
from flx_meltano.domain.errors import (
    DomainError,
    ExecutionAlreadyRunning,
    IllegalTransition,
    InvalidOption,
    InvalidState,
    InvalidStateId,
    UnknownStream,
)
from flx_meltano.domain.state_file import InvalidStateFile
from flx_meltano.domain.values import StateStrategy
from flx_meltano.errors import FlxError, UsageError, choices, exit_code
from flx_meltano.integration.catalog import CatalogMissing
from flx_meltano.integration.errors import (
    IntegrationError,
    LaunchError,
    ProjectError,
    StateAccessError,
    UnknownEnvironment,
)
from flx_meltano.persistence import database
from flx_meltano.persistence.errors import (
    ConcurrencyConflict,
    InvalidStoreUrl,
    NotFound,
    StoreError,
    StoreUnreachable,
)
from flx_meltano.settings import ProjectNotFound, Settings

# Usage errors (exit 2): the command named something that does not exist or gave a bad value.
USAGE = [
    InvalidStateId,
    UnknownStream,
    InvalidOption,
    UnknownEnvironment,
    NotFound,
    InvalidStoreUrl,
    UnknownTarget,
    UnknownPipeline,
    UnknownPlugin,
    UnknownStateId,
    UnknownSnapshot,
    InvalidExportPath,
    ProjectNotFound,
]
# Failed work (exit 1): the command was right, doing it failed.
FAILED = [
    DomainError,
    IllegalTransition,
    ExecutionAlreadyRunning,
    InvalidState,
    InvalidStateFile,
    IntegrationError,
    ProjectError,
    StateAccessError,
    LaunchError,
    CatalogMissing,
    StoreError,
    ConcurrencyConflict,
    StoreUnreachable,
    StateError,
    ExecutionRunning,
    CannotCancel,
    CommandFailed,
]


@pytest.mark.parametrize("kind", USAGE + FAILED, ids=lambda kind: kind.__name__)
def test_every_error_a_user_can_cause_is_an_flx_error_with_its_exit_code(kind: type[FlxError]):
    error = kind("what is wrong")
    assert isinstance(error, FlxError)
    assert exit_code(error) == (2 if kind in USAGE else 1)
    assert isinstance(error, UsageError) == (kind in USAGE)


def test_the_layers_keep_their_own_bases_and_the_python_ones():
    assert issubclass(NotFound, StoreError)
    assert issubclass(NotFound, KeyError)
    assert str(NotFound("no execution 'x'")) == "no execution 'x'"  # not KeyError's quoted repr
    assert issubclass(UnknownEnvironment, ProjectError)
    assert issubclass(InvalidStateId, ValueError)
    assert issubclass(InvalidOption, ValueError)
    assert issubclass(UnknownTarget, LookupError)
    assert issubclass(UnknownStateId, StateError)
    assert issubclass(CannotCancel, RuntimeError)
    assert issubclass(CommandFailed, RuntimeError)


def test_choices_lists_a_few_and_counts_the_rest():
    assert choices([]) == "none"
    assert choices(["a", "b", "a"]) == "a, b"
    assert choices([str(n) for n in range(15)], limit=3) == "0, 1, 2, ... (12 more)"


@pytest.mark.parametrize("timeout", [0, -1, -0.5, float("nan")])
def test_a_timeout_must_be_more_than_0(timeout: float):
    with pytest.raises(InvalidOption, match="a timeout must be more than 0 seconds"):
        RunOptions(timeout_seconds=timeout)


def test_run_options_parse_the_state_strategy_and_take_keywords_only():
    assert RunOptions(state_strategy="MERGE").state_strategy is StateStrategy.MERGE
    assert RunOptions(state_strategy=StateStrategy.OVERWRITE).state_strategy is StateStrategy.OVERWRITE
    assert RunOptions().state_strategy is None
    assert RunOptions(timeout_seconds=0.5).timeout_seconds == 0.5
    with pytest.raises(InvalidOption, match=r"state strategy 'bogus' is not one of auto, merge, overwrite"):
        RunOptions(state_strategy="bogus")
    with pytest.raises(TypeError):
        RunOptions(("orders",))  # type: ignore[misc]
    assert str(StateStrategy.parse(" Auto ")) == "auto"


def test_settings_require_a_meltano_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for key in [key for key in os.environ if key.startswith("FLX_")]:
        monkeypatch.delenv(key)
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "meltano.yml").write_text("default_environment: dev\n")
    monkeypatch.chdir(project / "sub")
    assert Settings().require_project() == project  # found in a parent
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ProjectNotFound, match=rf"no meltano\.yml in {tmp_path} or its parents; .*FLX_PROJECT_DIR"
    ):
        Settings().require_project()
    with pytest.raises(ProjectNotFound):
        _ = Settings().embedded_data_dir  # so the embedded server is never started outside a project
    with pytest.raises(ProjectNotFound, match=r"given as the project directory"):
        Settings(project_dir=tmp_path).require_project()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not-a-url", r"FLX_DATABASE_URL 'not-a-url' is not a database URL"),
        ("mysql://u:pw-secret@h/db", r"FLX_DATABASE_URL 'mysql://u:\*\*\*@h/db' is a mysql URL"),
        ("postgresql+nosuchdriver://u:pw-secret@h/db", r"names a driver that is not installed"),
    ],
)
def test_a_bad_store_url_is_refused_naming_it_without_its_password(url: str, message: str, tmp_path: Path):
    settings = Settings(database_url=url, project_dir=tmp_path)
    with pytest.raises(InvalidStoreUrl, match=message) as caught:
        database.ready_engine(database.locate(settings).store_url)
    assert "pw-secret" not in str(caught.value)


def test_a_store_nobody_answers_is_unreachable_naming_it_without_its_password():
    url = "postgresql+psycopg://flx:pw-secret@127.0.0.1:1/nowhere"
    with pytest.raises(
        StoreUnreachable, match=r"cannot reach the store at .*flx:\*\*\*@127\.0\.0\.1:1/nowhere"
    ) as caught:
        database.ready_engine(url)
    assert "pw-secret" not in str(caught.value)


def test_db_env_masks_passwords_and_dotenv_is_for_the_owner_only(tmp_path: Path):
    values = {
        "FLX_WAREHOUSE_URL": "postgresql+psycopg://flx:pw-secret@db:5432/warehouse",
        "FLX_WAREHOUSE_PASSWORD": "pw-secret",
        "FLX_WAREHOUSE_USER": "flx",
        "FLX_DAGSTER_PG_URL": "postgresql://flx:pw-secret@db/dagster?sslmode=require",
    }
    masked = masked_environment(values)
    assert "pw-secret" not in repr(masked)
    assert masked["FLX_WAREHOUSE_USER"] == "flx"
    assert masked["FLX_WAREHOUSE_URL"] == "postgresql+psycopg://flx:***@db:5432/warehouse"
    dotenv = tmp_path / ".env"
    dotenv.write_text("OTHER=1\n")
    dotenv.chmod(0o644)
    write_dotenv(dotenv, values)
    assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600
    assert dotenv.read_text().splitlines()[0] == "OTHER=1"
    assert "FLX_WAREHOUSE_PASSWORD='pw-secret'" in dotenv.read_text()


def test_the_cli_db_env_masks_unless_asked_to_show_secrets(default_server):
    url = (
        make_url(default_server.url("postgres"))
        .set(password="pw-secret")
        .render_as_string(hide_password=False)
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLX_")}
    env["FLX_DATABASE_URL"] = url
    flx = str(Path(sys.executable).with_name("flx-meltano"))
    masked, shown = (
        subprocess.run([flx, "db", "env", *extra], env=env, capture_output=True, text=True, timeout=120)
        for extra in ([], ["--show-secrets"])
    )
    assert masked.returncode == 0, masked.stderr
    assert shown.returncode == 0, shown.stderr
    assert "pw-secret" not in masked.stdout + masked.stderr
    assert "export FLX_WAREHOUSE_PASSWORD='********'" in masked.stdout
    assert "export FLX_WAREHOUSE_PASSWORD=pw-secret" in shown.stdout
    assert ":pw-secret@" in shown.stdout
