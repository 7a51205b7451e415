"""``flx-meltano ui``: what ``dagster dev`` needs to serve a Meltano project (databases, home, code)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flx_meltano.application import database_admin, scaffold
from flx_meltano.settings import Settings

# The module that builds the code location of the project named by FLX_PROJECT_DIR: used when the
# project has no definitions.py of its own (it never ran ``flx-meltano init``).
PACKAGED_CODE_LOCATION = "flx_meltano.code_location"
QUIET_ENV = {"MELTANO_CLI_DISABLE_VERSION_CHECK": "true", "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"}


@dataclass(frozen=True)
class UiLaunch:
    """The ``dagster dev`` command to run, its environment, and what to tell the user."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    url: str
    code_location: str
    dagster_home: Path
    instance_note: str


def project_definitions(project_dir: Path) -> Path | None:
    """The project's own definitions.py (``flx-meltano init --style definitions``), if it has one."""
    path = project_dir / scaffold.DEFAULT_DIRECTORY / "definitions.py"
    return path if path.is_file() else None


def project_dg(project_dir: Path) -> Path | None:
    """The project's own dg project (``flx-meltano init``, the default style), if it has one."""
    path = project_dir / scaffold.DEFAULT_DIRECTORY
    return path if (path / "dg.toml").is_file() else None


def prepare_dagster_home(project_dir: Path, dagster_home: Path | None) -> tuple[Path, str]:
    """The instance directory, with a dagster.yaml in it; and where that dagster.yaml came from.

    The default home (``.meltano/flx/dagster_home``) is flx-meltano's: its dagster.yaml is
    refreshed from the project's ``orchestrate/dagster/instance/dagster.yaml`` (else the shipped
    one) every time. A home you chose keeps the dagster.yaml it has; it gets one only when it has none.
    """
    directory = project_dir / scaffold.DEFAULT_DIRECTORY
    # Where init writes it; an older init (or a hand-made project) put it beside the code.
    source = next(
        (path for path in (directory / scaffold.INSTANCE_FILE, directory / "dagster.yaml") if path.is_file()),
        None,
    )
    text = source.read_text(encoding="utf-8") if source else scaffold.template("dagster.yaml")
    origin = str(source.relative_to(project_dir)) if source else "the settings flx-meltano ships"
    home = dagster_home or project_dir / ".meltano" / "flx" / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if dagster_home is not None and target.exists():
        return home, f"{target} (kept as it is)"
    target.write_text(text, encoding="utf-8")
    return home, f"{target} (from {origin})"


def prepare_ui(
    settings: Settings,
    *,
    host: str,
    port: int,
    dagster_home: Path | None = None,
    definitions: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> UiLaunch:
    """Databases ready, instance settings in place, and the ``dagster dev`` command for the project.

    The flx store, the warehouse and Dagster's own storage are the embedded PostgreSQL server's
    unless FLX_DATABASE_URL names a server; values already in the environment win (so
    FLX_DAGSTER_PG_URL may point Dagster's storage elsewhere).
    """
    environ = dict(os.environ if environ is None else environ)
    project_dir = settings.project_dir.resolve()
    computed = database_admin.warehouse_environment(settings)
    env = {**QUIET_ENV, **computed, **{k: v for k, v in environ.items() if v}}
    env["FLX_PROJECT_DIR"] = str(project_dir)
    if settings.environment:
        env["FLX_ENVIRONMENT"] = settings.environment
    home, note = prepare_dagster_home(project_dir, dagster_home)
    env["DAGSTER_HOME"] = str(home)
    dg_project = None if definitions else project_dg(project_dir)
    definitions = definitions or (None if dg_project else project_definitions(project_dir))
    if dg_project is not None:  # dg dev checks its defs.yaml files, then runs what dagster dev runs
        dg = Path(sys.executable).with_name("dg")
        argv = [str(dg), "dev", "--target-path", str(dg_project), "-h", host, "-p", str(port)]
    else:
        target = ["-f", str(definitions)] if definitions else ["-m", PACKAGED_CODE_LOCATION]
        argv = [sys.executable, "-m", "dagster", "dev", *target, "-h", host, "-p", str(port)]
    return UiLaunch(
        argv=argv,
        env=env,
        cwd=project_dir,
        url=f"http://{host}:{port}",
        code_location=(
            f"{dg_project} (dg project)"
            if dg_project
            else str(definitions)
            if definitions
            else f"{PACKAGED_CODE_LOCATION} (no code location in the project)"
        ),
        dagster_home=home,
        instance_note=note,
    )
