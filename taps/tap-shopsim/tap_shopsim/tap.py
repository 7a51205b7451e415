"""The tap-shopsim Tap class: settings, streams and the test knobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.singerlib import Message, RecordMessage
from singer_sdk.singerlib.encoding import GenericSingerWriter

from tap_shopsim.generator import DEFAULT_SCALE, DEFAULT_SEED, DEFAULT_START_DATE
from tap_shopsim.streams import CustomersStream, OrderItemsStream, OrdersStream, ProductsStream

if TYPE_CHECKING:
    from pathlib import PurePath

    from singer_sdk import Stream


class ShopSimFailure(RuntimeError):
    """Raised on purpose once ``fail_after_records`` RECORD messages have been written."""


class RecordLimitWriter(GenericSingerWriter[Any, Message]):
    """Message writer that fails the sync after a given number of RECORD messages.

    Wraps the tap's real writer. STATE messages bypass it (the SDK's state writer keeps a
    reference to the original writer), so only records are counted.

    Attributes:
        limit: Number of RECORD messages allowed before failing.
        records_written: RECORD messages written so far.
    """

    def __init__(self, inner: GenericSingerWriter[Any, Message], limit: int) -> None:
        """Wrap ``inner``.

        Args:
            inner: The writer that actually emits messages.
            limit: Fail once this many RECORD messages have been written.
        """
        self._inner = inner
        self.limit = limit
        self.records_written = 0

    def _fail(self) -> None:
        msg = f"tap-shopsim: failing on purpose after {self.records_written} records (fail_after_records)"
        raise ShopSimFailure(msg)

    def format_message(self, message: Message) -> Any:
        """Format a message with the wrapped writer."""
        return self._inner.format_message(message)

    def serialize_message(self, message: Message) -> Any:
        """Serialize a message with the wrapped writer."""
        return self._inner.serialize_message(message)

    def write_message(self, message: Message) -> None:
        """Write a message, failing as soon as the record limit has been reached."""
        if not isinstance(message, RecordMessage):
            self._inner.write_message(message)
            return
        if self.records_written >= self.limit:
            self._fail()
        self._inner.write_message(message)
        self.records_written += 1
        if self.records_written >= self.limit:
            self._fail()


class TapShopSim(Tap):
    """Singer tap emitting deterministic data for a simulated online shop.

    Streams: customers and orders (incremental on updated_at), products (full table) and
    order_items (child of orders).
    """

    name = "tap-shopsim"

    config_jsonschema = th.PropertiesList(
        th.Property(
            "seed",
            th.IntegerType,
            default=DEFAULT_SEED,
            description="Seed for the generator; same seed and settings give the same data.",
        ),
        th.Property(
            "scale",
            th.IntegerType(minimum=1),
            default=DEFAULT_SCALE,
            description="Records per stream per simulated day (also the number of products).",
        ),
        th.Property(
            "start_date",
            th.DateTimeType,
            default=DEFAULT_START_DATE,
            description="Beginning of the simulated timeline.",
        ),
        th.Property(
            "as_of",
            th.DateTimeType,
            description="The simulated 'now'. Defaults to start_date + 1 day.",
        ),
        th.Property(
            "api_key",
            th.StringType,
            secret=True,
            description="Unused by the generator; exists to test secret redaction.",
        ),
        th.Property(
            "fail_after_records",
            th.IntegerType(minimum=0),
            description="Test knob: fail the sync once this many records were emitted.",
        ),
        th.Property(
            "state_every",
            th.IntegerType(minimum=1),
            description="Test knob: emit a STATE message every N records of a stream.",
        ),
        th.Property(
            "extra_column",
            th.StringType,
            description="Test knob: add a nullable string column of this name to every stream.",
        ),
        th.Property(
            "record_delay_ms",
            th.IntegerType(minimum=0),
            description="Test knob: sleep this many milliseconds before each record.",
        ),
    ).to_dict()

    def __init__(
        self,
        *,
        config: dict[str, Any] | PurePath | str | list[PurePath | str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Create the tap; installs the ``fail_after_records`` writer when configured.

        Args:
            config: Tap configuration (see :class:`singer_sdk.Tap`).
            **kwargs: Passed through to :class:`singer_sdk.Tap`.
        """
        super().__init__(config=config, **kwargs)
        limit = self.config.get("fail_after_records")
        if limit is not None:
            self.message_writer = RecordLimitWriter(self.message_writer, int(limit))

    def discover_streams(self) -> list[Stream]:
        """Return the tap's streams.

        Returns:
            One instance of each stream class.
        """
        return [
            CustomersStream(self),
            ProductsStream(self),
            OrdersStream(self),
            OrderItemsStream(self),
        ]


if __name__ == "__main__":
    TapShopSim.cli()
