"""history_query: ExecutionRepository.history over 1,000,000 executions (target p95 < 50 ms per query)."""

from __future__ import annotations

import time
from typing import Any

from bench._common import Config, Databases, Measurement, log, median, percentile

NAME = "history_query"
TARGET_P95_MS = 50.0
PIPELINE_PREFIX = "bench:"
STREAMS = ("customers", "products", "orders", "order_items")
CHUNK = 250_000

# Executions over the last ~year, one every ~30 s, spread over the pipelines (skewed: some run
# far more often than others), 88% SUCCEEDED, 8% FAILED, 3% CANCELLED, 1% CRASHED; the newest
# two are still RUNNING. State payloads are a realistic size (a bookmark per stream).
FILL_EXECUTIONS = """
INSERT INTO flx.executions (
    id, pipeline_id, status, trigger, started_at, ended_at, duration_seconds, streams, full_refresh,
    error, failed_plugin, exit_code, dagster_run_id, runner_host, runner_pid, state_before,
    state_after, warnings, version)
SELECT
    gen_random_uuid()::text,
    format('{prefix}tap-gen-%s-to-target-postgres', lpad(s.p::text, 2, '0')),
    s.status,
    CASE WHEN s.g % 7 = 0 THEN 'dagster' ELSE 'schedule' END,
    s.started,
    CASE WHEN s.status <> 'RUNNING' THEN s.started + s.duration * interval '1 second' END,
    CASE WHEN s.status <> 'RUNNING' THEN s.duration END,
    '["customers", "products", "orders", "order_items"]'::jsonb,
    s.g % 97 = 0,
    CASE s.status
        WHEN 'FAILED' THEN 'target-postgres: connection to server was lost (exit code 1)'
        WHEN 'CANCELLED' THEN 'cancelled; meltano and its plugins were stopped'
        WHEN 'CRASHED' THEN 'runner process 4242 on worker-1 is gone'
    END,
    CASE WHEN s.status = 'FAILED' THEN 'target-postgres' END,
    CASE WHEN s.status = 'FAILED' THEN 1 WHEN s.status = 'SUCCEEDED' THEN 0 END,
    CASE WHEN s.g % 7 = 0 THEN md5(s.g::text) END,
    'worker-' || (s.g % 3),
    1000 + s.g % 30000,
    jsonb_build_object('bookmarks', jsonb_build_object(
        'customers', jsonb_build_object('replication_key', 'updated_at',
                                        'replication_key_value', s.started - interval '1 day'),
        'orders', jsonb_build_object('replication_key', 'updated_at',
                                     'replication_key_value', s.started - interval '1 day'),
        'order_items', jsonb_build_object('replication_key', 'updated_at',
                                          'replication_key_value', s.started - interval '1 day'))),
    CASE WHEN s.status <> 'RUNNING' THEN jsonb_build_object('bookmarks', jsonb_build_object(
        'customers', jsonb_build_object('replication_key', 'updated_at',
                                        'replication_key_value', s.started),
        'orders', jsonb_build_object('replication_key', 'updated_at',
                                     'replication_key_value', s.started),
        'order_items', jsonb_build_object('replication_key', 'updated_at',
                                          'replication_key_value', s.started))) END,
    '[]'::jsonb,
    CASE WHEN s.status = 'RUNNING' THEN 1 ELSE 6 END
FROM (
    SELECT
        g,
        floor(CAST(:pipelines AS int) * power(random(), 1.5))::int AS p,
        CASE WHEN g <= 2 THEN 'RUNNING'
             WHEN r < 0.88 THEN 'SUCCEEDED'
             WHEN r < 0.96 THEN 'FAILED'
             WHEN r < 0.99 THEN 'CANCELLED'
             ELSE 'CRASHED' END AS status,
        now() - g * interval '30 seconds' - random() * interval '20 seconds' AS started,
        5 + random() * 300 AS duration
    FROM (
        SELECT g, random() AS r
        FROM generate_series(CAST(:low AS bigint), CAST(:high AS bigint)) AS g
    ) AS numbered
) AS s
"""

FILL_RESULTS = """
INSERT INTO flx.stream_results (
    execution_id, stream, status, records, duration_seconds, bookmark, finished_at)
SELECT
    e.id,
    s.stream,
    CASE WHEN e.status = 'SUCCEEDED' OR s.stream <> 'order_items' THEN 'SUCCEEDED' ELSE 'FAILED' END,
    (random() * 20000)::bigint,
    random() * 60,
    jsonb_build_object('replication_key', 'updated_at', 'replication_key_value', e.started_at),
    e.started_at + random() * interval '5 minutes'
FROM (
    SELECT id, status, started_at FROM flx.executions
    WHERE pipeline_id LIKE '{prefix}%' AND status <> 'RUNNING'
    ORDER BY started_at DESC LIMIT CAST(:newest AS bigint)
) AS e
CROSS JOIN unnest(ARRAY['customers', 'products', 'orders', 'order_items']) AS s(stream)
"""


