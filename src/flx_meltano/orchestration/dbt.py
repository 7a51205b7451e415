"""dbt through dagster-dbt: the project of a Meltano dbt utility as one asset per model, tests as checks.

The dbt that runs is the Meltano utility's own (``.meltano/utilities/<name>/venv/bin/dbt``): the
version and adapter the project chose in meltano.yml, the same dbt ``meltano run`` uses. Its
sources map to the stream assets that load their tables, so lineage runs from the streams
through staging to marts. The manifest is read at definition load and never built there,
except under ``dagster dev``/``dg`` when it is older than the dbt project (as dagster-dbt's
``prepare_if_dev`` does).
"""

# No ``from __future__ import annotations`` here: Dagster inspects the annotations of the
# decorated asset function (context, config) at definition time and needs the real classes.

import contextlib
import io
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    AssetsDefinition,
    AssetSelection,
    Config,
    Failure,
    Output,
)
from dagster._utils.env import using_dagster_dev
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets
from dotenv import dotenv_values
from packaging import version
from pydantic import Field

from flx_meltano.application.secrets import Redactor
from flx_meltano.domain.plugins import Plugin
from flx_meltano.domain.project import Command, ProjectModel
from flx_meltano.integration.meltano_cli import plugin_executable_path
from flx_meltano.integration.state_access import temporary_environ
from flx_meltano.orchestration import metadata as md
from flx_meltano.orchestration.dbt_options import DbtOptions, is_dbt_plugin
from flx_meltano.orchestration.resource import CollapsedLog, MeltanoResource
from flx_meltano.orchestration.translator import dagster_name, tag_value

logger = logging.getLogger(__name__)

# Meltano command names (``dbt-postgres:run``) that are dbt subcommands over the model assets.
# Any other command of a dbt utility (debug, deps, docs-generate, ...) stays one command asset.
DBT_COMMANDS = ("build", "run", "test", "seed", "snapshot")
DEFAULT_DBT_COMMAND = "build"
# The dbt resource type of the assets each command materializes (``test`` runs checks only).
_RESOURCE_TYPES = {"run": "model", "seed": "seed", "snapshot": "snapshot"}
_DBT_LEVELS = {"warn": "warning", "error": "error", "debug": "debug", "info": "info"}
_SKIPPED_DIRS = frozenset({"target", "logs", "dbt_packages", "dbt_modules", ".venv"})


class DbtError(ValueError):
    """The dbt project of a Meltano dbt utility cannot become assets (what is wrong and the way out)."""


def _expand_text(value: str, project_root: Path) -> str:
    """A setting value as Meltano expands it: ``$MELTANO_PROJECT_ROOT``, then the environment."""
    return os.path.expandvars(re.sub(r"\$\{?MELTANO_PROJECT_ROOT\}?", str(project_root), value))


def _expand(value: str, project_root: Path) -> Path:
    """A path setting, expanded; relative paths are relative to the Meltano project."""
    path = Path(_expand_text(value, project_root))
    return path if path.is_absolute() else project_root / path


