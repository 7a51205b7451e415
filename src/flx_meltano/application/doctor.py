"""Doctor: check the Meltano project, its plugin installs, the meltano executable and the store."""

from __future__ import annotations

from dataclasses import dataclass

from flx_meltano.application.pipelines import unmatched_select_rules
from flx_meltano.domain.project import ProjectModel
from flx_meltano.integration import meltano_cli
from flx_meltano.integration.errors import IntegrationError, ProjectError
from flx_meltano.integration.project_reader import read_project
from flx_meltano.persistence import database
from flx_meltano.persistence.errors import StoreError
from flx_meltano.settings import ProjectNotFound, Settings


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, whether it is fine, what was seen, how to fix it.

    ``ok`` False means something must be fixed (doctor exits 1); ``warning`` marks an ok finding
    worth knowing (doctor still exits 0).
    """

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    warning: bool = False


def check_meltano(settings: Settings) -> Check:
    """Is the meltano executable there and does it run?"""
    try:
        version = meltano_cli.meltano_version(settings.meltano_executable, settings.project_dir)
    except IntegrationError as exc:
        return Check(
            "meltano executable",
            False,
            str(exc),
            "pip install meltano (or set FLX_MELTANO_EXECUTABLE)",
        )
    return Check("meltano executable", True, version)


def check_project(settings: Settings) -> list[Check]:
    """Does meltano.yml parse, and is every plugin defined without Hub and installed?"""
    try:
        project = read_project(settings.require_project(), settings.environment)
    except ProjectNotFound as exc:
        return [Check("meltano.yml", False, str(exc), "cd into the Meltano project, or set FLX_PROJECT_DIR")]
    except ProjectError as exc:
        return [Check("meltano.yml", False, str(exc), "fix the file at the line named")]
    checks = [
        Check(
            "meltano.yml",
            True,
            f"{len(project.plugins)} plugins, {len(project.jobs)} jobs, {len(project.schedules)} "
            f"schedules; environment {project.environment}",
        )
    ]
    checks.extend(check_select_rules(project))
    for plugin in project.plugins:
        name = f"plugin {plugin.name}"
        source = project.sources.get(plugin.name)
        if not plugin.is_custom:
            checks.append(
                Check(
                    name,
                    False,
                    f"{source}: no namespace/pip_url, so Meltano would look it up on Meltano Hub",
                    "give the plugin a custom definition (namespace, pip_url, executable, capabilities)",
                )
            )
        elif not meltano_cli.is_installed(settings.project_dir, plugin):
            path = meltano_cli.plugin_executable_path(settings.project_dir, plugin)
            checks.append(
                Check(
                    name,
                    False,
                    f"not installed ({path.relative_to(settings.project_dir)} is missing)",
                    f"meltano install {plugin.type.singular} {plugin.name}",
                )
            )
        else:
            checks.append(Check(name, True, f"{plugin.type.singular}, installed"))
    return checks


def check_select_rules(project: ProjectModel) -> list[Check]:
    """Does every select rule of an extractor with a known catalog match one of its streams?"""
    return [
        Check(f"select rules of {rule.extractor}", False, str(rule), "correct the rule at the line named")
        for rule in unmatched_select_rules(project)
    ]


def check_database(settings: Settings) -> list[Check]:
    """Can we reach the store, and is it migrated?"""
    try:
        location = database.locate(settings)
    except ProjectNotFound:
        return [
            Check(
                "database",
                False,
                "not checked: the embedded PostgreSQL lives in the project's .meltano/, and there is "
                "no project here",
                "set FLX_PROJECT_DIR (or FLX_DATABASE_URL for a server of your own)",
            )
        ]
    except StoreError as exc:  # a bad FLX_DATABASE_URL, or the embedded server failed to start
        fix = "correct FLX_DATABASE_URL, or unset it" if settings.database_url else "flx-meltano db start"
        return [Check("database", False, str(exc), fix)]
    health = database.check_store(location.store_url)
    kind = "embedded PostgreSQL" if location.embedded else "FLX_DATABASE_URL"
    if not health.reachable:
        fix = (
            "start that PostgreSQL server, correct FLX_DATABASE_URL, or unset it to use the embedded one"
            if not location.embedded
            else "flx-meltano db stop && flx-meltano db start"
        )
        return [Check("database", False, f"cannot reach {health.url} ({kind}): {health.error}", fix)]
    checks = [Check("database", True, f"{health.url} ({kind})")]
    if health.migrated:
        checks.append(Check("database schema", True, f"at migration {health.current_revision}"))
    else:
        # Every command migrates the store on first use: an unmigrated one is not broken.
        checks.append(
            Check(
                "database schema",
                True,
                f"at migration {health.current_revision or 'none'}, code expects {health.head_revision}; "
                "it is migrated on first use",
                "flx-meltano db migrate (to migrate it now)",
                warning=True,
            )
        )
    return checks


def run_doctor(settings: Settings) -> list[Check]:
    """Every check, in the order a person would fix them."""
    return [check_meltano(settings), *check_project(settings), *check_database(settings)]
