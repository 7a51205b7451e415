"""flx-meltano: any Meltano project as a Dagster code location, with its run record in PostgreSQL."""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("flx-meltano")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

# Resolved lazily, so ``import flx_meltano`` stays cheap (no meltano, sqlalchemy or dagster).
_EXPORTS = {
    "run": "flx_meltano.api",
    "pipelines": "flx_meltano.api",
    "executions": "flx_meltano.api",
    "execution": "flx_meltano.api",
    "metrics": "flx_meltano.api",
    "plugins": "flx_meltano.api",
    "plugin_config": "flx_meltano.api",
    "cancel": "flx_meltano.api",
    "reconcile": "flx_meltano.api",
    "doctor": "flx_meltano.api",
    "logs": "flx_meltano.api",
    "follow_logs": "flx_meltano.api",
    "prune_logs": "flx_meltano.api",
    "RunOptions": "flx_meltano.application.run",
    # Every error a user can cause is an FlxError; UsageError when the call itself was wrong.
    "FlxError": "flx_meltano.errors",
    "UsageError": "flx_meltano.errors",
    "Settings": "flx_meltano.settings",
    "build_definitions": "flx_meltano.orchestration",
    # The dg component (``type: flx_meltano.MeltanoProjectComponent`` in defs.yaml).
    "MeltanoProjectComponent": "flx_meltano.orchestration.component",
    # The whole state API is the ``state`` module (``flx_meltano.state.diff``, ``.export``, ...);
    # only its headline operations are here too: ``flx_meltano.get`` or ``.copy`` would be unclear.
    "state": "flx_meltano.state",
    "backup": "flx_meltano.state",
    "restore": "flx_meltano.state",
    "restore_previous": "flx_meltano.state",
}

__all__ = ["__version__", *_EXPORTS]


def __dir__() -> list[str]:
    # dg finds components by listing this module (the registry module of our entry point).
    return sorted({*globals(), *_EXPORTS})


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flx_meltano' has no attribute {name!r}")
    loaded = import_module(module)
    return loaded if name == "state" else getattr(loaded, name)
