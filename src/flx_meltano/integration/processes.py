"""Processes on this host: is a runner alive, ask it to stop, who is this runner."""

from __future__ import annotations

import contextlib
import os
import signal
import socket


def this_host() -> str:
    """The host name recorded on executions."""
    return socket.gethostname()


def this_pid() -> int:
    """The pid of the process running an execution."""
    return os.getpid()


def process_alive(pid: int) -> bool:
    """Whether a process with that pid exists here (zombies count as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def ask_to_stop(pid: int) -> bool:
    """SIGTERM a runner; it cancels its meltano and records CANCELLED. False if it was gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        return True
    return False


PR_SET_PDEATHSIG = 1


def end_with_parent(parent_pid: int) -> bool:
    """Have the kernel SIGKILL this process as soon as its parent ``parent_pid`` is gone (Linux).

    For a Dagster step process, a child of its run worker: when the run worker is killed, the step
    goes too, and its load's supervisor then ends the load, instead of the orphaned step loading on
    unseen while Dagster counts the run as ended. The execution it leaves RUNNING is a dead
    runner's, which crash reconciliation marks CRASHED. If the parent is gone already, this
    process ends now. False where prctl(2) is unavailable.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if int(libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent_pid:  # the parent went before the kernel was told
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def command_line(pid: int) -> list[str]:
    """A process's argv, from /proc ([] once it is gone or unreadable)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return []
