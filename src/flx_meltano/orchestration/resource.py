"""MeltanoResource: runs pipelines through the application layer and reports to Dagster as it goes."""

from __future__ import annotations

import logging
import multiprocessing
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    Config,
    ConfigurableResource,
    Failure,
    MaterializeResult,
    MetadataValue,
)
from pydantic import Field

from flx_meltano.application import commands
from flx_meltano.application import run as run_use_case
from flx_meltano.application.context import AppContext
from flx_meltano.application.liveness import RecordNotWritten
from flx_meltano.application.logs import LogFilter, execution_logs
from flx_meltano.application.reconcile import StateIdBusy
from flx_meltano.bootstrap import app_context
from flx_meltano.domain.execution import PipelineExecution, StreamResult
from flx_meltano.domain.project import Command, PipelineDefinition
from flx_meltano.domain.stream_schema import StreamSchema
from flx_meltano.domain.values import ExecutionStatus, StateStrategy, StreamStatus, Trigger
from flx_meltano.integration.processes import command_line, end_with_parent
from flx_meltano.orchestration import metadata as md
from flx_meltano.orchestration.checks import CheckOptions
from flx_meltano.orchestration.sensors import dagster_run_alive
from flx_meltano.orchestration.stream_checks import StreamChecks
from flx_meltano.settings import Settings

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
FAILURE_LOG_LINES = 20  # of the stored log, in a failed step's metadata
# Terminal escape sequences (colours, cursor moves) that plugins such as dbt print.
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes (they show up as garbage in Dagster's log viewer)."""
    return _ANSI_ESCAPE.sub("", text)


class CollapsedLog:
    """Forward log lines to Dagster one by one, folding runs of the same line into one.

    Singer SDK taps log the same line once per parent record of a child stream (thousands per
    run); each Dagster log call is a write to the event log, so identical consecutive lines are
    reported once, followed by "(previous line repeated N more times)".
    """

    def __init__(self, context: AssetExecutionContext) -> None:
        self.context = context
        self.last: tuple[str, str] | None = None
        self.repeats = 0

    def __call__(self, level: str, plugin: str | None, message: str) -> None:
        line = (level, f"[{plugin or 'meltano'}] {strip_ansi(message)}")
        if line == self.last:
            self.repeats += 1
            return
        self.flush()
        self.last = line
        self.context.log.log(_LEVELS.get(level, logging.INFO), line[1])

    def flush(self) -> None:
        """Report how often the last line repeated, if it did."""
        if self.last is not None and self.repeats:
            level, text = self.last
            self.context.log.log(
                _LEVELS.get(level, logging.INFO), f"{text} (previous line repeated {self.repeats} more times)"
            )
        self.repeats = 0


def _trigger(tags: Mapping[str, str]) -> Trigger:
    if md.DAGSTER_SCHEDULE_TAG in tags:
        return Trigger.SCHEDULE
    if md.DAGSTER_SENSOR_TAG in tags:
        return Trigger.SENSOR
    return Trigger.DAGSTER


def stream_metadata(
    pipeline: PipelineDefinition, execution: PipelineExecution, result: StreamResult
) -> dict[str, Any]:
    """Materialization metadata of one stream: rows (or why they are unknown), duration, bookmark,
    its store record. The execution id is Meltano's run id too, so it is given once.
    """
    metadata: dict[str, Any] = {
        md.EXECUTION_ID: MetadataValue.text(execution.id),
        md.EXECUTION_RECORD: MetadataValue.text(md.execution_record(execution.id)),
        md.EXECUTION_LOG: MetadataValue.text(md.execution_log(execution.id)),
        md.STATE_ID: MetadataValue.text(execution.pipeline_id),
        md.TRIGGER: MetadataValue.text(str(execution.trigger)),
    }
    if result.records is not None:
        metadata[md.ROW_COUNT] = MetadataValue.int(result.records)
        if execution.partition is not None:  # the rows of this partition's window
            metadata[md.PARTITION_ROW_COUNT] = MetadataValue.int(result.records)
    elif execution.trigger is Trigger.MELTANO:
        metadata[md.RECORDS_UNKNOWN] = MetadataValue.text(
            "a bare `meltano run`, recorded from Meltano's system database: nobody counted its records"
        )
    else:  # never a 0 nobody saw: say the count is unknown, and why
        metadata[md.RECORDS_UNKNOWN] = MetadataValue.text(
            f"neither {pipeline.extractor.name} nor {pipeline.loader.name} reported a per-stream "
            "record count (Singer SDK record_count metrics)"
        )
    if execution.partition is not None:
        metadata[md.PARTITION] = MetadataValue.text(execution.partition)
    if result.duration is not None:
        metadata[md.SYNC_DURATION_SECONDS] = MetadataValue.float(result.duration.seconds)
    if result.bookmark:
        metadata[md.BOOKMARK] = MetadataValue.json(result.bookmark)
    destination = pipeline.destinations.get(result.stream)
    if destination is not None and destination.qualified_table:
        metadata[md.TABLE_NAME] = MetadataValue.text(destination.qualified_table)
    elif destination is not None and destination.path:  # a file target: the file it wrote
        metadata[md.PATH] = MetadataValue.path(destination.path)
    return metadata


class MeltanoRunConfig(Config):
    """Per-run options of a Meltano pipeline asset (op config in the launchpad or run config).

    ``ops: {<pipeline op>: {config: {full_refresh: true}}}`` for a one-off full refresh. Unset
    fields fall back to the ``meltano`` resource's values.
    """

    full_refresh: bool = False
    state_strategy: str | None = None
    timeout_seconds: float | None = None
    env: dict[str, str] = Field(default_factory=dict)


def _step_ends_with_run_worker() -> None:
    """In a step process of Dagster's multiprocess executor (a child of the run worker): end with
    the run worker, so a killed run worker never leaves its step loading on (issue 9).

    The run worker is ``dagster api execute_run``, or with the default launcher a multiprocessing
    child of the code server. In the run worker itself (the in-process executor) nothing is done:
    its parent, the code server, may end first by design.
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return
    argv = " ".join(command_line(parent.pid))
    if "multiprocessing.spawn" in argv or "execute_run" in argv:
        end_with_parent(parent.pid)


class MeltanoResource(ConfigurableResource):  # type: ignore[type-arg]
    """Runs Meltano pipelines for Dagster assets, recording every run in the flx store.

    Attributes:
        project_dir: the Meltano project (directory of meltano.yml).
        environment: the Meltano environment (default: the project's default_environment).
        meltano_executable: the meltano command (default: the one beside this Python).
        database_url: the flx store (default: FLX_DATABASE_URL, else the embedded server).
        env: extra environment variables for meltano (plugin settings, credentials).
        timeout_seconds: cancel a pipeline run after this long.
        full_refresh: ignore saved state on every run (for one run, use MeltanoRunConfig).
        state_strategy: Meltano's --state-strategy (auto, merge, overwrite).

    Configure it where the Definitions are built; per-run options belong in MeltanoRunConfig
    (run config for a resource replaces all of its constructed values in Dagster).
    """

    project_dir: str
    environment: str | None = None
    meltano_executable: str | None = None
    database_url: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float | None = None
    full_refresh: bool = False
    state_strategy: str | None = None

    def settings(self) -> Settings:
        """Settings for the application layer; unset fields fall back to FLX_* variables."""
        values: dict[str, Any] = {"project_dir": Path(self.project_dir)}
        for key in ("environment", "meltano_executable", "database_url"):
            value = getattr(self, key)
            if value:
                values[key] = value
        return Settings(**values)

    def app_context(self) -> AppContext:
        """A fresh application context for one run."""
        return app_context(self.settings(), env=self.env)

    def _options(  # the one mapping of the resource and MeltanoRunConfig onto RunOptions
        self,
        context: AssetExecutionContext,
        streams: tuple[str, ...] | None,
        run_config: MeltanoRunConfig | None = None,
    ) -> run_use_case.RunOptions:
        run_config = run_config or MeltanoRunConfig()
        strategy = run_config.state_strategy or self.state_strategy
        return run_use_case.RunOptions(
            streams=streams,
            trigger=_trigger(context.run.tags),
            full_refresh=run_config.full_refresh or self.full_refresh,
            state_strategy=StateStrategy.parse(strategy) if strategy else None,
            timeout_seconds=run_config.timeout_seconds or self.timeout_seconds,
            dagster_run_id=context.run.run_id,
            env=dict(run_config.env),
            partition=context.partition_key if context.has_partition_key else None,
        )

    def run_pipeline(
        self,
        context: AssetExecutionContext,
        pipeline: PipelineDefinition,
        stream_keys: Mapping[str, AssetKey],
        run_config: MeltanoRunConfig | None = None,
        *,
        checks: CheckOptions | None = None,
        schemas: Mapping[str, StreamSchema] | None = None,
    ) -> Iterator[MaterializeResult[Any] | AssetObservation | AssetCheckResult]:
        """Run the selected streams of ``pipeline``; yield each one's result once the loader confirms it.

        Streams the loader never confirmed are not reported; the step then fails naming the plugin.
        ``checks`` are evaluated against ``schemas`` (the catalog the definitions were built from).
        """
        _step_ends_with_run_worker()
        selected = context.selected_asset_keys
        streams = tuple(s for s, key in stream_keys.items() if key in selected)
        subset = streams if len(streams) < len(stream_keys) else None
        ctx = self.app_context()
        log = CollapsedLog(context)
        execution: PipelineExecution | None = None
        stream_checks = StreamChecks(context, ctx.project, pipeline, checks, dict(schemas or {}))
        try:
            options = self._options(context, subset, run_config)
            # A dead predecessor (its step or run worker killed) is settled now, as the crash
            # sensor would at its next tick: given the pool slot, this run must not be refused.
            commands.reconcile_crashed(ctx, lambda run_id: dagster_run_alive(context.instance, run_id))
            # closing(): when Dagster interrupts this step, the run's own clean-up (stop meltano,
            # record CANCELLED) must happen now, before the context is closed, not at collection.
            with closing(run_use_case.execute_pipeline(ctx, pipeline, options)) as updates:
                for update in updates:
                    if isinstance(update, run_use_case.LogUpdate):
                        log(update.level, update.plugin, update.message)
                    elif isinstance(update, run_use_case.StreamUpdate):
                        key = stream_keys.get(update.result.stream)
                        if key is not None and update.result.status is StreamStatus.SUCCEEDED:
                            extra, check_results = stream_checks.on_stream(key, update.result)
                            yield MaterializeResult(
                                asset_key=key,
                                metadata={
                                    **stream_metadata(pipeline, update.execution, update.result),
                                    **extra,
                                },
                                check_results=check_results,
                            )
                    elif isinstance(update, run_use_case.ExecutionUpdate):
                        execution = update.execution
                        if execution.status.is_active:
                            context.log.info(f"execution {execution.id} of {pipeline.id} started")
        except (RecordNotWritten, StateIdBusy) as exc:
            # Said in one line (the store stayed away; another load has the state id), no traceback.
            raise Failure(description=str(exc)) from None
        finally:
            log.flush()
            ctx.close()
        assert execution is not None
        for warning in execution.warnings:
            context.log.warning(warning)
        yield from stream_checks.at_end(execution, stream_keys)
        yield from _regression_observations(execution, stream_keys)
        _fail_unless_complete(pipeline, execution, self._log_tail)

    def _log_tail(self, execution_id: str) -> str:
        """The last lines of an execution's stored log (the CLI's and API's query), as Markdown."""
        ctx = self.app_context()
        try:
            log = execution_logs(ctx, execution_id, LogFilter(tail=FAILURE_LOG_LINES))
        except Exception as exc:  # the step's failure must still be reported, whatever the store does
            return f"the log could not be read: {type(exc).__name__}"
        finally:
            ctx.close()
        if not log.available:
            return f"no log: {log.reason}"
        text = "\n".join(
            f"{line.at:%H:%M:%S} {line.level.upper()} [{line.plugin or 'meltano'}] {strip_ansi(line.message)}"
            for line in log.lines
        )
        return f"```\n{text}\n```\n\n`{md.execution_log(execution_id)}` for the whole log"

    def run_command(
        self, context: AssetExecutionContext, command: Command, run_config: MeltanoRunConfig | None = None
    ) -> None:
        """Run a command block (e.g. ``dbt-postgres:run``) through meltano, logging line by line."""
        _step_ends_with_run_worker()
        ctx = self.app_context()
        log = CollapsedLog(context)
        try:
            options = self._options(context, None, run_config)
            with closing(run_use_case.execute_command(ctx, command, options)) as updates:
                for update in updates:
                    if isinstance(update, run_use_case.LogUpdate):
                        log(update.level, update.plugin, update.message)
        except run_use_case.CommandFailed as exc:
            raise Failure(description=str(exc)) from exc
        finally:
            log.flush()
            ctx.close()


def _regression_observations(
    execution: PipelineExecution, stream_keys: Mapping[str, AssetKey]
) -> Iterator[AssetObservation]:
    """An observation on each stream of a run whose state moved backwards (or was reset)."""
    if not execution.regression_warnings:
        return
    for stream, key in stream_keys.items():
        if stream in execution.results:
            yield AssetObservation(
                asset_key=key,
                metadata={
                    md.STATE_WARNINGS: MetadataValue.json(list(execution.regression_warnings)),
                    md.EXECUTION_ID: MetadataValue.text(execution.id),
                    md.EXECUTION_RECORD: MetadataValue.text(md.execution_record(execution.id)),
                    md.EXECUTION_LOG: MetadataValue.text(md.execution_log(execution.id)),
                },
            )


def _fail_unless_complete(
    pipeline: PipelineDefinition, execution: PipelineExecution, log_tail: Callable[[str], str]
) -> None:
    """Fail the step when the run failed, or succeeded without streams that were asked for
    (``log_tail``: the last lines of an execution's stored log, for the failure's metadata)."""
    missing = [s for s, r in execution.results.items() if r.status is StreamStatus.MISSING]
    if execution.status is ExecutionStatus.SUCCEEDED and missing:
        # The run did what it could, but streams asked for do not exist: the step must say so.
        raise Failure(
            description=f"{pipeline.id}: selected streams the tap does not have: {', '.join(missing)}",
            metadata={
                md.EXECUTION_ID: execution.id,
                md.EXECUTION_RECORD: md.execution_record(execution.id),
                md.MISSING_STREAMS: ", ".join(missing),
            },
        )
    if execution.status is not ExecutionStatus.SUCCEEDED:
        failed = [s for s, r in execution.results.items() if r.status is not StreamStatus.SUCCEEDED]
        raise Failure(
            description=f"{pipeline.id}: {execution.status}: {execution.error}",
            metadata={
                md.EXECUTION_ID: execution.id,
                md.EXECUTION_RECORD: md.execution_record(execution.id),
                md.EXECUTION_LOG: md.execution_log(execution.id),
                md.EXECUTION_LOG_TAIL: MetadataValue.md(log_tail(execution.id)),
                md.FAILED_PLUGIN: execution.failed_plugin or "",
                md.UNCONFIRMED_STREAMS: ", ".join(failed),
            },
        )
