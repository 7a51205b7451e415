"""Where a Singer target puts a stream, for the targets whose naming rules flx knows.

SDK SQL targets (meltanolabs target-postgres, target-snowflake, ...) take the schema from
``default_target_schema``, else from the stream id's parts (``<schema>-<table>`` or
``<db>-<schema>-<table>``), and the table from the last ``-`` part, conformed by the target.
pipelinewise targets do the same, with ``schema_mapping`` by source schema. File targets write one
file per stream under their destination directory. Anything else is UNKNOWN_DESTINATION.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import PurePosixPath
from typing import Any

from flx_meltano.domain.destinations import UNKNOWN_DESTINATION, StreamDestination
from flx_meltano.domain.plugins import Plugin

_REQUIREMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def _identity(name: str) -> str:
    return name


def _sdk_conform(name: str) -> str:
    """singer-sdk's default ``SQLSink.conform_name``: snake-ish lower case, no leading digit."""
    name = re.sub(r"[^a-zA-Z0-9_\-\.\s]", "", name).lower().strip()
    name = name.replace(".", "_").replace("-", "_").replace(" ", "_")
    return re.sub(r"^\d", lambda m: f"_{m.group(0)}", name)


def _pipelinewise_conform(name: str) -> str:
    return name.replace(".", "_").replace("-", "_").lower()


def package_name(plugin: Plugin) -> str:
    """The distribution a plugin is installed from: ``meltanolabs-target-postgres==0.8.1`` gives
    ``meltanolabs-target-postgres``; a path or VCS URL gives its last part; no pip_url, the name."""
    pip_url = (plugin.pip_url or "").split()
    spec = next((part for part in pip_url if not part.startswith("-")), "")
    if not spec:
        return plugin.name.lower()
    if "://" in spec or spec.startswith((".", "/", "~")):
        last = spec.split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        return last.split("@", 1)[0].removesuffix(".git").lower()
    match = _REQUIREMENT_NAME.match(spec)
    return match.group(0).lower() if match else plugin.name.lower()


_ENV_REFERENCE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def _setting(plugin: Plugin, name: str, project_root: str, env: Mapping[str, str]) -> Any:
    """A config value with ``$VAR`` references expanded as Meltano would (the run's environment,
    ``MELTANO_PROJECT_ROOT``); None when a variable it names is not set. The setting's own
    variable (``TARGET_JSONLINES_DESTINATION_PATH``) wins over meltano.yml, as in Meltano."""
    override = env.get(f"{plugin.name}_{name}".upper().replace("-", "_"))
    value = override if override else plugin.config.get(name)
    if not isinstance(value, str) or "$" not in value:
        return value
    environ = {**env, "MELTANO_PROJECT_ROOT": project_root}
    names = [a or b for a, b in _ENV_REFERENCE.findall(value)]
    if any(not environ.get(var) for var in names):
        return None
    return _ENV_REFERENCE.sub(lambda m: environ[m.group(1) or m.group(2)], value)


_Rule = Callable[[Plugin, str, str, Mapping[str, str]], StreamDestination]


def _sql(conform: Callable[[str], str], *, schema_mapping: bool = False) -> _Rule:
    def destination(
        plugin: Plugin, stream: str, project_root: str, env: Mapping[str, str]
    ) -> StreamDestination:
        parts = stream.split("-")
        table = conform(parts[-1])
        schema = _setting(plugin, "default_target_schema", project_root, env)
        source_schema = parts[-2] if len(parts) in (2, 3) else None
        if schema_mapping and source_schema is not None:
            mapping = _setting(plugin, "schema_mapping", project_root, env)
            entry = mapping.get(source_schema) if isinstance(mapping, Mapping) else None
            if isinstance(entry, Mapping) and isinstance(entry.get("target_schema"), str):
                schema = entry["target_schema"]
        if not schema and not plugin.config.get("default_target_schema") and source_schema is not None:
            schema = conform(source_schema)
        return StreamDestination(table=table, schema=schema if isinstance(schema, str) and schema else None)

    return destination


def _file(setting: str, suffix: str) -> _Rule:
    def destination(
        plugin: Plugin, stream: str, project_root: str, env: Mapping[str, str]
    ) -> StreamDestination:
        directory = _setting(plugin, setting, project_root, env)
        if not isinstance(directory, str) or not directory:
            return UNKNOWN_DESTINATION
        return StreamDestination(path=str(PurePosixPath(directory) / f"{stream}{suffix}"))

    return destination


# By the package a loader is installed from; target-postgres conforms no names (identity).
_RULES: Mapping[str, _Rule] = {
    "meltanolabs-target-postgres": _sql(_identity),
    "meltanolabs-target-snowflake": _sql(_sdk_conform),
    "target-duckdb": _sql(_sdk_conform),
    "meltanolabs-target-duckdb": _sql(_sdk_conform),
    "pipelinewise-target-postgres": _sql(_pipelinewise_conform, schema_mapping=True),
    "pipelinewise-target-snowflake": _sql(_pipelinewise_conform, schema_mapping=True),
    "pipelinewise-target-redshift": _sql(_pipelinewise_conform, schema_mapping=True),
    "target-jsonl": _file("destination_path", ".jsonl"),
    "target-jsonlines": _file("destination_path", ".jsonl"),
}


def destination_of(
    loader: Plugin, stream: str, project_root: str, env: Mapping[str, str] | None = None
) -> StreamDestination:
    """Where ``loader`` writes ``stream`` (UNKNOWN_DESTINATION for loaders flx does not know).

    ``env`` is the environment meltano runs with (default: this process's). A file target whose
    ``do_timestamp_file`` is on writes a new file name per run: unknown.
    """
    rule = _RULES.get(package_name(loader))
    if rule is None or loader.config.get("do_timestamp_file") is True:
        return UNKNOWN_DESTINATION
    return rule(loader, stream, project_root, os.environ if env is None else env)
