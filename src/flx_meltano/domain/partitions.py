"""Partitions of an extractor: a time window (or a static key) per partition, its own state id suffix."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from flx_meltano.domain.errors import InvalidOption


class PartitionKind(StrEnum):
    """How an extractor's runs are cut: ``meta.dagster.partitions.type`` in meltano.yml."""

    DAILY = "daily"
    HOURLY = "hourly"
    MONTHLY = "monthly"
    STATIC = "static"


# Dagster's own key formats, so a partition key means the same on both sides.
KEY_FORMATS = {
    PartitionKind.DAILY: "%Y-%m-%d",
    PartitionKind.HOURLY: "%Y-%m-%d-%H:%M",
    PartitionKind.MONTHLY: "%Y-%m-%d",
}
_SUFFIX_UNSAFE = re.compile(r"[^A-Za-z0-9_.@-]")
SUFFIX_PREFIX = "partition-"


@dataclass(frozen=True)
class PartitionWindow:
    """One partition's run: its key, the settings it gives the tap, its state id suffix."""

    key: str
    settings: dict[str, str]
    start: datetime | None = None
    end: datetime | None = None

    @property
    def state_id_suffix(self) -> str:
        """Meltano's ``--state-id-suffix`` of this partition (``partition-2024-01-02``)."""
        return state_id_suffix(self.key)


def state_id_suffix(key: str) -> str:
    """The state id suffix of a partition key: characters a state id cannot hold become ``_``."""
    return SUFFIX_PREFIX + _SUFFIX_UNSAFE.sub("_", key.replace(":", ""))


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _next_month(value: datetime) -> datetime:
    if value.month == 12:
        return value.replace(year=value.year + 1, month=1)
    return value.replace(month=value.month + 1)


@dataclass(frozen=True)
class PartitionScheme:
    """``meta.dagster.partitions`` of an extractor.

    Time partitions (daily, hourly, monthly) start at ``start`` and give the tap each window's
    start in ``start_setting`` and its (exclusive) end in ``end_setting``. Static partitions are
    the ``keys`` given, each passed to the tap in ``key_setting``.
    """

    kind: PartitionKind
    start: datetime | None = None
    start_setting: str | None = None
    end_setting: str | None = None
    keys: tuple[str, ...] = ()
    key_setting: str | None = None

    def __post_init__(self) -> None:
        if self.kind is PartitionKind.STATIC:
            if not self.keys or not self.key_setting:
                raise InvalidOption("static partitions need keys and the setting that carries the key")
        elif self.start is None or not self.start_setting or not self.end_setting:
            raise InvalidOption(f"{self.kind} partitions need a start and the settings of the window bounds")

    @property
    def is_time(self) -> bool:
        """Daily, hourly or monthly."""
        return self.kind is not PartitionKind.STATIC

    def window(self, key: str) -> PartitionWindow:
        """The window of one partition key; InvalidOption if the key is not one of this scheme."""
        if not self.is_time:
            if key not in self.keys:
                raise InvalidOption(f"partition {key!r} is not one of {', '.join(self.keys)}")
            return PartitionWindow(key, {str(self.key_setting): key})
        try:
            start = datetime.strptime(key, KEY_FORMATS[self.kind]).replace(tzinfo=UTC)
        except ValueError:
            raise InvalidOption(
                f"partition {key!r} is not a {self.kind} partition key "
                f"(expected {KEY_FORMATS[self.kind].replace('%', '')})"
            ) from None
        if self.kind is PartitionKind.MONTHLY and start.day != 1:
            raise InvalidOption(f"partition {key!r} is not a monthly partition key (the 1st of a month)")
        if self.start is not None and start < self.start:
            raise InvalidOption(f"partition {key!r} is before the partitions' start {_iso(self.start)}")
        if self.kind is PartitionKind.DAILY:
            end = start + timedelta(days=1)
        elif self.kind is PartitionKind.HOURLY:
            end = start + timedelta(hours=1)
        else:
            end = _next_month(start)
        settings = {str(self.start_setting): _iso(start), str(self.end_setting): _iso(end)}
        return PartitionWindow(key, settings, start=start, end=end)
