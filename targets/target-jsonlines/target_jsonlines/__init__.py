"""target-jsonlines: a Singer target writing one JSON Lines file per stream."""

from __future__ import annotations

from target_jsonlines.target import FailAfterRecordsError, TargetJsonLines

__all__ = ["FailAfterRecordsError", "TargetJsonLines"]