def _fill(engine: Any, config: Config) -> dict[str, Any]:
    import sqlalchemy as sa

    facts: dict[str, Any] = {}
    start = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT setseed(0.42)"))
        for low in range(1, config.history_rows + 1, CHUNK):
            high = min(config.history_rows, low + CHUNK - 1)
            conn.execute(
                sa.text(FILL_EXECUTIONS.format(prefix=PIPELINE_PREFIX)),
                {"pipelines": config.history_pipelines, "low": low, "high": high},
            )
            log(f"{NAME}: {high:,} of {config.history_rows:,} executions")
    facts["fill_executions_s"] = time.perf_counter() - start
    start = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.text(FILL_RESULTS.format(prefix=PIPELINE_PREFIX)), {"newest": config.history_results})
    facts["fill_stream_results_s"] = time.perf_counter() - start
    start = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("ANALYZE flx.executions"))
        conn.execute(sa.text("ANALYZE flx.stream_results"))
    facts["analyze_s"] = time.perf_counter() - start
    with engine.connect() as conn:
        facts["executions"] = conn.execute(sa.text("SELECT count(*) FROM flx.executions")).scalar_one()
        facts["stream_results"] = conn.execute(
            sa.text("SELECT count(*) FROM flx.stream_results")
        ).scalar_one()
        facts["executions_size"] = conn.execute(
            sa.text("SELECT pg_size_pretty(pg_total_relation_size('flx.executions'))")
        ).scalar_one()
    return facts


def _median_pipeline(engine: Any) -> str:
    """A pipeline with a typical number of executions (neither the busiest nor the rarest)."""
    import sqlalchemy as sa

    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT pipeline_id FROM flx.executions WHERE pipeline_id LIKE :prefix "
                "GROUP BY pipeline_id ORDER BY count(*), pipeline_id"
            ),
            {"prefix": f"{PIPELINE_PREFIX}%"},
        ).all()
    return str(rows[len(rows) // 2][0])


def _capture(engine: Any, call: Any) -> list[tuple[str, Any]]:
    """The SQL statements (with parameters) one call sends."""
    import sqlalchemy as sa

    seen: list[tuple[str, Any]] = []

    def listener(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        call()
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)
    return seen


def _explain(engine: Any, statements: list[tuple[str, Any]]) -> str:
    plans: list[str] = []
    with engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        for statement, parameters in statements:
            if not statement.lstrip().upper().startswith("SELECT") or "executions" not in statement:
                continue
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            plans.append(statement.strip() + "\n" + "\n".join(row[0] for row in cursor.fetchall()))
        conn.rollback()
    return "\n\n".join(plans)


def run(config: Config, databases: Databases) -> list[Measurement]:
    """p50/p95 of four history queries, each through a unit of work as the CLI and UI do it."""
    from flx_meltano.domain.values import ExecutionStatus
    from flx_meltano.persistence import database
    from flx_meltano.persistence.execution_repository import ExecutionFilter
    from flx_meltano.persistence.unit_of_work import SqlUnitOfWork

    measurements: list[Measurement] = []
    with databases.store() as store:
        engine = database.ready_engine(store.url)
        try:
            log(f"{NAME}: {config.history_rows:,} executions, {config.history_pipelines} pipelines")
            facts = _fill(engine, config)
            pipeline = _median_pipeline(engine)
            queries = {
                "newest 50 overall": ExecutionFilter(),
                "newest 50 of one pipeline": ExecutionFilter(pipeline_id=pipeline),
                "newest 50 FAILED": ExecutionFilter(status=ExecutionStatus.FAILED),
                "newest 50 FAILED of one pipeline": ExecutionFilter(
                    pipeline_id=pipeline, status=ExecutionStatus.FAILED
                ),
            }
            for label, query in queries.items():

                def once(query: ExecutionFilter = query) -> int:
                    with SqlUnitOfWork(engine) as uow:
                        return len(uow.executions.history(query))

                for _ in range(10):  # warm-up: caches, hint bits
                    returned = once()
                samples: list[float] = []
                for _ in range(config.iterations):
                    start = time.perf_counter()
                    once()
                    samples.append((time.perf_counter() - start) * 1000)
                p50, p95 = percentile(samples, 0.50), percentile(samples, 0.95)
                details: dict[str, Any] = {
                    "filter": {
                        "pipeline_id": query.pipeline_id,
                        "status": query.status,
                        "limit": query.limit,
                    },
                    "rows_returned": returned,
                    "iterations": config.iterations,
                    "p50_ms": p50,
                    "p95_ms": p95,
                    "median_ms": median(samples),
                    "max_ms": max(samples),
                    **facts,
                }
                passed = p95 < TARGET_P95_MS
                details["plan"] = _explain(engine, _capture(engine, once))  # printed on a miss
                log(f"{NAME}: {label}: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
                measurements.append(Measurement(NAME, f"{label}: p50", p50, "ms", "", None, details))
                measurements.append(
                    Measurement(NAME, f"{label}: p95", p95, "ms", f"< {TARGET_P95_MS:g} ms", passed, details)
                )
        finally:
            if not store.owned:
                with engine.begin() as conn:
                    import sqlalchemy as sa

                    conn.execute(
                        sa.text("DELETE FROM flx.executions WHERE pipeline_id LIKE :p"),
                        {"p": f"{PIPELINE_PREFIX}%"},
                    )
    return measurements
