"""Streams per extractor, from the Singer catalog known without running ``meltano``.

Meltano writes the catalog it used to ``.meltano/run/<extractor>/tap.properties.json`` on every
run and discovery; ``flx-meltano catalog refresh`` runs discovery once and caches it under
``.meltano/flx/catalog/``. Whichever is newer is the known catalog. Building Dagster definitions
reads it; it never starts ``meltano``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from flx_meltano.domain.plugins import Plugin
from flx_meltano.domain.project import ProjectModel, Source, selected_streams, streams_named_by
from flx_meltano.domain.stream_schema import StreamSchema
from flx_meltano.integration.errors import IntegrationError, LaunchError
from flx_meltano.integration.meltano_cli import run_meltano
from flx_meltano.integration.singer_schema import stream_schema


class CatalogMissing(IntegrationError):
    """An extractor's streams are unknown until discovery has run once."""


@dataclass(frozen=True)
class Catalog:
    """A Singer catalog: its stream ids in order, each stream's entry, and the file it came from."""

    path: Path
    entries: Mapping[str, Mapping[str, Any]]

    @property
    def streams(self) -> tuple[str, ...]:
        """Every stream id of the catalog (selected or not), in catalog order."""
        return tuple(self.entries)

    @cached_property
    def schemas(self) -> Mapping[str, StreamSchema]:
        """Each stream's columns and keys (parsed once per file version: ``_read`` is cached)."""
        return {stream: schema for stream, entry in self.entries.items() if (schema := stream_schema(entry))}


@dataclass(frozen=True)
class UnmatchedRule:
    """A select rule that names no stream of the extractor's known catalog."""

    extractor: str
    rule: str
    source: Source | None
    catalog: Catalog

    def __str__(self) -> str:
        where = f" ({self.source})" if self.source else ""
        shown = ", ".join(self.catalog.streams[:10]) + (", ..." if len(self.catalog.streams) > 10 else "")
        return (
            f"select rule {self.rule!r} of {self.extractor}{where} matches no stream of its catalog "
            f"({self.catalog.path.name}); its streams: {shown or 'none'}"
        )


@dataclass(frozen=True)
class StreamSelection:
    """The streams an extractor's select rules choose, and the rules that choose nothing."""

    streams: tuple[str, ...]
    unmatched: tuple[UnmatchedRule, ...] = field(default=())


def meltano_catalog_path(project_root: Path | str, extractor: str) -> Path:
    """Where Meltano keeps the catalog of its last run or discovery of ``extractor``."""
    return Path(project_root) / ".meltano" / "run" / extractor / "tap.properties.json"


def cache_path(project_root: Path | str, extractor: str) -> Path:
    """Where ``flx-meltano catalog refresh`` caches the discovered catalog of ``extractor``."""
    return Path(project_root) / ".meltano" / "flx" / "catalog" / f"{extractor}.json"


def _entries(streams: Any) -> dict[str, Mapping[str, Any]]:
    entries: dict[str, Mapping[str, Any]] = {}
    for entry in streams if isinstance(streams, list) else []:
        if isinstance(entry, Mapping) and (entry.get("tap_stream_id") or entry.get("stream")):
            entries[str(entry.get("tap_stream_id") or entry["stream"])] = entry
        elif isinstance(entry, str):  # flx's cache before it kept whole catalogs
            entries[entry] = {"tap_stream_id": entry}
    return entries


@lru_cache(maxsize=256)
def _read(path: Path, mtime_ns: int) -> Catalog | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # half-written or foreign: as if unknown
    if not isinstance(data, Mapping):
        return None
    streams = data["catalog"].get("streams") if isinstance(data.get("catalog"), Mapping) else None
    entries = _entries(streams if streams is not None else data.get("streams"))
    return Catalog(path, entries) if entries else None


def known_catalog(project_root: Path | str, extractor: str) -> Catalog | None:
    """The newer of Meltano's cached catalog and flx's, or None if neither exists (read once per
    file version in a process)."""
    found: list[tuple[int, Path]] = []
    for path in (meltano_catalog_path(project_root, extractor), cache_path(project_root, extractor)):
        try:
            found.append((path.stat().st_mtime_ns, path))
        except OSError:
            continue
    for mtime, path in sorted(found, reverse=True):
        catalog = _read(path, mtime)
        if catalog is not None:
            return catalog
    return None


def run_catalog(project_root: Path | str, extractor: str) -> Catalog | None:
    """The catalog Meltano gave ``extractor`` in its latest run (it writes it before the tap starts:
    discovered again when the tap's settings changed, with the selection applied), or None."""
    path = meltano_catalog_path(project_root, extractor)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    return _read(path, mtime)


def discovered_streams(project_root: Path | str, extractor: str) -> tuple[str, ...] | None:
    """Stream ids of the known catalog, or None if it is not known."""
    catalog = known_catalog(project_root, extractor)
    return catalog.streams if catalog else None


def unmatched_rules(project: ProjectModel, extractor: Plugin, catalog: Catalog) -> tuple[UnmatchedRule, ...]:
    """The select rules of ``extractor`` whose stream part matches no stream of ``catalog``."""
    unmatched: list[UnmatchedRule] = []
    for index, rule in enumerate(extractor.select):
        stream_pattern = rule.removeprefix("!").partition(".")[0]
        if not any(fnmatchcase(stream, stream_pattern) for stream in catalog.streams):
            source = project.select_rule_source(extractor.name, index)
            unmatched.append(UnmatchedRule(extractor.name, rule, source, catalog))
    return tuple(unmatched)


def select_streams(project: ProjectModel, extractor: Plugin) -> StreamSelection:
    """The streams ``extractor``'s select rules choose; CatalogMissing if discovery is needed.

    With a known catalog, streams it lacks are left out (and their rules reported unmatched);
    without one, streams named outright by the rules are taken as they are written.
    """
    catalog = known_catalog(project.root, extractor.name)
    named = streams_named_by(extractor.select) if extractor.select else None
    if catalog is None:
        if named:
            return StreamSelection(named)
        raise CatalogMissing(
            f"the streams of {extractor.name} are not known: its select rules use wildcards "
            f"(or are absent); run 'flx-meltano catalog refresh {extractor.name}' once"
        )
    unmatched = unmatched_rules(project, extractor, catalog)
    if named:
        return StreamSelection(tuple(s for s in named if s in catalog.entries), unmatched)
    return StreamSelection(selected_streams(extractor.select or ("*.*",), catalog.streams), unmatched)


def streams_for(project: ProjectModel, extractor: Plugin) -> tuple[str, ...]:
    """The streams of ``extractor`` its select rules choose; CatalogMissing if discovery is needed."""
    return select_streams(project, extractor).streams


def refresh(
    project_root: Path | str,
    extractor: str,
    *,
    environment: str | None = None,
    meltano_executable: str = "meltano",
) -> tuple[str, ...]:
    """Run discovery through Meltano once and cache the catalog (all streams, before selection)."""
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
    tmp.write_text(json.dumps({"extractor": extractor, "streams": list(streams), "catalog": catalog}))
    tmp.replace(path)
    return streams
