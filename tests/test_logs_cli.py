"""Execution logs end to end: real meltano runs through the CLI, read back with ``flx-meltano logs``."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import zlib
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

import flx_meltano
from flx_meltano.persistence import database
from flx_meltano.persistence.tables import execution_logs
from flx_meltano.settings import Settings

REPO = Path(__file__).resolve().parents[1]
FLX = str(REPO / ".venv" / "bin" / "flx-meltano")
PIPELINE = "dev:tap-shopsim-to-target-jsonlines"
CANARY = "canary-Zq7rX2pLw9"
MASK = "********"


def cli_env(sandbox, store_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **sandbox.env,
        "FLX_DATABASE_URL": store_url,
        "COLUMNS": "200",
        "NO_COLOR": "1",
        **extra,
    }


def flx(env: dict[str, str], *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([FLX, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == code, done.stdout + done.stderr
    return done


def run_pipeline(env: dict[str, str], code: int = 0) -> str:
    """``flx-meltano run`` the files pipeline; its execution id."""
    [execution] = json.loads(flx(env, "run", PIPELINE, "--json", code=code).stdout)
    return str(execution["id"])


def stored_text(store_url: str, execution_id: str) -> str:
    """Everything the store holds of an execution's log, decompressed, as one text."""
    with database.ready_engine(store_url).connect() as conn:
        rows = conn.execute(sa.select(execution_logs).where(execution_logs.c.execution_id == execution_id))
        return "\n".join(zlib.decompress(row.data).decode() for row in rows)


def test_a_cli_run_keeps_its_whole_log_masked_and_logs_reads_it_back(meltano_sandbox, default_store_url):
    env = cli_env(meltano_sandbox, default_store_url, TAP_SHOPSIM_API_KEY=CANARY)
    execution_id = run_pipeline(env)

    log = json.loads(flx(env, "logs", execution_id, "--json").stdout)
    assert (log["execution_id"], log["status"], log["available"]) == (execution_id, "SUCCEEDED", True)
    assert (log["dropped_lines"], log["complete"]) == (0, True)
    lines = log["lines"]
    messages = [line["message"] for line in lines]
    assert messages[0].startswith("Meltano ")  # meltano's first line
    assert messages[-1] == "execution SUCCEEDED"  # ... to the last
    assert f"Running job with name '{PIPELINE}' and run ID '{execution_id}'" in messages
    by_plugin = {
        plugin: [m for line, m in zip(lines, messages, strict=True) if line["plugin"] == plugin]
        for plugin in ("meltano", "tap-shopsim", "target-jsonlines")
    }
    assert "Beginning sync of 'customers' in incremental mode" in by_plugin["tap-shopsim"]
    assert any(m.startswith("Writing stream 'orders' to ") for m in by_plugin["target-jsonlines"])
    assert sum(map(len, by_plugin.values())) == len(lines)  # no line without its plugin
    assert "info" in {line["level"] for line in lines}
    ats = [datetime.fromisoformat(line["at"]) for line in lines]
    assert ats == sorted(ats)

    # The canary reached meltano (the tap's api_key), and nowhere in what was stored or shown.
    assert CANARY not in stored_text(default_store_url, execution_id)
    text = flx(env, "logs", execution_id).stdout
    assert CANARY not in text
    assert len(text.splitlines()) == len(lines)
    assert "INFO     meltano            Meltano " in text  # time, level, plugin, message

    tap = json.loads(flx(env, "logs", execution_id, "--plugin", "tap-shopsim", "--json").stdout)["lines"]
    assert [line["message"] for line in tap] == by_plugin["tap-shopsim"]
    warnings = json.loads(flx(env, "logs", execution_id, "--level", "warning", "--json").stdout)["lines"]
    # (a run that goes well may warn of nothing: the level filter's cases are in test_logs_store)
    assert warnings == [line for line in lines if line["level"] in ("warning", "error", "critical")]
    assert json.loads(flx(env, "logs", execution_id, "--tail", "3", "--json").stdout)["lines"] == lines[-3:]
    since = lines[-3]["at"]
    assert (
        json.loads(flx(env, "logs", execution_id, "--since", since, "--json").stdout)["lines"][-3:]
        == lines[-3:]
    )
    assert json.loads(flx(env, "logs", execution_id, "--since", "2099-01-01", "--json").stdout)["lines"] == []

    shown = flx(env, "execution", execution_id).stdout
    assert f"last 10 log lines ('flx-meltano logs {execution_id}' for all)" in shown
    assert "execution SUCCEEDED" in shown
    record = json.loads(flx(env, "execution", execution_id, "--json").stdout)
    assert record["last_log_lines"] == lines[-10:]

    unknown = flx(env, "logs", "nope-no-such-execution", code=2)
    assert "error: no execution 'nope-no-such-execution'" in unknown.stderr
    assert "Traceback" not in unknown.stderr + unknown.stdout
    bad_level = flx(env, "logs", execution_id, "--level", "loud", code=2)
    assert "level 'loud' is not one of debug, info, warning, error, critical" in bad_level.stderr

    api_log = flx_meltano.logs(
        execution_id[:8],
        plugin="target-jsonlines",
        settings=Settings(database_url=default_store_url, project_dir=REPO, environment="dev"),
    )
    assert [line.message for line in api_log.lines] == by_plugin["target-jsonlines"]

    time.sleep(1.1)
    pruned = json.loads(flx(env, "logs", "prune", "--older-than", "1s", "--json").stdout)
    assert pruned["execution_ids"] == [execution_id]
    gone = flx(env, "logs", execution_id).stdout
    assert f"no log for execution {execution_id}" in gone
    assert "its log was pruned on" in gone


