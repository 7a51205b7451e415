"""JSON Lines sink: durably writes each stream's records to its own ``.jsonl`` file."""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import typing as t
import uuid
from pathlib import Path
from urllib.parse import quote

from singer_sdk.singerlib.json import deserialize_json, serialize_json
from singer_sdk.sinks import BatchSink

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from singer_sdk.helpers.conform import DatetimeErrorTreatmentEnum
    from singer_sdk.target_base import Target

DEFAULT_DESTINATION_PATH = "output"
"""Default for the ``destination_path`` setting (relative to the working directory)."""

FILE_SUFFIX = ".jsonl"

# Leaves room below the usual 255-byte NAME_MAX for the upsert temp-file prefix/suffix.
_MAX_FILE_NAME_BYTES = 200
_SCAN_CHUNK_BYTES = 64 * 1024


def stream_file_name(stream_name: str) -> str:
    """Return the file name used for a stream's records.

    The rule is safe, predictable and reversible (``urllib.parse.unquote`` of the name
    without its suffix gives back the stream name):

    * ASCII letters, digits, ``_``, ``-`` and ``.`` are kept as they are;
    * every other character is percent-encoded as the uppercase ``%XX`` of its UTF-8
      bytes (``%`` -> ``%25``, ``/`` -> ``%2F``, space -> ``%20``, ``~`` -> ``%7E``);
    * a leading ``.`` becomes ``%2E``, so no file is hidden and ``.``/``..`` are harmless;
    * ``.jsonl`` is appended.

    Examples: ``users`` -> ``users.jsonl``, ``public.users`` -> ``public.users.jsonl``,
    ``my-stream`` -> ``my-stream.jsonl``, ``a/b c`` -> ``a%2Fb%20c.jsonl``.

    Args:
        stream_name: The Singer stream name (after any stream maps).

    Returns:
        The file name, relative to ``destination_path``.

    Raises:
        ValueError: If the stream name is empty or its file name would be too long.
    """
    if not stream_name:
        msg = "Stream name must not be empty."
        raise ValueError(msg)
    encoded = quote(stream_name, safe="").replace("~", "%7E")
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    file_name = encoded + FILE_SUFFIX
    if len(file_name.encode()) > _MAX_FILE_NAME_BYTES:
        msg = (
            f"Stream name {stream_name!r} is too long: its file name {file_name!r} exceeds "
            f"{_MAX_FILE_NAME_BYTES} bytes."
        )
        raise ValueError(msg)
    return file_name


def _fsync_directory(directory: Path) -> None:
    """Flush a directory entry change (new file, rename) to disk; POSIX only."""
    if os.name != "posix":  # pragma: no cover - directories cannot be fsync'ed on Windows
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _end_of_last_complete_line(fh: t.BinaryIO, size: int) -> int:
    """Return the offset just after the last newline in the first ``size`` bytes (0 if none)."""
    end = size
    while end > 0:
        start = max(0, end - _SCAN_CHUNK_BYTES)
        fh.seek(start)
        index = fh.read(end - start).rfind(b"\n")
        if index != -1:
            return start + index + 1
        end = start
    return 0


class TargetStoppingError(RuntimeError):
    """Raised in a sink that starts writing a file after the target was told to stop."""


