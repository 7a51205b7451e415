"""Read meltano.yml (with include_paths and environments) into the domain's ProjectModel.

Nothing here starts ``meltano``: the file is read with ``yaml_lines`` (libyaml, Meltano's YAML 1.2
scalar rules) so every error can name the file and line at fault.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from flx_meltano.domain.plugins import Plugin, PluginType, Setting
from flx_meltano.domain.project import (
    CRON_ALIASES,
    UNSCHEDULED_INTERVALS,
    Block,
    Command,
    ExtractLoad,
    Job,
    ProjectModel,
    Schedule,
    Source,
    Task,
)
from flx_meltano.integration.cron import is_valid_cron
from flx_meltano.integration.errors import ProjectError, UnknownEnvironment
from flx_meltano.integration.partition_config import read_partitions
from flx_meltano.integration.yaml_lines import LineList, LineMap, YamlError
from flx_meltano.integration.yaml_lines import load as load_yaml

_SECRET_KINDS = frozenset({"password", "oauth"})
_TOP_LEVEL_MERGED = ("jobs", "schedules", "environments")


class _Located:
    """A YAML mapping or sequence together with the file it came from."""

    def __init__(self, node: Any, file: str) -> None:
        self.node = node
        self.file = file

    def line_of(self, key: str | int | None = None) -> int:
        """1-based line of the node (or of one of its keys or items)."""
        if isinstance(self.node, LineMap):
            return self.node.line_of(key) if key is not None else self.node.line
        if isinstance(self.node, LineList):
            return self.node.line_of(key) if isinstance(key, int) else self.node.line
        return 0

    def source(self, key: str | int | None = None) -> Source:
        return Source(self.file, self.line_of(key))

    def error(self, message: str, key: str | int | None = None) -> ProjectError:
        return ProjectError(message, self.file, self.line_of(key))


def _load_yaml(path: Path, root: Path) -> _Located:
    relative = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ProjectError("file not found", relative) from None
    try:
        data = load_yaml(text)
    except YamlError as exc:
        raise ProjectError(f"invalid YAML: {exc.problem}", relative, exc.line) from None
    if data is None:
        data = LineMap(line=1)
    if not isinstance(data, LineMap):
        raise ProjectError("expected a mapping at the top level", relative, 1)
    return _Located(data, relative)


def _as_list(located: _Located, key: str) -> list[_Located]:
    value = located.node.get(key)
    if value is None:
        return []
    if not isinstance(value, LineList):
        raise located.error(f"'{key}' must be a list", key)
    items: list[_Located] = []
    for index, item in enumerate(value):
        if not isinstance(item, LineMap):
            raise _Located(value, located.file).error(f"each entry of '{key}' must be a mapping", index)
        items.append(_Located(item, located.file))
    return items


def _plain(value: Any) -> Any:
    """Line-tracking containers to plain dicts and lists (exact type checks: ABC checks cost)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _settings(entry: _Located) -> tuple[Setting, ...]:
    settings: list[Setting] = []
    for setting in _as_list(entry, "settings"):
        name = setting.node.get("name")
        if not isinstance(name, str):
            raise setting.error("a setting needs a 'name'")
        kind = str(setting.node.get("kind", "string"))
        secret = bool(setting.node.get("sensitive", False)) or kind in _SECRET_KINDS
        settings.append(Setting(name=name, kind=kind, secret=secret, env=setting.node.get("env")))
    return tuple(settings)


