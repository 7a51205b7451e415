"""One load per plugin per project on this host: flock files the load's own processes hold.

A load's lock is taken by its runner, on an open file description the load's supervisor (and
meltano) inherited; the runner then lets go of its own descriptor. flock belongs to the open file
description, so the lock stays held while any process of the load lives and is released when the
last one is gone, whatever killed the runner. ``running_load`` asks, without waiting, whether a
load holds a plugin's lock now and which run it is (the crash reconciler asks before it marks an
execution CRASHED).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

# Two quick tries before saying we wait: a probe (running_load) holds the lock for microseconds.
_RETRY_SECONDS = 0.05


def lock_path(project_dir: Path | str, plugin: str) -> Path:
    """Where the lock of ``plugin`` in this project lives."""
    return Path(project_dir) / ".meltano" / "flx" / "locks" / f"{plugin}.lock"


class PluginLock:
    """An inter-process lock on one plugin of one project (flock: held while any holder lives)."""

    def __init__(self, plugin: str, fd: int) -> None:
        self.plugin = plugin
        self.fd = fd

    @classmethod
    def open(cls, project_dir: Path | str, plugin: str) -> PluginLock:
        """Open the lock file (mode 0600), without locking it yet; pass ``fd`` to the load."""
        path = lock_path(project_dir, plugin)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return cls(plugin, fd)

    @classmethod
    def acquire(
        cls, project_dir: Path | str, plugin: str, on_wait: Callable[[str], None] | None = None
    ) -> PluginLock:
        """Block until no other run of this project uses ``plugin``."""
        lock = cls.open(project_dir, plugin)
        try:
            lock.take(on_wait)
        except BaseException:
            lock.detach()
            raise
        return lock

    def take(
        self,
        on_wait: Callable[[str], None] | None = None,
        holder: str = "",
        on_held: Callable[[str], None] | None = None,
    ) -> None:
        """Lock (waiting, and saying so, while another load holds it); record ``holder`` (a run id).

        ``on_held(other)`` hears the run id of the load holding it (``""`` unknown) before the
        wait, and may raise to refuse instead of waiting.
        """
        for attempt in range(2):
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == 0:
                    time.sleep(_RETRY_SECONDS)
        else:
            if on_held is not None:
                on_held(os.pread(self.fd, 200, 0).decode("utf-8", "replace").strip())
            if on_wait is not None:
                on_wait(
                    f"waiting for another run of {self.plugin} in this project to finish (Meltano "
                    "shares an extractor's catalog file between runs, meltano#8763)"
                )
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, holder.encode(), 0)

    def release(self) -> None:
        """Let the next run in (unlocks for every process sharing the description)."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            self.detach()

    def detach(self) -> None:
        """Close this process's descriptor; the lock stays with the load's processes, if any."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def running_load(project_dir: Path | str, plugin: str) -> str | None:
    """The run id of the load holding ``plugin``'s lock on this host; None when no load holds it.

    Non-blocking (one open and one flock). ``""`` when the holder recorded no run id (a holder that
    is not a flx run, such as the benchmarks). The file keeps the last holder's id, so in the
    microseconds between a new holder's lock and its write this names the previous holder: the
    answer errs only towards "still running".
    """
    path = lock_path(project_dir, plugin)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def holds_a_lock(project_dir: Path | str, run_id: str) -> bool:
    """Whether the load of ``run_id`` holds any plugin lock of this project on this host now."""
    directory = lock_path(project_dir, "x").parent
    try:
        names = [path.stem for path in directory.glob("*.lock")]
    except OSError:
        return False
    return any(running_load(project_dir, name) == run_id for name in names)


def load_alive(project_dir: Path | str, plugin: str, run_id: str | None = None) -> bool:
    """Whether a load of ``plugin`` (that run's, when ``run_id`` is given) still runs on this host."""
    holder = running_load(project_dir, plugin)
    if holder is None:
        return False
    return run_id is None or holder in ("", run_id)
