"""Singer state as a value: validated shape, bookmarks per stream, checksum, comparison."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from flx_meltano.domain.errors import InvalidState

SINGER_STATE_KEY = "singer_state"


def canonical_json(value: Any) -> str:
    """Stable JSON text: sorted keys, no whitespace (what checksums are computed over)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class SingerState:
    """A Meltano state payload: ``{"singer_state": {"bookmarks": {...}, ...}}``."""

    singer_state: Mapping[str, Any]

    @classmethod
    def from_payload(cls, payload: Any, *, where: str = "state") -> SingerState:
        """Validate and wrap a Meltano state payload; InvalidState names what is wrong."""
        if not isinstance(payload, Mapping):
            raise InvalidState(f"{where}: expected a JSON object, got {type(payload).__name__}")
        if SINGER_STATE_KEY not in payload:
            raise InvalidState(f"{where}: no 'singer_state' key at the top level")
        singer = payload[SINGER_STATE_KEY]
        if not isinstance(singer, Mapping):
            raise InvalidState(f"{where}: 'singer_state' must be an object")
        # No "bookmarks" is legitimate: Meltano requires only "singer_state", and a tap may keep its
        # state in any shape (e.g. {"currently_syncing": null}). Such a state has no bookmarks, so
        # it counts as empty, which is what the regression guard looks for.
        bookmarks = singer.get("bookmarks", {})
        if not isinstance(bookmarks, Mapping):
            raise InvalidState(f"{where}: 'singer_state.bookmarks' must be an object")
        return cls(dict(singer))

    @classmethod
    def empty(cls) -> SingerState:
        """A state with no bookmarks."""
        return cls({"bookmarks": {}})

    def payload(self) -> dict[str, Any]:
        """The Meltano payload form."""
        return {SINGER_STATE_KEY: dict(self.singer_state)}

    @property
    def bookmarks(self) -> Mapping[str, Any]:
        """``singer_state.bookmarks``."""
        bookmarks = self.singer_state.get("bookmarks", {})
        return bookmarks if isinstance(bookmarks, Mapping) else {}

    @property
    def is_empty(self) -> bool:
        """True when no stream has a bookmark."""
        return not any(self.bookmarks.values())

    @property
    def checksum(self) -> str:
        """SHA-256 of the canonical JSON of the payload."""
        return hashlib.sha256(canonical_json(self.payload()).encode()).hexdigest()

    def bookmark_value(self, stream: str) -> Any:
        """The stream's replication key value (None when it has none)."""
        entry = self.bookmarks.get(stream)
        if not isinstance(entry, Mapping):
            return None
        return entry.get("replication_key_value")


class BookmarkChange(StrEnum):
    """How one stream's bookmark differs between two states."""

    FORWARD = "forward"
    BACKWARD = "backward"
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class StreamDiff:
    """One stream's bookmark before and after."""

    stream: str
    change: BookmarkChange
    before: Any
    after: Any


def _comparable(value: Any) -> Any:
    """Replication key values are usually ISO date-times or numbers; compare them as such."""
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return value


def compare_bookmark(before: Any, after: Any) -> BookmarkChange:
    """Classify the move of one replication key value."""
    left, right = _comparable(before), _comparable(after)
    if before == after or left == right:  # the same instant may be written two ways
        return BookmarkChange.UNCHANGED
    try:
        return BookmarkChange.FORWARD if right > left else BookmarkChange.BACKWARD
    except TypeError:
        return BookmarkChange.CHANGED


def diff_states(before: SingerState | None, after: SingerState | None) -> list[StreamDiff]:
    """Per stream: bookmark moved forward, backward, added, removed, changed or unchanged."""
    old = before.bookmarks if before else {}
    new = after.bookmarks if after else {}
    diffs: list[StreamDiff] = []
    for stream in sorted(set(old) | set(new)):
        if stream not in old:
            diffs.append(StreamDiff(stream, BookmarkChange.ADDED, None, new[stream]))
        elif stream not in new:
            diffs.append(StreamDiff(stream, BookmarkChange.REMOVED, old[stream], None))
        else:
            old_value = before.bookmark_value(stream) if before else None
            new_value = after.bookmark_value(stream) if after else None
            if old_value is None and new_value is None:
                change = (
                    BookmarkChange.UNCHANGED
                    if canonical_json(old[stream]) == canonical_json(new[stream])
                    else BookmarkChange.CHANGED
                )
            else:
                change = compare_bookmark(old_value, new_value)
            diffs.append(StreamDiff(stream, change, old[stream], new[stream]))
    return diffs
