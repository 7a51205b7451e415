"""Named faults against real meltano: whatever kills the runner, the load dies with it, alone.

Each test starts a real ``flx-meltano run`` of the reference project (tap-shopsim slowed down by
``TAP_SHOPSIM_RECORD_DELAY_MS`` so the load lasts a few seconds), injects its fault while the tap
is loading, and starts a second ``flx-meltano run`` of the same state id right after. It asserts:
no process of the first load outlives a bounded time; the second load's tap starts only after
every process of the first load is gone (one load per state id); the record says what happened;
after the rerun every source record is in the output exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flx_meltano.application import queries
from flx_meltano.domain.values import ExecutionStatus
from flx_meltano.integration.launcher import MeltanoRun, RunRequest
from flx_meltano.integration.run_events import LogRecord

pytestmark = [pytest.mark.slow, pytest.mark.faults]
REPO = Path(__file__).resolve().parents[1]
FLX = str(REPO / ".venv" / "bin" / "flx-meltano")
MELTANO = str(REPO / ".venv" / "bin" / "meltano")
FILES_PIPELINE = "dev:tap-shopsim-to-target-jsonlines"
LOAD = "FLX_FAULT_LOAD"  # environment variable naming which load a process belongs to
# ~560 records: over 20 s of loading, far longer than stopping takes, so a load that goes on after
# the fault (meltano outliving its runner) is told apart from one that was stopped.
SLOW_TAP = {"TAP_SHOPSIM_RECORD_DELAY_MS": "40"}
# From the fault to the last process of the load: SIGTERM, meltano's own shutdown, and on a
# busy machine some seconds more (the supervisor's SIGKILL comes 5 s after its SIGTERM).
GONE_WITHIN_SECONDS = 15.0
STREAM_KEYS = {
    "customers": ("id",),
    "products": ("id",),
    "orders": ("id",),
    "order_items": ("order_id", "line_number"),
}


# --- what the source holds ------------------------------------------------------------------------


def source_keys() -> dict[str, set[tuple[Any, ...]]]:
    """The primary keys of every record tap-shopsim has for the reference project's settings."""
    from tap_shopsim.generator import ShopSimulator

    sim = ShopSimulator.from_settings(seed=42, scale=100, start_date="2024-01-01T00:00:00Z")
    orders = list(sim.pending_indexes())
    return {
        "customers": {(sim.customer(i)["id"],) for i in sim.pending_indexes()},
        "products": {(sim.product(i)["id"],) for i in range(sim.scale)},
        "orders": {(sim.order(i)["id"],) for i in orders},
        "order_items": {
            (item["order_id"], item["line_number"]) for i in orders for item in sim.order_items(i)
        },
    }


def assert_every_record_once(output: Path) -> None:
    """Each stream's file holds every source key exactly once (target-jsonlines upserts)."""
    expected = source_keys()
    for stream, key in STREAM_KEYS.items():
        path = output / f"{stream}.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        keys = [tuple(row[k] for k in key) for row in rows]
        assert len(keys) == len(set(keys)), f"{stream}: a record is in the output twice"
        assert set(keys) == expected[stream], f"{stream}: records missing or unknown"
    assert not list(output.glob(".*.tmp")), "target-jsonlines left a temporary file"


# --- who was alive when ---------------------------------------------------------------------------


@dataclass
class Seen:
    """One process of a load: its command line and when it was first and last seen alive."""

    load: str
    argv: list[str]
    first: float
    last: float

    @property
    def is_tap_sync(self) -> bool:
        return any(arg.endswith("/tap-shopsim") for arg in self.argv) and "--discover" not in self.argv