class WriteTracker:
    """Thread-safe bookkeeping of the batches a target's sinks are writing.

    Shared by :class:`~target_jsonlines.target.TargetJsonLines` and its sinks. The target
    uses ``draining`` to refuse to emit STATE while a batch may be half-written,
    ``batches_written`` to notice that a sink was drained because it was full, and ``stop``
    to remove the temporary files of batches being written when it is terminated (the SDK
    drains sinks in worker threads, which die with the process mid-write).
    """

    def __init__(self) -> None:
        # Re-entrant: the SIGTERM handler, run in the main thread, may interrupt it holding it.
        self._lock = threading.RLock()
        self._draining = 0
        self._batches_written = 0
        self._stopping = False
        self._temp_files: set[Path] = set()

    @property
    def draining(self) -> int:
        """Number of sink drains started and not (successfully) finished."""
        with self._lock:
            return self._draining

    @property
    def batches_written(self) -> int:
        """Number of non-empty batches durably written so far."""
        with self._lock:
            return self._batches_written

    def drain_started(self) -> None:
        """Record that a sink started draining."""
        with self._lock:
            self._draining += 1

    def drain_finished(self) -> None:
        """Record that a sink finished draining successfully."""
        with self._lock:
            self._draining -= 1

    def batch_written(self) -> None:
        """Record that a batch is durably on disk."""
        with self._lock:
            self._batches_written += 1

    def create_temp_file(self, path: Path) -> t.BinaryIO:
        """Create ``path`` (exclusively) as a temporary file to remove if the target stops.

        Raises:
            TargetStoppingError: If the target is stopping; no file is created.
        """
        with self._lock:
            if self._stopping:
                msg = f"target is stopping; not writing {path}"
                raise TargetStoppingError(msg)
            handle = path.open("xb")
            self._temp_files.add(path)
        return handle

    def temp_file_done(self, path: Path) -> None:
        """Forget a temporary file that was renamed into place or removed."""
        with self._lock:
            self._temp_files.discard(path)

    def stop(self) -> list[Path]:
        """Refuse new temporary files and remove those being written.

        A batch whose temporary file disappears fails at its ``os.replace``; the file it
        would have replaced stays as it was. No STATE covers such a batch.

        Returns:
            The temporary files removed.
        """
        with self._lock:
            self._stopping = True
            paths = sorted(self._temp_files)
            self._temp_files.clear()
        removed = []
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
        return removed