def _plugin(entry: _Located, kind: PluginType, overrides: Mapping[str, Any]) -> Plugin:
    node = entry.node
    name = node.get("name")
    if not isinstance(name, str) or not name:
        raise entry.error(f"a plugin under '{kind.value}' needs a 'name'")
    config = _deep_merge(_plain(node.get("config") or {}), overrides.get("config") or {})
    select = overrides.get("select", _plain(node.get("select") or []))
    if not isinstance(select, list) or not all(isinstance(rule, str) for rule in select):
        raise entry.error(f"plugin {name!r}: 'select' must be a list of strings", "select")
    extras = {
        key: _plain(value)
        for key, value in node.items()
        if key
        not in {
            "name",
            "namespace",
            "variant",
            "pip_url",
            "executable",
            "inherit_from",
            "capabilities",
            "settings",
            "config",
            "select",
            "mappings",
            "commands",
        }
    }
    extras = _deep_merge(extras, {k: v for k, v in overrides.items() if k not in {"config", "select"}})
    mappings: list[str] = []
    for mapping in _as_list(entry, "mappings"):
        mapping_name = mapping.node.get("name")
        if not isinstance(mapping_name, str) or not mapping_name:
            raise mapping.error(f"a mapping of {name!r} needs a 'name'")
        mappings.append(mapping_name)
    commands = node.get("commands") or {}
    settings = _settings(entry)
    partitions = (
        read_partitions(node.get("meta"), entry.file, name, [s.name for s in settings])
        if kind is PluginType.EXTRACTOR
        else None
    )
    return Plugin(
        name=name,
        type=kind,
        namespace=node.get("namespace"),
        variant=node.get("variant"),
        pip_url=node.get("pip_url"),
        executable=node.get("executable"),
        inherit_from=node.get("inherit_from"),
        capabilities=tuple(_plain(node.get("capabilities") or [])),
        settings=settings,
        config=config,
        select=tuple(select),
        extras=extras,
        mappings=tuple(mappings),
        commands=tuple(str(c) for c in commands),
        partitions=partitions,
    )


def _resolve_inheritance(plugins: list[Plugin], sources: Mapping[str, Source]) -> list[Plugin]:
    """Fill an inheriting plugin's missing definition from its parent of the same type."""
    by_key = {(p.type, p.name): p for p in plugins}
    resolved: list[Plugin] = []
    for plugin in plugins:
        parent_name = plugin.inherit_from
        if parent_name is None:
            resolved.append(plugin)
            continue
        parent = by_key.get((plugin.type, parent_name))
        if parent is None:
            where = sources.get(plugin.name)
            raise ProjectError(
                f"plugin {plugin.name!r} inherits from unknown {plugin.type.singular} {parent_name!r}",
                where.file if where else None,
                where.line if where else None,
            )
        resolved.append(
            Plugin(
                name=plugin.name,
                type=plugin.type,
                # Meltano gives an inheriting plugin its own namespace (and so its own load schema).
                namespace=plugin.namespace or plugin.name.replace("-", "_"),
                variant=plugin.variant or parent.variant,
                pip_url=plugin.pip_url or parent.pip_url,
                executable=plugin.executable or parent.executable or parent.name,
                inherit_from=parent.name,
                capabilities=plugin.capabilities or parent.capabilities,
                settings=plugin.settings or parent.settings,
                config=_deep_merge(parent.config, plugin.config),
                select=plugin.select or parent.select,
                extras=_deep_merge(parent.extras, plugin.extras),
                mappings=plugin.mappings or parent.mappings,
                commands=plugin.commands or parent.commands,
                partitions=plugin.partitions or parent.partitions,
            )
        )
    return resolved


class _BlockParser:
    """Turn the tokens of one ``meltano run`` invocation into blocks, as Meltano does."""

    def __init__(self, plugins: Iterable[Plugin]) -> None:
        self.kinds: dict[str, PluginType] = {}
        self.mapping_names: set[str] = set()
        self.mappings_of: dict[str, tuple[str, ...]] = {}
        for plugin in plugins:
            self.kinds.setdefault(plugin.name, plugin.type)
            self.mapping_names.update(plugin.mappings)
            if plugin.type == PluginType.MAPPER:
                self.mappings_of[plugin.name] = plugin.mappings

    def parse(self, tokens: list[str], where: _Located, key: int) -> tuple[Block, ...]:
        blocks: list[Block] = []
        extractor: str | None = None
        mappers: list[str] = []
        for token in tokens:
            plugin_name, _, command = token.partition(":")
            kind = self.kinds.get(plugin_name)
            if token in self.mapping_names and extractor is not None:
                mappers.append(token)
            elif command:
                if kind is None:
                    raise where.error(f"task names unknown plugin {plugin_name!r} in {token!r}", key)
                blocks.append(Command(plugin_name, command))
            elif kind == PluginType.EXTRACTOR:
                if extractor is not None:
                    raise where.error(f"extractor {extractor!r} has no loader before {token!r}", key)
                extractor = token
            elif kind == PluginType.MAPPER and extractor is not None:
                # Meltano refuses it too ("Expected unique mappings name not the mapper plugin name").
                names = ", ".join(self.mappings_of.get(token, ())) or "none defined (add 'mappings:')"
                raise where.error(
                    f"task names mapper plugin {token!r}; Meltano runs a mapping by its name, not its "
                    f"mapper's: use one of its mappings ({names})",
                    key,
                )
            elif kind == PluginType.LOADER:
                if extractor is None:
                    raise where.error(f"loader {token!r} has no extractor before it", key)
                blocks.append(ExtractLoad(extractor, token, tuple(mappers)))
                extractor, mappers = None, []
            elif kind is not None:
                blocks.append(Command(token))
            else:
                raise where.error(f"task names unknown plugin or job {token!r}", key)
        if extractor is not None:
            raise where.error(f"extractor {extractor!r} has no loader after it", key)
        return tuple(blocks)


