"""Streams per extractor: from explicit select rules, or from a cached ``meltano`` discovery.

Building Dagster definitions must not start ``meltano``: discovery runs once (``flx-meltano
catalog refresh``) and its stream list is cached under ``.meltano/flx/catalog/``.
"""

from __future__ import annotations

import json
from pathlib import Path

from flx_meltano.domain.plugins import Plugin
from flx_meltano.domain.project import ProjectModel, selected_streams, streams_named_by
from flx_meltano.integration.errors import IntegrationError, LaunchError
from flx_meltano.integration.meltano_cli import run_meltano


class CatalogMissing(IntegrationError):
    """An extractor's streams are unknown until discovery has run once."""


def cache_path(project_root: Path | str, extractor: str) -> Path:
    """Where the discovered stream names of ``extractor`` are cached."""
    return Path(project_root) / ".meltano" / "flx" / "catalog" / f"{extractor}.json"


def discovered_streams(project_root: Path | str, extractor: str) -> tuple[str, ...] | None:
    """Stream names from the discovery cache, or None if discovery never ran."""
    path = cache_path(project_root, extractor)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return tuple(data["streams"])


def streams_for(project: ProjectModel, extractor: Plugin) -> tuple[str, ...]:
    """The streams of ``extractor`` its select rules choose; CatalogMissing if discovery is needed."""
    named = streams_named_by(extractor.select) if extractor.select else None
    if named:
        return named
    available = discovered_streams(project.root, extractor.name)
    if available is None:
        raise CatalogMissing(
            f"the streams of {extractor.name} are not known: its select rules use wildcards "
            f"(or are absent); run 'flx-meltano catalog refresh {extractor.name}' once"
        )
    rules = extractor.select or ("*.*",)
    return selected_streams(rules, available)


def refresh(
    project_root: Path | str,
    extractor: str,
    *,
    environment: str | None = None,
    meltano_executable: str = "meltano",
) -> tuple[str, ...]:
    """Run discovery through Meltano once and cache the stream names (all, before selection)."""
    args = [f"--environment={environment}"] if environment else []
    try:
        output = run_meltano(
            meltano_executable, [*args, "invoke", "--dump=catalog", extractor], project_root, timeout=600
        )
    except LaunchError as exc:
        raise IntegrationError(f"discovery of {extractor} failed: {exc}") from exc
    try:
        catalog = json.loads(output)
        streams = tuple(
            str(entry.get("tap_stream_id") or entry["stream"]) for entry in catalog.get("streams", [])
        )
    except (ValueError, KeyError, AttributeError) as exc:
        raise IntegrationError(f"discovery of {extractor} did not print a Singer catalog: {exc}") from exc
    path = cache_path(project_root, extractor)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"extractor": extractor, "streams": list(streams)}, indent=2))
    tmp.replace(path)
    return streams
