"""State backup and restore: snapshots with full history, diff, restore, export/import, copy, prune."""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from flx_meltano.application.context import AppContext
from flx_meltano.application.ports import StateStore, UnitOfWork
from flx_meltano.application.secrets import Redactor
from flx_meltano.application.state_guard import snapshot_if_changed
from flx_meltano.domain import state_file
from flx_meltano.domain.errors import InvalidOption, InvalidStateId
from flx_meltano.domain.events import StateRestored
from flx_meltano.domain.execution import PipelineExecution
from flx_meltano.domain.identifiers import StateId
from flx_meltano.domain.pipeline import Pipeline
from flx_meltano.domain.snapshots import SnapshotReason, StateSnapshot
from flx_meltano.domain.state import SingerState, StreamDiff, diff_states
from flx_meltano.errors import FlxError, UsageError, choices
from flx_meltano.persistence.errors import NotFound

Progress = Callable[[int, int], None]


class StateError(FlxError):
    """A state operation was refused or named something that does not exist."""


class UnknownStateId(StateError, UsageError, LookupError):
    """No state is stored for that state id."""


class UnknownSnapshot(StateError, UsageError, LookupError):
    """No snapshot has that id."""


class InvalidExportPath(StateError, UsageError):
    """An export would replace something that is not a regular file (a device, FIFO, symlink, directory)."""


class ExecutionRunning(StateError):
    """An execution of the state id is RUNNING; restoring now would race it."""


