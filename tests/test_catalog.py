"""Stream catalogs: explicit select rules need no discovery; wildcards use a cached discovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from flx_meltano.domain.plugins import Plugin, PluginType
from flx_meltano.domain.project import ProjectModel
from flx_meltano.integration import catalog

REPO = Path(__file__).resolve().parents[1]


def _project(root: Path, select: tuple[str, ...]) -> tuple[ProjectModel, Plugin]:
    tap = Plugin(name="tap-shopsim", type=PluginType.EXTRACTOR, namespace="tap_shopsim", select=select)
    return ProjectModel(root=str(root), environment="dev", environments=("dev",), plugins=(tap,)), tap


def test_explicit_select_rules_need_no_discovery(tmp_path):
    project, tap = _project(tmp_path, ("orders.*", "customers.id", "!customers.email"))
    assert catalog.streams_for(project, tap) == ("orders", "customers")


def test_wildcards_without_a_cached_discovery_say_how_to_fix_it(tmp_path):
    project, tap = _project(tmp_path, ("*.*",))
    with pytest.raises(catalog.CatalogMissing, match="flx-meltano catalog refresh tap-shopsim"):
        catalog.streams_for(project, tap)


@pytest.mark.slow
def test_refresh_discovers_through_meltano_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("MELTANO_DATABASE_URI", f"sqlite:///{tmp_path / 'meltano.db'}")
    cache = catalog.cache_path(REPO, "tap-shopsim")
    saved = cache.read_text() if cache.exists() else None
    try:
        streams = catalog.refresh(REPO, "tap-shopsim", meltano_executable=str(REPO / ".venv/bin/meltano"))
        assert set(streams) == {"customers", "products", "orders", "order_items"}
        assert catalog.discovered_streams(REPO, "tap-shopsim") == streams
        project, tap = _project(REPO, ("*.*", "!products.*"))
        assert set(catalog.streams_for(project, tap)) == {"customers", "orders", "order_items"}
    finally:
        if saved is None:
            cache.unlink(missing_ok=True)
        else:
            cache.write_text(saved)
