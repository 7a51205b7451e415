"""Read and write Singer state through Meltano's configured state backend, in-process.

Meltano's own ``StateService`` does the work, so every backend Meltano supports (systemdb on
SQLite or PostgreSQL, ``file://``, ``s3://``, ``gs://``, ``azure://``) works here, without the
~1.4 s start-up of a ``meltano state`` subprocess per call.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flx_meltano.domain.errors import InvalidState
from flx_meltano.domain.identifiers import StateId
from flx_meltano.domain.state import SingerState
from flx_meltano.integration.errors import StateAccessError
from flx_meltano.integration.meltano_cli import QUIET_MELTANO_ENV

logger = logging.getLogger(__name__)

# os.environ and Meltano's project loading are process-wide: every store in the process takes this
# one lock while it applies its own environment, so two stores never see each other's variables.
_PROCESS_LOCK = threading.RLock()


def _route_meltano_logs_to_stdlib() -> None:
    """Send Meltano's structlog output through stdlib logging (quiet below WARNING).

    Unconfigured structlog prints every Meltano info line to stdout; a host application that
    configured structlog itself is left alone.
    """
    import structlog

    if not structlog.is_configured():
        structlog.configure(
            processors=[structlog.stdlib.render_to_log_kwargs],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=True,
        )
    logging.getLogger("meltano").setLevel(logging.WARNING)


@contextmanager
def temporary_environ(overrides: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block (Meltano reads its settings there)."""
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# Meltano's system database tables that state access uses (job rows, systemdb state).
_MELTANO_TABLES = frozenset({"alembic_version", "runs", "state"})


@dataclass(frozen=True)
class MeltanoRunRecord:
    """Meltano's own row of one run (``runs`` in its system database).

    Attributes:
        status: Meltano's state of the run (``RUNNING``, ``SUCCESS``, ``FAIL``, ...).
        heartbeat_age_seconds: since its last heartbeat (meltano writes one every second while it
            runs), on this host's clock; None when it has none.
        state: the last Singer state the run itself wrote (None: none); partial when Meltano merges.
        complete_state: whether ``state`` is complete (not a partial state to merge).
    """

    run_id: str
    state_id: str
    status: str
    heartbeat_age_seconds: float | None
    state: SingerState | None
    complete_state: bool


