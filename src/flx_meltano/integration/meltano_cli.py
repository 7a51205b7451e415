"""The ``meltano`` executable: where it is, its version, its environment, its plugin installs."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from flx_meltano.domain.plugins import Plugin
from flx_meltano.integration.errors import LaunchError

# Meltano must never phone home or look for updates from here.
QUIET_MELTANO_ENV: Mapping[str, str] = {
    "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
    "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
    "MELTANO_DISABLE_TRACKING": "true",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
}


def meltano_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every ``meltano`` process gets: ours, quiet, plus ``extra``."""
    env = dict(os.environ)
    env.update(QUIET_MELTANO_ENV)
    if extra:
        env.update(extra)
    return env


def resolve_executable(executable: str) -> str:
    """The absolute path of ``executable``; LaunchError naming it when it cannot be found."""
    found = shutil.which(executable)
    if found is None:
        raise LaunchError(
            f"the meltano executable {executable!r} was not found; install meltano or set "
            "FLX_MELTANO_EXECUTABLE"
        )
    return found


def run_meltano(executable: str, args: list[str], project_dir: Path | str, timeout: float = 60) -> str:
    """Run a short ``meltano`` command and return its stdout; LaunchError with its last lines if it fails."""
    argv = [resolve_executable(executable), *args]
    try:
        result = subprocess.run(
            argv,
            cwd=project_dir,
            env=meltano_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except subprocess.CalledProcessError as exc:
        tail = " | ".join((exc.stderr or "").strip().splitlines()[-5:])
        raise LaunchError(f"meltano {' '.join(args)} failed (exit {exc.returncode}): {tail}") from exc
    except (subprocess.TimeoutExpired, OSError) as exc:
        raise LaunchError(f"meltano {' '.join(args)} failed: {exc}") from exc
    return result.stdout


def meltano_version(executable: str, project_dir: Path) -> str:
    """``meltano --version``, e.g. ``meltano, version 4.4.1``."""
    return run_meltano(executable, ["--version"], project_dir).strip()


def plugin_executable_path(project_dir: Path, plugin: Plugin) -> Path:
    """Where ``meltano install`` puts the plugin's executable."""
    executable = plugin.executable or plugin.name
    return project_dir / ".meltano" / plugin.type.value / plugin.name / "venv" / "bin" / executable


def needs_install(plugin: Plugin) -> bool:
    """Plugins with a pip_url are installed into their own virtual environment by Meltano."""
    return bool(plugin.pip_url)


def is_installed(project_dir: Path, plugin: Plugin) -> bool:
    """Whether ``meltano install`` has installed the plugin in this project.

    An inheriting plugin with its parent's pip_url shares the parent's virtual environment.
    """
    if not needs_install(plugin):
        return True
    if plugin_executable_path(project_dir, plugin).exists():
        return True
    if plugin.inherit_from:
        executable = plugin.executable or plugin.inherit_from
        shared = (
            project_dir / ".meltano" / plugin.type.value / plugin.inherit_from / "venv" / "bin" / executable
        )
        return shared.exists()
    return False
