"""Options of the dbt integration, and which plugin is dbt: cheap to import (no dagster-dbt)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flx_meltano.domain.plugins import Plugin, PluginType


@dataclass(frozen=True)
class DbtOptions:
    """Where the dbt project of a Meltano dbt utility is and which dbt runs it; every field optional.

    Attributes:
        utility: the dbt utility (default: the project's utility whose executable is ``dbt``).
        project_dir: the dbt project (default: the utility's ``project_dir`` config, else
            ``<meltano project>/transform``, Meltano's convention).
        profiles_dir: where profiles.yml is (default: the utility's ``profiles_dir`` config, else
            the first of ``transform/profiles/<adapter>``, ``transform/profiles``, ``transform``
            that holds a profiles.yml).
        executable: the dbt to run (default: the utility's, installed by ``meltano install``).
        group_name: the Dagster group of the dbt assets (default: ``dbt_<dbt project name>``).
        select: dbt selection of the nodes that become assets.
        exclude: dbt exclusion of nodes.
    """

    utility: str | None = None
    project_dir: Path | None = None
    profiles_dir: Path | None = None
    executable: str | None = None
    group_name: str | None = None
    select: str = "fqn:*"
    exclude: str = ""


def is_dbt_plugin(plugin: Plugin) -> bool:
    """A utility (or legacy transformer) running dbt: executable ``dbt``, else named ``dbt-<adapter>``."""
    if plugin.type not in (PluginType.UTILITY, PluginType.TRANSFORMER):
        return False
    if plugin.executable:
        return Path(plugin.executable).name == "dbt"
    return plugin.name == "dbt" or plugin.name.startswith("dbt-")
