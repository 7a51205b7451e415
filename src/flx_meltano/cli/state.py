"""``flx-meltano state``: back up, list, show, diff, restore, export, import, copy and prune Singer state."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress

from flx_meltano.application import state_backup as uc
from flx_meltano.cli.context import JsonOption, app_context
from flx_meltano.cli.output import console, print_json, print_table
from flx_meltano.domain.snapshots import StateSnapshot
from flx_meltano.domain.state import StreamDiff
from flx_meltano.errors import UsageError

app = typer.Typer(help="Singer state backup and restore, with full history.", no_args_is_help=True)
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Show what would change; write nothing.")]
RestoreForceOption = Annotated[bool, typer.Option(help="Restore even while an execution is RUNNING.")]
CHANGE_STYLE = {"forward": "green", "backward": "red", "removed": "red", "added": "cyan", "changed": "yellow"}


def _bookmark(entry: Any) -> str:
    if isinstance(entry, dict):
        value = entry.get("replication_key_value")
        if value is not None:
            return str(value)
        return "{...}" if entry else "{}"
    return "-" if entry is None else str(entry)


def _snapshot_dict(s: StateSnapshot, with_state: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": s.id,
        "state_id": s.state_id,
        "taken_at": s.taken_at,
        "reason": str(s.reason),
        "label": s.label,
        "checksum": s.checksum,
        "execution_id": s.execution_id,
        "streams": len(s.state.bookmarks),
    }
    if with_state:
        data["state"] = s.state.payload()
    return data


def _print_snapshots(rows: list[StateSnapshot], title: str) -> None:
    print_table(
        title,
        ["id", "state id", "taken", "reason", "label", "streams", "checksum"],
        [
            [s.id, s.state_id, s.taken_at, str(s.reason), s.label, len(s.state.bookmarks), s.checksum[:12]]
            for s in rows
        ],
    )


def _diff_dicts(diffs: list[StreamDiff]) -> list[dict[str, Any]]:
    return [
        {"stream": d.stream, "change": str(d.change), "before": d.before, "after": d.after} for d in diffs
    ]


def _print_diff(diffs: list[StreamDiff], title: str) -> None:
    rows = []
    for d in diffs:
        style = CHANGE_STYLE.get(str(d.change), "")
        change = f"[{style}]{d.change}[/{style}]" if style else str(d.change)
        rows.append([d.stream, change, _bookmark(d.before), _bookmark(d.after)])
    print_table(title, ["stream", "change", "before", "after"], rows)


def _source(result: uc.RestoreResult) -> str:
    """What a restore writes: a snapshot."""
    return f"snapshot {result.snapshot.id}"


@contextmanager
def _progress(description: str, hidden: bool = False) -> Iterator[uc.Progress]:
    """A transient progress bar (none with --json) and the callback that advances it."""
    with Progress(console=console, transient=True, disable=hidden) as progress:
        task = progress.add_task(description, total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


def _confirm(question: str, yes: bool, as_json: bool = False) -> None:
    """Ask before a destructive step; with --json there is no one to ask, so --yes is required."""
    if yes:
        return
    if as_json:
        raise UsageError(f"{question} needs --yes together with --json")
    if not typer.confirm(question, default=False):
        console.print("nothing changed")
        raise typer.Exit(1)


@app.command("backup")
def backup_command(
    state_id: Annotated[list[str] | None, typer.Argument(help="State ids (default: all).")] = None,
    pattern: Annotated[str | None, typer.Option("--pattern", "-p", help="Glob, e.g. 'prod:*'.")] = None,
    label: Annotated[str | None, typer.Option("--label", "-l", help="A label for these snapshots.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Snapshot one, many or all state ids (unchanged ones are skipped, unless given a new label)."""
    with app_context() as ctx, _progress("backing up state", hidden=as_json) as advance:
        report = uc.backup(ctx, state_id or None, pattern, label, advance)
    if as_json:
        print_json({"taken": [_snapshot_dict(s) for s in report.taken], "unchanged": report.unchanged})
        return
    if report.taken:
        _print_snapshots(report.taken, f"{len(report.taken)} snapshot(s) taken")
    else:
        console.print("no new snapshots")
    if report.unchanged:
        console.print(f"{len(report.unchanged)} state id(s) unchanged since their last snapshot")


