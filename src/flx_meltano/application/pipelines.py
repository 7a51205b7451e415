"""Resolve what to run: every pipeline of the project, and a job, state id or pair into steps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flx_meltano.domain.pipeline import Pipeline
from flx_meltano.domain.plugins import PluginType
from flx_meltano.domain.project import Command, ExtractLoad, PipelineDefinition, ProjectModel
from flx_meltano.domain.stream_schema import StreamSchema
from flx_meltano.errors import UsageError, choices
from flx_meltano.integration.catalog import (
    UnmatchedRule,
    known_catalog,
    run_catalog,
    streams_for,
    unmatched_rules,
)
from flx_meltano.integration.destinations import destination_of


class UnknownTarget(UsageError, LookupError):
    """Nothing in meltano.yml is called that."""


def definition_for(
    project: ProjectModel, block: ExtractLoad, environment: str, env: Mapping[str, str] | None = None
) -> PipelineDefinition:
    """The pipeline of one extract-load block, with the streams its select rules choose.

    ``env``: the environment meltano will run with (where the loader writes may depend on it).
    """
    extractor = project.plugin(block.extractor, PluginType.EXTRACTOR)
    loader = project.plugin(block.loader, PluginType.LOADER)
    mappers = tuple(project.mapper_of(mapping) for mapping in block.mappings)
    jobs = tuple(
        dict.fromkeys(
            job.name for job in project.jobs for task in job.tasks for b in task.extract_loads if b == block
        )
    )
    streams = streams_for(project, extractor)
    return PipelineDefinition(
        state_id=block.state_id(environment),
        extractor=extractor,
        loader=loader,
        mappers=mappers,
        streams=streams,
        jobs=jobs,
        mappings=block.mappings,
        destinations={stream: destination_of(loader, stream, project.root, env) for stream in streams},
    )


def all_pipelines(
    project: ProjectModel, environment: str | None = None, env: Mapping[str, str] | None = None
) -> list[PipelineDefinition]:
    """Every extract-load pipeline named by a job or schedule, in file order."""
    chosen = environment or project.environment
    return [definition_for(project, block, chosen, env) for block in project.extract_loads()]


def unmatched_select_rules(project: ProjectModel) -> list[UnmatchedRule]:
    """Select rules naming no stream of their extractor's known catalog (typos, renamed streams)."""
    found: list[UnmatchedRule] = []
    for extractor in project.plugins_of(PluginType.EXTRACTOR):
        known = known_catalog(project.root, extractor.name) if extractor.select else None
        if known is not None:
            found.extend(unmatched_rules(project, extractor, known))
    return found


def stream_schemas(project: ProjectModel, extractor: str) -> Mapping[str, StreamSchema]:
    """Each stream's columns from the extractor's known catalog (empty when it is not known).

    Read once per version of the catalog file in a process: a new discovery or run shows up at
    the next load of the definitions, and no ``meltano`` is started for it.
    """
    catalog = known_catalog(project.root, extractor)
    return catalog.schemas if catalog is not None else {}


def run_stream_schemas(project: ProjectModel, extractor: str) -> Mapping[str, StreamSchema]:
    """Each stream's columns as Meltano gave them to the extractor in its latest (or current) run:
    the schemas its SCHEMA messages carry (a Singer SDK tap writes them from that catalog)."""
    catalog = run_catalog(project.root, extractor)
    return catalog.schemas if catalog is not None else {}


def aggregate(definition: PipelineDefinition) -> Pipeline:
    """A fresh Pipeline aggregate for a definition (the repository adds its active executions)."""
    return Pipeline(
        state_id=definition.state_id,
        extractor=definition.extractor.name,
        loader=definition.loader.name,
        mappings=definition.mappings,
        streams=definition.streams,
    )


@dataclass(frozen=True)
class Step:
    """One thing to run: an extract-load pipeline, or a command block such as ``dbt-postgres:run``."""

    pipeline: PipelineDefinition | None = None
    command: Command | None = None

    def __str__(self) -> str:
        if self.pipeline is not None:
            return self.pipeline.id
        return str(self.command)


def resolve(project: ProjectModel, target: str, environment: str | None = None) -> list[Step]:
    """A job name, a pipeline (state id, ``tap-to-target`` or ``tap target``) as steps to run."""
    env = environment or project.environment
    names = {job.name for job in project.jobs}
    if target in names:
        steps: list[Step] = []
        for task in project.job(target).tasks:
            for block in task.blocks:
                if isinstance(block, ExtractLoad):
                    steps.append(Step(pipeline=definition_for(project, block, env)))
                else:
                    steps.append(Step(command=block))
        return steps
    configured = all_pipelines(project, env)
    for definition in configured:
        short = f"{definition.extractor.name}-to-{definition.loader.name}"
        if target in (definition.id, short, " ".join(definition.blocks)):
            return [Step(pipeline=definition)]
    parts = target.split()
    if len(parts) >= 2:
        block = ExtractLoad(parts[0], parts[-1], tuple(parts[1:-1]))
        for definition in configured:
            if (definition.extractor.name, definition.loader.name) == block.pair:
                # One state id, another chain: it would read and write the configured chain's state.
                raise UnknownTarget(
                    f"{target!r} is not how meltano.yml runs {definition.id}: its chain is "
                    f"{' '.join(definition.blocks)!r} (in {', '.join(definition.jobs) or 'a schedule'})"
                )
        try:
            return [Step(pipeline=definition_for(project, block, env))]
        except KeyError:
            pass
    raise UnknownTarget(_unknown_target(project, target, env, sorted(names)))


def _unknown_target(project: ProjectModel, target: str, env: str, jobs: list[str]) -> str:
    """Why ``target`` names nothing, and what does exist (another environment's pipeline: say so)."""
    pipelines = [d.id for d in all_pipelines(project, env)]
    prefix, colon, rest = target.partition(":")
    if colon and prefix != env:
        if prefix in project.environments:
            if f"{env}:{rest}" in pipelines:
                return (
                    f"pipeline {target!r} is of environment {prefix!r}, but the active environment is "
                    f"{env!r}: run it with '-e {prefix}' (or FLX_ENVIRONMENT={prefix})"
                )
        elif not any(ch in target for ch in " /"):
            return (
                f"no environment {prefix!r} in meltano.yml, so no pipeline {target!r}; "
                f"environments: {choices(project.environments)}"
            )
    return (
        f"no job or pipeline {target!r} in meltano.yml (environment {env}); "
        f"jobs: {choices(jobs)}; pipelines: {choices(pipelines)}"
    )
