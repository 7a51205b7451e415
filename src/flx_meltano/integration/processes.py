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
