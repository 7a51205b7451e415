"""The load's supervisor: parent of meltano, it ends meltano's whole tree when the load's owner goes.

A standalone script (standard library only, run as ``python -I -S supervisor.py SPEC [PID]``), so
it runs under meltano's interpreter as well as flx's. The launcher starts one per ``meltano run``,
in a session of its own: neither the terminal's job control nor a signal to the runner's process
group reaches it. Meltano runs as its child, leading its own process group, with every tap, mapper
and target it starts in that group; the supervisor is a child subreaper, so processes orphaned in
the tree are re-parented to it and reaped by it.

It stops the load (SIGTERM to the group and to every child left, SIGKILL after a grace, then a
bounded wait) when:
- the owner (the runner that launched it) is gone: its end of the control socket closes, whatever
  killed it (also announced by PR_SET_PDEATHSIG, checked against the parent pid);
- the owner asks: ``c<grace seconds>\\n`` on the control socket;
- it receives SIGTERM, SIGINT or SIGHUP;
- meltano exits and leaves processes behind.

It exits only once no process of the tree is left, so its exit tells the owner that the whole load
is gone; the plugin lock files it holds (inherited, see ``load_lock``) are released only then.
After a load that was stopped or killed, it removes the temporary plugin config files Meltano
wrote for it (``.meltano/run/<plugin>/*.config.json``, which hold secrets): the ones named on the
command lines of the load's processes, and in the run directories of the plugins this load holds
the lock of, those written while it ran.

Messages to the owner on the control socket: ``p<pid>\\n`` (meltano's pid, which is its process
group) and, just before exiting, ``r<code>\\n`` (meltano's exit code; ``-N``: killed by signal N).
Its own exit status is meltano's (``128 + N`` for a signal).

SPEC is a JSON object: ``control_fd``, ``owner`` (the owner's pid), ``grace``, ``kill_wait``
(seconds), ``run_root`` (``<project>/.meltano/run``), ``sweep`` (plugin names), ``since`` (epoch
seconds the load started) and ``argv`` (the command to start) unless PID, an already started
meltano to adopt, is given (the launch gate forks meltano, then execs this script).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
OWNER_GONE_SIGNAL = signal.SIGUSR1


def _prctl(option: int, value: int) -> bool:
    """Linux prctl(2) through libc; False where it is unavailable."""
    try:
        import ctypes  # imported here: ~15 ms, paid after meltano is already started

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """State, parent pid and process group of a process, from /proc (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    # The command (field 2) may contain spaces and parentheses: split after its last ")".
    fields = stat.rsplit(b")", 1)[-1].split()
    return fields[0].decode(), int(fields[1]), int(fields[2])


def _processes() -> list[tuple[int, str, int, int]]:
    """Every process of this host: (pid, state, parent pid, process group)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _proc_stat(int(name))
            if stat is not None:
                found.append((int(name), *stat))
    return found


def _config_files(pid: int, run_root: str) -> set[str]:
    """Meltano's temporary config files named on a process's command line (``--config <path>``)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            args = handle.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return set()
    paths = set()
    for index, arg in enumerate(args):
        if arg == "--config" and index + 1 < len(args):
            path = args[index + 1]
        elif arg.startswith("--config="):
            path = arg.removeprefix("--config=")
        else:
            continue
        if path.startswith(run_root + os.sep) and path.endswith(".config.json"):
            paths.add(path)
    return paths


class Supervisor:
    """One load: meltano (its process group) and whatever else of its tree is left."""

    def __init__(self, spec: dict[str, Any], adopted: int | None) -> None:
        self.control = int(spec["control_fd"])
        self.owner = int(spec["owner"])
        self.grace = float(spec.get("grace", 5.0))
        self.kill_wait = float(spec.get("kill_wait", 10.0))
        self.run_root = os.path.abspath(spec.get("run_root", ".meltano/run"))
        self.sweep = [str(name) for name in spec.get("sweep", [])]
        self.since = float(spec.get("since", time.time()))
        self.status: int | None = None
        self.stopped = False
        self.secret_files: set[str] = set()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.requests: list[str] = []
        os.set_inheritable(self.control, False)  # meltano must not hold the owner's line
        if adopted is not None:
            self.meltano = adopted
            _prctl(PR_SET_CHILD_SUBREAPER, 1)
        else:
            _prctl(PR_SET_CHILD_SUBREAPER, 1)
            self.meltano = self._spawn(list(spec["argv"]))
            self._tell(f"p{self.meltano}")
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGCHLD, self._on_signal)
        signal.signal(OWNER_GONE_SIGNAL, self._on_signal)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        if _prctl(PR_SET_PDEATHSIG, OWNER_GONE_SIGNAL) and os.getppid() != self.owner:
            self.requests.append("owner")  # it died before the death signal was armed

    # --- starting and watching ---------------------------------------------------------------

    @staticmethod
    def _spawn(argv: list[str]) -> int:
        """Start the command leading a new process group, stdin from /dev/null, signals default."""
        return os.posix_spawn(
            argv[0],
            argv,
            os.environ,
            file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)],
            setpgroup=0,
            # Python ignores these; an ignored signal would stay ignored in the new program.
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
        )

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum in STOP_SIGNALS:
            self.requests.append("signal")
        elif signum == OWNER_GONE_SIGNAL and os.getppid() != self.owner:
            # PR_SET_PDEATHSIG also fires when the owner's *thread* that started us ends.
            self.requests.append("owner")

    def _tell(self, message: str) -> None:
        with contextlib.suppress(OSError):
            os.write(self.control, f"{message}\n".encode())

    def _read_control(self) -> None:
        try:
            data = os.read(self.control, 4096)
        except OSError:
            data = b""
        if not data:
            self.requests.append("owner")
            return
        for line in data.decode("ascii", "replace").split("\n"):
            if line.startswith("c"):
                with contextlib.suppress(ValueError):
                    self.grace = float(line[1:])
                self.requests.append("cancel")

    def _reap(self) -> bool:
        """Collect every exited child; whether any child is left."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            if pid == self.meltano:
                self.status = os.waitstatus_to_exitcode(status)

    def _group_alive(self) -> bool:
        """Whether a live (non-zombie) process is still in meltano's process group."""
        try:
            os.killpg(self.meltano, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # Zombies count as gone: an orphan adopted by an init that never reaps stays one.
        return any(pgid == self.meltano and state != "Z" for _, state, _, pgid in _processes())

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            os.set_blocking(self.wake_r, False)
            while os.read(self.wake_r, 512):
                pass

    def watch(self) -> None:
        """Wait until meltano exits or someone wants the load stopped.

        SIGCHLD and the stop signals write to the wake-up pipe, so poll() returns for each; a child
        that exited before the handlers were installed is found by the first reap.
        """
        poller = select.poll()
        poller.register(self.control, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        while True:
            self._reap()
            if self.status is not None or self.requests:
                return
            for fd, _ in poller.poll():
                if fd == self.control:
                    self._read_control()
                else:
                    self._drain_wake()

    # --- stopping ----------------------------------------------------------------------------

    def _members(self) -> list[int]:
        """Live processes of the load: meltano's group and this supervisor's children."""
        me = os.getpid()
        return [
            pid
            for pid, state, ppid, pgid in _processes()
            if state != "Z" and pid != me and (pgid == self.meltano or ppid == me)
        ]

    def _signal_all(self, sig: int) -> None:
        members = self._members()
        for pid in members:
            self.secret_files |= _config_files(pid, self.run_root)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.meltano, sig)
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def _wait_gone(self, seconds: float, resend: int | None = None) -> bool:
        """Reap until no child and no group member is left; False if ``seconds`` ran out."""
        deadline = time.monotonic() + seconds
        while True:
            children_left = self._reap()
            if not children_left and not self._group_alive():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if resend is not None:
                self._signal_all(resend)  # orphans re-parented to us since the last round
            # SIGCHLD wakes us at once; the timeout covers group members that are not our children.
            select.select([self.wake_r], [], [], min(remaining, 0.05))
            self._drain_wake()

    def stop(self) -> None:
        """SIGTERM the load, SIGKILL it after the grace, then wait (bounded) until it is gone."""
        self.stopped = True
        self._signal_all(signal.SIGTERM)
        if self._wait_gone(self.grace):
            return
        self._signal_all(signal.SIGKILL)
        if not self._wait_gone(self.kill_wait, resend=signal.SIGKILL):
            left = ", ".join(str(pid) for pid in self._members())
            print(f"flx supervisor: processes {left} outlived SIGKILL", file=sys.stderr, flush=True)

    # --- after the load ----------------------------------------------------------------------

    def remove_secret_files(self) -> None:
        """Delete the config files of this load that Meltano could not remove itself."""
        candidates = set(self.secret_files)
        for plugin in self.sweep:
            directory = Path(self.run_root, plugin)
            with contextlib.suppress(OSError):
                for found in directory.glob("*.config.json"):
                    # Runs of a plugin this load holds the lock of are serialised: a file written
                    # since the load started is this load's.
                    with contextlib.suppress(OSError):
                        if found.stat().st_mtime >= self.since - 1:
                            candidates.add(str(found))
        for path in candidates:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def run(self) -> int:
        """Supervise the load to its end; the exit code to leave with."""
        self.watch()
        if self.requests or self._reap() or self._group_alive():
            self.stop()
        if self.status is None:
            self._reap()
        code = self.status if self.status is not None else -signal.SIGKILL
        if self.stopped or code < 0:
            self.remove_secret_files()
        self._tell(f"r{code}")
        return code if code >= 0 else 128 - code


def main(argv: list[str]) -> int:
    """Entry point: ``supervisor.py SPEC [PID]``."""
    spec = json.loads(argv[1])
    adopted = int(argv[2]) if len(argv) > 2 else None
    try:
        supervisor = Supervisor(spec, adopted)
    except OSError as exc:  # the command could not be started
        with contextlib.suppress(OSError):
            os.write(int(spec["control_fd"]), f"e{exc}\n".encode())
        return 127
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
