"""Refresh the cached stream catalogs of extractors."""

from __future__ import annotations

from collections.abc import Sequence

from flx_meltano.application.context import AppContext
from flx_meltano.application.queries import UnknownPlugin
from flx_meltano.domain.plugins import PluginType
from flx_meltano.errors import choices
from flx_meltano.integration import catalog


def refresh_catalog(ctx: AppContext, extractors: Sequence[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Discover each extractor's streams through meltano once and cache them.

    An unknown extractor is refused (UnknownPlugin) before meltano starts.
    """
    known = [p.name for p in ctx.project.plugins_of(PluginType.EXTRACTOR)]
    for name in extractors or ():
        if name not in known:
            raise UnknownPlugin(
                f"no extractor {name!r} in {ctx.project.root}/meltano.yml; extractors: {choices(known)}"
            )
    names = extractors or known
    return {
        name: catalog.refresh(
            ctx.settings.project_dir,
            name,
            environment=ctx.environment,
            meltano_executable=ctx.settings.meltano_executable,
        )
        for name in names
    }
