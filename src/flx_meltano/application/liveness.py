"""A running execution's lease (the runner's heartbeat) and riding out store outages while it runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from flx_meltano.application.context import AppContext
from flx_meltano.application.ports import UnitOfWork
from flx_meltano.domain.execution import PipelineExecution
from flx_meltano.errors import FlxError
from flx_meltano.persistence import database

# Between two tries to reach a store that is down: doubling from the first, up to the last.
FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 5.0


class RecordNotWritten(FlxError, RuntimeError):
    """The store stayed unreachable past ``store_retry_seconds``: the reconciler completes the record."""


class StoreOutage:
    """What the runner knows of the store while its load runs: whether it is down, since when, and
    whether the user has been told (once)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.down_since: float | None = None
        self.reason = ""
        self._next_try = 0.0
        self._delay = FIRST_RETRY_SECONDS
        self._announced = False
        self._unannounced = False  # a try failed since; told even if the store is back by then
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        """Whether the last try to reach the store failed."""
        return self.down_since is not None

    @property
    def announced(self) -> bool:
        """Whether the user has been told about an outage."""
        return self._announced

    def failed(self, exc: BaseException) -> None:
        """A try failed: back off before the next one."""
        with self._lock:
            now = time.monotonic()
            if self.down_since is None:
                self.down_since = now
                self._delay = FIRST_RETRY_SECONDS
            self._unannounced = True
            self.reason = _first_line(exc)
            self._next_try = now + self._delay
            self._delay = min(self._delay * 2, MAX_RETRY_SECONDS)

    def recovered(self) -> None:
        """A try succeeded."""
        with self._lock:
            self.down_since = None
            self._next_try = 0.0

    def may_try(self) -> bool:
        """False while the back-off after the last failure runs (the load is never held up)."""
        return time.monotonic() >= self._next_try

    def wait_for_next_try(self, deadline: float) -> bool:
        """Sleep until the next try is due; False when that is past ``deadline`` (monotonic)."""
        due = self._next_try
        if due > deadline:
            return False
        time.sleep(max(0.0, due - time.monotonic()))
        return True

    def announcement(self, retry_seconds: float) -> str | None:
        """The one line that tells the user about the outage (None if none yet, or already said).

        An outage noticed by the heartbeat between two lines of meltano's output is told at the
        next one even if the store is back by then (a beat ``recovered`` before it was said)."""
        with self._lock:
            if not self._unannounced or self._announced:
                return None
            self._announced = True
        return (
            f"the store at {self.where} is unreachable ({self.reason}); the load goes on, flx keeps "
            f"its record in memory and writes it once the store is back (retrying for up to "
            f"{retry_seconds:g}s after the load ends; then 'flx-meltano reconcile' completes it)"
        )


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return database.mask_password(line)[:300]


def try_save(ctx: AppContext, execution: PipelineExecution, outage: StoreOutage) -> bool:
    """Store the execution's new events now; when the store is down keep them in memory (False).

    The events wait in ``execution.pending_events``: at most one per stream and one close, so
    what is kept is bounded by the pipeline's streams, however long the outage.
    """
    if not outage.may_try():
        return False
    return persist(ctx, execution, lambda uow: uow.executions.save(execution), outage)


def persist(
    ctx: AppContext,
    execution: PipelineExecution,
    write: Callable[[UnitOfWork], None],
    outage: StoreOutage,
) -> bool:
    """``write`` in one unit of work, committed; on an outage nothing of it is lost: the
    execution's version and pending events are as before (False). Other errors go on."""
    version, pending = execution.version, list(execution.pending_events)
    try:
        with ctx.unit_of_work() as uow:
            write(uow)
            uow.commit()
    except Exception as exc:
        execution.version, execution.pending_events = version, pending
        if not database.is_outage(exc):
            raise
        outage.failed(exc)
        return False
    outage.recovered()
    return True


def persist_retrying(
    ctx: AppContext,
    execution: PipelineExecution,
    write: Callable[[UnitOfWork], None],
    outage: StoreOutage,
    retry_seconds: float,
) -> None:
    """``persist``, retried with back-off while the store is down, for up to ``retry_seconds``;
    RecordNotWritten after that (the execution stays RUNNING in the store, its lease runs out)."""
    deadline = time.monotonic() + retry_seconds
    while not persist(ctx, execution, write, outage):
        if not outage.wait_for_next_try(deadline):
            raise RecordNotWritten(
                f"could not record execution {execution.id} of {execution.pipeline_id} "
                f"({execution.status}): the store at {outage.where} stayed unreachable for "
                f"{retry_seconds:g}s ({outage.reason}); once its lease of "
                f"{execution.lease_seconds or 0:g}s has run out, 'flx-meltano reconcile' (or "
                "Dagster's crash sensor) completes the record from Meltano's state"
            )


class Heartbeat:
    """Renews an execution's lease every ``interval`` seconds from a daemon thread, on a connection
    of its own; a failed beat is noted on ``outage`` and never reaches the run."""

    def __init__(self, ctx: AppContext, execution_id: str, interval: float, outage: StoreOutage) -> None:
        self.ctx = ctx
        self.execution_id = execution_id
        self.interval = interval
        self.outage = outage
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"flx-heartbeat-{execution_id}", daemon=True)

    def start(self) -> Heartbeat:
        """Beat now and every ``interval`` seconds until ``stop``."""
        self._thread.start()
        return self

    def beat(self) -> bool:
        """One heartbeat; whether it reached the store."""
        try:
            with self.ctx.unit_of_work() as uow:
                uow.executions.heartbeat(self.execution_id)
                uow.commit()
        except Exception as exc:
            self.outage.failed(exc)
            return False
        self.outage.recovered()
        self.beats += 1
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.beat()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        """Stop beating (waits at most briefly for a beat under way: the thread is a daemon)."""
        self._stop.set()
        self._thread.join(timeout=1.0)
