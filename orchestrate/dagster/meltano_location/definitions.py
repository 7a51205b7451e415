"""The code location: every component under defs/ (here the Meltano project), loaded by dg."""

from __future__ import annotations

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    """Definitions of every component in the defs folder."""
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
