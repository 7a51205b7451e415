"""The launcher: the exact ``meltano run`` command line and environment, no shell, timeouts, locks."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from flx_meltano.application import queries
from flx_meltano.application.pipelines import resolve
from flx_meltano.application.run import LogUpdate, RunOptions, execute, executions_of
from flx_meltano.domain.values import ExecutionStatus
from flx_meltano.integration.errors import LaunchError
from flx_meltano.integration.launcher import (
    STATE_STRATEGIES,
    MeltanoRun,
    PluginLock,
    RunRequest,
    process_group_members,
    select_env_var,
)
from flx_meltano.integration.load_lock import load_alive, lock_path, running_load
from flx_meltano.integration.meltano_cli import QUIET_MELTANO_ENV

MELTANO = str(Path(sys.executable).with_name("meltano"))
FILES_PIPELINE = "dev:tap-shopsim-to-target-jsonlines"


def request(tmp_path: Path, **fields: object) -> RunRequest:
    values: dict[str, object] = {
        "project_dir": tmp_path,
        "environment": "prod",
        "blocks": ("tap-a", "target-b"),
        "run_id": "0b5e2c9e-0000-4000-8000-000000000001",
        "meltano_executable": MELTANO,
    }
    values.update(fields)
    return RunRequest(**values)  # type: ignore[arg-type]


def fake_meltano(directory: Path, body: str) -> Path:
    """An executable standing in for meltano: a Python script (never a shell script)."""
    path = directory / "fake-meltano"
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


# --- argv -------------------------------------------------------------------------------------


def test_argv_is_json_logs_environment_run_and_run_id_then_the_blocks_in_order(tmp_path):
    argv = request(tmp_path, blocks=("tap-a", "mapping-x", "target-b")).argv()
    assert argv == [
        MELTANO,
        "--log-format=json",
        "--environment=prod",
        "run",
        "--run-id=0b5e2c9e-0000-4000-8000-000000000001",
        "tap-a",
        "mapping-x",
        "target-b",
    ]


def test_argv_without_options_has_no_option_flags(tmp_path):
    argv = request(tmp_path).argv()
    assert not [a for a in argv if a.startswith(("--full-refresh", "--state-strategy", "--force"))]


def test_full_refresh_and_force_flags_come_before_the_blocks(tmp_path):
    argv = request(tmp_path, full_refresh=True, force=True).argv()
    assert argv[-2:] == ["tap-a", "target-b"]
    assert "--full-refresh" in argv[:-2]
    assert "--force" in argv[:-2]


@pytest.mark.parametrize("strategy", STATE_STRATEGIES)
def test_each_state_strategy_meltano_knows_is_passed(tmp_path, strategy):
    argv = request(tmp_path, state_strategy=strategy).argv()
    assert f"--state-strategy={strategy}" in argv[:-2]


@pytest.mark.parametrize("strategy", ["replace", "AUTO", "merge; rm -rf /"])
def test_an_unknown_state_strategy_is_refused_naming_the_valid_ones(tmp_path, strategy):
    with pytest.raises(LaunchError, match="is not one of auto, merge, overwrite") as raised:
        request(tmp_path, state_strategy=strategy).argv()
    assert repr(strategy) in str(raised.value)


def test_a_missing_executable_is_a_launch_error_naming_it(tmp_path):
    with pytest.raises(LaunchError, match="FLX_MELTANO_EXECUTABLE") as raised:
        request(tmp_path, meltano_executable=str(tmp_path / "no-meltano")).argv()
    assert repr(str(tmp_path / "no-meltano")) in str(raised.value)


def test_a_bare_executable_name_is_resolved_on_path_to_an_absolute_path(tmp_path, monkeypatch):
    script = fake_meltano(tmp_path, "")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    assert request(tmp_path, meltano_executable=script.name).argv()[0] == str(script)


# --- environment ------------------------------------------------------------------------------


def test_select_env_var_is_meltanos_name_for_the_extractors_select_extra():
    assert select_env_var("tap-shopsim") == "TAP_SHOPSIM__SELECT"
    assert select_env_var("tap-my-api") == "TAP_MY_API__SELECT"


def test_environ_selects_exactly_the_streams_as_json_with_all_their_properties(tmp_path):
    env = request(tmp_path, select={"tap-my-api": ("orders", "customers")}).environ()
    assert json.loads(env["TAP_MY_API__SELECT"]) == ["orders.*", "customers.*"]


def test_environ_without_a_selection_overrides_no_select(tmp_path):
    env = request(tmp_path).environ()
    assert not [key for key in env if key.endswith("__SELECT") and key not in os.environ]


def test_environ_is_ours_quiet_and_the_callers_overrides_win(tmp_path, monkeypatch):
    monkeypatch.setenv("FLX_LAUNCHER_TEST_INHERITED", "from-parent")
    monkeypatch.setenv("FLX_LAUNCHER_TEST_OVERRIDDEN", "from-parent")
    env = request(tmp_path, env={"FLX_LAUNCHER_TEST_OVERRIDDEN": "from-caller"}).environ()
    assert env["FLX_LAUNCHER_TEST_INHERITED"] == "from-parent"
    assert env["FLX_LAUNCHER_TEST_OVERRIDDEN"] == "from-caller"
    for key, value in QUIET_MELTANO_ENV.items():
        assert env[key] == value


# --- the process: no shell, timeout, locks ------------------------------------------------------

RECORD_ARGV = """\
import json, os, sys
with open(os.environ["FLX_TEST_OUT"], "w") as out:
    json.dump({"argv": sys.argv[1:], "select": os.environ.get("TAP_A__SELECT")}, out)
