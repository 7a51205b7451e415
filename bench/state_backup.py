"""state_backup: back up 1,000 state ids (< 2 s) and restore one (< 0.5 s), beside ``meltano state get``."""

from __future__ import annotations

import os
import subprocess
import time

from bench._common import BIN, REPO, Config, Databases, Measurement, log, median, sandboxes, subprocess_env

NAME = "state_backup"
STATE_IDS = 1_000
TARGET_BACKUP_SECONDS = 2.0
TARGET_RESTORE_SECONDS = 0.5
MELTANO_SAMPLES = 3


def _state(n: int, day: int) -> object:
    from flx_meltano.domain.state import SingerState

    return SingerState(
        {
            "bookmarks": {
                stream: {
                    "replication_key": "updated_at",
                    "replication_key_value": f"2025-01-{day:02d}T00:00:{n % 60:02d}+00:00",
                }
                for stream in ("customers", "orders", "products", "order_items")
            }
        }
    )


def run(config: Config, databases: Databases) -> list[Measurement]:
    """Public API calls (flx_meltano.state), each in a fresh context, on the systemdb (SQLite) backend."""
    from flx_meltano import state
    from flx_meltano.integration.state_access import MeltanoStateStore, temporary_environ
    from flx_meltano.settings import Settings

    ids = [f"prod:tap-bench-{i:04d}-to-target-postgres" for i in range(STATE_IDS)]
    with databases.store() as store, sandboxes(1) as make, temporary_environ(make("state").env) as _:
        settings = Settings(database_url=store.url, project_dir=REPO, environment="dev")
        seeder = MeltanoStateStore(REPO, "dev")
        log(f"{NAME}: seeding {STATE_IDS:,} state ids in Meltano's system database")
        for n, state_id in enumerate(ids):
            seeder.set(state_id, _state(n, 1))  # type: ignore[arg-type]
        seeder.close()

        start = time.perf_counter()
        first = state.backup(pattern="prod:tap-bench-*", settings=settings)
        backup_seconds = time.perf_counter() - start
        assert len(first.taken) == STATE_IDS, len(first.taken)

        start = time.perf_counter()
        again = state.backup(pattern="prod:tap-bench-*", settings=settings)
        unchanged_seconds = time.perf_counter() - start
        assert not again.taken

        restores = []
        for snapshot in first.taken[:5]:
            start = time.perf_counter()
            state.restore(snapshot.id, to_state_id=snapshot.state_id, settings=settings)
            restores.append(time.perf_counter() - start)

        log(f"{NAME}: {MELTANO_SAMPLES} x meltano state get (a subprocess each)")
        env = subprocess_env({k: os.environ[k] for k in ("MELTANO_DATABASE_URI",)})
        gets = []
        for state_id in ids[:MELTANO_SAMPLES]:
            start = time.perf_counter()
            subprocess.run(
                [str(BIN / "meltano"), "state", "get", state_id],
                cwd=REPO,
                env=env,
                capture_output=True,
                check=True,
                timeout=120,
            )
            gets.append(time.perf_counter() - start)
    per_get = median(gets)
    restore = median(restores)
    return [
        Measurement(
            NAME,
            f"backup of {STATE_IDS:,} state ids (all changed)",
            backup_seconds,
            "s",
            f"< {TARGET_BACKUP_SECONDS:g} s",
            backup_seconds < TARGET_BACKUP_SECONDS,
        ),
        Measurement(NAME, f"backup of {STATE_IDS:,} state ids (none changed)", unchanged_seconds, "s"),
        Measurement(
            NAME,
            "restore of one snapshot, median of 5",
            restore,
            "s",
            f"< {TARGET_RESTORE_SECONDS:g} s",
            restore < TARGET_RESTORE_SECONDS,
        ),
        Measurement(NAME, "meltano state get, one id (subprocess), median", per_get, "s"),
        Measurement(
            NAME,
            f"meltano state get x {STATE_IDS:,} (extrapolated) / flx backup",
            per_get * STATE_IDS / backup_seconds,
            "x",
            details={"meltano_state_get_seconds": gets, "restore_seconds": restores},
        ),
    ]
