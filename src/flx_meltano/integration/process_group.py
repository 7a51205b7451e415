"""Run a long-lived program (``dagster dev``) in its own process group and stop all of it on a signal.

Why not ``exec``: a program started in the background of a non-interactive shell (``make demo &``,
a CI script) inherits SIGINT *ignored*, and ``dagster dev`` maps SIGTERM onto its SIGINT handler,
so it ignored SIGTERM too and never stopped. Here the child starts with SIGINT at its default,
in a session of its own; SIGTERM, SIGINT or SIGHUP to this process becomes one SIGINT to the
child's whole group (webserver, daemon, code servers, run workers), and what is still alive after
a grace period is killed. The child also gets SIGINT if this process dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

_PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _die_with_parent() -> None:
    """In the child, before exec: SIGINT when the supervisor dies, and SIGINT not ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGINT)


def group_alive(pgid: int) -> bool:
    """Whether any process (not a zombie) of process group ``pgid`` is left."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def run_supervised(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    grace_seconds: float,
) -> int:
    """Run ``argv`` until it ends or this process is asked to stop; its exit code (0 after a stop)."""
    stop_requested: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.append(signum)

    previous = {signum: signal.signal(signum, on_signal) for signum in _STOP_SIGNALS}
    try:
        child = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, start_new_session=True, preexec_fn=_die_with_parent
        )
        pgid = child.pid
        while child.poll() is None and not stop_requested:
            time.sleep(0.1)
        if stop_requested:
            _signal_group(pgid, signal.SIGINT)
            deadline = time.monotonic() + grace_seconds
            # A second signal (Ctrl-C twice) means: do not wait.
            while group_alive(pgid) and time.monotonic() < deadline and len(stop_requested) == 1:
                child.poll()
                time.sleep(0.1)
        # Whatever is left of the group (also after the child ended on its own) goes now.
        _signal_group(pgid, signal.SIGKILL)
        code = child.wait()
        return 0 if stop_requested else code
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