print(json.dumps({"event": "Run completed", "status": "success"}))
"""


def test_meltano_is_started_without_a_shell_so_arguments_arrive_verbatim(tmp_path):
    script = fake_meltano(tmp_path, RECORD_ARGV)
    out = tmp_path / "argv.json"
    hostile = ("tap-a; touch pwned", "$(touch pwned2)", "`touch pwned3`", "target b")
    meltano = MeltanoRun(
        request(
            tmp_path,
            meltano_executable=str(script),
            blocks=hostile,
            select={"tap-a": ("orders",)},
            env={"FLX_TEST_OUT": str(out)},
        )
    )
    events = list(meltano.start().events())
    assert meltano.returncode == 0
    assert events  # the JSON line was parsed
    seen = json.loads(out.read_text())
    assert seen["argv"][-4:] == list(hostile)
    assert seen["argv"][0] == "--log-format=json"
    assert json.loads(seen["select"]) == ["orders.*"]
    assert not list(tmp_path.glob("pwned*"))


SLOW_WITH_A_CHILD = """\
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print("started", flush=True)
time.sleep(120)
"""


@contextmanager
def busy_cpus() -> Iterator[None]:
    """One spinning process per CPU, so exiting processes wait for a CPU as on a loaded host."""
    spinners = [
        # Their own small environment: no test's marker, so they are never taken for the load.
        subprocess.Popen([sys.executable, "-c", "while True: pass"], env={"PATH": os.defpath})
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        time.sleep(0.3)  # they spin
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


@pytest.mark.parametrize("cpus", ["idle", "busy"])
def test_a_timeout_stops_meltano_and_every_process_it_started(tmp_path, processes_with, cpus):
    script = fake_meltano(tmp_path, SLOW_WITH_A_CHILD)
    marker = f"FLX_TEST_MARKER={tmp_path}"
    meltano = MeltanoRun(
        request(
            tmp_path,
            meltano_executable=str(script),
            timeout_seconds=1.0,
            env={"FLX_TEST_MARKER": str(tmp_path)},
        )
    )
    with busy_cpus() if cpus == "busy" else contextlib.nullcontext():
        started = time.monotonic()
        meltano.start()
        assert meltano.pid is not None
        lines = list(meltano.events())
        # The moment the output ends, the load is gone: no member left, zombies reaped.
        members = process_group_members(meltano.pid)
        left = processes_with(marker)
    assert time.monotonic() - started < 30
    assert [line.message for line in lines if hasattr(line, "message")] == ["started"]
    assert meltano.timed_out
    assert meltano.cancelled
    assert meltano.returncode == -signal.SIGTERM
    assert members == []
    assert left == []


def test_meltano_runs_outside_the_runners_session_and_process_group(tmp_path):
    script = fake_meltano(tmp_path, SLOW_WITH_A_CHILD)
    meltano = MeltanoRun(request(tmp_path, meltano_executable=str(script))).start()
    try:
        assert meltano.pid is not None
        assert meltano.supervisor_pid is not None
        # The supervisor leads a session of its own; meltano leads its own group in it.
        assert os.getsid(meltano.supervisor_pid) == meltano.supervisor_pid != os.getsid(0)
        assert os.getpgid(meltano.pid) == meltano.pid != os.getpgid(0)
        assert os.getsid(meltano.pid) == meltano.supervisor_pid
    finally:
        meltano.cancel()


STUBBORN = """\
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
run = os.path.join(os.getcwd(), ".meltano", "run")
for plugin in ("tap-x", "target-y"):
    os.makedirs(os.path.join(run, plugin), exist_ok=True)
