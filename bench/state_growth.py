"""state_growth: a store holding a 50 MB state grows by one copy per changed snapshot, not per run.

Imports a valid state of ``--state-mb`` megabytes for the reference pipeline (an archived
stream's bookmark holding a large opaque cursor, which the tap and Meltano carry along), then runs
``flx-meltano run`` ``--growth-runs`` times: the simulated day moves on only every other run, so
some runs change the state (bookmarks move) and the others leave it as it was. Reports the growth
of the ``flx`` tables (``pg_total_relation_size``) and of ``pg_dump --schema=flx`` against the
copies of the state that changed.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench._common import (
    BIN,
    REFERENCE_PIPELINE,
    REPO,
    Config,
    Databases,
    Measurement,
    log,
    plugins_installed,
    sandboxes,
    subprocess_env,
)

NAME = "state_growth"
START = datetime(2024, 1, 1, tzinfo=UTC)
MB = 1024 * 1024
# The store may hold one copy per changed state and a little more (rows, events, indexes): a
# copy per run would be a multiple of this.
TARGET_SLACK_COPIES = 0.5
SCALE = 100


def big_state(megabytes: int) -> Any:
    """A valid Singer state of about ``megabytes`` MB: an archived stream's bookmark holding an
    opaque cursor (random bytes in base64, which no compression makes small), as some taps keep
    a blob of what they have seen."""
    from flx_meltano.domain.state import SingerState

    blob = base64.b64encode(secrets.token_bytes(megabytes * MB * 3 // 4)).decode()
    return SingerState(
        {
            "bookmarks": {
                "archived_events": {
                    "replication_key": "updated_at",
                    "replication_key_value": "2023-12-31T00:00:00+00:00",
                    "seen": blob,
                }
            }
        }
    )


def flx_table_bytes(conninfo: str) -> int:
    """pg_total_relation_size over every table of the flx schema (heap, TOAST, indexes)."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'flx' AND c.relkind = 'r'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def dump_bytes(conninfo: str) -> int | None:
    """Bytes of ``pg_dump --schema=flx`` (None when pg_dump cannot dump this server)."""
    result = subprocess.run(
        ["pg_dump", "--schema=flx", "--format=plain", conninfo],
        capture_output=True,
        check=False,
        timeout=600,
    )
    return len(result.stdout) if result.returncode == 0 else None