class MeltanoStateStore:
    """The Singer state of one Meltano project, through whatever backend it configures.

    Args:
        project_dir: the Meltano project root.
        environment: the Meltano environment whose settings apply.
        env: extra environment variables (e.g. ``MELTANO_STATE_BACKEND_URI``) for this store.
        redact: masks secrets (e.g. the password in a backend URI) in the messages of the errors
            this store raises; backends often repeat their URI or credentials in their errors.
    """

    def __init__(
        self,
        project_dir: Path | str,
        environment: str | None = None,
        env: Mapping[str, str] | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.project_dir = Path(project_dir).resolve()
        self.environment = environment
        self.env = {**QUIET_MELTANO_ENV, **(env or {})}
        self.redact = redact
        self._service: Any = None
        self._lock = _PROCESS_LOCK

    @contextmanager
    def _backend(self, what: str) -> Iterator[None]:
        """Call the backend with this store's environment; its errors become StateAccessError, masked."""
        try:
            with self._lock, temporary_environ(self.env):
                yield
        except Exception as exc:
            raw = f"{what} failed: {exc}"
            text = self.redact(raw) if self.redact else raw
            if text != raw:  # a chained original would print the secret in a traceback
                raise StateAccessError(text) from None
            raise StateAccessError(raw) from exc

    def _state_service(self) -> Any:
        if self._service is None:
            _route_meltano_logs_to_stdlib()
            from meltano.core.db import project_engine
            from meltano.core.project import Project
            from meltano.core.state_service import StateService

            with self._lock, temporary_environ(self.env):
                project = Project(self.project_dir)
                if self.environment:
                    project.activate_environment(self.environment)
                # Meltano records a job row in its system database for every state write, whatever
                # the state backend, so a session is needed even for file://, s3:// and friends.
                engine, session_maker = project_engine(project)
                # A project that never ran meltano has no system database yet. Checking for its
                # tables is cheap; Meltano's migration check loads every Alembic script (~0.4 s,
                # on the path of every run), and meltano itself upgrades an older schema.
                with engine.connect() as connection:
                    tables = set(engine.dialect.get_table_names(connection))
                if not tables >= _MELTANO_TABLES:
                    from meltano.core.migration_service import MigrationService

                    MigrationService(engine).upgrade(silent=True)
                self._service = StateService(project, session=session_maker())
                self._service.state_store_manager  # noqa: B018 - resolve the backend now, with the env applied
        return self._service

    @property
    def backend_label(self) -> str:
        """Where the state lives, as Meltano names it (e.g. ``the system database``)."""
        with self._backend("opening the state backend"):
            label = self._state_service().state_store_manager.label
        return str(label)

    def get(self, state_id: StateId | str) -> SingerState | None:
        """The state of ``state_id``, or None when it has none."""
        key = str(state_id)
        with self._backend(f"reading state {key!r}"):
            raw = self._state_service().get_state(key)
        if not raw:
            return None
        try:
            return SingerState.from_payload(raw)
        except InvalidState as exc:
            raise StateAccessError(f"state {key!r} in the backend is malformed: {exc}") from exc

    def set(self, state_id: StateId | str, state: SingerState) -> None:
        """Replace the state of ``state_id`` (complete state, as ``meltano state set``)."""
        key = str(state_id)
        with self._backend(f"writing state {key!r}"):
            self._state_service().set_state(key, json.dumps(state.payload()))

    def clear(self, state_id: StateId | str) -> None:
        """Remove the state of ``state_id``."""
        key = str(state_id)
        with self._backend(f"clearing state {key!r}"):
            self._state_service().clear_state(key)

    def state_ids(self, pattern: str | None = None) -> list[str]:
        """State ids in the backend, optionally filtered by a shell-style glob pattern.

        The glob is applied here, not by the backend: Meltano's systemdb turns it into SQL LIKE,
        where ``_`` matches any character and ``?`` does not work.
        """
        with self._backend("listing state ids"):
            ids = sorted(self._state_service().state_store_manager.get_state_ids(None))
        return ids if pattern is None else [i for i in ids if fnmatch.fnmatchcase(i, pattern)]

    def get_many(self, pattern: str | None = None) -> dict[str, SingerState]:
        """Every state matching ``pattern`` (None: all), skipping ids with no state."""
        states: dict[str, SingerState] = {}
        for key in self.state_ids(pattern):
            state = self.get(key)
            if state is not None:
                states[key] = state
        return states

    def runs(self, state_id: StateId | str, *, running_only: bool = False) -> list[MeltanoRunRecord]:
        """Meltano's rows of the runs of ``state_id`` (newest first; only RUNNING ones if asked)."""
        from meltano.core.job.job import Job, Payload, State

        key = str(state_id)
        with self._backend(f"reading Meltano's runs of {key!r}"):
            session = self._state_service().session
            try:
                query = session.query(Job).filter(Job.job_name == key)
                if running_only:
                    query = query.filter(Job.state == State.RUNNING)  # type: ignore[comparison-overlap]
                jobs = query.order_by(Job.started_at.desc()).limit(50).all()
                return [self._record(job, Payload, key) for job in jobs]
            finally:
                session.rollback()  # a fresh snapshot next time: meltano writes these rows

    def run(self, run_id: str) -> MeltanoRunRecord | None:
        """Meltano's row of the run ``run_id`` (None: Meltano has no row of it)."""
        import uuid

        from meltano.core.job.job import Job, Payload

        try:
            wanted = uuid.UUID(run_id)
        except ValueError:
            return None
        with self._backend(f"reading Meltano's run {run_id}"):
            session = self._state_service().session
            try:
                job = session.query(Job).filter(Job.run_id == wanted).order_by(Job.id.desc()).first()
                return None if job is None else self._record(job, Payload, job.job_name)
            finally:
                session.rollback()

    @staticmethod
    def _record(job: Any, payload_flags: Any, state_id: str) -> MeltanoRunRecord:
        beat = job.last_heartbeat_at
        if beat is not None and beat.tzinfo is None:
            beat = beat.replace(tzinfo=UTC)
        raw = (job.payload or {}).get("singer_state")
        try:
            state = SingerState.from_payload({"singer_state": raw}) if raw else None
        except InvalidState:
            state = None
        return MeltanoRunRecord(
            run_id=str(job.run_id),
            state_id=state_id,
            status=str(job.state.name if hasattr(job.state, "name") else job.state),
            heartbeat_age_seconds=(datetime.now(UTC) - beat).total_seconds() if beat else None,
            state=state,
            complete_state=job.payload_flags != payload_flags.INCOMPLETE_STATE,
        )

    def close(self) -> None:
        """Release the backend connection."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._service is not None:
            session = self._service.session
            self._service.close()
            if session is not None:
                session.close()
            self._service = None
