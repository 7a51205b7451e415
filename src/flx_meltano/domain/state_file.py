"""The flx state export file: a versioned JSON document with per-state and whole-file checksums.

Format (version 1)::

    {
      "format": "flx-meltano-state",
      "version": 1,
      "exported_at": "2026-11-22T16:00:00+00:00",
      "source": {"project": "...", "environment": "dev", "backend": "..."},
      "states": [{"state_id": "dev:tap-x-to-target-y", "checksum": "<sha256>", "state": {...}}],
      "checksum": "<sha256 of the canonical JSON of 'states'>"
    }

Each ``checksum`` is the SHA-256 of the canonical JSON (sorted keys, no spaces) of the value it
covers; a state's checksum covers its ``{"singer_state": ...}`` payload.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flx_meltano.domain.errors import DomainError, InvalidState
from flx_meltano.domain.state import SingerState, canonical_json

FORMAT = "flx-meltano-state"
VERSION = 1


class InvalidStateFile(DomainError, ValueError):
    """An export file is malformed, of an unknown version, or fails its checksums."""


@dataclass(frozen=True)
class ExportedState:
    """One state id and its state, as exported."""

    state_id: str
    state: SingerState


def _sha(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def render(states: Sequence[ExportedState], *, exported_at: datetime, source: Mapping[str, Any]) -> str:
    """The export document as JSON text."""
    entries = [
        {"state_id": s.state_id, "checksum": s.state.checksum, "state": s.state.payload()} for s in states
    ]
    document = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": exported_at.isoformat(),
        "source": dict(source),
        "states": entries,
        "checksum": _sha(entries),
    }
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


def parse(text: str, *, where: str) -> list[ExportedState]:
    """Validate a whole export document; InvalidStateFile names the first problem and where."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidStateFile(
            f"{where}: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InvalidStateFile(f'{where}: not a flx-meltano state export (no "format": "{FORMAT}")')
    version = document.get("version")
    if version != VERSION:
        raise InvalidStateFile(
            f"{where}: unknown format version {version!r}; this flx-meltano reads version {VERSION}"
        )
    entries = document.get("states")
    if not isinstance(entries, list):
        raise InvalidStateFile(f'{where}: "states" must be a list')
    if document.get("checksum") != _sha(entries):
        raise InvalidStateFile(f"{where}: checksum mismatch for the file: it was changed or truncated")
    parsed: list[ExportedState] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        label = f"{where}: states[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("state_id"), str):
            raise InvalidStateFile(f'{label}: needs a "state_id" string')
        state_id = entry["state_id"]
        if state_id in seen:
            raise InvalidStateFile(f"{label}: state id {state_id!r} appears twice")
        seen.add(state_id)
        try:
            state = SingerState.from_payload(entry.get("state"), where=f"{label} ({state_id})")
        except InvalidState as exc:
            raise InvalidStateFile(str(exc)) from None
        if entry.get("checksum") != state.checksum:
            raise InvalidStateFile(f"{label} ({state_id}): checksum mismatch")
        parsed.append(ExportedState(state_id, state))
    return parsed
