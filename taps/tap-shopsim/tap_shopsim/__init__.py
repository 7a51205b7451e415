"""tap-shopsim: a Singer tap producing deterministic data for a simulated online shop."""

from __future__ import annotations

from tap_shopsim.tap import TapShopSim

__all__ = ["TapShopSim"]
