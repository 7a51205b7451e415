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
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flx_meltano.application import queries, state_backup
from flx_meltano.application import reconcile as reconcile_module
from flx_meltano.application.pipelines import resolve
from flx_meltano.application.reconcile import StateIdBusy
from flx_meltano.application.run import ExecutionUpdate, LogUpdate, RunOptions, execute_pipeline
from flx_meltano.domain.values import ExecutionStatus, StreamStatus
from flx_meltano.integration.launcher import MeltanoRun, RunRequest
from flx_meltano.integration.run_events import LogRecord
from flx_meltano.persistence import database

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


def _cmdline(pid: int) -> list[str]:
    """The process's command line, empty if it is gone or has none (mid-exec, exiting)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode("utf-8", "replace").split("\0") if raw else []


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
            # Read at every poll: a child caught between fork and exec shows its parent's command
            # line (or none, mid-exec) with its parent's environment; only a later poll sees what
            # it execs (a tap seen once as meltano was never taken for the tap).
            argv = _cmdline(pid)
            known = self.seen.get(pid)
            if known is not None and known.load == load:
                known.last = now
                if argv and argv != known.argv:
                    known.argv = argv
            else:
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


# --- one load per state id, with Meltano's guard as a second line --------------------------------


def meltano_run_row(ctx: Any, run_id: str, heartbeat_age_seconds: float) -> None:
    """A RUNNING row in Meltano's system database, as a run that is (or was) loading leaves it."""
    from datetime import UTC, datetime, timedelta

    from meltano.core.job.job import Job, State

    ctx.state_store.runs(FILES_PIPELINE)  # creates Meltano's system database if it has none yet
    session = ctx.state_store._state_service().session
    beat = datetime.now(UTC) - timedelta(seconds=heartbeat_age_seconds)
    session.add(
        Job(
            job_name=FILES_PIPELINE,
            run_id=uuid.UUID(run_id),
            state=State.RUNNING,
            started_at=beat - timedelta(seconds=5),
            last_heartbeat_at=beat,
        )
    )
    session.commit()


def run_collecting_logs(ctx: Any, options: RunOptions | None = None) -> tuple[Any, list[str]]:
    [step] = resolve(ctx.project, FILES_PIPELINE)
    assert step.pipeline is not None
    lines: list[str] = []
    execution = None
    for update in execute_pipeline(ctx, step.pipeline, options or RunOptions()):
        if isinstance(update, LogUpdate):
            lines.append(update.message)
        elif isinstance(update, ExecutionUpdate):
            execution = update.execution
    return execution, lines


FORCED = "Force option is enabled"  # what meltano logs when it runs with --force


def test_meltano_is_forced_only_past_a_dead_run_of_the_state_id(meltano_sandbox, default_store_url):
    ctx = meltano_sandbox.context(default_store_url)
    # No other run of the state id: Meltano's own guard stays on.
    execution, lines = run_collecting_logs(ctx)
    assert execution.status is ExecutionStatus.SUCCEEDED
    assert not any(FORCED in line for line in lines)
    # A run killed with its meltano (no heartbeat for a minute) left its row RUNNING: Meltano would
    # refuse the state id for 5 minutes; flx establishes that run is dead and forces past it.
    meltano_run_row(ctx, str(uuid.uuid4()), heartbeat_age_seconds=60)
    execution, lines = run_collecting_logs(ctx)
    assert execution.status is ExecutionStatus.SUCCEEDED, execution.error
    assert any(FORCED in line for line in lines)
    assert_every_record_once(meltano_sandbox.output)


def test_a_live_load_of_the_state_id_is_refused_by_name(meltano_sandbox, default_store_url):
    ctx = meltano_sandbox.context(default_store_url)
    live = str(uuid.uuid4())
    meltano_run_row(ctx, live, heartbeat_age_seconds=0)
    # Another process's load holds the extractor's lock as that run.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from flx_meltano.integration.load_lock import PluginLock\n"
            "PluginLock.acquire(sys.argv[1], 'tap-shopsim').take(holder=sys.argv[2])\n"
            "print('held', flush=True)\n"
            "time.sleep(120)\n",
            str(REPO),
            live,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(StateIdBusy) as refused:
            run_collecting_logs(ctx)
        took = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    message = str(refused.value)
    assert f"state id {FILES_PIPELINE}" in message
    assert live in message
    assert took < 60, "the run waited behind the live load instead of refusing"
    assert not meltano_sandbox.output.exists() or not list(meltano_sandbox.output.iterdir())
    # A bare meltano run of the state id elsewhere, heartbeating, without flx's lock: refused too.
    execution_before = len(queries.execution_history(ctx, pipeline=FILES_PIPELINE))
    session = ctx.state_store._state_service().session
    session.execute(sa.text("UPDATE runs SET state = 'SUCCESS' WHERE state = 'RUNNING'"))
    session.commit()
    meltano_run_row(ctx, str(uuid.uuid4()), heartbeat_age_seconds=0)
    with pytest.raises(StateIdBusy, match=f"state id {FILES_PIPELINE}.*heartbeat"):
        run_collecting_logs(ctx)
    assert len(queries.execution_history(ctx, pipeline=FILES_PIPELINE)) == execution_before + 1


