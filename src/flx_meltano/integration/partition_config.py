"""``meta.dagster.partitions`` of an extractor in meltano.yml, checked with the line of each mistake."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime

from flx_meltano.domain.partitions import PartitionKind, PartitionScheme
from flx_meltano.integration.errors import ProjectError
from flx_meltano.integration.yaml_lines import LineList, LineMap

_TIME_KEYS = frozenset({"type", "start", "start_setting", "end_setting"})
_STATIC_KEYS = frozenset({"type", "keys", "key_setting"})
_KINDS = ", ".join(k.value for k in PartitionKind)


def _start(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def read_partitions(
    meta: object, file: str, extractor: str, declared: Collection[str]
) -> PartitionScheme | None:
    """The partition scheme in an extractor's ``meta`` (None without one).

    ``declared``: the extractor's declared setting names (empty: not checked). ProjectError
    naming the file, the line, the extractor and what is wrong.
    """
    dagster = meta.get("dagster") if isinstance(meta, LineMap) else None
    if not isinstance(dagster, LineMap) or "partitions" not in dagster:
        return None
    node = dagster["partitions"]
    where = f"extractor {extractor!r}: meta.dagster.partitions"

    def error(message: str, key: str | None = None) -> ProjectError:
        line = node.line_of(key) if isinstance(node, LineMap) and key else dagster.line_of("partitions")
        return ProjectError(f"{where}: {message}", file, line)

    if not isinstance(node, LineMap):
        raise error(f"must be a mapping with a 'type' ({_KINDS})")
    try:
        kind = PartitionKind(str(node.get("type")))
    except ValueError:
        raise error(f"type {node.get('type')!r} is not one of {_KINDS}", "type") from None
    allowed = _STATIC_KEYS if kind is PartitionKind.STATIC else _TIME_KEYS
    for key in node:
        if key not in allowed:
            expected = ", ".join(sorted(allowed))
            raise error(f"unknown key {key!r} for {kind} partitions (expected {expected})", key)

    def setting(key: str) -> str:
        value = node.get(key)
        if not isinstance(value, str) or not value:
            raise error(f"{kind} partitions need '{key}': the tap setting that carries it", key)
        if declared and value not in declared:
            raise error(f"{key} {value!r} is not a setting of {extractor} ({', '.join(declared)})", key)
        return value

    if kind is PartitionKind.STATIC:
        keys = node.get("keys")
        if not isinstance(keys, LineList) or not keys or not all(isinstance(k, str) and k for k in keys):
            raise error("static partitions need 'keys': a list of names", "keys" if "keys" in node else None)
        if len(set(keys)) != len(keys):
            raise error("'keys' holds a name twice", "keys")
        return PartitionScheme(kind, keys=tuple(keys), key_setting=setting("key_setting"))
    if "start" not in node:
        raise error(f"{kind} partitions need a 'start' (e.g. 2024-01-01)")
    start = _start(node.get("start"))
    if start is None:
        raise error(f"start {node.get('start')!r} is not a date or ISO 8601 time", "start")
    return PartitionScheme(
        kind, start=start, start_setting=setting("start_setting"), end_setting=setting("end_setting")
    )
