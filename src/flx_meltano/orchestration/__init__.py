"""Orchestration: the Dagster code location (translator, resource, assets, jobs, schedules, sensors)."""

from __future__ import annotations

from flx_meltano.orchestration.assets import meltano_command_asset, meltano_pipeline_assets
from flx_meltano.orchestration.checks import CheckOptions
from flx_meltano.orchestration.definitions import build_definitions
from flx_meltano.orchestration.resource import MeltanoResource, MeltanoRunConfig
from flx_meltano.orchestration.schedules import build_jobs, build_schedules
from flx_meltano.orchestration.sensors import build_crash_reconciler_sensor, build_stale_pipeline_sensor
from flx_meltano.orchestration.translator import DagsterMeltanoTranslator, MeltanoStream

__all__ = [
    "CheckOptions",
    "DagsterMeltanoTranslator",
    "MeltanoResource",
    "MeltanoRunConfig",
    "MeltanoStream",
    "build_crash_reconciler_sensor",
    "build_definitions",
    "build_jobs",
    "build_schedules",
    "build_stale_pipeline_sensor",
    "meltano_command_asset",
    "meltano_pipeline_assets",
]
