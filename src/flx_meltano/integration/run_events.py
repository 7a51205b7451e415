"""Typed events parsed from ``meltano --log-format=json run`` output, one line at a time.

This is the only place that knows the shape of Meltano's JSON log lines. A line that is not
JSON (or not an object) becomes a plain LogRecord; nothing here raises on bad input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flx_meltano.domain.plugins import PluginType

METRIC_PREFIX = "METRIC: "
STATE_UPDATED_PREFIX = "Incremental state has been updated"
# meltano.core.plugin.singer.tap: "Stream `%s` was not found in the catalog"
_STREAM_NOT_FOUND = re.compile(r"^Stream `(?P<stream>.+)` was not found in the catalog$")
_LEVELS = {"debug", "info", "warning", "error", "critical"}


@dataclass(frozen=True)
class LogRecord:
    """A log line: Meltano's own (plugin None) or one of a plugin's stdout/stderr."""

    level: str
    message: str
    plugin: str | None = None
    plugin_role: PluginType | None = None
    timestamp: str | None = None


@dataclass(frozen=True)
class Metric:
    """A Singer SDK metric point (``record_count``, ``sync_duration``, ``http_request_duration``...)."""

    plugin: str
    plugin_role: PluginType | None
    name: str
    kind: str
    value: float
    tags: Mapping[str, Any] = field(default_factory=dict)
    timestamp: str | None = None

    @property
    def stream(self) -> str | None:
        """The stream the metric is about, if any (singer-sdk tags ``stream``, singer-python
        taps ``endpoint``)."""
        stream = self.tags.get("stream", self.tags.get("endpoint"))
        return str(stream) if stream is not None else None

    @property
    def context(self) -> Mapping[str, Any]:
        """The SDK context (partition) of the metric; empty for a whole stream."""
        context = self.tags.get("context")
        return context if isinstance(context, Mapping) else {}


@dataclass(frozen=True)
class StateWritten:
    """Meltano persisted a STATE emitted by the loader (the content is read from the backend)."""

    timestamp: str | None = None


@dataclass(frozen=True)
class StreamNotFound:
    """Meltano found no stream of this id in the tap's catalog (a select rule names it)."""

    stream: str
    timestamp: str | None = None


@dataclass(frozen=True)
class BlockCompleted:
    """One block (extract-load or command) ended."""

    index: int
    block_type: str
    success: bool
    error: str | None
    exit_codes: Mapping[str, int]
    duration_seconds: float


@dataclass(frozen=True)
class RunCompleted:
    """``meltano run`` ended."""

    success: bool
    duration_seconds: float


RunEvent = LogRecord | Metric | StateWritten | StreamNotFound | BlockCompleted | RunCompleted


_LOGGED_ROLES = (
    PluginType.EXTRACTOR,
    PluginType.LOADER,
    PluginType.MAPPER,
    PluginType.UTILITY,
    PluginType.TRANSFORMER,
)


def _plugin_role(record: Mapping[str, Any]) -> PluginType | None:
    producer, consumer = record.get("producer"), record.get("consumer")
    if producer and consumer:
        return PluginType.MAPPER
    if producer:
        return PluginType.EXTRACTOR
    if consumer:
        return PluginType.LOADER
    logger_name = str(record.get("_logger", ""))
    return next((role for role in _LOGGED_ROLES if f".{role.value}." in logger_name), None)


def _level(record: Mapping[str, Any]) -> str:
    level = str(record.get("level", "info")).lower()
    return level if level in _LEVELS else "info"


def _metric_from(data: Any, plugin: str, role: PluginType | None, timestamp: str | None) -> Metric | None:
    if not isinstance(data, Mapping) or "metric" not in data or "value" not in data:
        return None
    try:
        value = float(data["value"])
    except (TypeError, ValueError):
        return None
    tags = data.get("tags")
    return Metric(
        plugin=plugin,
        plugin_role=role,
        name=str(data["metric"]),
        kind=str(data.get("type", "")),
        value=value,
        tags=dict(tags) if isinstance(tags, Mapping) else {},
        timestamp=timestamp,
    )


def _number(raw: Any, default: float = 0.0) -> float:
    """A float from a log field, or ``default`` when the field is missing or not a number."""
    try:
        return float(raw)
    except (TypeError, ValueError):
        return default


def _exit_codes(raw: Any) -> dict[str, int]:
    if not isinstance(raw, Mapping):
        return {}
    codes: dict[str, int] = {}
    for key, value in raw.items():
        try:
            codes[str(key)] = int(value)
        except (TypeError, ValueError):
            continue
    return codes


def parse_line(line: str) -> RunEvent | None:
    """One output line of ``meltano --log-format=json run`` as a typed event (None if blank)."""
    text = line.rstrip("\r\n")
    if not text.strip():
        return None
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        return LogRecord(level="info", message=text)

    message = str(record.get("event", ""))
    timestamp = record.get("timestamp")
    plugin = record.get("name") if record.get("stdio") else None
    if plugin is not None:
        plugin = str(plugin)
        role = _plugin_role(record)
        # Structured-logging plugins: Meltano has already parsed the metric for us.
        structured = _metric_from(record.get("metric_info"), plugin, role, timestamp)
        if structured is not None:
            return structured
        if message.startswith(METRIC_PREFIX):
            try:
                payload = json.loads(message[len(METRIC_PREFIX) :])
            except ValueError:
                payload = None
            metric = _metric_from(payload, plugin, role, timestamp)
            if metric is not None:
                return metric
        return LogRecord(_level(record), message, plugin, role, timestamp)

    if message == "Block run completed":
        return BlockCompleted(
            index=int(_number(record.get("set_number"))),
            block_type=str(record.get("block_type", "")),
            success=bool(record.get("success")),
            error=str(record["err"]) if record.get("err") else None,
            exit_codes=_exit_codes(record.get("exit_codes")),
            duration_seconds=_number(record.get("duration_seconds")),
        )
    if message == "Run completed":
        return RunCompleted(
            success=record.get("status") == "success",
            duration_seconds=_number(record.get("duration_seconds")),
        )
    if message.startswith(STATE_UPDATED_PREFIX):
        return StateWritten(timestamp)
    if message.startswith("Stream `") and (missing := _STREAM_NOT_FOUND.match(message)):
        return StreamNotFound(missing["stream"], timestamp)
    return LogRecord(_level(record), message, None, None, timestamp)
