"""Dagster faults through a real daemon: kill -9 of the run worker, kill -9 of the step process.

One ``dagster dev`` (webserver, daemon, code server) serves the reference project, as in
test_dagster_e2e. Each test launches the job of the reference pipeline with tap-shopsim slowed
down, kills one Dagster process of the run while the tap loads, and launches the job again at
once. It asserts: no process of the first load outlives a bounded time; the second load's tap
starts only once every process of the first load is gone; the pool slot of the killed run is
freed (the second run is not stuck QUEUED) and it succeeds; the first execution ends CRASHED or
FAILED, not RUNNING, with no false count of 0; every source record is in the output exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from flx_meltano.domain.values import ExecutionStatus
from tests.test_dagster_e2e import REPO, DagsterDev, _meltano_config, _show_dagster_log_on_failure, dagster
from tests.test_faults import (
    GONE_WITHIN_SECONDS,
    LOAD,
    SLOW_TAP,
    Lifetimes,
    Seen,
    assert_every_record_once,
)

pytestmark = [pytest.mark.slow, pytest.mark.faults]
__all__ = ["_show_dagster_log_on_failure", "dagster"]  # fixtures of this module too

FLX = str(REPO / ".venv" / "bin" / "flx-meltano")
# The killed run's slot is freed by the daemon's run monitor (dagster.yaml: a poll every 15 s,
# slots of ended runs freed after 30 s); the second run then loads everything (~15 s).
SECOND_RUN_SECONDS = 240
RECORD_CLOSED_SECONDS = 120
# From launch to the tap: the daemon's queue, the run worker, the step process, meltano (a minute
# on a loaded machine), and any run of the same extractor holding its lock.
TAP_STARTS_SECONDS = 300


def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except OSError:
        return []


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[1])
    except OSError:
        return 0


def ancestors(pid: int) -> list[tuple[int, list[str]]]:
    """The process and its ancestors up to init, each with its command line."""
    chain = []
    while pid > 1:
        chain.append((pid, _argv(pid)))
        pid = _parent(pid)
    return chain


def dagster_process(chain: list[tuple[int, list[str]]], victim: str) -> int:
    """The step process (the nearest multiprocessing child among a load's ancestors) or the run
    worker (its parent: with the default launcher, a multiprocessing child of the code server)."""
    steps = [i for i, (_, argv) in enumerate(chain) if "multiprocessing.spawn" in " ".join(argv)]
    assert steps, f"no step process among the load's ancestors: {[' '.join(a)[:100] for _, a in chain]}"
    step = steps[0]
    return chain[step][0] if victim == "step process" else chain[step + 1][0]


def _run_config(tmp_path: Path, load: str, **extra: str) -> dict[str, Any]:
    return _meltano_config(
        MELTANO_DATABASE_URI=f"sqlite:///{tmp_path / 'meltano.db'}",
        TARGET_JSONLINES_DESTINATION_PATH=str(tmp_path / "out"),
        **{LOAD: f"{tmp_path.name}-{load}"},
        **extra,
    )


def is_target(argv: list[str]) -> bool:
    return any(arg.endswith("/target-jsonlines") for arg in argv)


def wait_for_live_load(dagster: DagsterDev, lifetimes: Lifetimes, run_id: str, load: str) -> int:
    """The pid of the load's tap once it syncs into a live target (fails if the run ends first)."""
    deadline = time.monotonic() + TAP_STARTS_SECONDS
    while True:
        latest = lifetimes.latest
        alive = {pid: s for pid, s in list(lifetimes.seen.items()) if s.load == load and s.last >= latest}
        taps = [pid for pid, s in alive.items() if s.is_tap_sync]
        if taps and any(is_target(s.argv) for s in alive.values()):
            return taps[0]
        status = dagster.run_status(run_id)
        assert status not in {"SUCCESS", "FAILURE", "CANCELED"}, dagster.explain(run_id)
        assert time.monotonic() < deadline, f"the tap of run {run_id} never started ({status})"
        time.sleep(0.1)


def closed_record(dagster: DagsterDev, run_id: str) -> Any:
    """The run's execution once it is no longer RUNNING (crash reconciliation, as `flx-meltano
    reconcile` does it, is asked again until then)."""
    env = {**os.environ, "FLX_DATABASE_URL": dagster.store_url, "FLX_PROJECT_DIR": str(REPO)}
    deadline = time.monotonic() + RECORD_CLOSED_SECONDS
    while True:
        [execution] = dagster.executions_of(run_id)
        if not execution.status.is_active:
            return execution
        assert time.monotonic() < deadline, f"execution {execution.id} still {execution.status}"
        reconciled = subprocess.run(
            [FLX, "reconcile"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )
        assert reconciled.returncode == 0, reconciled.stderr
        time.sleep(1)


@pytest.mark.parametrize("victim", ["run worker", "step process"])
def test_kill_9_of_a_dagster_process_ends_the_load_frees_the_pool_and_a_rerun_loads_everything_once(
    dagster, tmp_path, victim
):
    lifetimes = Lifetimes(tag=tmp_path.name)
    with lifetimes.watching():
        first = dagster.launch("shop_to_files", run_config=_run_config(tmp_path, "first", **SLOW_TAP))
        # Killed as soon as the tap syncs into the target: ~560 records at 40 ms each are ~20 s
        # of loading left, so the kill lands in a live load (checked below), far from its end.
        tap = wait_for_live_load(dagster, lifetimes, first, "first")
        chain = ancestors(tap)
        assert Seen("first", chain[0][1], 0, 0).is_tap_sync, f"the tap {tap} ended before the kill"
        target = dagster_process(chain, victim)
        os.kill(target, signal.SIGKILL)
        faulted = time.monotonic()
        # The same job again, at once: it must not load while the first load lives, nor wait forever.
        second = dagster.launch("shop_to_files", run_config=_run_config(tmp_path, "second"))
        gone_after = lifetimes.wait_gone("first", faulted)
        assert dagster.wait_for_run(first, timeout=120) == "FAILURE", dagster.explain(first)
        assert dagster.wait_for_run(second, timeout=SECOND_RUN_SECONDS) == "SUCCESS", dagster.explain(second)
    assert gone_after < GONE_WITHIN_SECONDS

    first_load = lifetimes.of("first")
    second_taps = [s for s in lifetimes.of("second") if s.is_tap_sync]
    assert second_taps, "the second load's tap was never seen"
    last_of_first = max(s.last for s in first_load)
    assert min(s.first for s in second_taps) > last_of_first, (
        "two loads of one state id overlapped: the second tap started while "
        f"{[s.argv[:3] for s in first_load if s.last >= min(t.first for t in second_taps)]} lived"
    )

    execution = closed_record(dagster, first)
    assert execution.status in {ExecutionStatus.CRASHED, ExecutionStatus.FAILED}, execution
    assert execution.ended_at is not None
    # Counts are what the loader confirmed before the kill, or unknown: never a made-up 0.
    assert execution.records != 0, execution.results
    for result in execution.results.values():
        assert result.records is None or result.records > 0, result
    [rerun] = dagster.executions_of(second)
    assert rerun.status is ExecutionStatus.SUCCEEDED
    assert_every_record_once(tmp_path / "out")
