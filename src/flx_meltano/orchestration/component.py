"""MeltanoProjectComponent: a Meltano project as a Dagster component (``defs.yaml``, loaded by ``dg``).

    type: flx_meltano.MeltanoProjectComponent
    attributes:
      project_dir: "{{ context.project_root }}/../.."
      environment: prod
      pipelines: {include: ["tap-shopsim-*"], exclude: ["*-to-target-jsonlines"]}
      translation:
        group_name: "{{ pipeline.extractor.name | replace('-', '_') }}"
        tags: {team: data}
      resource: {timeout_seconds: 3600}

It builds what ``build_definitions`` builds, with the same builder.
"""

# No ``from __future__ import annotations``: Dagster derives the defs.yaml schema from the real
# field types of these dataclasses.

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from dagster import (
    AssetSpec,
    Component,
    ComponentLoadContext,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    ResolutionContext,
    Resolvable,
    Resolver,
    Scaffolder,
    ScaffoldRequest,
    scaffold_component,
    scaffold_with,
)
from dagster.components.utils.translation import (
    ComponentTranslator,
    TranslationFn,
    TranslationFnResolver,
    create_component_translator_cls,
)
from pydantic import BaseModel

from flx_meltano.orchestration.builder import LocationOptions, PipelineFilter, ResourceOptions, build_location
from flx_meltano.orchestration.checks import CheckOptions
from flx_meltano.orchestration.dbt_options import DbtOptions
from flx_meltano.orchestration.translator import DagsterMeltanoTranslator, MeltanoStream
from flx_meltano.settings import find_project_dir

Status = Literal["RUNNING", "STOPPED"]


def _resolve_path(context: ResolutionContext, value: str) -> Path:
    """A path attribute: templates resolved, relative paths from the directory of the defs.yaml."""
    return context.resolve_source_relative_path(context.resolve_value(value, as_type=str))


def _resolve_optional_path(context: ResolutionContext, value: str | None) -> Path | None:
    return None if value is None else _resolve_path(context, value)


ResolvedPath = Annotated[Path, Resolver(_resolve_path, model_field_type=str)]
OptionalPath = Annotated[Path | None, Resolver(_resolve_optional_path, model_field_type=str | None)]


@dataclass
class PipelineSelection(Resolvable):
    """Which pipelines become assets: glob patterns on the id (``dev:tap-a-to-target-b``) or name."""

    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)


@dataclass
class ResourceSettings(Resolvable):
    """Settings of the ``meltano`` resource; unset ones fall back to the FLX_* variables."""

    meltano_executable: str | None = None
    database_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    timeout_seconds: float | None = None
    full_refresh: bool = False
    state_strategy: Literal["auto", "merge", "overwrite"] | None = None


@dataclass
class DbtSettings(Resolvable):
    """The dbt utility's project as assets (see DbtOptions); ``enabled: false`` keeps dbt commands opaque."""

    enabled: bool = True
    utility: str | None = None
    project_dir: OptionalPath = None
    profiles_dir: OptionalPath = None
    executable: str | None = None
    group_name: str | None = None
    select: str = "fqn:*"
    exclude: str = ""


@dataclass
class ScheduleSettings(Resolvable):
    """Schedules built from Meltano ``schedules:``."""

    execution_timezone: str = "UTC"
    default_status: Status = "STOPPED"


@dataclass
class SensorSettings(Resolvable):
    """The stale-pipeline and crash-reconciler sensors."""

    stale_pipelines: Status = "STOPPED"
    crash_reconciler: Status = "RUNNING"
    default_freshness_hours: float | None = None


@dataclass
class CheckSettings(Resolvable):
    """The asset checks of every stream (see flx_meltano.orchestration.CheckOptions)."""

    enabled: bool = True
    schema_drift: bool = True
    schema_drift_severity: Literal["WARN", "ERROR"] = "WARN"
    bookmark_regression: bool = True
    row_count_history: int = 3


def _status(value: str, attribute: str) -> str:
    """A schedule or sensor status; templates bypass the schema's enum, so check it here too."""
    if value not in ("RUNNING", "STOPPED"):
        raise ValueError(
            f"MeltanoProjectComponent attribute {attribute}: {value!r} is not RUNNING or STOPPED"
        )
    return value


def _stream_scope(stream: MeltanoStream) -> Mapping[str, Any]:
    """Template variables of ``translation``: the stream and its pipeline (``spec`` is added too)."""
    return {"stream": stream, "pipeline": stream.pipeline}


class MeltanoScaffoldParams(BaseModel):
    """``dg scaffold defs flx_meltano.MeltanoProjectComponent <path> --project-path <meltano project>``."""

    project_path: str | None = None


class MeltanoProjectScaffolder(Scaffolder[MeltanoScaffoldParams]):
    """Writes a defs.yaml pointing at the Meltano project (given, else the nearest meltano.yml above)."""

    @classmethod
    def get_scaffold_params(cls) -> type[MeltanoScaffoldParams]:
        return MeltanoScaffoldParams

    def scaffold(self, request: ScaffoldRequest[MeltanoScaffoldParams]) -> None:
        project_root = (request.project_root or Path.cwd()).resolve()
        given = request.params.project_path
        meltano = Path(given).resolve() if given else find_project_dir(project_root)
        if not (meltano / "meltano.yml").is_file():
            raise ValueError(
                f"no meltano.yml in {meltano}"
                + ("" if given else " or above it")
                + ": pass --project-path <the Meltano project directory>"
            )
        if given and Path(given).is_absolute():
            project_dir = given
        else:  # relative to the dg project, so the pair can move together
            relative = Path(os.path.relpath(meltano, project_root)).as_posix()
            project_dir = f"{{{{ context.project_root }}}}/{relative}"
        scaffold_component(request, {"project_dir": project_dir})