def test_a_failed_run_keeps_the_error_tail_within_the_bound_and_masks_what_the_tap_quoted(
    meltano_sandbox, default_store_url
):
    # The tap quotes its as_of value in its error; the same value is the (secret) api_key.
    env = cli_env(
        meltano_sandbox,
        default_store_url,
        TAP_SHOPSIM_API_KEY=CANARY,
        TAP_SHOPSIM_AS_OF=CANARY,
        FLX_LOG_MAX_BYTES="4096",
    )
    execution_id = run_pipeline(env, code=1)

    log = json.loads(flx(env, "logs", execution_id, "--json").stdout)
    assert log["status"] == "FAILED"
    messages = [line["message"] for line in log["lines"]]
    assert f"ValueError: Invalid isoformat string: '{MASK}'" in messages  # the tap's own line
    assert messages[-1].startswith("execution FAILED: tap-shopsim exited with code 1")
    assert log["dropped_lines"] > 0
    assert sum(len(m) for m in messages) < 4096
    stored = stored_text(default_store_url, execution_id)
    assert CANARY not in stored
    assert MASK in stored
    text = flx(env, "logs", execution_id).stdout
    assert text.splitlines()[0] == (
        f"{log['dropped_lines']:,} older lines ({log['dropped_bytes']:,} bytes) were dropped to keep "
        "this log within its bound (FLX_LOG_MAX_BYTES); the newest lines are all here"
    )
    assert CANARY not in text


def _read_lines(stream, into: list[tuple[float, dict[str, object]]]) -> None:
    for raw in stream:
        into.append((time.time(), json.loads(raw)))


def test_follow_from_another_process_shows_lines_within_2s_and_ends_with_the_execution(
    meltano_sandbox, default_store_url
):
    from flx_meltano.application.queries import execution_history
    from flx_meltano.domain.values import ExecutionStatus

    env = cli_env(meltano_sandbox, default_store_url, TAP_SHOPSIM_RECORD_DELAY_MS="12")
    runner = subprocess.Popen(
        [FLX, "run", PIPELINE, "--json"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        ctx = meltano_sandbox.context(default_store_url)
        deadline = time.monotonic() + 120
        running = []
        while not running and runner.poll() is None and time.monotonic() < deadline:
            running = execution_history(ctx, pipeline=PIPELINE, status=ExecutionStatus.RUNNING)
            time.sleep(0.1)
        assert running, "the run never showed up RUNNING in the store"
        execution_id = running[0].id
        follower_started = time.time()
        follower = subprocess.Popen(
            [FLX, "logs", execution_id, "--follow", "--json"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        received: list[tuple[float, dict[str, object]]] = []
        reader = threading.Thread(target=_read_lines, args=(follower.stdout, received))
        reader.start()
        runner.wait(timeout=300)
        runner_ended = time.time()
        assert runner.returncode == 0, runner.stderr.read() if runner.stderr else ""
        follower.wait(timeout=30)  # it ends by itself once the execution closed
        reader.join(timeout=10)
        assert follower.returncode == 0, follower.stderr.read() if follower.stderr else ""
    finally:
        for process in (runner, *([follower] if "follower" in locals() else [])):
            if process.poll() is None:
                process.kill()
    assert time.time() - runner_ended < 30

    # Following starts once the follower printed what was there (a Python process takes seconds to
    # start on a busy machine): every line written after that must reach it within 2 s.
    assert received, "the follower printed nothing"
    ready = received[0][0]
    written = [(seen, datetime.fromisoformat(str(line["at"])).timestamp()) for seen, line in received]
    live = [(seen, at) for seen, at in written if at > ready]
    lags = sorted(seen - at for seen, at in live)
    median_lag = lags[len(lags) // 2]
    print(f"follow: {len(live)} lines while following; lag median {median_lag:.2f}s, max {lags[-1]:.2f}s")
    assert len(live) >= 20, f"only {len(live)} lines were written while following"
    assert lags[-1] <= 2.0, (
        f"lines reached the follower up to {lags[-1]:.2f}s after meltano wrote them: {lags}"
    )
    assert sum(seen < runner_ended for seen, _ in live) >= 10  # shown while the run was still going
    stored = json.loads(flx(env, "logs", execution_id, "--json").stdout)["lines"]
    assert [line for _, line in received] == stored  # each line once, none missing
    assert stored[-1]["message"] == "execution SUCCEEDED"
