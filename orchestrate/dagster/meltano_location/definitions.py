"""The code location: every component under defs/ (here the Meltano project), loaded by dg."""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    """Definitions of every component in the defs folder."""
    # The dg project's root must be importable however this file is loaded: ``dg dev`` puts it on
    # sys.path, ``dagster dev -f`` and ``dagster code-server start -f`` do not (and Dagster resets
    # sys.path after importing this file, so it is added here, when the definitions are built).
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