@dataclass
class Lifetimes:
    """Polls /proc for processes whose environment names a load (``FLX_FAULT_LOAD=<load>``)."""

    tag: str
    interval: float = 0.03
    seen: dict[int, Seen] = field(default_factory=dict)
    latest: float = 0.0  # when the last complete poll began
    _stop: threading.Event = field(default_factory=threading.Event)

    def _environ_load(self, pid: int) -> str | None:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            return None
        if state == "Z":
            return None
        prefix = f"{LOAD}={self.tag}-".encode()
        for item in environ.split(b"\0"):
            if item.startswith(prefix):
                return item[len(prefix) :].decode()
        return None

    def poll(self) -> None:
        now = time.monotonic()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            pid = int(entry.name)
            load = self._environ_load(pid)
            if load is None:
                continue
            if pid in self.seen and self.seen[pid].load == load:
                self.seen[pid].last = now
            else:
                try:
                    argv = (entry / "cmdline").read_bytes().decode("utf-8", "replace").split("\0")
                except OSError:
                    continue
                self.seen[pid] = Seen(load, argv, now, now)
        self.latest = now

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval)

    @contextmanager
    def watching(self) -> Iterator[Lifetimes]:
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()

    def of(self, load: str) -> list[Seen]:
        return [seen for seen in list(self.seen.values()) if seen.load == load]

    def wait_for_tap(self, load: str, runner: subprocess.Popen[str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(s.is_tap_sync for s in self.of(load)):
            if runner.poll() is not None:
                pytest.fail(f"the run ended before its tap was seen: {runner.communicate()}")
            assert time.monotonic() < deadline, "the tap never started"
            time.sleep(0.05)

    def wait_gone(self, load: str, since: float) -> float:
        """Seconds from ``since`` until no process of the load is alive (fails past the bound)."""
        while True:
            latest = self.latest
            alive = [seen for seen in self.of(load) if seen.last >= latest]
            if latest > since and not alive:
                return max(seen.last for seen in self.of(load)) - since
            assert time.monotonic() - since < GONE_WITHIN_SECONDS, (
                f"processes of load {load} still alive {GONE_WITHIN_SECONDS:g}s after the fault: "
                f"{[seen.argv[:3] for seen in alive]}"
            )
            time.sleep(0.05)


# --- runs -----------------------------------------------------------------------------------------


@pytest.fixture
def fault_env(meltano_sandbox, default_store_url) -> dict[str, str]:
    """Environment of a ``flx-meltano run`` subprocess writing into this test's sandbox and store."""
    return {
        **os.environ,
        **meltano_sandbox.env,
        "FLX_DATABASE_URL": default_store_url,
        "FLX_PROJECT_DIR": str(REPO),
    }


def start_run(env: dict[str, str], tag: str, load: str, **extra: str) -> subprocess.Popen[str]:
    """``flx-meltano run`` of the reference pipeline, leading its own process group."""
    return subprocess.Popen(
        [FLX, "run", FILES_PIPELINE, "--json", "--force"],
        cwd=REPO,
        env={**env, LOAD: f"{tag}-{load}", **extra},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def flx(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLX, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def the_execution(ctx: Any) -> Any:
    [execution] = queries.execution_history(ctx, pipeline=FILES_PIPELINE)
    return execution


def fault_then_rerun(
    fault: str, meltano_sandbox: Any, default_store_url: str, fault_env: dict[str, str], tmp_path: Path
) -> tuple[Any, Lifetimes, float]:
    """Run, inject ``fault`` while the tap loads, rerun at once; check the common guarantees."""
    ctx = meltano_sandbox.context(default_store_url)
    lifetimes = Lifetimes(tag=tmp_path.name)
    with lifetimes.watching():
        first = start_run(fault_env, lifetimes.tag, "first", **SLOW_TAP)
        lifetimes.wait_for_tap("first", first)
        time.sleep(1.0)  # some records loaded, far from the end
        faulted = time.monotonic()
        if fault == "runner SIGKILL":
            first.kill()
        elif fault == "runner process group SIGKILL":
            os.killpg(first.pid, signal.SIGKILL)
        elif fault == "runner SIGTERM":
            first.terminate()
        first.communicate(timeout=60)
        opened = the_execution(ctx)
        # A new run of the same state id, at once: it must not load while the first load lives.
        second = start_run(fault_env, lifetimes.tag, "second")
        gone_after = lifetimes.wait_gone("first", faulted)
        out, err = second.communicate(timeout=180)
        assert second.returncode == 0, (out, err)
    first_load = lifetimes.of("first")
    second_taps = [s for s in lifetimes.of("second") if s.is_tap_sync]
    assert any(s.is_tap_sync for s in first_load), "the first load's tap was never seen"
    assert second_taps, "the second load's tap was never seen"
    # One load per state id: the second tap started after every process of the first was gone.
    last_of_first = max(s.last for s in first_load)
    assert min(s.first for s in second_taps) > last_of_first, (
        "two loads of one state id overlapped: the second tap started while "
        f"{[s.argv[:3] for s in first_load if s.last >= min(t.first for t in second_taps)]} lived"
    )
    assert_every_record_once(meltano_sandbox.output)
    assert not list((REPO / ".meltano" / "run" / "tap-shopsim").glob("*.config.json")), (
        "a config file holding the tap's settings was left behind"
    )
    return opened, lifetimes, gone_after


def test_runner_sigkill_ends_the_load_and_a_new_run_waits_for_it(
    meltano_sandbox, default_store_url, fault_env, tmp_path
):
    opened, _, gone_after = fault_then_rerun(
        "runner SIGKILL", meltano_sandbox, default_store_url, fault_env, tmp_path
    )
    assert gone_after < GONE_WITHIN_SECONDS
    reconciled = flx(fault_env, "reconcile")
    assert reconciled.returncode == 0, reconciled.stderr
    ctx = meltano_sandbox.context(default_store_url)
    assert queries.get_execution(ctx, opened.id).status is ExecutionStatus.CRASHED


def test_runner_process_group_sigkill_ends_the_load(meltano_sandbox, default_store_url, fault_env, tmp_path):
    opened, _, gone_after = fault_then_rerun(
        "runner process group SIGKILL", meltano_sandbox, default_store_url, fault_env, tmp_path
    )
    assert gone_after < GONE_WITHIN_SECONDS
    assert flx(fault_env, "reconcile").returncode == 0
    ctx = meltano_sandbox.context(default_store_url)
    assert queries.get_execution(ctx, opened.id).status is ExecutionStatus.CRASHED


def test_runner_sigterm_cancels_the_load(meltano_sandbox, default_store_url, fault_env, tmp_path):
    opened, _, gone_after = fault_then_rerun(
        "runner SIGTERM", meltano_sandbox, default_store_url, fault_env, tmp_path
    )
    assert gone_after < GONE_WITHIN_SECONDS
    ctx = meltano_sandbox.context(default_store_url)
    assert queries.get_execution(ctx, opened.id).status is ExecutionStatus.CANCELLED


# --- cancel while the CPUs are busy ----------------------------------------------------------------


@contextmanager
def busy_cpus() -> Iterator[None]:
    """One spinning process per CPU, so exiting processes wait for a CPU as on a loaded host."""
    spinners = [
        # Their own small environment: no test's marker, so they are never taken for the load.
        subprocess.Popen([sys.executable, "-c", "while True: pass"], env={"PATH": os.defpath})
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def test_cancel_under_load_returns_only_when_every_process_of_the_load_is_gone(
    meltano_sandbox, processes_with
):
    marker = str(meltano_sandbox.output)
    request = RunRequest(
        project_dir=REPO,
        environment="dev",
        blocks=("tap-shopsim", "target-jsonlines"),
        run_id="0b5e2c9e-0000-4000-8000-00000000f417",
        meltano_executable=MELTANO,
        force=True,
        env={**meltano_sandbox.env, **SLOW_TAP},
        exclusive=("tap-shopsim",),
    )
    run = MeltanoRun(request).spawn()
    events = run.start().events()
    try:
        for event in events:
            if isinstance(event, LogRecord) and event.plugin == "tap-shopsim":
                break  # the tap is loading
        with busy_cpus():
            time.sleep(0.5)  # the spinners spin
            started = time.monotonic()
            run.cancel()
            took = time.monotonic() - started
            left = processes_with(marker)
        assert left == [], f"processes of the load outlived cancel(): {left}"
        assert run.cancelled
        assert run.returncode is not None
        assert took < GONE_WITHIN_SECONDS
        list(events)  # the output ends with the load
    finally:
        run.cancel()
