"""What ``flx-meltano --version`` prints: flx-meltano's, Meltano's and Dagster's versions (no imports)."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version


def _version_of(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def version_text() -> str:
    """One line per component, read from installed package metadata only."""
    return "\n".join(
        [
            f"flx-meltano {_version_of('flx-meltano')}",
            f"meltano {_version_of('meltano')}",
            f"dagster {_version_of('dagster')}",
            f"python {platform.python_version()}",
        ]
    )
