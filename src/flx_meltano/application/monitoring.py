"""Monitoring: the store's figures per pipeline and stream, for the Prometheus exporter."""

from __future__ import annotations

from flx_meltano.application.context import AppContext
from flx_meltano.persistence import database
from flx_meltano.persistence.metrics_repository import StoreFigures, read_figures

# Upper bounds (seconds) of the duration histograms: from a one-record run to a long backfill.
DURATION_BUCKETS: tuple[float, ...] = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)


def store_figures(ctx: AppContext) -> StoreFigures:
    """Every pipeline's and stream's figures, read now (no state kept between calls)."""
    return read_figures(database.ready_engine(ctx.store_url()), DURATION_BUCKETS)
