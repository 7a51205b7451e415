"""The Dagster code location of this Meltano project (written by ``flx-meltano init``)."""

from __future__ import annotations

from pathlib import Path

from flx_meltano.orchestration import build_definitions

defs = build_definitions(project_dir=Path(__file__).resolve().parents[2])
