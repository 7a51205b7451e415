"""Run pipelines and jobs: open an execution, snapshot state, launch meltano, record what happens."""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from flx_meltano.application.context import AppContext
from flx_meltano.application.liveness import (
    Heartbeat,
    RecordNotWritten,
    StoreOutage,
    persist_retrying,
    try_save,
)
from flx_meltano.application.log_keeper import LogKeeper, closing_line
from flx_meltano.application.pipelines import Step, aggregate, resolve
from flx_meltano.application.ports import LaunchedRun, UnitOfWork
from flx_meltano.application.reconcile import guard_state_id, refuse_if_loading
from flx_meltano.application.secrets import Redactor, setting_env_var
from flx_meltano.application.state_guard import regression_warnings, snapshot_if_changed
from flx_meltano.domain.errors import InvalidOption
from flx_meltano.domain.execution import PipelineExecution, StreamResult
from flx_meltano.domain.partitions import PartitionWindow
from flx_meltano.domain.project import Command, PipelineDefinition
from flx_meltano.domain.snapshots import SnapshotReason
from flx_meltano.domain.state import SingerState
from flx_meltano.domain.values import ExecutionStatus, StateStrategy, Trigger
from flx_meltano.errors import FlxError
from flx_meltano.integration.launcher import RunRequest
from flx_meltano.integration.processes import this_host, this_pid
from flx_meltano.integration.run_events import BlockCompleted, LogRecord
from flx_meltano.integration.translator import ExecutionTracker, StreamConfirmed, StreamProgress
from flx_meltano.persistence import database


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How to run; validated when built, so a bad option is refused before anything is written.

    Attributes:
        streams: only these streams (None: the pipeline's selected streams).
        trigger: who started the run (the API's by default; the CLI and Dagster say so).
        full_refresh: ignore saved state.
        state_strategy: Meltano's --state-strategy (a string given at run time is parsed too;
            InvalidOption if unknown).
        force: start even if the store shows an execution of the same state id RUNNING, waiting
            for its load's lock rather than refusing; Meltano's own ``--force`` is passed only
            once every previous run of the state id is established dead, whatever this says.
        timeout_seconds: cancel the run after this long (more than 0; None: no limit).
        env: extra environment for meltano (e.g. plugin settings as env vars).
        partition: run one partition of a partitioned extractor (its key, e.g. ``2024-01-02``):
            the tap gets that window and the run its own state id suffix (see ``partitioned``).
    """

    streams: tuple[str, ...] | None = None
    trigger: Trigger = Trigger.API
    full_refresh: bool = False
    state_strategy: StateStrategy | None = None
    force: bool = False
    timeout_seconds: float | None = None
    dagster_run_id: str | None = None
    execution_id: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    partition: str | None = None

    def __post_init__(self) -> None:
        if self.partition is not None and (not self.partition or self.partition != self.partition.strip()):
            raise InvalidOption(
                f"partition {self.partition!r}: a partition key is a non-empty name without spaces around it"
            )
        if self.state_strategy is not None and not isinstance(self.state_strategy, StateStrategy):
            object.__setattr__(self, "state_strategy", StateStrategy.parse(str(self.state_strategy)))
        if not isinstance(self.trigger, Trigger):
            object.__setattr__(self, "trigger", Trigger(self.trigger))
        if self.timeout_seconds is not None and not self.timeout_seconds > 0:
            raise InvalidOption(
                f"timeout {self.timeout_seconds:g}s: a timeout must be more than 0 seconds (or none)"
            )


CANCELLED_REASON = "cancelled; meltano and its plugins were stopped"


class CommandFailed(FlxError, RuntimeError):
    """A command block (e.g. ``dbt-postgres:run``) failed."""


def _now() -> datetime:
    return datetime.now(UTC)


def _state(ctx: AppContext, definition: PipelineDefinition) -> SingerState | None:
    return ctx.state_store.get(definition.state_id)


def partitioned(
    definition: PipelineDefinition, partition: str | None
) -> tuple[PipelineDefinition, PartitionWindow | None]:
    """The pipeline as one partition's run sees it: its own state id (``:partition-<key>``), so
    the main bookmark never moves, and the window the tap is given. Unchanged without a partition;
    InvalidOption if the extractor has no partitions or the key is not one of them."""
    if partition is None:
        return definition, None
    scheme = definition.extractor.partitions
    if scheme is None:
        raise InvalidOption(
            f"{definition.id}: extractor {definition.extractor.name} has no partitions "
            "(meta.dagster.partitions in meltano.yml); run it without a partition"
        )
    window = scheme.window(partition)
    state_id = replace(definition.state_id, suffix=window.state_id_suffix)
    return replace(definition, state_id=state_id), window


def window_env(definition: PipelineDefinition, window: PartitionWindow | None) -> dict[str, str]:
    """The window's settings as Meltano's environment variables of the extractor."""
    if window is None:
        return {}
    return {setting_env_var(definition.extractor, name): value for name, value in window.settings.items()}


def open_execution(
    ctx: AppContext, definition: PipelineDefinition, options: RunOptions
) -> tuple[PipelineExecution, SingerState | None]:
    """Start a RUNNING execution (guarded per state id) with a pre-run snapshot; commit it."""
    with ctx.unit_of_work() as uow:
        pipeline = uow.pipelines.lock(aggregate(definition))
        # Read under the pipeline's lock: a restore or import (which takes it too) cannot change
        # the state between this read and the execution that records it.
        state_before = _state(ctx, definition)
        execution_id = options.execution_id or str(uuid.uuid4())
        # By reference: the pre-run snapshot (an unchanged state is the snapshot already stored).
        before = (
            snapshot_if_changed(uow, definition.id, state_before, SnapshotReason.PRE_RUN, execution_id)
            if state_before is not None
            else None
        )
        execution = pipeline.start_execution(
            execution_id,
            at=_now(),
            trigger=options.trigger,
            streams=options.streams,
            full_refresh=options.full_refresh,
            force=options.force,
            dagster_run_id=options.dagster_run_id,
            state_before=before,
            runner_host=this_host(),
            runner_pid=this_pid(),
            lease_seconds=ctx.settings.lease_seconds,
            partition=options.partition,
        )
        uow.executions.save(execution)
        uow.commit()
    return execution, state_before


@dataclass(frozen=True)
class LogUpdate:
    """A log line from meltano (plugin None) or one of its plugins."""

    level: str
    plugin: str | None
    message: str


@dataclass(frozen=True)
class ProgressUpdate:
    """Records seen so far for one stream."""

    pipeline_id: str
    stream: str
    extracted: int | None
    loaded: int | None


@dataclass(frozen=True)
class StreamUpdate:
    """The loader confirmed one stream (already recorded in the store)."""

    execution: PipelineExecution
    result: StreamResult


@dataclass(frozen=True)
class ExecutionUpdate:
    """The execution opened (RUNNING) or closed (look at its status)."""

    execution: PipelineExecution


RunUpdate = LogUpdate | ProgressUpdate | StreamUpdate | ExecutionUpdate


def execute_pipeline(
    ctx: AppContext, definition: PipelineDefinition, options: RunOptions | None = None
) -> Generator[RunUpdate, None, None]:
    """Run one extract-load pipeline, yielding what happens as it happens; its log is kept in the
    store as it goes (see ``_run_pipeline`` for the run itself)."""
    with closing(_run_pipeline(ctx, definition, options)) as updates:
        yield from keep_log(ctx, updates)


def keep_log(
    ctx: AppContext, updates: Generator[RunUpdate, None, None]
) -> Generator[RunUpdate, None, None]:
    """``updates`` unchanged, every log line of the execution also kept in the store.

    As transparent as ``yield from``: an exception thrown in (``throw``) goes on into ``updates``,
    so the run records it as it would without the log.
    """
    keeper: LogKeeper | None = None
    try:
        update = next(updates, None)
        while update is not None:
            if isinstance(update, LogUpdate) and keeper is not None:
                keeper.add(update.level, update.plugin, update.message)
            elif isinstance(update, ExecutionUpdate):
                if keeper is None:
                    keeper = LogKeeper(
                        ctx.unit_of_work, update.execution.id, max_bytes=ctx.settings.log_max_bytes
                    )
                elif not update.execution.status.is_active:
                    keeper.close(closing_line(update.execution))
            try:
                yield update
            except GeneratorExit:
                raise
            except BaseException as exc:
                try:
                    update = updates.throw(exc)
                except StopIteration:
                    return
            else:
                update = next(updates, None)
    except Exception:
        if keeper is not None:
            keeper.close(
                ("error", f"flx-meltano failed; 'flx-meltano execution {keeper.execution_id}' shows why")
            )
        raise
    finally:
        if keeper is not None:
            keeper.close()


def _run_pipeline(
    ctx: AppContext, definition: PipelineDefinition, options: RunOptions | None = None
) -> Generator[RunUpdate, None, None]:
    """Run one extract-load pipeline, yielding what happens as it happens.

    The last update is the closed execution. Interrupting the consumer (KeyboardInterrupt,
    Dagster's interrupt, closing the generator) stops meltano and every process it started and
    records CANCELLED before the exception goes on. Any other exception (meltano cannot start,
    the state backend or the store fails) stops them too and records FAILED with the error,
    then goes on unchanged.
    """
    options = options or RunOptions()
    run_id = options.execution_id or str(uuid.uuid4())  # Meltano's run id is the execution id
    options = replace(options, execution_id=run_id)
    definition, window = partitioned(definition, options.partition)
    env = {**ctx.run_env, **options.env, **window_env(definition, window)}
    redact = Redactor.for_plugins((definition.extractor, *definition.mappers, definition.loader), env)
    # meltano spends its first seconds importing itself: it does so behind the launch gate while
    # the execution is opened and the state snapshotted, and runs only from run.start() on.
    request = _run_request(ctx, options, env, blocks=definition.blocks, run_id=run_id, definition=definition)
    run = ctx.launcher(request).spawn()
    try:
        execution, state_before = open_execution(ctx, definition, options)
    except BaseException:
        run.abort()
        raise
    outage = StoreOutage(database.redact_url(ctx.store_url()))
    heartbeat = Heartbeat(ctx, execution.id, ctx.settings.heartbeat_seconds, outage).start()
    opened = _OpenRun(ctx, definition, execution, state_before, options, redact, outage=outage)
    # From here on everything is inside the try, so no way out leaves the execution RUNNING.
    try:
        yield ExecutionUpdate(execution)
        opened.tracker = _tracker(opened)
        yield from _follow(opened, run)
        _close(
            opened,
            cancelled=run.cancelled and not run.timed_out,
            timed_out=run.timed_out,
            exit_code=run.returncode,
        )
    except RecordNotWritten:
        # The load ended, its outcome is in memory only: the lease and the reconciler take over.
        heartbeat.stop()
        raise
    except Exception as exc:
        # flx itself failed (meltano could not start; the state backend or the store failed):
        # that is a failure of the execution, not a cancellation.
        run.cancel()
        _close_after_exception(opened, exc)
        raise
    except BaseException as exc:
        # Only interrupts get here (KeyboardInterrupt, also from the CLI's SIGTERM handler;
        # GeneratorExit when the consumer closes us; SystemExit; Dagster's interrupt error).
        run.cancel()
        _close_after_exception(opened, exc, cancelled=True)
        raise
    finally:
        heartbeat.stop()
    yield ExecutionUpdate(execution)


def _tracker(opened: _OpenRun) -> ExecutionTracker:
    """The tracker of an opened execution's extract-load block."""
    ctx, definition = opened.ctx, opened.definition
    return ExecutionTracker(
        extractor=definition.extractor.name,
        loader=definition.loader.name,
        # Meltano logs a mapper's lines under its mapping's name or its plugin's: know both.
        mappers=tuple(dict.fromkeys((*definition.mappings, *(m.name for m in definition.mappers)))),
        read_state=lambda: _state(ctx, definition),
        expected_streams=opened.execution.streams,
        state_before=opened.state_before or SingerState.empty(),
    )


def _follow(opened: _OpenRun, run: LaunchedRun) -> Generator[RunUpdate, None, None]:
    """Start the spawned run; translate its events into updates, recording each confirmed stream."""
    ctx, definition, execution, redact = opened.ctx, opened.definition, opened.execution, opened.redact
    tracker, outage, options = opened.tracker, opened.outage, opened.options
    assert tracker is not None
    assert outage is not None
    retry_seconds = ctx.settings.store_retry_seconds
    waits: list[str] = []
    events = run.start(
        on_wait=waits.append,
        # One load per state id: refuse rather than queue behind a live load of it, and pass
        # Meltano's --force only once its previous runs are established dead.
        on_held=None if options.force else lambda holder: refuse_if_loading(ctx, execution, holder),
        decide_force=lambda: guard_state_id(ctx, execution),
    ).events()
    for message in waits:
        yield LogUpdate("info", None, message)
    for event in events:
        if isinstance(event, LogRecord):
            yield LogUpdate(event.level, event.plugin, redact(event.message))
        elif isinstance(event, BlockCompleted) and not event.success:
            yield LogUpdate("error", None, redact(f"block failed: {event.error}"))
        for note in tracker.feed(event):
            if isinstance(note, StreamProgress):
                yield ProgressUpdate(definition.id, note.stream, note.extracted, note.loaded)
            elif isinstance(note, StreamConfirmed):
                execution.record_stream(note.result, at=_now())
                # A store outage does not stop the load: the result waits in memory.
                try_save(ctx, execution, outage)
                yield StreamUpdate(execution, note.result)
        if (line := outage.announcement(retry_seconds)) is not None:
            yield LogUpdate("warning", None, line)
    if (line := outage.announcement(retry_seconds)) is not None:  # noticed after meltano's last line
        yield LogUpdate("warning", None, line)


def _run_request(
    ctx: AppContext,
    options: RunOptions,
    env: dict[str, str],
    *,
    blocks: tuple[str, ...],
    run_id: str,
    definition: PipelineDefinition | None = None,
) -> RunRequest:
    """The ``meltano run`` of ``blocks``: of one execution of ``definition`` (its streams, state
    options and extractor lock), or of a command block (``definition`` None)."""
    if definition is None:
        return RunRequest(
            project_dir=ctx.settings.project_dir,
            environment=ctx.environment,
            blocks=blocks,
            run_id=run_id,
            meltano_executable=ctx.settings.meltano_executable,
            timeout_seconds=options.timeout_seconds,
            env=env,
        )
    return RunRequest(
        project_dir=ctx.settings.project_dir,
        environment=definition.state_id.environment,
        blocks=blocks,
        run_id=run_id,
        meltano_executable=ctx.settings.meltano_executable,
        select={definition.extractor.name: tuple(options.streams)} if options.streams is not None else {},
        full_refresh=options.full_refresh,
        state_strategy=options.state_strategy,
        state_id_suffix=definition.state_id.suffix,
        # Meltano's --force is decided at start (guard_state_id): only once every previous run of
        # the state id is established dead, so Meltano's own guard stays a second line.
        force=False,
        timeout_seconds=options.timeout_seconds,
        env=env,
        exclusive=(definition.extractor.name,),
    )


def run_pipeline(
    ctx: AppContext, definition: PipelineDefinition, options: RunOptions | None = None
) -> PipelineExecution:
    """Run one extract-load pipeline to the end and return its closed execution."""
    return _last_execution(execute_pipeline(ctx, definition, options))


def _last_execution(updates: Generator[RunUpdate, None, None]) -> PipelineExecution:
    execution: PipelineExecution | None = None
    # closing(): an exception raised while consuming stops meltano and records the execution now.
    with closing(updates):
        for update in updates:
            if isinstance(update, ExecutionUpdate):
                execution = update.execution
    assert execution is not None
    return execution


@dataclass
class _OpenRun:
    """What closing an execution needs: the run as opened, and its tracker once there is one."""

    ctx: AppContext
    definition: PipelineDefinition
    execution: PipelineExecution
    state_before: SingerState | None
    options: RunOptions
    redact: Redactor
    tracker: ExecutionTracker | None = None
    outage: StoreOutage | None = None


def _close(
    opened: _OpenRun,
    *,
    cancelled: bool,
    timed_out: bool = False,
    exit_code: int | None = None,
    error: str | None = None,
) -> None:
    """Record unconfirmed streams, the new state, the outcome and a post-run snapshot at once.

    ``error``: flx itself failed (not meltano); the execution is FAILED with that (redacted) text.
    """
    ctx, definition, execution, tracker = opened.ctx, opened.definition, opened.execution, opened.tracker
    options, redact = opened.options, opened.redact
    failed_plugin: str | None = None
    state_after = _state(ctx, definition)
    if tracker is not None and not cancelled and not timed_out:
        tracker.meltano_exited(exit_code)
    outcome = tracker.outcome if tracker else None
    succeeded = outcome is not None and outcome.success and not cancelled and not timed_out and not error
    warnings = regression_warnings(opened.state_before, state_after, full_refresh=options.full_refresh)
    if tracker is not None:
        warnings += tracker.warnings()
    now = _now()
    # Decided in memory first, then stored (riding out a store outage).
    if not succeeded and tracker is not None:
        for result in tracker.unconfirmed_results():
            execution.record_stream(result, at=now)
    if cancelled:
        execution.cancel(at=now, reason=CANCELLED_REASON, state_after=None)
    elif succeeded:
        execution.succeed(at=now, state_after=None, warnings=warnings)
    else:
        if error is None and timed_out:
            error = f"timed out after {options.timeout_seconds:g}s; meltano and its plugins were stopped"
        elif error is None and outcome is not None and outcome.error:
            error = with_tail(outcome.error, outcome.failed_plugin, outcome.error_lines)
            if outcome.failed_plugin is None and tracker is not None:
                blamed, hint = blame_setting(opened, tracker.meltano_errors)
                if blamed is not None:
                    failed_plugin, error = blamed, f"{error} ({hint})"
        elif error is None:
            error = f"meltano exited with code {exit_code} without reporting the block's result"
        execution.fail(
            redact(error),
            at=now,
            failed_plugin=failed_plugin or (outcome.failed_plugin if outcome else None),
            exit_code=outcome.exit_code if outcome and outcome.exit_code is not None else exit_code,
            state_after=None,
            warnings=warnings,
        )

    def write(uow: UnitOfWork) -> None:
        # The state after by reference: the snapshot is stored in the same transaction (again on
        # each try: a failed try rolled it back and persist() put the close event back as it was).
        if state_after is not None:
            execution.refer_state_after(
                snapshot_if_changed(uow, definition.id, state_after, SnapshotReason.POST_RUN, execution.id)
            )
        uow.executions.save(execution)

    outage = opened.outage or StoreOutage(database.redact_url(ctx.store_url()))
    persist_retrying(ctx, execution, write, outage, ctx.settings.store_retry_seconds if opened.outage else 0)


MAX_ERROR_CHARS = 4000
ERROR_TAIL_LINES = 10
MAX_TAIL_LINE_CHARS = 300


def blame_setting(opened: _OpenRun, meltano_errors: Sequence[str]) -> tuple[str | None, str]:
    """Meltano failed before starting any plugin, usually on a setting value it could not read
    (``invalid literal for int() with base 10: 'abc'``), without naming it: find the setting of
    one of the run's plugins whose value the error quotes. (plugin, hint), or (None, "")."""
    text = " ".join(meltano_errors)
    env = {**os.environ, **opened.ctx.run_env, **opened.options.env}
    definition = opened.definition
    for plugin in (definition.extractor, *definition.mappers, definition.loader):
        for setting in plugin.settings:
            places = [
                (var, env.get(var))
                for var in filter(None, (setting.env, setting_env_var(plugin, setting.name)))
            ]
            places.append(("meltano.yml", plugin.config.get(setting.name)))
            for where, value in places:
                if isinstance(value, str) and value and f"'{value}'" in text:
                    return (
                        plugin.name,
                        f"{plugin.name} setting {setting.name!r} ({where}) is not a valid {setting.kind}",
                    )
    return None, ""


def with_tail(error: str, plugin: str | None, lines: Sequence[str]) -> str:
    """The error, then the last few lines the failing plugin wrote (its traceback, usually), each
    bounded: a plugin may log a whole traceback, or a huge payload, as one line."""
    tail = [
        line.rstrip() if len(line.rstrip()) <= MAX_TAIL_LINE_CHARS else line[: MAX_TAIL_LINE_CHARS - 1] + "…"
        for line in lines
        if line.strip()
    ][-ERROR_TAIL_LINES:]
    if not tail:
        return error
    heading = f"last {len(tail)} lines of {plugin or 'the plugin'}:"
    return "\n".join([error, heading, *(f"  {line}" for line in tail)])


def describe(exc: BaseException) -> str:
    """One exception as a stored error: its type and message, bounded."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _close_after_exception(opened: _OpenRun, exc: BaseException, *, cancelled: bool = False) -> None:
    """Close the execution after ``exc``; never raises, so ``exc`` is what the caller sees.

    The full close (state, stream results, snapshot) is tried first. If that fails too (the
    state backend or the store is what broke), the stored execution is closed on its own, with
    both errors; if even that is impossible, the second error is noted on ``exc`` and the
    crash reconciler closes the execution once this runner is gone.
    """
    ctx, execution, redact = opened.ctx, opened.execution, opened.redact
    error = None if cancelled else redact(describe(exc))
    try:
        if execution.status.is_active:
            _close(opened, cancelled=cancelled, error=error)
            return
    except Exception as close_exc:  # reported on exc and in the stored error
        second = redact(describe(close_exc))
    else:
        second = "the execution was already closed in memory but not stored"
    exc.add_note(f"while recording execution {execution.id} of {opened.definition.id}: {second}")
    try:
        with ctx.unit_of_work() as uow:
            stored = uow.executions.get(execution.id, for_update=True)
            if stored.status.is_active:
                if cancelled:
                    stored.cancel(
                        at=_now(), reason=f"{CANCELLED_REASON} (recording the outcome failed: {second})"
                    )
                else:
                    stored.fail(f"{error}\n(recording the outcome also failed: {second})", at=_now())
                uow.executions.save(stored)
                uow.commit()
    except Exception as store_exc:  # reported on exc
        exc.add_note(
            f"execution {execution.id} could not be closed ({redact(describe(store_exc))}); "
            "'flx-meltano reconcile' marks it CRASHED"
        )


def execute_command(
    ctx: AppContext, command: Command, options: RunOptions | None = None
) -> Generator[RunUpdate, None, None]:
    """Run a command block (e.g. ``dbt-postgres:run``) through ``meltano run``, yielding its log
    lines; CommandFailed if it fails."""
    options = options or RunOptions()
    env = {**ctx.run_env, **options.env}
    run = ctx.launcher(_run_request(ctx, options, env, blocks=(str(command),), run_id=str(uuid.uuid4())))
    plugins = [p for p in ctx.project.plugins if p.name == command.plugin]
    redact = Redactor.for_plugins(plugins, env)
    failure: str | None = None
    try:
        for event in run.start().events():
            if isinstance(event, LogRecord):
                yield LogUpdate(event.level, event.plugin, redact(event.message))
            elif isinstance(event, BlockCompleted) and not event.success:
                failure = redact(event.error or "failed")
    except BaseException:
        run.cancel()
        raise
    if failure or run.returncode:
        raise CommandFailed(f"{command} failed: {failure or f'exit code {run.returncode}'}")


def execute(
    ctx: AppContext, steps: Sequence[Step], options: RunOptions | None = None
) -> Generator[RunUpdate, None, None]:
    """Run steps in order, yielding every update, stopping at the first failure (as ``meltano run``
    does). Consume it inside ``contextlib.closing`` so an interrupt stops meltano at once."""
    if options is not None and options.partition is not None:
        for step in steps:  # every pipeline must have the partition before the first one runs
            if step.pipeline is not None:
                partitioned(step.pipeline, options.partition)
    for step in steps:
        if step.pipeline is not None:
            execution: PipelineExecution | None = None
            with closing(execute_pipeline(ctx, step.pipeline, options)) as updates:
                for update in updates:
                    if isinstance(update, ExecutionUpdate):
                        execution = update.execution
                    yield update
            if execution is None or execution.status is not ExecutionStatus.SUCCEEDED:
                return
        elif step.command is not None:
            with closing(execute_command(ctx, step.command, options)) as updates:
                yield from updates


def executions_of(updates: Generator[RunUpdate, None, None]) -> list[PipelineExecution]:
    """Consume ``updates`` (inside ``closing``); the closed executions, in order."""
    executions: list[PipelineExecution] = []
    with closing(updates):
        for update in updates:
            if isinstance(update, ExecutionUpdate) and update.execution.status.is_terminal:
                executions.append(update.execution)
    return executions


def run_steps(
    ctx: AppContext, steps: Sequence[Step], options: RunOptions | None = None
) -> list[PipelineExecution]:
    """Run steps in order to the end; the closed executions."""
    return executions_of(execute(ctx, steps, options))


def run(ctx: AppContext, target: str, options: RunOptions | None = None) -> list[PipelineExecution]:
    """Run a job, or one pipeline, by name (see ``pipelines.resolve``)."""
    return run_steps(ctx, resolve(ctx.project, target, ctx.environment), options)