def _task_token_lists(task_node: Any, where: _Located, index: int) -> list[list[str]]:
    """A task entry is a string, a list of strings (one run) or a list of lists."""
    if isinstance(task_node, str):
        return [task_node.split()]
    if isinstance(task_node, list) and all(isinstance(t, str) for t in task_node):
        return [[token for text in task_node for token in text.split()]]
    raise where.error("a task must be a string or a list of strings", index)


def _jobs(entries: list[_Located], plugins: list[Plugin]) -> tuple[tuple[Job, ...], dict[str, Source]]:
    by_name: dict[str, _Located] = {}
    for entry in entries:
        name = entry.node.get("name")
        if not isinstance(name, str):
            raise entry.error("a job needs a 'name'")
        if name in by_name:
            raise entry.error(f"job {name!r} is defined twice")
        by_name[name] = entry
    parser = _BlockParser(plugins)
    built: dict[str, Job] = {}

    def build(name: str, stack: tuple[str, ...]) -> Job:
        if name in built:
            return built[name]
        if name in stack:
            cycle = " -> ".join((*stack[stack.index(name) :], name))
            raise by_name[name].error(f"job {name!r} refers to itself: {cycle}")
        entry = by_name[name]
        raw_tasks = entry.node.get("tasks")
        if isinstance(raw_tasks, str):  # Meltano accepts one string for a one-task job
            single, raw_tasks = raw_tasks, LineList(line=entry.line_of("tasks"))
            raw_tasks.append(single)
            raw_tasks.item_lines.append(raw_tasks.line)
        if not isinstance(raw_tasks, list) or not raw_tasks:
            raise entry.error(f"job {name!r} needs a non-empty 'tasks' list", "tasks")
        tasks_where = _Located(raw_tasks, entry.file)
        tasks: list[Task] = []
        for index, raw in enumerate(raw_tasks):
            for tokens in _task_token_lists(raw, tasks_where, index):
                tasks.extend(expand(tokens, tasks_where, index, (*stack, name)))
        job = Job(name=name, tasks=tuple(tasks), source=entry.source())
        built[name] = job
        return job

    def expand(tokens: list[str], where: _Located, index: int, stack: tuple[str, ...]) -> list[Task]:
        # A job named inside a task runs that job's tasks in its place.
        out: list[Task] = []
        pending: list[str] = []
        for token in tokens:
            if token in by_name and token not in parser.kinds:
                if pending:
                    out.append(Task(parser.parse(pending, where, index), " ".join(pending)))
                    pending = []
                out.extend(build(token, stack).tasks)
            else:
                pending.append(token)
        if pending:
            out.append(Task(parser.parse(pending, where, index), " ".join(pending)))
        return out

    jobs = tuple(build(name, ()) for name in by_name)
    return jobs, {f"job:{name}": entry.source() for name, entry in by_name.items()}


def _check_one_chain_per_state_id(
    jobs: tuple[Job, ...], schedules: tuple[Schedule, ...], environment: str
) -> None:
    """Two block chains of one extractor and loader share a Meltano state id: refuse them.

    Meltano keys state by extractor and loader only, so a mapped and an unmapped chain (or two
    differently mapped ones) would read and write each other's bookmarks, and load one table.
    """
    users: list[tuple[ExtractLoad, str, Source | None]] = [
        (block, f"job {job.name!r}", job.source)
        for job in jobs
        for task in job.tasks
        for block in task.extract_loads
    ]
    users += [(s.extract_load, f"schedule {s.name!r}", s.source) for s in schedules if s.extract_load]
    first: dict[tuple[str, str], tuple[ExtractLoad, str]] = {}
    for block, owner, source in users:
        other, other_owner = first.setdefault(block.pair, (block, owner))
        if other != block:
            raise ProjectError(
                f"{other_owner} ({other}) and {owner} ({block}) are different block chains with one "
                f"Meltano state id, {block.state_id(environment)}: Meltano would mix their bookmarks "
                f"and both would load the same tables. Give one chain its own loader: a plugin with "
                f"'inherit_from: {block.loader}' under loaders (its own name gives it its own state id "
                "and assets)",
                source.file if source else None,
                source.line if source else None,
            )