@dataclass(frozen=True)
class DbtSetup:
    """A dbt project found for a Meltano dbt utility: where it is and which dbt runs it."""

    utility: Plugin
    meltano_root: Path
    project_dir: Path
    profiles_dir: Path | None
    executable: str
    target_path: str
    options: DbtOptions

    @property
    def manifest_path(self) -> Path:
        """dbt's manifest, which the assets are built from."""
        return self.project_dir / self.target_path / "manifest.json"

    @property
    def prepare_command(self) -> str:
        """What to run to create or refresh the manifest."""
        return f"meltano invoke {self.utility.name} parse"

    def dbt_project(self) -> DbtProject:
        """dagster-dbt's view of the same project."""
        return DbtProject(self.project_dir, target_path=self.target_path, profiles_dir=self.profiles_dir)

    def cli_resource(self) -> "UtilityDbtCliResource":
        """A dbt CLI resource over the utility's dbt, without colour codes in its output."""
        if not (Path(self.executable).is_file() or shutil.which(self.executable)):
            raise DbtError(
                f"dbt of utility {self.utility.name} not found at {self.executable}: run "
                f"'meltano install utility {self.utility.name}' in {self.meltano_root}"
            )
        return UtilityDbtCliResource(
            project_dir=os.fspath(self.project_dir),
            profiles_dir=os.fspath(self.profiles_dir) if self.profiles_dir else None,
            dbt_executable=self.executable,
            global_config_flags=["--no-use-colors"],
        )

    def environment(self, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        """What Meltano would give the utility: the project's .env under the process environment,
        the utility's settings that have an ``env`` name, then ``overrides`` (flx's run env)."""
        dotenv = self.meltano_root / ".env"
        values: dict[str, str] = {}
        if dotenv.is_file():
            values = {k: v for k, v in dotenv_values(dotenv).items() if v is not None and k not in os.environ}
        for setting in self.utility.settings:
            value = self.utility.config.get(setting.name)
            if setting.env and value is not None and setting.name not in ("project_dir", "profiles_dir"):
                values[setting.env] = _expand_text(str(value), self.meltano_root)
        values["MELTANO_PROJECT_ROOT"] = str(self.meltano_root)
        values["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
        return {**values, **dict(overrides or {})}


def find_dbt(project: ProjectModel, options: DbtOptions | None = None) -> DbtSetup | None:
    """The dbt project of the Meltano project's dbt utility, or None when there is none.

    A utility named in ``options`` that does not exist, or whose dbt project is not found, is an
    error naming what was looked for.
    """
    options = options or DbtOptions()
    root = Path(project.root)
    if options.utility:
        try:
            utility = project.plugin(options.utility)
        except KeyError as exc:
            raise DbtError(f"dbt utility {options.utility!r} is not a plugin in {root}/meltano.yml") from exc
    else:
        candidates = [p for p in project.plugins if is_dbt_plugin(p)]
        if not candidates:
            return None
        utility = candidates[0]
        if len(candidates) > 1:
            logger.warning(
                "several dbt utilities (%s): using %s; name another with the dbt 'utility' option",
                ", ".join(p.name for p in candidates),
                utility.name,
            )
    project_dir = _project_dir(utility, root, options)
    if project_dir is None:
        if options.utility or options.project_dir:
            raise DbtError(
                f"dbt utility {utility.name}: no dbt_project.yml found (looked in {root / 'transform'}); "
                "set the dbt 'project_dir' option or the utility's project_dir config"
            )
        logger.warning(
            "dbt utility %s: no dbt_project.yml in %s; its commands stay command assets",
            utility.name,
            root / "transform",
        )
        return None
    executable = options.executable or os.fspath(plugin_executable_path(root, utility))
    return DbtSetup(
        utility=utility,
        meltano_root=root,
        project_dir=project_dir,
        profiles_dir=_profiles_dir(utility, root, project_dir, options),
        executable=executable,
        target_path=_target_path(project_dir),
        options=options,
    )


def _project_dir(utility: Plugin, root: Path, options: DbtOptions) -> Path | None:
    configured = utility.config.get("project_dir")
    if options.project_dir is not None:
        candidate = Path(options.project_dir)
    elif isinstance(configured, str) and configured:
        candidate = _expand(configured, root)
    else:
        candidate = root / "transform"
    candidate = candidate.resolve()
    if (candidate / "dbt_project.yml").is_file():
        return candidate
    if options.project_dir is not None or configured:
        raise DbtError(f"dbt utility {utility.name}: no dbt_project.yml in {candidate}")
    return None


def _profiles_dir(utility: Plugin, root: Path, project_dir: Path, options: DbtOptions) -> Path | None:
    if options.profiles_dir is not None:
        return Path(options.profiles_dir).resolve()
    configured = utility.config.get("profiles_dir")
    if isinstance(configured, str) and configured:
        return _expand(configured, root).resolve()
    adapter = utility.name.removeprefix("dbt-")
    for candidate in (project_dir / "profiles" / adapter, project_dir / "profiles", project_dir):
        if (candidate / "profiles.yml").is_file():
            return candidate
    return None  # dbt's own default, ~/.dbt


def _target_path(project_dir: Path) -> str:
    loaded = yaml.safe_load((project_dir / "dbt_project.yml").read_text()) or {}
    target = loaded.get("target-path") if isinstance(loaded, Mapping) else None
    return str(target) if isinstance(target, str) and target else "target"


def _newest_source_mtime(project_dir: Path) -> float:
    """The newest modification time of the dbt project's own files (not its build output)."""
    newest = 0.0
    for dirpath, dirnames, filenames in os.walk(project_dir):
        dirnames[:] = [d for d in dirnames if d not in _SKIPPED_DIRS and not d.startswith(".")]
        for name in filenames:
            if name.endswith((".sql", ".yml", ".yaml", ".csv", ".py", ".md")):
                newest = max(newest, os.stat(os.path.join(dirpath, name)).st_mtime)
    return newest


def manifest_is_stale(setup: DbtSetup) -> bool:
    """Whether the manifest is missing or older than a file of the dbt project."""
    path = setup.manifest_path
    return not path.is_file() or path.stat().st_mtime < _newest_source_mtime(setup.project_dir)


def prepare_manifest(setup: DbtSetup, env: Mapping[str, str] | None = None) -> Path:
    """Run ``dbt parse`` (and ``dbt deps`` when packages are missing) with the utility's dbt."""
    dbt = setup.cli_resource()
    target = setup.project_dir / setup.target_path
    with temporary_environ(setup.environment(env)):
        project = setup.dbt_project()
        if project.has_uninstalled_deps:
            dbt.cli(["deps", "--quiet"], target_path=target).wait()
        invocation = dbt.cli(["parse", "--quiet"], target_path=target, raise_on_error=False)
    if not invocation.is_successful():
        messages = [str(e.raw_event["info"]["msg"]) for e in invocation.stream_raw_events()]
        raise DbtError(
            f"dbt parse of {setup.project_dir} failed (exit {invocation.process.returncode}): "
            + " | ".join(messages[-5:])
        )
    return setup.manifest_path


def load_manifest(setup: DbtSetup) -> dict[str, Any]:
    """The dbt manifest; under ``dagster dev``/``dg`` it is re-parsed first when stale."""
    if using_dagster_dev() and manifest_is_stale(setup):
        logger.info("dbt manifest of %s is stale: running dbt parse", setup.project_dir)
        prepare_manifest(setup)
    path = setup.manifest_path
    if not path.is_file():
        raise DbtError(
            f"no dbt manifest at {path} (dbt utility {setup.utility.name}): run "
            f"'{setup.prepare_command}' in {setup.meltano_root} (make setup does) before loading definitions"
        )
    try:
        loaded = json.loads(path.read_bytes())
    except ValueError as exc:
        raise DbtError(f"dbt manifest {path} is not JSON ({exc}): run '{setup.prepare_command}'") from exc
    if not isinstance(loaded, dict) or "nodes" not in loaded:
        raise DbtError(f"{path} is not a dbt manifest: run '{setup.prepare_command}'")
    return loaded


class StreamTables:
    """Which stream asset loads a table: by ``dagster/table_name`` (``schema.table``), else by key."""

    def __init__(self, specs: Sequence[Any]) -> None:
        self._keys: dict[str, AssetKey] = {}
        for spec in specs:
            key: AssetKey = spec.key
            if len(key.path) == 2:
                self._keys.setdefault(".".join(key.path).lower(), key)
            table = spec.metadata.get(md.TABLE_NAME)
            if isinstance(table, str) and table:
                self._keys[table.lower()] = key

    def key_for(self, database: str | None, schema: str | None, table: str) -> AssetKey | None:
        """The stream asset that loads ``schema.table`` (or ``database.schema.table``)."""
        if not schema:
            return None
        for name in (f"{database}.{schema}.{table}" if database else None, f"{schema}.{table}"):
            if name and name.lower() in self._keys:
                return self._keys[name.lower()]
        return None


class MeltanoDbtTranslator(DagsterDbtTranslator):
    """dagster-dbt's translator, with dbt sources mapped to the stream assets that load them.

    ``meta: {dagster: {asset_key: [...]}}`` on a source or model still wins (dagster-dbt's rule).
    Override ``get_asset_key`` or any other method as with dagster-dbt.
    """

    def __init__(self, streams: StreamTables, setup: DbtSetup) -> None:
        super().__init__()
        self.streams = streams
        self.setup = setup

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        """A source's key is its stream's key when a stream loads that table."""
        if dbt_resource_props.get("resource_type") == "source" and not _meta_asset_key(dbt_resource_props):
            key = self.streams.key_for(
                dbt_resource_props.get("database"),
                dbt_resource_props.get("schema"),
                str(dbt_resource_props.get("identifier") or dbt_resource_props["name"]),
            )
            if key is not None:
                return key
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        """dbt's group, else the configured group, else ``dbt_<dbt project>``."""
        group = super().get_group_name(dbt_resource_props)
        if group:
            return group
        return self.setup.options.group_name or dagster_name(f"dbt_{dbt_resource_props['package_name']}")

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        """dbt's tags, plus the Meltano utility that runs the node."""
        return {**super().get_tags(dbt_resource_props), md.UTILITY: tag_value(self.setup.utility.name)}


def _meta_asset_key(props: Mapping[str, Any]) -> bool:
    meta = (props.get("config") or {}).get("meta") or props.get("meta") or {}
    dagster = meta.get("dagster") if isinstance(meta, Mapping) else None
    return isinstance(dagster, Mapping) and bool(dagster.get("asset_key"))


def installed_dbt_version(executable: str) -> version.Version | None:
    """dbt-core's version in the virtual environment of ``executable``, read from its metadata."""
    path = Path(executable)
    if not path.is_absolute():
        return None
    for info in (path.parent.parent / "lib").glob("python*/site-packages/dbt_core-*.dist-info"):
        try:
            return version.parse(info.name.removeprefix("dbt_core-").removesuffix(".dist-info"))
        except version.InvalidVersion:
            continue
    return None


class UtilityDbtCliResource(DbtCliResource):
    """DbtCliResource over a dbt that lives in another virtual environment (a Meltano utility's).

    dagster-dbt asks ``dbt --version`` once per resource (about 11 s here: dbt looks for a newer
    release online) and imports dbt-core into this process for an adapter handle (used only for
    column metadata and row counts, and logging a traceback when dbt-core is not importable).
    The utility's dbt-core is not importable here and its version is in its metadata.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        found = installed_dbt_version(self.dbt_executable)
        if found is not None:
            return found
        return DbtCliResource._cli_version.func(self)  # type: ignore[attr-defined,no-any-return]

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> Any:
        return None


class DbtRunConfig(Config):
    """Per-run options of the dbt assets (op config): ``full_refresh`` and extra environment."""

    full_refresh: bool = False
    env: dict[str, str] = Field(default_factory=dict)


DbtEvent = Output[Any] | AssetMaterialization | AssetObservation | AssetCheckResult | AssetCheckEvaluation


def run_dbt(
    context: AssetExecutionContext,
    meltano: MeltanoResource,
    setup: DbtSetup,
    command: str,
    config: DbtRunConfig,
) -> Iterator[DbtEvent]:
    """Run ``dbt <command>`` over the selected dbt assets, with the env Meltano would give the utility.

    dbt's log lines reach Dagster's log (no colour codes) as it prints them; each node's result
    becomes a materialization or check result as soon as dbt reports it.
    """
    ctx = meltano.app_context()
    try:
        env = setup.environment({**ctx.run_env, **config.env})
    finally:
        ctx.close()
    args = [command, *(["--full-refresh"] if config.full_refresh and command != "test" else [])]
    dbt = setup.cli_resource()
    # DbtCliResource hands its own process environment to dbt, read when dbt starts: set it then.
    with temporary_environ(env):
        invocation = dbt.cli(args, context=context, raise_on_error=False)
    log = CollapsedLog(context)
    redact = Redactor.for_plugins([setup.utility], env)  # e.g. a profile's password in an error
    # dagster-dbt echoes each dbt line to stdout (the step's compute log): redacted there too.
    with contextlib.redirect_stdout(_RedactingWriter(sys.stdout, redact)):
        yield from _events(invocation, log, redact, setup)
    if not invocation.is_successful():
        raise Failure(
            description=f"dbt {' '.join(args)} ({setup.utility.name}) failed "
            f"with exit code {invocation.process.returncode}",
            metadata={md.UTILITY: setup.utility.name, md.COMMAND: " ".join(args)},
        )


def _events(
    invocation: Any,
    log: CollapsedLog,
    redact: Redactor,
    setup: DbtSetup,
) -> Iterator[DbtEvent]:
    """dbt's lines to Dagster's log as they come, and each node's result as a Dagster event."""
    try:
        for event in invocation.stream_raw_events():
            info = event.raw_event.get("info", {})
            level = _DBT_LEVELS.get(str(info.get("level")), "info")
            log(level, setup.utility.name, redact(str(info.get("msg", ""))))
            yield from event.to_default_asset_events(
                manifest=invocation.manifest,
                dagster_dbt_translator=invocation.dagster_dbt_translator,
                context=invocation.context,
                target_path=invocation.target_path,
                project=invocation.project,
            )
    finally:
        log.flush()


class _RedactingWriter(io.TextIOBase):
    """A text stream that masks secrets before writing to another."""

    def __init__(self, target: Any, redact: Redactor) -> None:
        self.target = target
        self.redact = redact

    def write(self, text: str) -> int:
        self.target.write(self.redact(text))
        return len(text)

    def flush(self) -> None:
        self.target.flush()


def meltano_dbt_assets(
    setup: DbtSetup,
    manifest: Mapping[str, Any],
    translator: MeltanoDbtTranslator,
    *,
    resource_key: str,
) -> AssetsDefinition:
    """One asset per dbt model (seed, snapshot), dbt tests as checks; run by the utility's dbt.

    A run runs ``dbt <command>``, the command taken from the run's ``meltano/dbt_command`` tag
    (jobs built from Meltano jobs set it from their command block), else ``dbt build``.
    """

    @dbt_assets(
        manifest=manifest,
        dagster_dbt_translator=translator,
        name=dagster_name(setup.utility.name),
        select=setup.options.select,
        exclude=setup.options.exclude,
        project=setup.dbt_project(),
        required_resource_keys={resource_key},
        op_tags={md.UTILITY: tag_value(setup.utility.name)},
    )
    def _dbt(context: AssetExecutionContext, config: DbtRunConfig) -> Iterator[DbtEvent]:
        command = context.run.tags.get(md.TAG_DBT_COMMAND, DEFAULT_DBT_COMMAND)
        if command not in DBT_COMMANDS:
            raise Failure(
                f"run tag {md.TAG_DBT_COMMAND}={command!r} is not a dbt command flx runs: "
                + ", ".join(DBT_COMMANDS)
            )
        meltano: MeltanoResource = getattr(context.resources, resource_key)
        yield from run_dbt(context, meltano, setup, command, config)

    return _dbt


@dataclass(frozen=True)
class DbtJobTarget:
    """The dbt assets standing for a job's dbt command blocks (``dbt-postgres:run`` and the like)."""

    setup: DbtSetup
    assets: AssetsDefinition
    manifest: Mapping[str, Any]
    translator: MeltanoDbtTranslator

    def handles(self, command: Command) -> bool:
        """Whether ``command`` is a dbt subcommand of this utility that these assets run."""
        return command.plugin == self.setup.utility.name and (command.command or "") in DBT_COMMANDS

    def dbt_command(self, commands: Sequence[Command]) -> str:
        """One dbt command for a job's dbt blocks: the one there is, else ``build`` (which does them all)."""
        names = {c.command or "" for c in commands}
        return names.pop() if len(names) == 1 else DEFAULT_DBT_COMMAND

    def selection(self, commands: Sequence[Command]) -> AssetSelection:
        """The dbt assets (and checks) the job's dbt blocks run."""
        command = self.dbt_command(commands)
        if command == "test":
            return AssetSelection.checks_for_assets(self.assets)
        if command == "build":
            return AssetSelection.assets(self.assets)
        # By resource type from the manifest: dagster-dbt's selection strings need dbt-core here.
        wanted = _RESOURCE_TYPES[command]
        keys = {
            self.translator.get_asset_key(node)
            for node in self.manifest["nodes"].values()
            if node.get("resource_type") == wanted
        }
        return AssetSelection.assets(*(keys & set(self.assets.keys))).without_checks()

    def keys(self) -> Sequence[AssetKey]:
        """Every dbt asset key (what command blocks after the dbt ones depend on)."""
        return list(self.assets.keys)

    def tags(self, commands: Sequence[Command]) -> Mapping[str, str]:
        """The job tag that tells the dbt assets which dbt command to run."""
        return {md.TAG_DBT_COMMAND: self.dbt_command(commands)}