@app.command("list")
def list_command(
    state_id: Annotated[str | None, typer.Argument(help="Only this state id.")] = None,
    since: Annotated[
        datetime | None, typer.Option(help="Only snapshots taken since (UTC unless an offset is given).")
    ] = None,
    label: Annotated[str | None, typer.Option("--label", "-l")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 50,
    as_json: JsonOption = False,
) -> None:
    """Snapshots, newest first."""
    with app_context() as ctx:
        rows = uc.list_snapshots(ctx, state_id, since, label, limit)
    if as_json:
        print_json([_snapshot_dict(s) for s in rows])
    else:
        _print_snapshots(rows, "snapshots")


@app.command("show")
def show_command(
    snapshot_id: Annotated[int, typer.Argument(help="Snapshot id.")],
    as_json: JsonOption = False,
) -> None:
    """One snapshot with its bookmarks."""
    with app_context() as ctx:
        s = uc.get(ctx, snapshot_id)
    if as_json:
        print_json(_snapshot_dict(s, with_state=True))
        return
    console.print(
        f"snapshot [bold]{s.id}[/bold] of {s.state_id}, {s.reason}, {s.taken_at:%Y-%m-%d %H:%M:%S}"
        + (f", label {s.label}" if s.label else ""),
        highlight=False,
    )
    print_table(None, ["stream", "bookmark"], [[k, _bookmark(v)] for k, v in s.state.bookmarks.items()])


@app.command("diff")
def diff_command(
    a: Annotated[int, typer.Argument(help="Snapshot id (before).")],
    b: Annotated[
        int | None, typer.Argument(help="Snapshot id (after); omit to compare with the live state.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Per stream: bookmark moved forward, backward, added or removed."""
    with app_context() as ctx:
        diffs = uc.diff(ctx, a, b) if b is not None else uc.diff_live(ctx, a)
    if as_json:
        print_json(_diff_dicts(diffs))
    else:
        _print_diff(diffs, f"snapshot {a} -> {b if b is not None else 'live state'}")


@app.command("restore")
def restore_command(
    snapshot_id: Annotated[int | None, typer.Argument(help="Snapshot id to restore.")] = None,
    to_state_id: Annotated[str | None, typer.Option("--to", help="Restore into another state id.")] = None,
    previous: Annotated[
        str | None, typer.Option("--previous", help="Restore the last good state of this state id.")
    ] = None,
    dry_run: DryRunOption = False,
    force: RestoreForceOption = False,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Write a snapshot back through Meltano's state backend (a pre-restore snapshot is taken first)."""
    if (snapshot_id is None) == (previous is None):
        raise UsageError("give a snapshot id or --previous STATE_ID (one of them)")
    with app_context() as ctx:
        if previous is not None:
            preview = uc.restore_previous(ctx, previous, dry_run=True, force=force)
        else:
            assert snapshot_id is not None
            preview = uc.restore(ctx, snapshot_id, to_state_id, dry_run=True, force=force)
        result = preview
        if not dry_run:
            if not as_json:
                _print_diff(preview.changes, f"restoring {_source(preview)} into {preview.state_id}")
            _confirm(f"write {_source(preview)} into {preview.state_id}?", yes, as_json)
            if previous is not None:
                result = uc.restore_previous(ctx, previous, force=force)
            else:
                result = uc.restore(ctx, preview.snapshot.id, preview.state_id, force=force)
    if as_json:
        print_json(
            {
                "snapshot_id": result.snapshot.id,
                "state_id": result.state_id,
                "dry_run": result.dry_run,
                "pre_restore_snapshot_id": result.pre_restore_snapshot_id,
                "changes": _diff_dicts(result.changes),
            }
        )
        return
    verb = "would restore" if result.dry_run else "restored"
    _print_diff(result.changes, f"{verb} {_source(result)} into {result.state_id}")
    if result.pre_restore_snapshot_id:
        console.print(f"the state before is kept as snapshot {result.pre_restore_snapshot_id}")


@app.command("restore-previous")
def restore_previous_command(
    state_id: Annotated[str, typer.Argument(help="The state id whose last good state to put back.")],
    dry_run: DryRunOption = False,
    force: RestoreForceOption = False,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Put back the state before a run flagged as a regression (``restore --previous STATE_ID``)."""
    restore_command(
        snapshot_id=None,
        to_state_id=None,
        previous=state_id,
        dry_run=dry_run,
        force=force,
        yes=yes,
        as_json=as_json,
    )


@app.command("export")
def export_command(
    path: Annotated[Path, typer.Argument(help="File to write.")],
    state_id: Annotated[
        list[str] | None, typer.Option("--state-id", "-s", help="Only these (repeatable).")
    ] = None,
    pattern: Annotated[str | None, typer.Option("--pattern", "-p")] = None,
    as_json: JsonOption = False,
) -> None:
    """Write live states to a versioned JSON file with checksums (a new path or a regular file only)."""
    with app_context() as ctx, _progress("reading state", hidden=as_json) as advance:
        report = uc.export(ctx, path, state_id or None, pattern, advance)
    if as_json:
        print_json({"path": str(report.path), "state_ids": report.state_ids})
    else:
        console.print(f"exported {len(report.state_ids)} state(s) to {report.path}", highlight=False)


@app.command("import")
def import_command(
    path: Annotated[Path, typer.Argument(help="A file written by 'state export'.")],
    dry_run: DryRunOption = False,
    force: Annotated[bool, typer.Option(help="Import even while executions are RUNNING.")] = False,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Validate the whole file, then write its states (each current state is snapshotted first)."""
    with app_context() as ctx:
        preview = uc.import_(ctx, path, dry_run=True)
        if not as_json:
            for state_id, diffs in preview.changes.items():
                _print_diff(diffs, f"{'would import' if dry_run else 'importing'} {state_id}")
        if not dry_run:
            _confirm(f"write {len(preview.changes)} state(s) from {path}?", yes, as_json)
        if dry_run:
            report = preview
        else:
            with _progress("writing state", hidden=as_json) as advance:
                report = uc.import_(ctx, path, force=force, progress=advance)
    if as_json:
        print_json(
            {
                "path": str(report.path),
                "dry_run": report.dry_run,
                "changes": {k: _diff_dicts(v) for k, v in report.changes.items()},
            }
        )
    else:
        console.print(f"{'would import' if report.dry_run else 'imported'} {len(report.changes)} state(s)")


@app.command("copy")
def copy_command(
    pattern: Annotated[str, typer.Argument(help="Glob of state ids, e.g. '*' or 'prod:*'.")],
    to_backend: Annotated[str, typer.Argument(help="Destination backend URI, e.g. file:///backups/state.")],
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Copy states to another Meltano state backend (systemdb, file://, s3://, ...)."""
    shown = uc.masked_uri(to_backend)  # never echo an s3://KEY:SECRET@... URI
    with app_context() as ctx:
        _confirm(f"copy states matching {pattern!r} to {shown} (overwriting them there)?", yes, as_json)
        with _progress("copying state", hidden=as_json) as advance:
            copied = uc.copy(ctx, pattern, to_backend, advance)
    if as_json:
        print_json({"copied": copied, "to": shown})
    else:
        console.print(f"copied {len(copied)} state(s) to {shown}", highlight=False)


@app.command("prune")
def prune_command(
    keep_last: Annotated[
        int, typer.Option("--keep-last", min=1, help="Snapshots to keep per state id (at least 1).")
    ] = 10,
    older_than: Annotated[
        datetime | None,
        typer.Option(help="Only delete snapshots taken before this (UTC unless an offset is given)."),
    ] = None,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Delete old snapshots; the newest snapshot of every state id is always kept."""
    _confirm(
        f"delete snapshots beyond the newest {keep_last} per state id"
        + (f" taken before {older_than}" if older_than else "")
        + "?",
        yes,
        as_json,
    )
    with app_context() as ctx:
        removed = uc.prune(ctx, keep_last, older_than)
    if as_json:
        print_json({"removed": removed})
    else:
        console.print(f"removed {removed} snapshot(s)")


def register(root: typer.Typer) -> None:
    """Mount under ``flx-meltano state``."""
    root.add_typer(app, name="state")