def _schedules(entries: list[_Located], jobs: tuple[Job, ...], plugins: list[Plugin]) -> tuple[Schedule, ...]:
    job_names = {job.name for job in jobs}
    kinds = {(p.type, p.name) for p in plugins}
    schedules: list[Schedule] = []
    for entry in entries:
        node = entry.node
        name = node.get("name")
        if not isinstance(name, str):
            raise entry.error("a schedule needs a 'name'")
        interval = node.get("interval")
        if not isinstance(interval, str) or not interval.strip():
            raise entry.error(f"schedule {name!r} needs an 'interval' (cron or @hourly/@daily/...)")
        interval = interval.strip()
        if interval.startswith("@"):
            if interval not in CRON_ALIASES and interval not in UNSCHEDULED_INTERVALS:
                known = ", ".join([*CRON_ALIASES, *UNSCHEDULED_INTERVALS])
                raise entry.error(
                    f"schedule {name!r}: unknown interval {interval!r} (one of {known})", "interval"
                )
        elif len(interval.split()) != 5 or not is_valid_cron(interval):
            raise entry.error(
                f"schedule {name!r}: {interval!r} is not a valid 5-field cron expression", "interval"
            )
        job = node.get("job")
        extract_load: ExtractLoad | None = None
        if job is not None:
            if job not in job_names:
                raise entry.error(f"schedule {name!r} names unknown job {job!r}", "job")
        else:
            extractor, loader = node.get("extractor"), node.get("loader")
            if not extractor or not loader:
                raise entry.error(f"schedule {name!r} needs a 'job', or an 'extractor' and a 'loader'")
            if (PluginType.EXTRACTOR, extractor) not in kinds:
                raise entry.error(f"schedule {name!r} names unknown extractor {extractor!r}", "extractor")
            if (PluginType.LOADER, loader) not in kinds:
                raise entry.error(f"schedule {name!r} names unknown loader {loader!r}", "loader")
            extract_load = ExtractLoad(str(extractor), str(loader))
        schedules.append(
            Schedule(
                name=name,
                interval=interval,
                job=job,
                extract_load=extract_load,
                environment=node.get("environment"),
                source=entry.source(),
            )
        )
    return tuple(schedules)


def _files(root: Path, main: _Located) -> Iterator[_Located]:
    yield main
    for pattern in _plain(main.node.get("include_paths") or []):
        matches = sorted(root.glob(pattern))
        for path in matches:
            if path.resolve() != (root / "meltano.yml").resolve():
                yield _load_yaml(path, root)


_OverrideKey = tuple[PluginType, str]


def _rule_sources(located: _Located, key: str = "select") -> tuple[Source, ...]:
    """Where each item of a plugin's ``select`` list is written."""
    rules = located.node.get(key)
    if not isinstance(rules, LineList):
        return ()
    return tuple(Source(located.file, rules.line_of(index)) for index in range(len(rules)))


def _environment_overrides(
    env: _Located,
) -> tuple[dict[_OverrideKey, dict[str, Any]], dict[_OverrideKey, tuple[Source, ...]]]:
    """The plugin overrides of one environment (its ``config.plugins``), by plugin type and name,
    and where each overriding ``select`` rule is written."""
    where = f"environment {env.node.get('name')!r}"
    config = env.node.get("config")
    if config is None:
        return {}, {}
    if not isinstance(config, dict):
        raise env.error(f"{where}: 'config' must be a mapping", "config")
    plugins = config.get("plugins")
    if plugins is None:
        return {}, {}
    if not isinstance(plugins, dict):
        raise _Located(config, env.file).error(
            f"{where}: 'config.plugins' must be a mapping of plugin types", "plugins"
        )
    types = _Located(plugins, env.file)
    overrides: dict[_OverrideKey, dict[str, Any]] = {}
    select_sources: dict[_OverrideKey, tuple[Source, ...]] = {}
    for type_name, entries in plugins.items():
        try:
            kind = PluginType(type_name)
        except ValueError:
            raise env.error(f"unknown plugin type {type_name!r} in environment config") from None
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise types.error(f"{where}: '{type_name}' in 'config.plugins' must be a list", type_name)
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise _Located(entries, env.file).error(
                    f"{where}: each entry of '{type_name}' in 'config.plugins' must be a mapping", index
                )
            name = entry.get("name")
            if not isinstance(name, str) or not name:
                raise _Located(entry, env.file).error(
                    f"{where}: a plugin under '{type_name}' in 'config.plugins' needs a 'name'"
                )
            overrides[(kind, name)] = _plain({k: v for k, v in entry.items() if k != "name"})
            if "select" in entry:
                select_sources[(kind, name)] = _rule_sources(_Located(entry, env.file))
    return overrides, select_sources