def _conninfo(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _run(env: dict[str, str], day: int) -> dict[str, Any]:
    as_of = (START + timedelta(days=day)).isoformat()
    result = subprocess.run(
        [str(BIN / "flx-meltano"), "run", REFERENCE_PIPELINE, "--json"],
        cwd=REPO,
        env=subprocess_env({**env, "TAP_SHOPSIM_AS_OF": as_of}),
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    try:
        [execution] = json.loads(result.stdout)
    except ValueError:
        raise RuntimeError(
            f"flx-meltano run exited {result.returncode}: {result.stderr.strip()[-500:]}"
        ) from None
    if execution["status"] != "SUCCEEDED":
        raise RuntimeError(f"run ended {execution['status']}: {execution['error']}")
    return dict(execution)


def run(config: Config, databases: Databases) -> list[Measurement]:
    """Import, measure, run, measure (the reference project, its own Meltano system database)."""
    from flx_meltano import state as state_api
    from flx_meltano.domain import state_file
    from flx_meltano.domain.state import canonical_json
    from flx_meltano.integration.state_access import temporary_environ
    from flx_meltano.settings import Settings

    if not plugins_installed():
        raise RuntimeError("the reference plugins are not installed: run 'make setup'")
    with databases.store() as store, sandboxes(SCALE) as make, tempfile.TemporaryDirectory() as tmp:
        sandbox = make("growth")
        env = {
            **sandbox.env,
            "FLX_DATABASE_URL": store.url,
            "FLX_PROJECT_DIR": str(REPO),
            # Meltano refuses Singer lines longer than its buffer (100 MiB): the tap's STATE
            # messages carry the whole state, so a large one needs more.
            "MELTANO_ELT_BUFFER_SIZE": str(max(100, 4 * config.state_mb) * MB),
        }
        settings = Settings(database_url=store.url, project_dir=REPO, environment="dev")
        conninfo = _conninfo(store.url)
        state = big_state(config.state_mb)
        exported = Path(tmp) / "state.json"
        exported.write_text(
            state_file.render(
                [state_file.ExportedState(REFERENCE_PIPELINE, state)],
                exported_at=datetime.now(UTC),
                source={"bench": NAME},
            )
        )
        state_bytes = len(canonical_json(state.payload()).encode())
        log(
            f"{NAME}: importing a {state_bytes / MB:.1f} MB state "
            f"({exported.stat().st_size / MB:.1f} MB as a file)"
        )
        with temporary_environ(sandbox.env):
            state_api.import_(exported, settings=settings)
            [imported] = state_api.list_snapshots(REFERENCE_PIPELINE, settings=settings)
        before_tables, before_dump = flx_table_bytes(conninfo), dump_bytes(conninfo)
        with psycopg.connect(conninfo) as conn:
            row = conn.execute(
                "SELECT pg_column_size(state) FROM flx.state_snapshots WHERE id = %s", (imported.id,)
            ).fetchone()
        assert row is not None
        copy_bytes = int(row[0])

        started = time.perf_counter()
        executions = []
        for index in range(config.growth_runs):
            executions.append(_run(env, day=1 + (index + 1) // 2))  # days 1, 2, 2, 3, 3, ...
            log(f"{NAME}: run {index + 1}/{config.growth_runs} ({time.perf_counter() - started:.0f} s)")
        after_tables, after_dump = flx_table_bytes(conninfo), dump_bytes(conninfo)
        with temporary_environ(sandbox.env):
            snapshots = state_api.list_snapshots(REFERENCE_PIPELINE, settings=settings)
            live = state_api.get(snapshots[0].id, settings=settings).state
    if "archived_events" not in live.bookmarks:
        raise RuntimeError("the runs dropped the imported bookmark: the state measured is not 50 MB")
    changed = len(snapshots) - 1  # the import's snapshot was there before
    checksums = [e["state_after"]["checksum"] for e in executions]
    distinct_after = len(dict.fromkeys(checksums))
    growth = after_tables - before_tables
    allowed = (changed + TARGET_SLACK_COPIES) * copy_bytes
    per_copy = growth / changed / copy_bytes if changed else 0.0
    runs = config.growth_runs
    details = {
        "state_json_bytes": state_bytes,
        "stored_copy_bytes": copy_bytes,
        "flx_tables_before": before_tables,
        "flx_tables_after": after_tables,
        "pg_dump_before": before_dump,
        "pg_dump_after": after_dump,
        "executions": runs,
        "snapshots_added": changed,
        "distinct_states_after_runs": distinct_after,
    }
    measurements = [
        Measurement(NAME, "state imported (canonical JSON)", state_bytes / MB, "MB"),
        Measurement(NAME, "one stored copy (TOAST, compressed)", copy_bytes / MB, "MB"),
        Measurement(NAME, "flx tables before the runs", before_tables / MB, "MB"),
        Measurement(
            NAME,
            f"flx tables growth over {runs} runs ({changed} changed states)",
            growth / MB,
            "MB",
            f"< {(changed + TARGET_SLACK_COPIES):g} copies = {allowed / MB:.0f} MB",
            growth < allowed,
            details=details,
        ),
        Measurement(NAME, "growth per changed snapshot, in stored copies", per_copy, "x"),
        Measurement(NAME, "growth per execution, in stored copies", growth / runs / copy_bytes, "x"),
    ]
    if before_dump is not None and after_dump is not None:
        measurements += [
            Measurement(NAME, "pg_dump --schema=flx before the runs", before_dump / MB, "MB"),
            Measurement(
                NAME, f"pg_dump --schema=flx growth over {runs} runs", (after_dump - before_dump) / MB, "MB"
            ),
        ]
    else:
        measurements[-1].details["notes"] = ["pg_dump could not dump this server (version?): not measured"]
    return measurements
