"""Meltano plugins as the domain sees them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from flx_meltano.domain.partitions import PartitionScheme


class PluginType(StrEnum):
    """Meltano's plugin types (the keys under ``plugins:`` in meltano.yml)."""

    EXTRACTOR = "extractors"
    LOADER = "loaders"
    MAPPER = "mappers"
    TRANSFORMER = "transformers"
    UTILITY = "utilities"
    ORCHESTRATOR = "orchestrators"
    TRANSFORM = "transforms"
    FILE = "files"

    @property
    def singular(self) -> str:
        """``extractor`` for ``extractors`` and so on."""
        return "utility" if self is PluginType.UTILITY else self.value.removesuffix("s")


@dataclass(frozen=True)
class Setting:
    """One declared plugin setting; ``secret`` ones never leave the plugin's process."""

    name: str
    kind: str = "string"
    secret: bool = False
    env: str | None = None


@dataclass(frozen=True)
class Plugin:
    """A Meltano plugin: what it is, where it comes from, and how it is configured."""

    name: str
    type: PluginType
    namespace: str | None = None
    variant: str | None = None
    pip_url: str | None = None
    executable: str | None = None
    inherit_from: str | None = None
    capabilities: tuple[str, ...] = ()
    settings: tuple[Setting, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    select: tuple[str, ...] = ()
    extras: Mapping[str, Any] = field(default_factory=dict)
    mappings: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    partitions: PartitionScheme | None = None  # meta.dagster.partitions of an extractor

    @property
    def is_custom(self) -> bool:
        """True when Meltano can use the definition without Meltano Hub (it has a namespace)."""
        return bool(self.namespace)

    @property
    def secret_setting_names(self) -> frozenset[str]:
        """Names of settings declared secret (``sensitive: true`` or ``kind: password``)."""
        return frozenset(s.name for s in self.settings if s.secret)

    @property
    def load_schema(self) -> str:
        """Meltano's ``load_schema`` extra, defaulting to the namespace (then the name)."""
        schema = self.extras.get("load_schema")
        if isinstance(schema, str) and schema:
            return schema
        return self.namespace or self.name.replace("-", "_")
