"""Live progress of a run in the terminal: one row per stream, logs of warnings and errors."""

from __future__ import annotations

from types import TracebackType

from rich.live import Live
from rich.table import Table

from flx_meltano.application.run import ExecutionUpdate, LogUpdate, ProgressUpdate, RunUpdate, StreamUpdate
from flx_meltano.cli.output import console, count_text, status_text
from flx_meltano.domain.execution import PipelineExecution, StreamResult


class LiveProgress:
    """Draws a table of streams from a run's updates, updating as records move."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.rows: dict[tuple[str, str], list[str]] = {}
        # Live pulls the table at its own refresh rate: progress events only change the rows (a run
        # can send tens of thousands of them; rebuilding the table for each would cost seconds).
        self.live = Live(console=console, refresh_per_second=8, transient=False, get_renderable=self._table)

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.live.refresh()
        self.live.__exit__(exc_type, exc, tb)
        console.print()

    def _table(self) -> Table:
        table = Table(header_style="bold", title="streams", title_justify="left")
        for column in ("pipeline", "stream", "extracted", "loaded", "status", "duration"):
            table.add_column(column, justify="right" if column in ("extracted", "loaded") else "left")
        for (pipeline, stream), row in self.rows.items():
            table.add_row(pipeline, stream, *row)
        return table

    def show(self, update: RunUpdate) -> None:
        """Take one update of the run."""
        if isinstance(update, LogUpdate):
            self.on_log(update.level, update.plugin, update.message)
        elif isinstance(update, ProgressUpdate):
            self.on_progress(update.pipeline_id, update.stream, update.extracted, update.loaded)
        elif isinstance(update, StreamUpdate):
            self.on_stream(update.execution, update.result)
        elif isinstance(update, ExecutionUpdate):
            self.on_execution(update.execution)

    def on_log(self, level: str, plugin: str | None, message: str) -> None:
        """Show warnings and errors (everything with --verbose) above the table."""
        if self.verbose or level in ("warning", "error", "critical"):
            style = "red" if level in ("error", "critical") else "yellow" if level == "warning" else "dim"
            prefix = f"{plugin} | " if plugin else ""
            self.live.console.print(f"[{style}]{prefix}{message}[/{style}]", highlight=False, markup=True)

    def on_progress(self, pipeline_id: str, stream: str, extracted: int | None, loaded: int | None) -> None:
        """Update a stream's counters (``?`` where no plugin reports one)."""
        row = self.rows.setdefault((pipeline_id, stream), ["?", "?", "running", "-"])
        row[0], row[1] = count_text(extracted), count_text(loaded)

    def on_stream(self, execution: PipelineExecution, result: StreamResult) -> None:
        """Mark a stream done (or failed)."""
        row = self.rows.setdefault((execution.pipeline_id, result.stream), ["?", "?", "", "-"])
        row[1] = count_text(result.records)
        row[2] = status_text(str(result.status))
        row[3] = str(result.duration) if result.duration else "-"

    def on_execution(self, execution: PipelineExecution) -> None:
        """Add the streams of a starting execution as pending rows; a closed one settles them all."""
        for stream in execution.streams:
            self.rows.setdefault((execution.pipeline_id, stream), ["?", "?", "pending", "-"])
        if execution.status.is_terminal:
            for result in execution.results.values():
                self.on_stream(execution, result)