def _aware(moment: datetime | None) -> datetime | None:
    """A date-time without a time zone (as typed on a command line) is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


@dataclass(frozen=True)
class BackupReport:
    """What a backup did."""

    taken: list[StateSnapshot] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def _live_states(
    store: StateStore,
    state_ids: Sequence[str] | None,
    pattern: str | None,
    progress: Progress | None = None,
) -> dict[str, SingerState]:
    """The live states of ``state_ids`` (each must have one) or of every id matching ``pattern``."""
    ids = list(state_ids) if state_ids else store.state_ids(pattern)
    states: dict[str, SingerState] = {}
    for done, state_id in enumerate(ids, start=1):
        state = store.get(state_id)
        if state is not None:
            states[state_id] = state
        elif state_ids:
            raise UnknownStateId(
                f"no state for state id {state_id!r} in {store.backend_label}; "
                f"state ids there: {choices(store.state_ids())}"
            )
        if progress:
            progress(done, len(ids))
    return states


def backup(
    ctx: AppContext,
    state_ids: Sequence[str] | None = None,
    pattern: str | None = None,
    label: str | None = None,
    progress: Progress | None = None,
) -> BackupReport:
    """Snapshot one, many (glob ``pattern``) or all state ids; unchanged states make no snapshot.

    A ``label`` names this moment, so with one an unchanged state gets a labelled snapshot too,
    unless its newest snapshot already carries that label: ``report.taken`` holds every state
    the label now names. ``progress(done, total)`` is called as each state id is read.
    """
    live = _live_states(ctx.state_store, state_ids, pattern, progress)
    with ctx.unit_of_work() as uow:
        latest = uow.snapshots.latest_checksums(list(live))
        changed = {sid: st for sid, st in live.items() if latest.get(sid) != st.checksum}
        if label is not None:
            for sid, st in live.items():
                newest = None if sid in changed else uow.snapshots.latest(sid)
                if newest is not None and newest.label != label:
                    changed[sid] = st
        taken = uow.snapshots.add_many(changed, reason=SnapshotReason.MANUAL, at=ctx.now(), label=label)
        uow.commit()
    return BackupReport(taken=taken, unchanged=sorted(set(live) - set(changed)))


def list_snapshots(
    ctx: AppContext,
    state_id: str | None = None,
    since: datetime | None = None,
    label: str | None = None,
    limit: int | None = None,
) -> list[StateSnapshot]:
    """Snapshots, newest first (``since`` without a time zone is UTC)."""
    with ctx.unit_of_work() as uow:
        return uow.snapshots.list(state_id, since=_aware(since), label=label, limit=limit)


def get(ctx: AppContext, snapshot_id: int) -> StateSnapshot:
    """One snapshot; UnknownSnapshot naming the id when there is none."""
    with ctx.unit_of_work() as uow:
        try:
            return uow.snapshots.get(snapshot_id)
        except NotFound as exc:
            raise UnknownSnapshot(f"{exc}; list snapshots with 'flx-meltano state list'") from None


def latest(ctx: AppContext, state_id: str) -> StateSnapshot | None:
    """The newest snapshot of a state id."""
    with ctx.unit_of_work() as uow:
        return uow.snapshots.latest(state_id)


def diff(ctx: AppContext, a: int, b: int) -> list[StreamDiff]:
    """Per stream, how the bookmarks of snapshot ``b`` differ from snapshot ``a``."""
    return diff_states(get(ctx, a).state, get(ctx, b).state)


def diff_live(ctx: AppContext, snapshot_id: int, state_id: str | None = None) -> list[StreamDiff]:
    """How the live state (of the snapshot's state id, or ``state_id``) differs from a snapshot."""
    snapshot = get(ctx, snapshot_id)
    return diff_states(snapshot.state, ctx.state_store.get(state_id or snapshot.state_id))


@dataclass(frozen=True)
class RestoreResult:
    """What a restore did (or, with dry_run, would do).

    ``snapshot.id`` is 0 only in a dry run of ``restore_previous`` whose state comes from a run
    because its snapshot was pruned (the real restore stores it again).
    """

    snapshot: StateSnapshot
    state_id: str
    changes: list[StreamDiff]
    pre_restore_snapshot_id: int | None
    dry_run: bool


def _lock_state_ids(uow: UnitOfWork, state_ids: Iterable[str]) -> list[PipelineExecution]:
    """Take the pipeline row lock that opening an execution takes; the executions still active.

    Held until ``uow`` commits or rolls back: meanwhile no run of these state ids can open an
    execution, and one that opened before is seen. A pipeline that never ran gets its row now, as
    its first run would; a registered one keeps its definition. A state id that is not a
    pipeline's (``<env>:<tap>-to-<target>``) can have no execution, so there is nothing to lock.
    """
    registered = {pipeline.id: pipeline for pipeline in uow.pipelines.all()}
    active: list[PipelineExecution] = []
    for state_id in sorted(set(state_ids)):  # one order for everyone: two importers cannot deadlock
        pipeline = registered.get(state_id)
        if pipeline is None:
            try:
                parsed = StateId.parse(state_id)
            except InvalidStateId:
                continue
            pipeline = Pipeline(parsed, parsed.extractor, parsed.loader)
        active += [e for e in uow.pipelines.lock(pipeline).active if e.status.is_active]
    return active


@contextmanager
def _put_back_on_failure(
    store: StateStore, previous: Mapping[str, SingerState | None]
) -> Iterator[list[str]]:
    """If the block fails, put back the previous state of every state id it named as written.

    The block appends each state id to the yielded list just before writing it: when the block
    fails, the store's record of those writes is rolled back, so the writes are undone too.
    """
    written: list[str] = []
    try:
        yield written
    except BaseException as exc:
        for state_id in reversed(written):
            before = previous[state_id]
            try:
                if before is None:
                    store.clear(state_id)
                else:
                    store.set(state_id, before)
            except Exception as undo:
                exc.add_note(f"putting the previous state of {state_id} back failed too: {undo}")
        raise


def _refuse_while_running(active: Sequence[PipelineExecution], doing: str) -> None:
    if active:
        raise ExecutionRunning(
            f"execution {active[0].id} of {active[0].pipeline_id} is {active[0].status}; {doing} now "
            "would race it (wait, cancel it, or force)"
        )


def restore(
    ctx: AppContext,
    snapshot_id: int,
    to_state_id: str | None = None,
    *,
    dry_run: bool = False,
    force: bool = False,
) -> RestoreResult:
    """Write a snapshot back through Meltano's state backend, after a pre-restore snapshot.

    Refused (ExecutionRunning) while an execution of the target state id is RUNNING, unless forced.
    The write happens under the lock a run takes to open an execution, and the pre-restore
    snapshot, the write and its StateRestored event stand or fall together.
    """
    snapshot = get(ctx, snapshot_id)
    return _restore(ctx, snapshot, to_state_id or snapshot.state_id, dry_run=dry_run, force=force)


def _restore(
    ctx: AppContext,
    snapshot: StateSnapshot,
    target: str,
    *,
    dry_run: bool,
    force: bool,
) -> RestoreResult:
    """Restore ``snapshot`` into ``target``."""
    if dry_run:
        current = ctx.state_store.get(target)
        with ctx.unit_of_work() as uow:
            if not force:
                _refuse_while_running(uow.executions.active(target), "restoring")
        return RestoreResult(snapshot, target, diff_states(current, snapshot.state), None, True)
    with ctx.unit_of_work() as uow:
        active = _lock_state_ids(uow, [target])
        if not force:
            _refuse_while_running(active, "restoring")
        current = ctx.state_store.get(target)  # read under the lock: nobody writes it meanwhile
        pre_restore = None
        if current is not None:
            pre_restore = snapshot_if_changed(
                uow, target, current, SnapshotReason.PRE_RESTORE, at=ctx.now()
            ).snapshot_id
        with _put_back_on_failure(ctx.state_store, {target: current}) as written:
            written.append(target)
            ctx.state_store.set(target, snapshot.state)
            restored = StateRestored(
                target,
                ctx.now(),
                snapshot_id=snapshot.id,
                source_state_id=snapshot.state_id,
                pre_restore_snapshot_id=pre_restore,
            )
            uow.snapshots.append_state_events(target, [restored])
            uow.commit()
    return RestoreResult(snapshot, target, diff_states(current, snapshot.state), pre_restore, False)


def restore_previous(
    ctx: AppContext, state_id: str, *, dry_run: bool = False, force: bool = False
) -> RestoreResult:
    """Put back the last good state: the state before the newest run, when that run was flagged.

    Only the newest finished run counts: when it was not flagged as a state regression, its state
    is the good one and StateError says so (putting an older state back would rewind good
    bookmarks; restore a snapshot by id for that). The state before the flagged run is the
    snapshot it references (``prune`` keeps the snapshots the newest run references). With no
    finished run at all: the newest snapshot that has bookmarks and differs from the live state.
    """
    with ctx.unit_of_work() as uow:
        newest = next((e for e in uow.executions.history_of(state_id) if e.status.is_terminal), None)
        candidates = uow.snapshots.list(state_id)
    if newest is None:
        current = ctx.state_store.get(state_id)
        match = next(
            (
                s
                for s in candidates
                if not s.state.is_empty and (current is None or s.checksum != current.checksum)
            ),
            None,
        )
        if match is None:
            raise StateError(
                f"no earlier good state of {state_id!r} to restore; see its snapshots with "
                f"'flx-meltano state list {state_id}' and restore one by id"
            )
        return _restore(ctx, match, state_id, dry_run=dry_run, force=force)
    if not newest.regression_warnings or newest.state_before is None:
        raise StateError(
            f"the latest run of {state_id!r} ({newest.id}, {newest.status}) was not flagged as a state "
            "regression: its state is the good one, nothing to put back (restore a snapshot by id "
            "to go back further)"
        )
    good = newest.state_before
    match = next((s for s in candidates if s.id == good.snapshot_id), None)
    match = match or next((s for s in candidates if s.checksum == good.checksum), None)
    if match is None:
        raise StateError(
            f"the state before execution {newest.id} (snapshot {good.snapshot_id}) is no longer "
            f"stored; see the snapshots of {state_id!r} with 'flx-meltano state list {state_id}' "
            "and restore one by id"
        )
    return _restore(ctx, match, state_id, dry_run=dry_run, force=force)


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote."""

    path: Path
    state_ids: list[str]


def export(
    ctx: AppContext,
    path: str | Path,
    state_ids: Sequence[str] | None = None,
    pattern: str | None = None,
    progress: Progress | None = None,
) -> ExportReport:
    """Write the live states to a versioned JSON file (atomically: all or nothing).

    Only a new path or a regular file is written: a directory, symlink, device, FIFO or socket
    there is refused (InvalidExportPath) before anything is read. ``progress(done, total)`` is
    called as each state id is read.
    """
    target = Path(path)
    _check_export_target(target)
    live = _live_states(ctx.state_store, state_ids, pattern, progress)
    text = state_file.render(
        [state_file.ExportedState(sid, st) for sid, st in sorted(live.items())],
        exported_at=ctx.now(),
        source={
            "project": str(ctx.settings.project_dir),
            "environment": ctx.environment,
            "backend": ctx.state_store.backend_label,
        },
    )
    tmp_path: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=target.parent, prefix=f".{target.name}.", delete=False
        ) as tmp:
            tmp_path = Path(tmp.name)
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        tmp_path.replace(target)
    except OSError as exc:
        if tmp_path is not None:  # nothing half-written stays behind
            tmp_path.unlink(missing_ok=True)
        raise StateError(f"cannot write {target}: {exc.strerror or exc}") from None
    return ExportReport(target, sorted(live))


_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


def _check_export_target(target: Path) -> None:
    """InvalidExportPath unless ``target`` is absent or a regular file (never followed if a link)."""
    try:
        mode = target.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:  # e.g. a parent that is a regular file: reported when writing
        if isinstance(exc, NotADirectoryError):
            return
        raise StateError(f"cannot write {target}: {exc.strerror or exc}") from None
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    raise InvalidExportPath(
        f"refusing to export to {target}: it is {kind}; export to a new path or a regular file"
    )


@dataclass(frozen=True)
class ImportReport:
    """What an import wrote (or, with dry_run, would write)."""

    path: Path
    changes: dict[str, list[StreamDiff]]
    dry_run: bool


def import_(
    ctx: AppContext,
    path: str | Path,
    dry_run: bool = False,
    force: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Validate the whole file, then write every state through Meltano's backend, snapshotting each.

    ``progress(done, total)`` is called as each state is written.
    """
    source = Path(path)
    try:
        text = source.read_text()
    except OSError as exc:
        raise StateError(f"cannot read {source}: {exc.strerror or exc}") from None
    states = state_file.parse(text, where=str(source))
    _check_state_ids(states, where=str(source))
    if dry_run:
        changes = {s.state_id: diff_states(ctx.state_store.get(s.state_id), s.state) for s in states}
        return ImportReport(source, changes, True)
    with ctx.unit_of_work() as uow:
        busy = sorted({e.pipeline_id for e in _lock_state_ids(uow, [s.state_id for s in states])})
        if busy and not force:
            raise ExecutionRunning(
                f"executions of {', '.join(busy)} are RUNNING; importing now would race them "
                "(wait, cancel them, or force)"
            )
        # Read under the lock: nobody writes these states until the commit.
        current = {s.state_id: ctx.state_store.get(s.state_id) for s in states}
        for entry in states:
            before = current[entry.state_id]
            if before is not None and before.checksum != entry.state.checksum:
                snapshot_if_changed(uow, entry.state_id, before, SnapshotReason.PRE_IMPORT)
        with _put_back_on_failure(ctx.state_store, current) as written:
            for done, entry in enumerate(states, start=1):
                written.append(entry.state_id)
                ctx.state_store.set(entry.state_id, entry.state)
                if progress:
                    progress(done, len(states))
            for entry in states:  # an unchanged state makes no duplicate snapshot
                snapshot_if_changed(uow, entry.state_id, entry.state, SnapshotReason.IMPORT)
            uow.commit()
    changes = {s.state_id: diff_states(current[s.state_id], s.state) for s in states}
    return ImportReport(source, changes, False)


# Meltano's state ids: <environment>:<name>[:<suffix>] (a pipeline's name is <tap>-to-<target>).
_STATE_ID_TEXT = re.compile(r"^[A-Za-z0-9_.@-]+:[A-Za-z0-9_.@-]+(?::[^:\s]+)?$")


def _check_state_ids(states: Sequence[state_file.ExportedState], *, where: str) -> None:
    """InvalidStateFile naming the item and the id of the first entry that is no state id."""
    for index, entry in enumerate(states):
        if not _STATE_ID_TEXT.match(entry.state_id):
            raise state_file.InvalidStateFile(
                f"{where}: states[{index}]: {entry.state_id!r} is not a Meltano state id: expected "
                "<environment>:<extractor>-to-<loader>[:<suffix>]"
            )


def masked_uri(uri: str) -> str:
    """A state backend URI for people: its password (e.g. an s3:// secret key) masked."""
    return Redactor.for_plugins((), {"MELTANO_STATE_BACKEND_URI": uri})(uri)


def copy(ctx: AppContext, pattern: str, to_backend_uri: str, progress: Progress | None = None) -> list[str]:
    """Copy the states matching ``pattern`` to another Meltano state backend (e.g. file://, s3://).

    Errors of the destination backend name it with its password and other secrets masked.
    """
    live = ctx.state_store.get_many(pattern)
    env = {**ctx.run_env, "MELTANO_STATE_BACKEND_URI": to_backend_uri}
    destination = ctx.adapters.state_store(ctx.environment, env)
    try:
        for index, (state_id, state) in enumerate(sorted(live.items()), start=1):
            destination.set(state_id, state)
            if progress:
                progress(index, len(live))
    finally:
        destination.close()
    return sorted(live)


def prune(ctx: AppContext, keep_last: int, older_than: datetime | None = None) -> int:
    """Delete snapshots beyond the newest ``keep_last`` per state id (and older than ``older_than``).

    The newest snapshot of every state id is always kept (``keep_last`` below 1 is refused), and
    so are the snapshots its newest finished run references (its states before and after);
    ``older_than`` without a time zone is UTC.
    """
    if keep_last < 1:
        raise InvalidOption(
            f"keep_last {keep_last}: at least 1 snapshot per state id is always kept; give 1 or more"
        )
    keep = keep_last
    older_than = _aware(older_than)
    with ctx.unit_of_work() as uow:
        doomed: list[int] = []
        by_state: dict[str, list[StateSnapshot]] = {}
        for snapshot in uow.snapshots.list():
            by_state.setdefault(snapshot.state_id, []).append(snapshot)
        referenced = uow.executions.newest_state_refs()
        for snapshots in by_state.values():
            for snapshot in snapshots[keep:]:
                if snapshot.id in referenced:
                    continue  # the newest run's states: restore --previous puts them back
                if older_than is None or snapshot.taken_at < older_than:
                    doomed.append(snapshot.id)
        removed = uow.snapshots.delete(doomed)
        uow.commit()
    return removed