class JsonLinesSink(BatchSink):
    """Writes one stream's records to ``<destination_path>/<stream_file_name(stream)>``.

    Records are buffered by the SDK and written by :meth:`process_batch`, which returns only
    once the batch is durably on disk: appended, flushed and ``os.fsync``'ed, or in upsert
    mode written to a temp file in the same directory, fsync'ed and swapped in with
    ``os.replace`` (then the directory is fsync'ed). The SDK emits STATE only after all
    sinks are drained, so an emitted STATE never covers records that are not on disk.

    Records are written as compact JSON exactly as received: values are not re-typed
    (date-time strings stay strings, numbers keep their digits) and ``_sdc_*`` keys are
    neither added (unless ``add_record_metadata`` is on) nor removed.
    """

    def __init__(
        self,
        target: Target,
        stream_name: str,
        schema: dict[str, t.Any],
        key_properties: Sequence[str] | None,
    ) -> None:
        super().__init__(
            target=target,
            stream_name=stream_name,
            schema=schema,
            key_properties=key_properties,
        )
        tracker = getattr(target, "write_tracker", None)
        self._tracker = tracker if isinstance(tracker, WriteTracker) else WriteTracker()

    # Settings

    @property
    def destination_dir(self) -> Path:
        """Directory holding the ``.jsonl`` files (``destination_path`` setting)."""
        raw = self.config.get("destination_path") or DEFAULT_DESTINATION_PATH
        return Path(str(raw)).expanduser()

    @property
    def file_path(self) -> Path:
        """Path of this stream's JSON Lines file."""
        return self.destination_dir / stream_file_name(self.stream_name)

    @property
    def upsert(self) -> bool:
        """Whether to keep one line per primary key (needs ``upsert`` and key properties)."""
        return bool(self.config.get("upsert")) and bool(self.key_properties)

    # SDK hooks

    def setup(self) -> None:
        """Create the destination directory and check the stream's file name."""
        super().setup()
        self.destination_dir.mkdir(parents=True, exist_ok=True)
        self.logger.info("Writing stream '%s' to %s", self.stream_name, self.file_path)

    def _parse_timestamps_in_record(
        self,
        record: dict[str, t.Any],
        schema: dict[str, t.Any],
        treatment: DatetimeErrorTreatmentEnum,
    ) -> None:
        """Keep values as received.

        The SDK would turn ``date-time`` strings into ``datetime`` objects, which would
        then be written back in a different spelling (``Z`` -> ``+00:00``).
        """

    def _remove_sdc_metadata_from_record(self, record: dict[str, t.Any]) -> None:
        """Keep ``_sdc_*`` keys that came with the record (keys are written as received)."""

    def start_drain(self) -> dict[str, t.Any]:
        """Mark a drain as in progress, then start it.

        Returns:
            The batch context to drain.
        """
        self._tracker.drain_started()
        return super().start_drain()

    def mark_drained(self) -> None:
        """Finish the drain; reached only if :meth:`process_batch` succeeded."""
        super().mark_drained()
        self._tracker.drain_finished()

    def process_batch(self, context: dict[str, t.Any]) -> None:
        """Durably write a batch of records before returning.

        Args:
            context: Batch context; the SDK puts the records in ``context["records"]``.
        """
        records: list[dict[str, t.Any]] = context.get("records", [])
        if not records:
            return
        lines = [(serialize_json(record) + "\n").encode() for record in records]
        if self.upsert:
            self._upsert(records, lines)
        else:
            self._append(lines)
        self._tracker.batch_written()
        self.logger.debug(
            "Wrote %d records to %s (%s)",
            len(records),
            self.file_path,
            "upsert" if self.upsert else "append",
        )

    # Writing

    def _append(self, lines: list[bytes]) -> None:
        """Append lines to the stream's file, then flush and fsync it."""
        path = self.file_path
        created = not path.exists()
        with path.open("a+b") as fh:
            self._complete_last_line(fh, path)
            fh.write(b"".join(lines))
            fh.flush()
            os.fsync(fh.fileno())
        if created:
            _fsync_directory(path.parent)

    def _complete_last_line(self, fh: t.BinaryIO, path: Path) -> None:
        """Make sure the file ends with a newline before appending to it.

        A file can only end mid-line if a previous run died while appending; that line was
        never covered by a STATE message, so it is dropped. A complete JSON document without
        its newline (say, an edited file) is kept and terminated.
        """
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        keep = _end_of_last_complete_line(fh, size)
        fh.seek(keep)
        tail = fh.read(size - keep)
        try:
            deserialize_json(tail)
        except ValueError:
            self.logger.warning(
                "%s ends with an incomplete line (%d bytes) left by an interrupted run; "
                "dropping it.",
                path,
                size - keep,
            )
            fh.truncate(keep)
        else:
            fh.write(b"\n")
        fh.seek(0, os.SEEK_END)

    def _row_key(self, record: dict[str, t.Any]) -> str:
        """Return the primary-key value of a record, serialized for use as a dict key."""
        return serialize_json([record[key] for key in self.key_properties])

    def _read_rows(self, path: Path) -> dict[str, bytes]:
        """Read an existing file into ``{primary key: line}``, the last line per key winning.

        Lines lacking a key property are kept as they are, each under its own unique key.

        Raises:
            ValueError: If a complete line of the file is not valid JSON.
        """
        rows: dict[str, bytes] = {}
        with path.open("rb") as fh:
            for line_number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                complete = raw.endswith(b"\n")
                try:
                    row = deserialize_json(raw)
                except ValueError as exc:
                    if not complete:  # only the last line can lack its newline
                        self.logger.warning(
                            "%s ends with an incomplete line left by an interrupted run; "
                            "dropping it.",
                            path,
                        )
                        break
                    msg = (
                        f"{path}:{line_number} is not valid JSON; refusing to rewrite the file "
                        "in upsert mode."
                    )
                    raise ValueError(msg) from exc
                line = raw if complete else raw + b"\n"
                if isinstance(row, dict) and all(key in row for key in self.key_properties):
                    rows[self._row_key(row)] = line
                else:
                    # "\0" cannot start a serialized key, so this never collides with one.
                    rows[f"\0line {line_number}"] = line
        return rows

    def _upsert(self, records: list[dict[str, t.Any]], lines: list[bytes]) -> None:
        """Merge the batch into the file by primary key, then replace the file atomically.

        A key already present keeps its position; its line is replaced by the latest one.
        """
        path = self.file_path
        rows = self._read_rows(path) if path.exists() else {}
        for record, line in zip(records, lines, strict=True):
            rows[self._row_key(record)] = line
        self._replace_file(path, rows.values())

    def _replace_file(self, path: Path, lines: Iterable[bytes]) -> None:
        """Write ``lines`` to a temp file next to ``path``, fsync it, then ``os.replace``.

        A crash at any point leaves either the old or the new file, never a mix. An error,
        SIGTERM or SIGINT removes the temp file; only SIGKILL can leave a stray
        ``.<file name>.<hex>.tmp`` file behind.
        """
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with self._tracker.create_temp_file(tmp) as fh:
                if path.exists():  # keep the permissions of the file being replaced
                    tmp.chmod(stat.S_IMODE(path.stat().st_mode))
                for line in lines:
                    fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        finally:
            self._tracker.temp_file_done(tmp)
        _fsync_directory(path.parent)
