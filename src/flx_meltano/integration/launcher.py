"""Launch ``meltano run`` as a subprocess (no shell) and stream its typed events as they arrive."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from flx_meltano.domain.values import StateStrategy
from flx_meltano.integration.errors import LaunchError
from flx_meltano.integration.load_lock import PluginLock
from flx_meltano.integration.meltano_cli import meltano_env, resolve_executable
from flx_meltano.integration.run_events import RunEvent, parse_line

STATE_STRATEGIES = tuple(strategy.value for strategy in StateStrategy)

# Started early, meltano spends its first seconds importing itself (about 2 s). The gate lets it do
# that while flx opens the execution and snapshots the state, then holds it until flx writes "g"
# to its stdin ("f": with Meltano's --force), so it cannot touch the state before the snapshot is
# taken. EOF instead: exit 0.
# Once imported it forks: the child (meltano, leading a new process group) waits at the gate; the
# parent tells the runner meltano's pid and becomes the load's supervisor (exec, which drops the
# imported meltano), before the gate opens, so neither the fork nor the supervisor's start-up
# delays the run.
_GATE = """\
import os, sys
sys.path[0] = {script_dir!r}
from meltano.cli import main
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    os.close({control_fd})
    go = os.read(0, 1)
    if go not in (b"g", b"f"):
        os._exit(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    if go == b"f":
        sys.argv.insert({force_at}, "--force")
    sys.argv[0] = {script!r}
    sys.exit(main())
try:
    os.setpgid(pid, pid)
except OSError:
    pass  # it already did
null = os.open(os.devnull, os.O_RDONLY)
os.dup2(null, 0)
try:
    os.write({control_fd}, b"p%d\\n" % pid)
    os.execv(sys.executable, [sys.executable, "-I", "-S", {supervisor!r}, {spec!r}, str(pid)])
except OSError as exc:
    print(f"flx: the load's supervisor could not start ({{exc}}); meltano runs unsupervised", file=sys.stderr)
    sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) % 256)
"""
SUPERVISOR = str(Path(__file__).resolve().with_name("supervisor.py"))
# Between SIGTERM and SIGKILL when the load is stopped; after SIGKILL, how long to wait for it to go.
STOP_GRACE_SECONDS = 5.0
KILL_WAIT_SECONDS = 10.0


def gated_argv(argv: Sequence[str], spec: str = "{}", control_fd: int = 0) -> list[str] | None:
    """``argv`` behind the gate when ``argv[0]`` is meltano's Python console script, else None.

    ``spec`` is the supervisor's (see ``supervisor``), ``control_fd`` its line to the runner. Any
    other executable (a wrapper script, a binary) is started by the supervisor when the gate would
    open.
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
    code = _GATE.format(
        force_at=_force_at(argv),
        script_dir=os.path.abspath(script.parent),
        script=os.path.abspath(script),
        supervisor=SUPERVISOR,
        spec=spec,
        control_fd=control_fd,
    )
    return [*shlex.split(shebang[2:]), "-c", code, *argv[1:]]


def _force_at(argv: Sequence[str]) -> int:
    """Where ``--force`` goes in a ``meltano ... run ...`` command line: right after ``run``."""
    return list(argv).index("run") + 1 if "run" in argv else len(argv)


