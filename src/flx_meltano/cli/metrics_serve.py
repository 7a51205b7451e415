"""``flx-meltano metrics serve``: a Prometheus exporter over the store, read at every scrape
(imported only when it serves; the command is registered by ``cli/metrics.py``)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from importlib.metadata import version
from types import FrameType
from typing import Annotated

import typer
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

from flx_meltano.application.context import AppContext
from flx_meltano.application.monitoring import store_figures
from flx_meltano.bootstrap import app_context
from flx_meltano.cli.context import settings
from flx_meltano.cli.output import console
from flx_meltano.domain.values import ExecutionStatus, StreamStatus
from flx_meltano.persistence.database import redact_url
from flx_meltano.persistence.metrics_repository import Histogram

logger = logging.getLogger(__name__)
DEFAULT_PORT = 9467
PIPELINE = ["pipeline"]
STREAM = ["pipeline", "stream"]


def _add_histogram(family: HistogramMetricFamily, labels: list[str], histogram: Histogram | None) -> None:
    if histogram is None:
        return
    buckets = [(repr(float(bound)), count) for bound, count in histogram.buckets]
    family.add_metric(labels, [*buckets, ("+Inf", histogram.count)], histogram.total)


class StoreCollector(Collector):
    """Prometheus metrics of every pipeline and stream in the store, read when scraped."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def describe(self) -> list[Metric]:
        """Nothing up front: registering must not query the store."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Read the store now; on failure only ``flx_meltano_up 0`` (and one log line)."""
        started = time.monotonic()
        up = GaugeMetricFamily("flx_meltano_up", "1 when the flx store answered this scrape, else 0.")
        try:
            figures = store_figures(self.ctx)
        except Exception as exc:  # any store failure: report it as up=0, not a 500 without metrics
            logger.warning("flx store unreachable: %s", str(exc).splitlines()[0] if str(exc) else repr(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        info = GaugeMetricFamily("flx_meltano_info", "flx-meltano's version.", labels=["version"])
        info.add_metric([version("flx-meltano")], 1)
        yield info

        executions = CounterMetricFamily(
            "flx_meltano_executions", "Executions of a pipeline, by status.", labels=[*PIPELINE, "status"]
        )
        running = GaugeMetricFamily(
            "flx_meltano_executions_running", "Executions RUNNING now.", labels=PIPELINE
        )
        last_success = GaugeMetricFamily(
            "flx_meltano_last_success_timestamp_seconds",
            "When the newest SUCCEEDED execution of a pipeline ended (Unix time).",
            labels=PIPELINE,
        )
        duration = HistogramMetricFamily(
            "flx_meltano_execution_duration_seconds", "Durations of finished executions.", labels=PIPELINE
        )
        regressions = CounterMetricFamily(
            "flx_meltano_state_regressions",
            "Executions flagged for a state regression (empty state, or a bookmark moved backward).",
            labels=PIPELINE,
        )
        for p in figures.pipelines:
            for status in map(str, ExecutionStatus):
                executions.add_metric([p.pipeline_id, status], p.executions_by_status.get(status, 0))
            running.add_metric([p.pipeline_id], p.executions_by_status.get(str(ExecutionStatus.RUNNING), 0))
            if p.last_success is not None:
                last_success.add_metric([p.pipeline_id], p.last_success.timestamp())
            _add_histogram(duration, [p.pipeline_id], p.duration)
            regressions.add_metric([p.pipeline_id], p.state_regressions)
        yield from (executions, running, last_success, duration, regressions)

        results = CounterMetricFamily(
            "flx_meltano_stream_results",
            "Stream results of executions, by status.",
            labels=[*STREAM, "status"],
        )
        records = CounterMetricFamily(
            "flx_meltano_records_loaded", "Records loaded, over all executions (known counts).", labels=STREAM
        )
        last_records = GaugeMetricFamily(
            "flx_meltano_stream_last_records",
            "Records of the stream in the newest of its pipeline's last 100 executions that ran it.",
            labels=STREAM,
        )
        stream_success = GaugeMetricFamily(
            "flx_meltano_stream_last_success_timestamp_seconds",
            "When the stream last finished SUCCEEDED (Unix time).",
            labels=STREAM,
        )
        stream_duration = HistogramMetricFamily(
            "flx_meltano_stream_duration_seconds",
            "Sync durations of a stream in finished executions.",
            labels=STREAM,
        )
        for s in figures.streams:
            labels = [s.pipeline_id, s.stream]
            statuses = {str(status) for status in StreamStatus} | set(s.results_by_status)
            for stream_status in sorted(statuses):
                results.add_metric([*labels, stream_status], s.results_by_status.get(stream_status, 0))
            records.add_metric(labels, s.records_loaded)
            if s.last_records is not None:
                last_records.add_metric(labels, s.last_records)
            if s.last_success is not None:
                stream_success.add_metric(labels, s.last_success.timestamp())
            _add_histogram(stream_duration, labels, s.duration)
        yield from (results, records, last_records, stream_success, stream_duration)

        scrape = GaugeMetricFamily(
            "flx_meltano_scrape_duration_seconds", "Seconds this scrape read the store."
        )
        scrape.add_metric([], time.monotonic() - started)
        yield scrape


def registry_for(ctx: AppContext) -> CollectorRegistry:
    """A registry holding only the store collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(ctx))
    return registry


def serve(
    port: Annotated[int, typer.Option(help="Port of the /metrics endpoint.")] = DEFAULT_PORT,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",  # noqa: S104 - an exporter is scraped from elsewhere
) -> None:
    """Serve Prometheus metrics of every pipeline and stream at /metrics, read from the store per scrape."""
    ctx = app_context(settings())
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    server, thread = start_http_server(port, addr=host, registry=registry_for(ctx))
    console.print(
        f"serving http://{host}:{server.server_port}/metrics from {redact_url(ctx.store_url())} "
        "(Ctrl-C or SIGTERM stops)",
        highlight=False,
    )
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        ctx.close()
