"""Singer state backup and restore with full history: the Python API (``flx_meltano.state``).

Every function takes an optional ``settings`` (default: ``Settings()`` from FLX_* variables).

    from flx_meltano import state
    report = state.backup(pattern="prod:*", label="before-migration")
    state.restore(report.taken[0].id, dry_run=True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from flx_meltano.application import state_backup as _uc
from flx_meltano.application.context import AppContext
from flx_meltano.application.state_backup import (
    BackupReport,
    ExecutionRunning,
    ExportReport,
    ImportReport,
    RestoreResult,
    StateError,
    UnknownStateId,
)
from flx_meltano.bootstrap import open_context
from flx_meltano.domain.snapshots import StateSnapshot
from flx_meltano.domain.state import StreamDiff
from flx_meltano.domain.state_file import InvalidStateFile
from flx_meltano.settings import Settings

__all__ = [
    "BackupReport",
    "ExecutionRunning",
    "ExportReport",
    "ImportReport",
    "InvalidStateFile",
    "RestoreResult",
    "StateError",
    "UnknownStateId",
    "backup",
    "copy",
    "diff",
    "diff_live",
    "export",
    "get",
    "import_",
    "latest",
    "list_snapshots",
    "prune",
    "restore",
    "restore_previous",
]

T = TypeVar("T")


def _call(settings: Settings | None, use_case: Callable[[AppContext], T]) -> T:
    with open_context(settings) as ctx:
        return use_case(ctx)


def backup(
    state_ids: Sequence[str] | None = None,
    pattern: str | None = None,
    label: str | None = None,
    *,
    settings: Settings | None = None,
) -> BackupReport:
    """Snapshot one, many (glob) or all state ids; unchanged states make no duplicate snapshot."""
    return _call(settings, lambda ctx: _uc.backup(ctx, state_ids, pattern, label))


def list_snapshots(
    state_id: str | None = None,
    since: datetime | None = None,
    label: str | None = None,
    *,
    settings: Settings | None = None,
) -> list[StateSnapshot]:
    """Snapshots, newest first."""
    return _call(settings, lambda ctx: _uc.list_snapshots(ctx, state_id, since, label))


def get(snapshot_id: int, *, settings: Settings | None = None) -> StateSnapshot:
    """One snapshot."""
    return _call(settings, lambda ctx: _uc.get(ctx, snapshot_id))


def latest(state_id: str, *, settings: Settings | None = None) -> StateSnapshot | None:
    """The newest snapshot of a state id."""
    return _call(settings, lambda ctx: _uc.latest(ctx, state_id))


def diff(a: int, b: int, *, settings: Settings | None = None) -> list[StreamDiff]:
    """Per stream: bookmark moved forward, backward, added, removed between two snapshots."""
    return _call(settings, lambda ctx: _uc.diff(ctx, a, b))


def diff_live(
    snapshot_id: int, state_id: str | None = None, *, settings: Settings | None = None
) -> list[StreamDiff]:
    """How the live state (of the snapshot's state id, or ``state_id``) differs from a snapshot."""
    return _call(settings, lambda ctx: _uc.diff_live(ctx, snapshot_id, state_id))


def restore(
    snapshot_id: int,
    to_state_id: str | None = None,
    *,
    dry_run: bool = False,
    force: bool = False,
    settings: Settings | None = None,
) -> RestoreResult:
    """Write a snapshot back through Meltano's backend (pre-restore snapshot first)."""
    return _call(
        settings, lambda ctx: _uc.restore(ctx, snapshot_id, to_state_id, dry_run=dry_run, force=force)
    )


def restore_previous(
    state_id: str, *, dry_run: bool = False, force: bool = False, settings: Settings | None = None
) -> RestoreResult:
    """Put the last good state of ``state_id`` back in one call."""
    return _call(settings, lambda ctx: _uc.restore_previous(ctx, state_id, dry_run=dry_run, force=force))


def export(
    path: str | Path,
    state_ids: Sequence[str] | None = None,
    pattern: str | None = None,
    *,
    settings: Settings | None = None,
) -> ExportReport:
    """Write live states to a versioned JSON file with checksums."""
    return _call(settings, lambda ctx: _uc.export(ctx, path, state_ids, pattern))


def import_(
    path: str | Path, dry_run: bool = False, force: bool = False, *, settings: Settings | None = None
) -> ImportReport:
    """Validate a whole export file, then write its states through Meltano's backend."""
    return _call(settings, lambda ctx: _uc.import_(ctx, path, dry_run, force))


def copy(pattern: str, to_backend_uri: str, *, settings: Settings | None = None) -> list[str]:
    """Copy the states matching ``pattern`` to another state backend."""
    return _call(settings, lambda ctx: _uc.copy(ctx, pattern, to_backend_uri))


def prune(keep_last: int, older_than: datetime | None = None, *, settings: Settings | None = None) -> int:
    """Delete old snapshots, never the newest of a state id; how many went."""
    return _call(settings, lambda ctx: _uc.prune(ctx, keep_last, older_than))