mine = os.path.join(run, "tap-x", "tap.0001.config.json")
theirs = os.path.join(run, "target-y", "target.0002.config.json")
for path in (mine, theirs):
    with open(path, "w") as out:
        out.write('{"api_key": "s3cret"}')
# A plugin that ignores SIGTERM too, named by its --config argument as Meltano's plugins are.
plugin = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
subprocess.Popen([sys.executable, "-c", plugin, "--config", theirs])
print("started", flush=True)
time.sleep(120)
"""

RUNNER = """\
import sys
from pathlib import Path
from flx_meltano.integration.launcher import MeltanoRun, RunRequest
project, meltano, run_id = sys.argv[1:4]
run = MeltanoRun(RunRequest(
    project_dir=Path(project), environment="dev", blocks=("tap-x", "target-y"), run_id=run_id,
    meltano_executable=meltano, exclusive=("tap-x",), stop_grace_seconds=1.5,
    env={"FLX_TEST_MARKER": project},
))
for event in run.start().events():
    print("event", flush=True)
"""


def test_a_killed_runners_load_keeps_the_lock_until_its_last_process_is_gone(tmp_path, processes_with):
    script = fake_meltano(tmp_path, STUBBORN)
    run_id = "0b5e2c9e-0000-4000-8000-00000000dead"
    other_run = tmp_path / ".meltano" / "run" / "target-y" / "target.0003.config.json"
    other_run.parent.mkdir(parents=True)
    other_run.write_text('{"api_key": "another run\'s"}')  # not this load's: it stays
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(tmp_path), str(script), run_id],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert runner.stdout is not None
    assert runner.stdout.readline() == "event\n"
    marker = f"FLX_TEST_MARKER={tmp_path}"
    assert len(processes_with(marker)) >= 3  # supervisor, meltano, its plugin
    os.killpg(runner.pid, signal.SIGKILL)
    killed = time.monotonic()
    runner.wait()
    # The load outlives its runner only while the supervisor stops it; it holds the lock meanwhile.
    assert running_load(tmp_path, "tap-x") == run_id
    assert load_alive(tmp_path, "tap-x", run_id)
    assert not load_alive(tmp_path, "tap-x", "another-run")
    acquired: list[tuple[float, list[int]]] = []

    def next_run() -> None:
        lock = PluginLock.acquire(tmp_path, "tap-x")
        acquired.append((time.monotonic() - killed, processes_with(marker)))
        lock.release()

    waiter = threading.Thread(target=next_run)
    waiter.start()
    waiter.join(timeout=60)
    [(after, left)] = acquired
    assert left == [], "the lock was free while processes of the load still lived"
    assert after >= 1.5  # SIGTERM was ignored: the supervisor's SIGKILL came after the grace
    assert running_load(tmp_path, "tap-x") is None
    run_dir = tmp_path / ".meltano" / "run"
    assert sorted(p.name for p in run_dir.rglob("*.config.json")) == ["target.0003.config.json"]


def test_cancel_returns_only_once_a_load_that_ignores_sigterm_is_killed(tmp_path, processes_with):
    script = fake_meltano(tmp_path, STUBBORN)
    meltano = MeltanoRun(
        request(tmp_path, meltano_executable=str(script), env={"FLX_TEST_MARKER": str(tmp_path)})
    ).start()
    events = meltano.events()
    next(events)  # "started": the plugin is running
    with busy_cpus():
        meltano.cancel(grace_seconds=0.5)
        left = processes_with(f"FLX_TEST_MARKER={tmp_path}")
    assert left == []
    assert meltano.cancelled
    assert meltano.returncode == -signal.SIGKILL
    assert list(events) == []


def test_a_command_the_supervisor_cannot_start_is_a_launch_error(tmp_path):
    script = tmp_path / "meltano-with-a-broken-shebang"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    with pytest.raises(LaunchError, match=f"could not start {script}"):
        MeltanoRun(request(tmp_path, meltano_executable=str(script))).start()


def test_cancel_before_start_does_nothing(tmp_path):
    meltano = MeltanoRun(request(tmp_path))
    meltano.cancel()
    assert not meltano.cancelled
    assert meltano.returncode is None


def test_a_plugin_lock_makes_the_second_run_wait_and_say_why(tmp_path):
    first = PluginLock.acquire(tmp_path, "tap-a")
    waits: list[str] = []
    acquired = threading.Event()

    def second_run() -> None:
        PluginLock.acquire(tmp_path, "tap-a", waits.append).release()
        acquired.set()

    thread = threading.Thread(target=second_run)
    thread.start()
    assert not acquired.wait(0.5)
    assert len(waits) == 1
    assert "waiting for another run of tap-a" in waits[0]
    first.release()
    assert acquired.wait(10)
    thread.join()
    # Another plugin is never blocked by it.
    PluginLock.acquire(tmp_path, "tap-b").release()


def test_running_load_names_the_lock_holder_without_waiting(tmp_path):
    assert running_load(tmp_path, "tap-a") is None  # no lock file yet
    lock = PluginLock.open(tmp_path, "tap-a")
    lock.take(holder="run-1")
    assert stat.S_IMODE(lock_path(tmp_path, "tap-a").stat().st_mode) == 0o600
    started = time.monotonic()
    assert running_load(tmp_path, "tap-a") == "run-1"
    assert time.monotonic() - started < 0.5
    assert load_alive(tmp_path, "tap-a")
    assert load_alive(tmp_path, "tap-a", "run-1")
    assert not load_alive(tmp_path, "tap-a", "run-2")
    assert running_load(tmp_path, "tap-b") is None
    lock.release()
    assert running_load(tmp_path, "tap-a") is None
    assert not load_alive(tmp_path, "tap-a", "run-1")
    # A holder that names no run (a bare lock) is a load of unknown run: alive for any run id.
    bare = PluginLock.acquire(tmp_path, "tap-a")
    assert running_load(tmp_path, "tap-a") == ""
    assert load_alive(tmp_path, "tap-a", "run-1")
    bare.release()


# --- end to end: a timed-out pipeline ------------------------------------------------------------


@pytest.mark.slow
def test_a_timed_out_pipeline_is_failed_and_leaves_no_meltano_tap_or_target(
    meltano_sandbox, default_store_url, processes_with
):
    ctx = meltano_sandbox.context(default_store_url, TAP_SHOPSIM_RECORD_DELAY_MS="40")
    plugins: set[str] = set()

    def logged(updates):
        for update in updates:
            if isinstance(update, LogUpdate) and update.plugin:
                plugins.add(update.plugin)
            yield update

    started = time.monotonic()
    steps = resolve(ctx.project, FILES_PIPELINE, ctx.environment)
    [execution] = executions_of(logged(execute(ctx, steps, RunOptions(timeout_seconds=8))))
    assert time.monotonic() - started < 60
    assert "tap-shopsim" in plugins  # the tap was running when the time was up
    assert execution.status is ExecutionStatus.FAILED
    assert execution.error == "timed out after 8s; meltano and its plugins were stopped"
    assert processes_with(str(meltano_sandbox.system_db)) == []
    stored = queries.get_execution(ctx, execution.id)
    assert stored.status is ExecutionStatus.FAILED
    assert stored.error == execution.error
    assert queries.execution_history(ctx, status="RUNNING") == []
