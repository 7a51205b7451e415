"""The target-jsonlines Singer target: one JSON Lines file per stream."""

from __future__ import annotations

import copy
import sys
import typing as t

from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.target_base import Target

from target_jsonlines.sinks import DEFAULT_DESTINATION_PATH, JsonLinesSink, WriteTracker

if t.TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import PurePath
    from types import FrameType

    from singer_sdk.singerlib.encoding.base import GenericSingerReader
    from singer_sdk.sinks import Sink


class FailAfterRecordsError(RuntimeError):
    """Raised on purpose once ``fail_after_records`` RECORD messages have been received.

    Args:
        limit: The configured ``fail_after_records`` value.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"target-jsonlines: failing on purpose after {limit} records (fail_after_records)"
        )
        self.limit = limit


# STATE messages are emitted (deduplicated) only by the SDK's drain_all(), after every sink
# has durably written its pending records: at the end of the input, every 5 minutes
# (Target._MAX_RECORD_AGE_IN_MINUTES), on SIGTERM/SIGINT when no batch is being written,
# and - added here - whenever a sink fills up (batch_size_rows, default 10000) and is drained.
class TargetJsonLines(Target):
    """Singer target writing one JSON Lines file per stream, durably, then emitting STATE."""

    name = "target-jsonlines"
    default_sink_class = JsonLinesSink

    config_jsonschema = th.PropertiesList(
        th.Property(
            "destination_path",
            th.StringType,
            default=DEFAULT_DESTINATION_PATH,
            title="Destination Path",
            description=(
                "Directory for the `<stream>.jsonl` files; created if missing. Relative "
                "paths are relative to the working directory."
            ),
        ),
        th.Property(
            "upsert",
            th.BooleanType,
            default=False,
            title="Upsert",
            description=(
                "false: append every record. true: keep one line per primary key, the last "
                "version winning (each batch rewrites the file to a temp file and atomically "
                "replaces it). Streams without key properties are always appended to."
            ),
        ),
        th.Property(
            "fail_after_records",
            th.IntegerType(minimum=1),
            title="Fail After Records (testing)",
            description=(
                "Testing knob: after receiving this many RECORD messages in total, fail with "
                "an error (non-zero exit). Records drained before that stay on disk."
            ),
        ),
        th.Property(
            "emit_empty_final_state",
            th.BooleanType,
            default=False,
            title="Emit Empty Final State (testing)",
            description=(
                "Testing knob: after the last drain, emit a STATE with no bookmarks, as a "
                "misbehaving target would; it wipes the pipeline's bookmarks in Meltano."
            ),
        ),
    ).to_dict()

    def __init__(
        self,
        *,
        config: dict[str, t.Any] | PurePath | str | list[PurePath | str] | None = None,
        parse_env_config: bool = False,
        validate_config: bool = True,
        setup_mapper: bool = True,
        message_reader: GenericSingerReader[t.Any] | None = None,
    ) -> None:
        # Set before the SDK installs signal handlers that read it.
        self.write_tracker = WriteTracker()
        self._records_received = 0
        self._last_emitted_state: dict[str, t.Any] | None = None
        super().__init__(
            config=config,
            parse_env_config=parse_env_config,
            validate_config=validate_config,
            setup_mapper=setup_mapper,
            message_reader=message_reader,
        )
        load_method = self.config.get("load_method")
        if validate_config and load_method not in {None, "append-only"}:
            msg = "Config validation failed"
            raise ConfigValidationError(
                msg,
                errors=[
                    f"load_method={load_method!r} is not supported by {self.name}; "
                    "use the boolean `upsert` setting instead."
                ],
            )

    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict[str, t.Any]) -> None:
        """Add the SDK's built-in settings, except ``load_method``.

        ``upsert`` is this target's only load-method switch; advertising the SDK's
        ``load_method`` (append-only/upsert/overwrite) would suggest modes it ignores.

        Args:
            config_jsonschema: The config JSON schema, updated in place.
        """
        super().append_builtin_config(config_jsonschema)
        config_jsonschema["properties"].pop("load_method", None)

    def get_sink(
        self,
        stream_name: str,
        *,
        record: dict[str, t.Any] | None = None,
        schema: dict[str, t.Any] | None = None,
        key_properties: Sequence[str] | None = None,
    ) -> Sink:
        """Return the stream's sink, first draining it if a new schema replaces it.

        The SDK parks a replaced sink until the next ``drain_all()``, so a full batch of the
        new sink could reach the file before older records (and, in upsert mode, an older
        version of a row would win). Draining the old sink first keeps the input order.

        Args:
            stream_name: Name of the stream.
            record: Record being processed.
            schema: Stream schema, when called for a SCHEMA message.
            key_properties: Primary key of the stream.

        Returns:
            The sink for the stream.
        """
        if schema is not None and self.sink_exists(stream_name):
            existing = super().get_sink(stream_name)
            # Same test as the SDK's Target.get_sink() uses to replace the sink.
            if existing.original_schema != schema or existing.key_properties != key_properties:
                self.drain_one(existing)
        return super().get_sink(
            stream_name,
            record=record,
            schema=schema,
            key_properties=key_properties,
        )

    def _process_record_message(self, message_dict: dict[str, t.Any]) -> None:
        """Process a RECORD message; checkpoint when a batch filled up; maybe fail on purpose.

        Args:
            message_dict: The RECORD message.

        Raises:
            FailAfterRecordsError: Once ``fail_after_records`` records have been received.
        """
        batches_before = self.write_tracker.batches_written
        super()._process_record_message(message_dict)
        if self.write_tracker.batches_written != batches_before:
            # A sink was full and has been drained (the SDK's drain_one emits no STATE).
            # Drain the others too and emit the latest STATE, which they all now cover.
            self.drain_all()

        self._records_received += 1
        limit = self.config.get("fail_after_records")
        if limit is not None and self._records_received >= limit:
            raise FailAfterRecordsError(limit)

    def drain_all(self, *, is_endofpipe: bool = False) -> None:
        """Drain every sink; with ``emit_empty_final_state``, end with an empty STATE."""
        super().drain_all(is_endofpipe=is_endofpipe)
        if is_endofpipe and self.config.get("emit_empty_final_state"):
            super()._write_state_message({"bookmarks": {}})

    def _write_state_message(self, state: dict[str, t.Any]) -> None:
        """Emit a STATE value unless it is the one emitted last.

        Args:
            state: The latest STATE value received; everything before it is on disk.
        """
        if state == self._last_emitted_state:
            return
        super()._write_state_message(state)
        self._last_emitted_state = copy.deepcopy(state)

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """On SIGTERM/SIGINT, drain and emit STATE - unless a batch is being written.

        The SDK's handler runs ``drain_all()`` and then emits STATE even when the signal
        interrupted a ``process_batch()``, whose records would then be claimed by a STATE
        without being on disk. In that case remove the temporary files of the batches being
        written and exit with ``128 + signum`` and no STATE.

        Args:
            signum: Signal number.
            frame: Interrupted stack frame.
        """
        if self.write_tracker.draining:
            # Sinks may be draining in worker threads, which die with the process: remove
            # their temporary files now (a batch that loses its file fails, untouched).
            removed = self.write_tracker.stop()
            self.logger.error(
                "Received signal %d while writing a batch; exiting without emitting STATE "
                "(removed %d temporary file(s)).",
                signum,
                len(removed),
            )
            sys.exit(128 + signum)
        super()._handle_termination(signum, frame)