def with_force(argv: Sequence[str]) -> list[str]:
    """``argv`` with Meltano's ``--force`` (once)."""
    if "--force" in argv:
        return list(argv)
    args = list(argv)
    args.insert(_force_at(args), "--force")
    return args


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
        state_id_suffix: Meltano's ``--state-id-suffix`` (a partition's own state id).
        timeout_seconds: cancel the run after this long (None: never).
        exclusive: plugins no other run of this project may use at the same time (extractors:
            Meltano 4.4 writes an extractor's catalog to one shared file per project, so two
            concurrent runs of one tap corrupt or swap each other's catalog; meltano#8763).
            The load's own processes hold these locks until the last of them is gone.
        stop_grace_seconds: when the load is stopped (cancel, timeout, the runner gone), the time
            between SIGTERM and SIGKILL.
    """

    project_dir: Path
    environment: str
    blocks: tuple[str, ...]
    run_id: str
    meltano_executable: str = "meltano"
    select: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    full_refresh: bool = False
    state_strategy: StateStrategy | None = None
    state_id_suffix: str | None = None
    force: bool = False
    timeout_seconds: float | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    exclusive: tuple[str, ...] = ()
    stop_grace_seconds: float = STOP_GRACE_SECONDS

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
        if self.state_strategy is not None:
            if self.state_strategy not in STATE_STRATEGIES:  # a str that is no StateStrategy
                raise LaunchError(
                    f"state strategy {self.state_strategy!r} is not one of {', '.join(STATE_STRATEGIES)}"
                )
            args.append(f"--state-strategy={StateStrategy(self.state_strategy).value}")
        if self.state_id_suffix:
            args.append(f"--state-id-suffix={self.state_id_suffix}")
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

    meltano runs under a supervisor (see ``supervisor``) in a session of its own, so neither the
    terminal's job control nor a signal to this runner's process group reaches it. meltano leads a
    process group holding every tap, mapper and target it starts. The supervisor ends that group
    when this runner ends, however it ends, and exits only once no process of it is left; until
    then it holds the locks of ``request.exclusive`` (see ``load_lock``).
    """

    def __init__(self, request: RunRequest) -> None:
        self.request = request
        # The supervisor; in gated runs, first the gate process that becomes it (same pid).
        self._process: subprocess.Popen[str] | None = None
        self._gate: IO[str] | None = None
        self._control: socket.socket | None = None
        self._control_lock = threading.Lock()
        self._messages = b""
        self._meltano_pid: int | None = None
        self._reported_code: int | None = None
        self._spawn_error: str | None = None
        self._locks: list[PluginLock] = []
        self._started = False
        self.cancelled = False
        self.timed_out = False
        self._timer: threading.Timer | None = None

    @property
    def pid(self) -> int | None:
        """meltano's process id, which is its process group (waits briefly for the supervisor to
        report it); None before it is started."""
        if self._process is None:
            return None
        self._read_control(lambda: self._meltano_pid is not None, timeout=30)
        return self._meltano_pid

    @property
    def supervisor_pid(self) -> int | None:
        """The supervisor's process id (it leads the load's session)."""
        return self._process.pid if self._process else None

    def spawn(self) -> MeltanoRun:
        """Start meltano importing itself behind the gate (see ``gated_argv``); ``start`` lets it run.

        Where meltano is not a Python console script nothing is started until ``start``.
        """
        if self._process is not None:
            return self
        try:
            argv = self.request.argv()
            self._locks = self._open_locks()
            child = self._connect()
            spec = {**self._spec(), "control_fd": child.fileno()}
            gated = gated_argv(argv, json.dumps(spec), child.fileno())
            if gated is None:
                child.close()
            else:
                self._popen(gated, child, gated=True)
                self._gate = self._process.stdin if self._process else None
        except LaunchError:
            pass  # start() meets the same error, where the caller records it
        return self

    def start(
        self,
        on_wait: Callable[[str], None] | None = None,
        *,
        on_held: Callable[[str], None] | None = None,
        decide_force: Callable[[], bool] | None = None,
    ) -> MeltanoRun:
        """Take the plugin locks, then let meltano run; LaunchError when it cannot be started.

        ``on_held(holder)``: a lock is held by another load (its run id, ``""`` if unknown), before
        waiting for it; it may raise to refuse instead. ``decide_force()``: once the locks are
        held, whether to pass Meltano's ``--force`` (besides ``request.force``); it may raise to
        refuse. Either refusal stops the spawned meltano before it ran.
        """
        argv = self.request.argv()
        if not self._locks:
            self._locks = self._open_locks()
        try:
            for lock in self._locks:
                lock.take(on_wait, holder=self.request.run_id, on_held=on_held)
            force = decide_force() if decide_force is not None else False
            if self._process is None:
                self._start_supervised(with_force(argv) if force else argv)
            else:
                self._open_gate(force=force and "--force" not in argv)
        except BaseException:
            self._release()
            raise
        self._started = True
        # The load's processes hold the locks now, on the same open file descriptions.
        for lock in self._locks:
            lock.detach()
        self._locks = []
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
                # It finishes importing itself first (seconds, more on a busy machine).
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.cancel()
        self._release()

    # --- starting ----------------------------------------------------------------------------

    def _open_locks(self) -> list[PluginLock]:
        return [PluginLock.open(self.request.project_dir, name) for name in self.request.exclusive]

    def _connect(self) -> socket.socket:
        """A fresh control line to the supervisor; returns the supervisor's end."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._control = ours
        return theirs

    def _spec(self) -> dict[str, object]:
        """What the supervisor needs to know (see ``supervisor``)."""
        env = self.request.environ()
        system_dir = env.get("MELTANO_SYS_DIR_ROOT") or os.path.join(self.request.project_dir, ".meltano")
        return {
            "owner": os.getpid(),
            "grace": self.request.stop_grace_seconds,
            "kill_wait": KILL_WAIT_SECONDS,
            "run_root": os.path.abspath(os.path.join(self.request.project_dir, system_dir, "run")),
            "sweep": list(self.request.exclusive),
            "since": time.time(),
        }

    def _popen(self, argv: list[str], control: socket.socket, gated: bool) -> None:
        try:
            self._process = subprocess.Popen(
                argv,
                cwd=self.request.project_dir,
                env=self.request.environ(),
                stdin=subprocess.PIPE if gated else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                start_new_session=True,
                pass_fds=(control.fileno(), *(lock.fd for lock in self._locks)),
            )
        except OSError as exc:
            raise LaunchError(f"could not start {argv[0]}: {exc}") from exc
        finally:
            control.close()

    def _start_supervised(self, argv: list[str]) -> None:
        """Start the supervisor, which starts ``argv`` at once; LaunchError if it cannot."""
        child = self._connect()
        spec = {**self._spec(), "control_fd": child.fileno(), "argv": argv}
        self._popen([sys.executable, "-I", "-S", SUPERVISOR, json.dumps(spec)], child, gated=False)
        self._read_control(lambda: self._meltano_pid is not None or self._spawn_error is not None, 60)
        if self._meltano_pid is None:
            assert self._process is not None
            self._process.wait()
            output = self._process.stdout.read() if self._process.stdout else ""
            tail = " | ".join(output.strip().splitlines()[-5:])
            raise LaunchError(f"could not start {argv[0]}: {self._spawn_error or tail}")

    def _open_gate(self, force: bool = False) -> None:
        assert self._process is not None
        assert self._gate is not None
        try:
            self._gate.write("f" if force else "g")
            self._gate.close()
        except OSError as exc:
            # meltano died while importing itself: its output says why.
            output = self._process.stdout.read() if self._process.stdout else ""
            self._process.wait()
            tail = " | ".join(output.strip().splitlines()[-5:])
            raise LaunchError(f"meltano exited before the run started: {tail or exc}") from exc
        finally:
            self._gate = None

    def _read_control(self, until: Callable[[], bool], timeout: float) -> None:
        """Take in the supervisor's messages (``supervisor``) until ``until()`` or ``timeout``."""
        with self._control_lock:
            deadline = time.monotonic() + timeout
            while self._control is not None and not until():
                remaining = deadline - time.monotonic()
                readable, _, _ = select.select([self._control], [], [], max(remaining, 0))
                if not readable:
                    return
                data = self._control.recv(4096)
                if not data:  # the supervisor and every holder of its end are gone
                    self._control.close()
                    self._control = None
                    return
                self._messages += data
                *lines, self._messages = self._messages.split(b"\n")
                for line in lines:
                    text = line.decode("utf-8", "replace")
                    if text[:1] == "p" and text[1:].isdigit():
                        self._meltano_pid = int(text[1:])
                    elif text[:1] == "r":
                        with contextlib.suppress(ValueError):
                            self._reported_code = int(text[1:])
                    elif text[:1] == "e":
                        self._spawn_error = text[1:]

    def _tell(self, message: str) -> bool:
        """Send the supervisor a message; False when it is no longer listening."""
        control = self._control
        if control is None:
            return False
        try:
            control.sendall(message.encode())
        except OSError:
            return False
        return True

    def _time_out(self) -> None:
        self.timed_out = True
        self.cancel()

    # --- running -----------------------------------------------------------------------------

    def events(self) -> Iterator[RunEvent]:
        """Typed events, as lines arrive, until the load's last process is gone."""
        if self._process is None:
            self.start()
        assert self._process is not None
        assert self._process.stdout is not None
        try:
            # The supervisor holds the output pipe too: it ends once the whole load has ended.
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
        for lock in self._locks:
            lock.release()
        self._locks = []

    def wait(self) -> int:
        """Wait for the load to end; meltano's exit code."""
        assert self._process is not None
        self._process.wait()
        code = self.returncode
        assert code is not None
        return code

    @property
    def returncode(self) -> int | None:
        """meltano's exit code (negative: killed by that signal) once the whole load has ended."""
        if self._process is None or self._process.returncode is None:
            return None
        self._read_control(lambda: self._reported_code is not None, timeout=0)
        return self._reported_code if self._reported_code is not None else self._process.returncode

    # --- stopping ----------------------------------------------------------------------------

    def cancel(self, grace_seconds: float | None = None) -> None:
        """Stop meltano and every process it started: SIGTERM, SIGKILL after the grace.

        Returns once the supervisor has exited, that is once no process of the load is left
        (after SIGKILL it waits up to ``KILL_WAIT_SECONDS`` for the kernel to take them away).
        ``grace_seconds``: None for the request's ``stop_grace_seconds``.
        """
        if grace_seconds is None:
            grace_seconds = self.request.stop_grace_seconds
        process = self._process
        if process is None:
            return
        if process.poll() is not None:
            # The supervisor exits only once the load is gone, unless it was killed itself (then
            # it reported no exit code, and meltano's group may live on).
            orphaned = self.returncode is not None and self._reported_code is None
            if orphaned and self._meltano_pid is not None and _group_alive(self._meltano_pid):
                self.cancelled = True
                _stop_group(self._meltano_pid, grace_seconds)
            self._release()
            return
        self.cancelled = True
        if not self._started:
            # At the gate or still importing: nothing ran. The supervisor stops it on SIGTERM;
            # before it exists (the gate process, importing), SIGTERM ends the import.
            if self._gate is not None:
                with contextlib.suppress(OSError):
                    self._gate.close()
                self._gate = None
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        else:
            self._tell(f"c{grace_seconds:g}\n")
        try:
            process.wait(timeout=grace_seconds + KILL_WAIT_SECONDS + 5)
        except subprocess.TimeoutExpired:
            # The supervisor is stuck: end the load and it from here.
            if self._meltano_pid is not None:
                _signal_group(self._meltano_pid, signal.SIGKILL)
            _signal_group(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=KILL_WAIT_SECONDS)
        self._release()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process is in the process group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return bool(process_group_members(pgid))


def _stop_group(pgid: int, grace_seconds: float) -> None:
    """SIGTERM a process group that is not ours to reap, SIGKILL it after the grace, wait (bounded)."""
    for sig, seconds in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, KILL_WAIT_SECONDS)):
        _signal_group(pgid, sig)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not _group_alive(pgid):
                return
            time.sleep(0.05)


def process_group_members(pgid: int) -> list[int]:
    """Pids of live (non-zombie) processes in a process group (Linux /proc)."""
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
