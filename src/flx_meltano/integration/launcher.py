"""Launch ``meltano run`` as a subprocess (no shell) and stream its typed events as they arrive."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TextIO

from flx_meltano.integration.errors import LaunchError
from flx_meltano.integration.meltano_cli import meltano_env, resolve_executable
from flx_meltano.integration.run_events import RunEvent, parse_line

STATE_STRATEGIES = ("auto", "merge", "overwrite")

# Started early, meltano spends its first seconds importing itself (about 2 s). The gate lets it do
# that while flx opens the execution and snapshots the state, then holds it until flx writes "g"
# to its stdin, so it cannot touch the state before the snapshot is taken. EOF instead: exit 0.
_GATE = """\
import os, sys
sys.path[0] = {script_dir!r}
from meltano.cli import main
if os.read(0, 1) != b"g":
    raise SystemExit(0)
null = os.open(os.devnull, os.O_RDONLY)
os.dup2(null, 0)
os.close(null)
sys.argv[0] = {script!r}
sys.exit(main())
"""


def gated_argv(argv: Sequence[str]) -> list[str] | None:
    """``argv`` behind the gate when ``argv[0]`` is meltano's Python console script, else None.

    Any other executable (a wrapper script, a binary) is simply started when the gate would open.
    """
    script = Path(argv[0])
    try:
        with script.open("rb") as handle:
            head = handle.read(1024).decode("utf-8", "replace")
    except OSError:
        return None
    shebang = head.splitlines()[0] if head else ""
    if not shebang.startswith("#!") or "python" not in shebang or "from meltano.cli import main" not in head:
        return None
    code = _GATE.format(script_dir=os.path.abspath(script.parent), script=os.path.abspath(script))
    return [*shlex.split(shebang[2:]), "-c", code, *argv[1:]]


def select_env_var(extractor: str) -> str:
    """Meltano's environment variable for an extractor's ``select`` extra."""
    return f"{extractor.upper().replace('-', '_')}__SELECT"


def stream_selection(streams: Sequence[str]) -> str:
    """The ``select`` override for exactly these streams (all their properties)."""
    return json.dumps([f"{stream}.*" for stream in streams])


@dataclass(frozen=True)
class RunRequest:
    """Everything needed to start one ``meltano run``.

    Attributes:
        blocks: the block names, e.g. ``["tap-x", "target-y"]`` or ``["my-job"]``.
        run_id: Meltano's run id (a UUID); flx uses the execution id.
        select: per extractor, the streams to run (overrides its ``select`` rules).
        timeout_seconds: cancel the run after this long (None: never).
        exclusive: plugins no other run of this project may use at the same time (extractors:
            Meltano 4.4 writes an extractor's catalog to one shared file per project, so two
            concurrent runs of one tap corrupt or swap each other's catalog; meltano#8763).
    """

    project_dir: Path
    environment: str
    blocks: tuple[str, ...]
    run_id: str
    meltano_executable: str = "meltano"
    select: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    full_refresh: bool = False
    state_strategy: str | None = None
    force: bool = False
    timeout_seconds: float | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    exclusive: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        """The command line (no shell ever sees it)."""
        args = [
            resolve_executable(self.meltano_executable),
            "--log-format=json",
            f"--environment={self.environment}",
            "run",
            f"--run-id={self.run_id}",
        ]
        if self.full_refresh:
            args.append("--full-refresh")
        if self.state_strategy:
            if self.state_strategy not in STATE_STRATEGIES:
                raise LaunchError(
                    f"state strategy {self.state_strategy!r} is not one of {', '.join(STATE_STRATEGIES)}"
                )
            args.append(f"--state-strategy={self.state_strategy}")
        if self.force:
            args.append("--force")
        return [*args, *self.blocks]

    def environ(self) -> dict[str, str]:
        """The process environment: ours, the caller's overrides, and the stream selection."""
        extra = dict(self.env)
        for extractor, streams in self.select.items():
            extra[select_env_var(extractor)] = stream_selection(streams)
        return meltano_env(extra)


class MeltanoRun:
    """One running ``meltano run``; iterate ``events()`` while it runs, ``cancel()`` to stop it.

    The process leads its own process group, so cancelling signals meltano and every tap, mapper
    and target it started, and nothing else.
    """

    def __init__(self, request: RunRequest) -> None:
        self.request = request
        self._process: subprocess.Popen[str] | None = None
        self._gate: IO[str] | None = None
        self.cancelled = False
        self.timed_out = False
        self._timer: threading.Timer | None = None

    @property
    def pid(self) -> int | None:
        """The meltano process id once started."""
        return self._process.pid if self._process else None

    def spawn(self) -> MeltanoRun:
        """Start meltano importing itself behind the gate (see ``gated_argv``); ``start`` lets it run.

        Where meltano is not a Python console script nothing is started until ``start``.
        """
        if self._process is not None:
            return self
        try:
            argv = gated_argv(self.request.argv())
            if argv is not None:
                self._process = self._popen(argv, gated=True)
                self._gate = self._process.stdin
        except LaunchError:
            pass  # start() meets the same error, where the caller records it
        return self

    def start(self, on_wait: Callable[[str], None] | None = None) -> MeltanoRun:
        """Take the plugin locks, then let meltano run; LaunchError when it cannot be started."""
        argv = self.request.argv()
        self._locks = [
            PluginLock.acquire(self.request.project_dir, name, on_wait) for name in self.request.exclusive
        ]
        try:
            if self._process is None:
                self._process = self._popen(argv, gated=False)
            else:
                self._open_gate()
        except LaunchError:
            self._release()
            raise
        if self.request.timeout_seconds:
            self._timer = threading.Timer(self.request.timeout_seconds, self._time_out)
            self._timer.daemon = True
            self._timer.start()
        return self

    def abort(self) -> None:
        """Stop a spawned meltano that was never started (EOF at the gate), and wait for it."""
        if self._gate is not None and self._process is not None:
            with contextlib.suppress(OSError):
                self._gate.close()
            self._gate = None
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.cancel()

    def _popen(self, argv: list[str], gated: bool) -> subprocess.Popen[str]:
        try:
            return subprocess.Popen(
                argv,
                cwd=self.request.project_dir,
                env=self.request.environ(),
                stdin=subprocess.PIPE if gated else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                start_new_session=True,
            )
        except OSError as exc:
            raise LaunchError(f"could not start {argv[0]}: {exc}") from exc

    def _open_gate(self) -> None:
        assert self._process is not None
        assert self._gate is not None
        try:
            self._gate.write("g")
            self._gate.close()
        except OSError as exc:
            # meltano died while importing itself: its output says why.
            output = self._process.stdout.read() if self._process.stdout else ""
            self._process.wait()
            tail = " | ".join(output.strip().splitlines()[-5:])
            raise LaunchError(f"meltano exited before the run started: {tail or exc}") from exc
        finally:
            self._gate = None

    def _time_out(self) -> None:
        self.timed_out = True
        self.cancel()

    def events(self) -> Iterator[RunEvent]:
        """Typed events, as lines arrive, until meltano exits."""
        if self._process is None:
            self.start()
        assert self._process is not None
        assert self._process.stdout is not None
        try:
            for line in self._process.stdout:
                event = parse_line(line)
                if event is not None:
                    yield event
            self._process.wait()
        finally:
            if self._timer is not None:
                self._timer.cancel()
            if self._process.poll() is not None:
                self._release()

    def _release(self) -> None:
        for lock in getattr(self, "_locks", []):
            lock.release()
        self._locks = []

    def wait(self) -> int:
        """Wait for meltano to exit; its exit code."""
        assert self._process is not None
        return self._process.wait()

    @property
    def returncode(self) -> int | None:
        """The exit code once meltano has exited."""
        return self._process.returncode if self._process else None

    def cancel(self, grace_seconds: float = 5.0) -> None:
        """Stop meltano and every process it started: SIGTERM to the group, SIGKILL after grace."""
        process = self._process
        if process is None or (process.poll() is not None and not _group_alive(process.pid)):
            return
        self.cancelled = True
        _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline:
            if process.poll() is not None and not _group_alive(process.pid):
                return
            time.sleep(0.05)
        _signal_group(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_seconds)
        self._release()


class PluginLock:
    """An inter-process lock on one plugin of one project (flock: released if the holder dies)."""

    def __init__(self, handle: TextIO) -> None:
        self.handle = handle

    @classmethod
    def acquire(
        cls, project_dir: Path, plugin: str, on_wait: Callable[[str], None] | None = None
    ) -> PluginLock:
        """Block until no other run of this project uses ``plugin``."""
        path = Path(project_dir) / ".meltano" / "flx" / "locks" / f"{plugin}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait(
                    f"waiting for another run of {plugin} in this project to finish (Meltano shares "
                    "an extractor's catalog file between runs, meltano#8763)"
                )
            fcntl.flock(handle, fcntl.LOCK_EX)
        return cls(handle)

    def release(self) -> None:
        """Let the next run in."""
        if not self.handle.closed:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_group_members(pgid: int) -> list[int]:
    """Pids still in a process group (Linux /proc), for tests and the crash reconciler."""
    members: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 5 of /proc/<pid>/stat is the process group; the command may contain spaces.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members
