"""A Meltano project's shape: extract-load pipelines, jobs and schedules, as plain data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from flx_meltano.domain.destinations import StreamDestination
from flx_meltano.domain.identifiers import StateId
from flx_meltano.domain.plugins import Plugin, PluginType


@dataclass(frozen=True)
class Source:
    """Where something was defined: file and 1-based line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class ExtractLoad:
    """One extract-load block of a task: extractor, mapping names in order, loader.

    Meltano's blocks name a mapping (``hide-kind``), never the mapper plugin that defines it.
    """

    extractor: str
    loader: str
    mappings: tuple[str, ...] = ()

    def state_id(self, environment: str, suffix: str | None = None) -> StateId:
        """Meltano's state id for this chain in ``environment`` (mappings are not part of it)."""
        return StateId(environment, self.extractor, self.loader, suffix)

    @property
    def pair(self) -> tuple[str, str]:
        """Extractor and loader: what Meltano's state id is made of."""
        return (self.extractor, self.loader)

    def __str__(self) -> str:
        return " ".join((self.extractor, *self.mappings, self.loader))


@dataclass(frozen=True)
class Command:
    """A non-extract-load block: ``plugin`` or ``plugin:command`` (e.g. ``dbt-postgres:run``)."""

    plugin: str
    command: str | None = None

    def __str__(self) -> str:
        return f"{self.plugin}:{self.command}" if self.command else self.plugin


Block = ExtractLoad | Command


@dataclass(frozen=True)
class Task:
    """One entry of a job's ``tasks``: the blocks of one ``meltano run`` invocation."""

    blocks: tuple[Block, ...]
    text: str

    @property
    def extract_loads(self) -> tuple[ExtractLoad, ...]:
        """The extract-load blocks of this task."""
        return tuple(b for b in self.blocks if isinstance(b, ExtractLoad))


@dataclass(frozen=True)
class Job:
    """A Meltano job: named tasks, run in order."""

    name: str
    tasks: tuple[Task, ...]
    source: Source | None = None


@dataclass(frozen=True)
class Schedule:
    """A Meltano schedule: a job (or legacy extractor/loader pair) on an interval."""

    name: str
    interval: str
    job: str | None = None
    extract_load: ExtractLoad | None = None
    environment: str | None = None
    source: Source | None = None

    @property
    def cron(self) -> str | None:
        """The interval as a five-field cron expression (None for @once/@manual/@none)."""
        if self.interval in UNSCHEDULED_INTERVALS:
            return None
        return CRON_ALIASES.get(self.interval, self.interval)


CRON_ALIASES: Mapping[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

# Meltano accepts these but never runs them on a clock.
UNSCHEDULED_INTERVALS = ("@once", "@manual", "@none")


def select_rule_matches(rule: str, stream: str) -> bool:
    """Whether a Meltano select rule (``stream.property``, wildcards, ``!`` excludes) names ``stream``."""
    pattern = rule.removeprefix("!")
    stream_pattern, _, prop = pattern.partition(".")
    # A rule about properties only (``stream.prop``) selects the stream; ``stream.*`` likewise.
    return fnmatchcase(stream, stream_pattern) and (prop != "" or "." not in pattern)


def selected_streams(rules: tuple[str, ...], available: tuple[str, ...]) -> tuple[str, ...]:
    """The streams of ``available`` that Meltano's select rules select, in catalog order."""
    chosen: list[str] = []
    for stream in available:
        included = any(select_rule_matches(r, stream) for r in rules if not r.startswith("!"))
        # ``!stream.*`` excludes the stream; ``!stream.prop`` only drops a property.
        excluded = any(
            r.startswith("!") and r.endswith(".*") and select_rule_matches(r, stream) for r in rules
        )
        if included and not excluded:
            chosen.append(stream)
    return tuple(chosen)


def streams_named_by(rules: tuple[str, ...]) -> tuple[str, ...] | None:
    """Stream names spelled out by the select rules, or None when a wildcard hides them."""
    names: list[str] = []
    for rule in rules:
        if rule.startswith("!"):
            continue
        stream = rule.partition(".")[0]
        if any(ch in stream for ch in "*?["):
            return None
        if stream not in names:
            names.append(stream)
    return tuple(names)


@dataclass(frozen=True)
class PipelineDefinition:
    """An extract-load pipeline in one environment: its block chain and its selected streams.

    ``mappings`` are the mapping names of the chain in order; ``mappers`` the mapper plugin that
    defines each of them (one per mapping). ``destinations`` says where the loader puts each stream.
    """

    state_id: StateId
    extractor: Plugin
    loader: Plugin
    mappers: tuple[Plugin, ...] = ()
    streams: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()
    mappings: tuple[str, ...] = ()
    destinations: Mapping[str, StreamDestination] = field(default_factory=dict)

    @property
    def blocks(self) -> tuple[str, ...]:
        """The block names ``meltano run`` gets: extractor, mapping names, loader."""
        return (self.extractor.name, *self.mappings, self.loader.name)

    @property
    def id(self) -> str:
        """The pipeline id, which is Meltano's state id."""
        return str(self.state_id)


@dataclass(frozen=True)
class ProjectModel:
    """Everything read from meltano.yml for one environment."""

    root: str
    environment: str
    environments: tuple[str, ...]
    plugins: tuple[Plugin, ...]
    jobs: tuple[Job, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    state_backend_uri: str | None = None
    sources: Mapping[str, Source] = field(default_factory=dict)
    # Per plugin, where each of its select rules is written (same order as ``Plugin.select``).
    select_sources: Mapping[str, tuple[Source, ...]] = field(default_factory=dict)

    def select_rule_source(self, plugin: str, index: int) -> Source | None:
        """Where rule ``index`` of a plugin's select rules is written, if known."""
        rules = self.select_sources.get(plugin, ())
        return rules[index] if 0 <= index < len(rules) else None

    def plugin(self, name: str, kind: PluginType | None = None) -> Plugin:
        """The plugin called ``name`` (of ``kind`` when given); KeyError naming it otherwise."""
        for plugin in self.plugins:
            if plugin.name == name and (kind is None or plugin.type == kind):
                return plugin
        what = f"{kind.singular} " if kind else "plugin "
        raise KeyError(f"no {what}{name!r} in {self.root}/meltano.yml")

    def mapper_of(self, mapping: str) -> Plugin:
        """The mapper plugin that defines the mapping called ``mapping``; KeyError naming it otherwise."""
        for plugin in self.plugins:
            if plugin.type == PluginType.MAPPER and mapping in plugin.mappings:
                return plugin
        raise KeyError(f"no mapper in {self.root}/meltano.yml defines a mapping {mapping!r}")

    def plugins_of(self, kind: PluginType) -> tuple[Plugin, ...]:
        """All plugins of one type."""
        return tuple(p for p in self.plugins if p.type == kind)

    def job(self, name: str) -> Job:
        """The job called ``name``; KeyError naming it otherwise."""
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(f"no job {name!r} in {self.root}/meltano.yml")

    def extract_loads(self) -> tuple[ExtractLoad, ...]:
        """Every distinct extract-load chain named by a job or a legacy schedule, in file order.

        The project reader refuses two chains of one extractor and loader (one state id), so
        each pair appears once.
        """
        seen: dict[tuple[str, str], ExtractLoad] = {}
        for job in self.jobs:
            for task in job.tasks:
                for block in task.extract_loads:
                    seen.setdefault(block.pair, block)
        for schedule in self.schedules:
            if schedule.extract_load is not None:
                seen.setdefault(schedule.extract_load.pair, schedule.extract_load)
        return tuple(seen.values())
