"""A Dagster code location for the Meltano project at FLX_PROJECT_DIR (else the nearest meltano.yml).

For projects without a definitions.py of their own: ``dagster dev -m flx_meltano.code_location``
or ``dagster code-server start -m flx_meltano.code_location`` (what ``flx-meltano ui`` runs then).
"""

from __future__ import annotations

from flx_meltano.orchestration import build_definitions

defs = build_definitions()
