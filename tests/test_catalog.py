"""Stream catalogs: explicit select rules need no discovery; wildcards use a cached discovery."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from flx_meltano.domain.plugins import Plugin, PluginType
from flx_meltano.domain.project import ProjectModel, Source
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


def _meltano_catalog(root: Path, extractor: str, *stream_ids: str) -> Path:
    """Write the catalog Meltano caches after a run or discovery of ``extractor``."""
    path = catalog.meltano_catalog_path(root, extractor)
    path.parent.mkdir(parents=True)
    streams = [{"tap_stream_id": s, "stream": s.split("-")[-1], "schema": {}} for s in stream_ids]
    path.write_text(json.dumps({"streams": streams}))
    return path


def test_meltanos_cached_catalog_is_known_without_running_meltano(tmp_path):
    _meltano_catalog(tmp_path, "tap-shopsim", "customers", "orders")
    project, tap = _project(tmp_path, ("*.*",))
    assert catalog.streams_for(project, tap) == ("customers", "orders")
    known = catalog.known_catalog(tmp_path, "tap-shopsim")
    assert known is not None
    assert known.path.name == "tap.properties.json"


def test_a_named_stream_the_known_catalog_lacks_is_left_out_and_its_rule_reported(tmp_path):
    _meltano_catalog(tmp_path, "tap-postgres", "public-events", "public-customers")
    tap = Plugin(
        name="tap-postgres",
        type=PluginType.EXTRACTOR,
        namespace="tap_postgres",
        select=("public-eventz.*", "public-customers.*", "!public-nope.*"),
    )
    rules = (Source("meltano.yml", 12), Source("meltano.yml", 13), Source("meltano.yml", 14))
    project = ProjectModel(
        root=str(tmp_path),
        environment="dev",
        environments=("dev",),
        plugins=(tap,),
        select_sources={"tap-postgres": rules},
    )
    selection = catalog.select_streams(project, tap)
    assert selection.streams == ("public-customers",)
    assert [(u.rule, u.source) for u in selection.unmatched] == [
        ("public-eventz.*", Source("meltano.yml", 12)),
        ("!public-nope.*", Source("meltano.yml", 14)),
    ]
    text = str(selection.unmatched[0])
    assert "'public-eventz.*' of tap-postgres (meltano.yml:12)" in text
    assert "public-events, public-customers" in text


def test_the_newer_of_meltanos_and_flxs_catalog_wins(tmp_path):
    old = _meltano_catalog(tmp_path, "tap-shopsim", "customers")
    os.utime(old, (1_000_000, 1_000_000))
    cache = catalog.cache_path(tmp_path, "tap-shopsim")
    cache.parent.mkdir(parents=True)
    cache.write_text('{"extractor": "tap-shopsim", "streams": ["customers", "orders"]}')
    assert catalog.discovered_streams(tmp_path, "tap-shopsim") == ("customers", "orders")


def test_a_half_written_catalog_counts_as_unknown(tmp_path):
    path = _meltano_catalog(tmp_path, "tap-shopsim", "customers")
    path.write_text('{"streams": [{"tap_stream_id": "cust')
    assert catalog.known_catalog(tmp_path, "tap-shopsim") is None