@scaffold_with(MeltanoProjectScaffolder)
@dataclass
class MeltanoProjectComponent(Component, Resolvable):
    """A Meltano project as Dagster assets (one per stream), jobs, schedules, sensors and dbt models.

    Scaffold it with ``dg scaffold defs flx_meltano.MeltanoProjectComponent <path>``. Loading
    reads meltano.yml, the stream catalog and the dbt manifest: it starts no ``meltano``.

    Attributes:
        project_dir: the Meltano project (relative to this defs.yaml).
        environment: the Meltano environment (default: FLX_ENVIRONMENT, else default_environment).
        pipelines: which pipelines become assets (``include``/``exclude`` globs).
        translation: asset attributes per stream (key, key_prefix, group_name, tags, owners, kinds,
            metadata, description...), templated with ``stream``, ``pipeline`` and ``spec``.
        resource: settings of the ``meltano`` resource.
        dbt: where the dbt utility's project is and which dbt runs it.
        schedules: timezone and default status of the schedules.
        sensors: default status of the sensors, and a default freshness.
        checks: the asset checks of every stream (schema drift, bookmark regression, row count).
    """

    project_dir: ResolvedPath
    environment: str | None = None
    pipelines: PipelineSelection = field(default_factory=PipelineSelection)
    translation: (
        Annotated[
            TranslationFn[MeltanoStream],
            TranslationFnResolver(template_vars_for_translation_fn=_stream_scope),
        ]
        | None
    ) = None
    resource: ResourceSettings = field(default_factory=ResourceSettings)
    dbt: DbtSettings = field(default_factory=DbtSettings)
    schedules: ScheduleSettings = field(default_factory=ScheduleSettings)
    sensors: SensorSettings = field(default_factory=SensorSettings)
    checks: CheckSettings = field(default_factory=CheckSettings)

    @cached_property
    def _base_translator(self) -> DagsterMeltanoTranslator:
        return DagsterMeltanoTranslator()

    def get_asset_spec(self, stream: MeltanoStream) -> AssetSpec:
        """The spec of one stream before ``translation``; override in a subclass to change it."""
        return self._base_translator.get_asset_spec(stream)

    def location_options(self) -> LocationOptions:
        """The builder's options from these attributes."""
        dbt = self.dbt
        return LocationOptions(
            project_dir=self.project_dir,
            environment=self.environment,
            pipelines=PipelineFilter(tuple(self.pipelines.include), tuple(self.pipelines.exclude)),
            translator=MeltanoComponentTranslator(self),
            resource=ResourceOptions(
                meltano_executable=self.resource.meltano_executable,
                database_url=self.resource.database_url,
                # Templates render "5" as 5: environment values are strings again here.
                env={str(k): str(v) for k, v in self.resource.env.items()},
                timeout_seconds=self.resource.timeout_seconds,
                full_refresh=self.resource.full_refresh,
                state_strategy=self.resource.state_strategy,
            ),
            dbt=DbtOptions(
                utility=dbt.utility,
                project_dir=dbt.project_dir,
                profiles_dir=dbt.profiles_dir,
                executable=dbt.executable,
                group_name=dbt.group_name,
                select=dbt.select,
                exclude=dbt.exclude,
            )
            if dbt.enabled
            else None,
            checks=CheckOptions(
                schema_drift=self.checks.schema_drift,
                schema_drift_severity=self.checks.schema_drift_severity,
                bookmark_regression=self.checks.bookmark_regression,
                row_count_history=self.checks.row_count_history,
            )
            if self.checks.enabled
            else None,
            execution_timezone=self.schedules.execution_timezone,
            default_schedule_status=DefaultScheduleStatus(
                _status(self.schedules.default_status, "schedules.default_status")
            ),
            default_freshness_hours=self.sensors.default_freshness_hours,
            stale_sensor_status=DefaultSensorStatus(
                _status(self.sensors.stale_pipelines, "sensors.stale_pipelines")
            ),
            crash_sensor_status=DefaultSensorStatus(
                _status(self.sensors.crash_reconciler, "sensors.crash_reconciler")
            ),
        )

    def build_defs(self, context: ComponentLoadContext) -> Definitions:
        """Everything ``build_definitions`` would build for the same options."""
        return build_location(self.location_options())


class MeltanoComponentTranslator(
    create_component_translator_cls(MeltanoProjectComponent, DagsterMeltanoTranslator),  # type: ignore[misc]
    ComponentTranslator[MeltanoProjectComponent],
):
    """The component's ``get_asset_spec`` (a subclass may override it), then its ``translation``."""

    def __init__(self, component: MeltanoProjectComponent) -> None:
        self._component = component

    def get_asset_spec(self, stream: MeltanoStream) -> AssetSpec:
        spec: AssetSpec = super().get_asset_spec(stream)
        if self._component.translation is not None:
            spec = self._component.translation(spec, stream)
        return spec