def read_project(root: Path | str, environment: str | None = None) -> ProjectModel:
    """Read the Meltano project at ``root`` for ``environment`` (default: its default_environment).

    Raises:
        ProjectError: naming the file and line of the first problem found.
    """
    root = Path(root).resolve()
    main = _load_yaml(root / "meltano.yml", root)
    files = list(_files(root, main))

    environments: dict[str, _Located] = {}
    for located in files:
        for env in _as_list(located, "environments"):
            name = env.node.get("name")
            if not isinstance(name, str):
                raise env.error("an environment needs a 'name'")
            environments[name] = env
    chosen = environment or main.node.get("default_environment")
    if chosen is None:
        raise main.error("no environment given and meltano.yml has no 'default_environment'")
    if environments and chosen not in environments:
        raise UnknownEnvironment(
            f"unknown environment {chosen!r}; meltano.yml defines {', '.join(sorted(environments))} "
            "(choose one with -e or FLX_ENVIRONMENT)",
            "meltano.yml",
            main.line_of("environments") if "environments" in main.node else None,
        )
    overrides, override_select_sources = (
        _environment_overrides(environments[chosen]) if chosen in environments else ({}, {})
    )

    plugins: list[Plugin] = []
    sources: dict[str, Source] = {}
    select_sources: dict[str, tuple[Source, ...]] = {}
    for located in files:
        section = located.node.get("plugins") or LineMap()
        if not isinstance(section, LineMap):
            raise located.error("'plugins' must be a mapping of plugin types", "plugins")
        section_where = _Located(section, located.file)
        for type_name in section:
            try:
                kind = PluginType(type_name)
            except ValueError:
                raise section_where.error(f"unknown plugin type {type_name!r}", type_name) from None
            for entry in _as_list(section_where, type_name):
                key = (kind, str(entry.node.get("name")))
                plugin = _plugin(entry, kind, overrides.get(key, {}))
                if plugin.name in sources and any(p.type == kind and p.name == plugin.name for p in plugins):
                    raise entry.error(f"{kind.singular} {plugin.name!r} is defined twice")
                plugins.append(plugin)
                sources[plugin.name] = entry.source()
                select_sources[plugin.name] = override_select_sources.get(key) or _rule_sources(entry)
    plugins = _resolve_inheritance(plugins, sources)
    for plugin in plugins:  # an inheriting plugin without rules of its own uses its parent's
        if plugin.inherit_from and not select_sources.get(plugin.name):
            select_sources[plugin.name] = select_sources.get(plugin.inherit_from, ())

    job_entries = [job for located in files for job in _as_list(located, "jobs")]
    jobs, job_sources = _jobs(job_entries, plugins)
    sources.update(job_sources)
    schedule_entries = [s for located in files for s in _as_list(located, "schedules")]
    schedules = _schedules(schedule_entries, jobs, plugins)
    _check_one_chain_per_state_id(jobs, schedules, str(chosen))

    backend = main.node.get("state_backend") or {}
    backend_uri = backend.get("uri") if isinstance(backend, Mapping) else None
    env_backend = (
        (environments[chosen].node.get("config") or {}).get("state_backend")
        if chosen in environments
        else None
    )
    if isinstance(env_backend, Mapping) and env_backend.get("uri"):
        backend_uri = env_backend["uri"]

    return ProjectModel(
        root=str(root),
        environment=str(chosen),
        environments=tuple(environments),
        plugins=tuple(plugins),
        jobs=jobs,
        schedules=schedules,
        state_backend_uri=backend_uri,
        sources=sources,
        select_sources=select_sources,
    )