# --- the store goes away while meltano runs -------------------------------------------------------

STORE_CTL = (
    "import sys\n"
    "from pathlib import Path\n"
    "from flx_meltano.persistence import embedded\n"
    "data = Path(sys.argv[2])\n"
    "print(embedded.start(data).url() if sys.argv[1] == 'start' else embedded.stop(data))\n"
)
OUTAGE_LINE = "is unreachable"


def store_ctl(action: str, data: Path) -> str:
    """Start or stop the embedded server of ``data`` from another process (as the CLI does)."""
    done = subprocess.run(
        [sys.executable, "-c", STORE_CTL, action, str(data)], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def own_store(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """An embedded store of this test alone (a temporary project's server): it may be stopped."""
    data = tmp_path / "pgdata"
    url = store_ctl("start", data)
    database.ready_engine(url)
    try:
        yield data, url
    finally:
        database.engine_for(url).dispose()
        store_ctl("stop", data)


def outage_env(meltano_sandbox: Any, url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **meltano_sandbox.env,
        "FLX_DATABASE_URL": url,
        "FLX_PROJECT_DIR": str(REPO),
        "FLX_HEARTBEAT_SECONDS": "1",
        "COLUMNS": "2000",  # the progress display's lines unwrapped: one message, one line
        **extra,
    }


def start_plain_run(env: dict[str, str], tag: str, load: str, **extra: str) -> subprocess.Popen[str]:
    """``flx-meltano run`` as people run it (progress and warnings on the terminal)."""
    return subprocess.Popen(
        [FLX, "run", FILES_PIPELINE],
        cwd=REPO,
        env={**env, LOAD: f"{tag}-{load}", **extra},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def state_after(ctx: Any, execution: Any) -> Any:
    """The payload of the snapshot the execution's state after refers to (its checksum checked)."""
    ref = execution.state_after
    assert ref is not None, f"execution {execution.id} refers to no state after"
    snapshot = state_backup.get(ctx, ref.snapshot_id)
    assert snapshot.checksum == ref.checksum, ref
    return snapshot.state.payload()


def assert_record_matches_output(execution: Any, ctx: Any, output: Path, *, counts_known: bool) -> None:
    """Per stream: the count is the output file's lines (or unknown), the bookmark Meltano's."""
    state = ctx.state_store.get(FILES_PIPELINE)
    assert state is not None
    assert state_after(ctx, execution) == state.payload()
    for stream in STREAM_KEYS:
        result = execution.results[stream]
        lines = len((output / f"{stream}.jsonl").read_text().splitlines())
        assert result.records == (lines if counts_known else None), stream
        assert result.bookmark == (state.bookmarks.get(stream) or None), stream


def rerun_resumes(env: dict[str, str], meltano_sandbox: Any) -> None:
    rerun = flx(env, "run", FILES_PIPELINE, "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert_every_record_once(meltano_sandbox.output)


def test_store_stopped_mid_run_and_back_the_record_is_true(meltano_sandbox, own_store, tmp_path):
    data, url = own_store
    env = outage_env(meltano_sandbox, url, FLX_STORE_RETRY_SECONDS="120")
    lifetimes = Lifetimes(tag=tmp_path.name)
    with lifetimes.watching():
        run = start_plain_run(env, lifetimes.tag, "first", **SLOW_TAP)
        lifetimes.wait_for_tap("first", run)
        time.sleep(1.0)
        store_ctl("stop", data)
        time.sleep(2.0)  # streams are confirmed while the store is away
        store_ctl("start", data)
        out, err = run.communicate(timeout=180)
        ended = time.monotonic()
        lifetimes.wait_gone("first", ended)
    text = " ".join((out + err).split())
    assert run.returncode == 0, (out, err)
    assert "Traceback" not in out + err
    assert text.count(OUTAGE_LINE) == 1, text
    ctx = meltano_sandbox.context(url)
    execution = the_execution(ctx)
    assert execution.status is ExecutionStatus.SUCCEEDED, execution.error
    assert_record_matches_output(execution, ctx, meltano_sandbox.output, counts_known=True)
    rerun_resumes(env, meltano_sandbox)


def test_store_stopped_beyond_the_end_of_the_run_reconcile_completes_it(meltano_sandbox, own_store, tmp_path):
    data, url = own_store
    env = outage_env(meltano_sandbox, url, FLX_STORE_RETRY_SECONDS="2", FLX_LEASE_SECONDS="5")
    ctx = meltano_sandbox.context(url)
    lifetimes = Lifetimes(tag=tmp_path.name)
    with lifetimes.watching():
        run = start_plain_run(env, lifetimes.tag, "first", **SLOW_TAP)
        lifetimes.wait_for_tap("first", run)
        opened = the_execution(ctx)
        time.sleep(1.0)
        store_ctl("stop", data)
        out, err = run.communicate(timeout=180)
        lifetimes.wait_gone("first", time.monotonic())
    assert run.returncode == 1, (out, err)
    assert "Traceback" not in out + err
    text = " ".join((out + err).split())
    assert text.count(OUTAGE_LINE) == 1, text
    assert text.count("error:") == 1, text
    assert "stayed unreachable for 2s" in text
    assert "reconcile" in text
    store_ctl("start", data)
    stored = queries.get_execution(ctx, opened.id)
    assert stored.status is ExecutionStatus.RUNNING  # what the runner could not write
    with ctx.unit_of_work() as uow:
        assert stored.lease_expired(uow.executions.now())
    reconciled = flx(env, "reconcile", "--json")
    assert reconciled.returncode == 0, reconciled.stderr
    execution = queries.get_execution(ctx, opened.id)
    # Meltano's run succeeded: the record says so, from Meltano's state, counts unknown.
    assert execution.status is ExecutionStatus.SUCCEEDED, execution.error
    assert any("recorded by crash reconciliation" in w for w in execution.warnings)
    assert_record_matches_output(execution, ctx, meltano_sandbox.output, counts_known=False)
    rerun_resumes(env, meltano_sandbox)


def test_reconcile_during_a_live_load_leaves_it_running(
    meltano_sandbox, default_store_url, fault_env, tmp_path, monkeypatch
):
    ctx = meltano_sandbox.context(default_store_url)
    lifetimes = Lifetimes(tag=tmp_path.name)
    with lifetimes.watching():
        run = start_run(fault_env, lifetimes.tag, "first", **SLOW_TAP)
        lifetimes.wait_for_tap("first", run)
        time.sleep(1.0)
        reconciled = flx(fault_env, "reconcile", "--json")
        assert reconciled.returncode == 0, reconciled.stderr
        assert json.loads(reconciled.stdout) == {"crashed": []}
        # From another host only the lease can tell: it is fresh.
        monkeypatch.setattr(reconcile_module, "this_host", lambda: "another-host")
        assert reconcile_module.reconcile(ctx) == []
        assert the_execution(ctx).status is ExecutionStatus.RUNNING
        out, err = run.communicate(timeout=180)
    assert run.returncode == 0, (out, err)
    execution = the_execution(ctx)
    assert execution.status is ExecutionStatus.SUCCEEDED
    assert_record_matches_output(execution, ctx, meltano_sandbox.output, counts_known=True)
    assert_every_record_once(meltano_sandbox.output)


def test_runner_sigkill_then_reconcile_completes_the_record_with_the_state_after(
    meltano_sandbox, default_store_url, fault_env, tmp_path
):
    ctx = meltano_sandbox.context(default_store_url)
    lifetimes = Lifetimes(tag=tmp_path.name)
    with lifetimes.watching():
        run = start_run(fault_env, lifetimes.tag, "first", **SLOW_TAP)
        lifetimes.wait_for_tap("first", run)
        deadline = time.monotonic() + 120
        while ctx.state_store.get(FILES_PIPELINE) is None:  # killed once the load saved some state
            assert run.poll() is None, "the run ended before it saved any state"
            assert time.monotonic() < deadline, "the load saved no state"
            time.sleep(0.2)
        killed = time.monotonic()
        run.kill()
        run.communicate(timeout=60)
        assert lifetimes.wait_gone("first", killed) < GONE_WITHIN_SECONDS
    reconciled = flx(fault_env, "reconcile", "--json")
    assert reconciled.returncode == 0, reconciled.stderr
    execution = the_execution(ctx)
    # The record follows what Meltano kept of the run: the state is first seen only after the
    # in-process state read has imported meltano (seconds under load), so the kill may land after
    # meltano itself recorded the run SUCCESS; then the run did succeed, and says it was reconciled.
    meltano_run = ctx.state_store.run(execution.id)
    if meltano_run is not None and meltano_run.status == "SUCCESS":
        assert execution.status is ExecutionStatus.SUCCEEDED
        assert any("recorded by crash reconciliation" in w for w in execution.warnings)
    else:
        assert execution.status is ExecutionStatus.CRASHED
        assert "is gone and its load ended" in (execution.error or "")
    state = ctx.state_store.get(FILES_PIPELINE)
    assert state is not None
    assert state.bookmarks, "the killed load had saved some state"
    assert state_after(ctx, execution) == state.payload()
    unconfirmed = 0
    for stream in STREAM_KEYS:
        result = execution.results[stream]
        assert result.bookmark == (state.bookmarks.get(stream) or None), stream
        if result.records is not None:  # confirmed by the runner before it died
            assert result.status is StreamStatus.SUCCEEDED, stream
            lines = (meltano_sandbox.output / f"{stream}.jsonl").read_text().splitlines()
            assert result.records == len(lines), stream
        else:  # completed by the reconciler: nobody saw the count
            unconfirmed += 1
    if execution.status is ExecutionStatus.CRASHED:
        assert unconfirmed, "the runner was killed before the end: some streams were never confirmed"
    rerun_resumes(fault_env, meltano_sandbox)
