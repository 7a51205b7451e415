"""Stream definitions for tap-shopsim: customers, products, orders and order_items."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from singer_sdk import Stream
from singer_sdk import typing as th

from tap_shopsim.generator import ShopSimulator

if TYPE_CHECKING:
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

Record = dict[str, Any]


class ShopSimStream(Stream):
    """Base class for the simulated shop's streams.

    Applies the tap's test knobs: ``state_every`` (sets ``STATE_MSG_FREQUENCY`` on the
    instance, which ``Stream._sync_records`` reads after every record) and
    ``record_delay_ms`` (sleep before each record).
    """

    def __init__(self, tap: Tap) -> None:
        """Create the stream and apply the ``state_every`` / ``record_delay_ms`` settings.

        Args:
            tap: The tap this stream belongs to.
        """
        super().__init__(tap=tap)
        state_every = self.config.get("state_every")
        if state_every:
            self.STATE_MSG_FREQUENCY = int(state_every)
        delay_ms = self.config.get("record_delay_ms") or 0
        self._record_delay_seconds: float = max(0, int(delay_ms)) / 1000
        self._extra_column: str | None = self.config.get("extra_column") or None
        if self._extra_column:  # the instance's schema shadows the class's
            schema = dict(type(self).schema)
            schema["properties"] = {**schema["properties"], self._extra_column: {"type": ["string", "null"]}}
            self.schema = schema

    def post_process(self, row: Record, context: Context | None = None) -> Record | None:
        """Add the ``extra_column`` value when that knob is set.

        Args:
            row: The record.
            context: Stream partition or context dictionary (unused).

        Returns:
            The record.
        """
        if self._extra_column:
            row = {**row, self._extra_column: "shopsim"}
        return row

    @cached_property
    def simulator(self) -> ShopSimulator:
        """The simulator configured from this tap's settings."""
        return ShopSimulator.from_settings(
            seed=self.config.get("seed"),
            scale=self.config.get("scale"),
            start_date=self.config.get("start_date"),
            as_of=self.config.get("as_of"),
        )

    def _pace(self) -> None:
        if self._record_delay_seconds:
            time.sleep(self._record_delay_seconds)


class _IncrementalShopSimStream(ShopSimStream):
    """Base for streams generated on the shared ``updated_at`` timeline.

    Records are emitted in ascending ``updated_at``; with a bookmark only records strictly
    after it are generated.
    """

    primary_keys: Sequence[str] = ("id",)
    replication_key = "updated_at"
    is_sorted = True

    def make_record(self, index: int) -> Record:
        """Return record ``index`` of this stream."""
        raise NotImplementedError

    def get_replication_key_signpost(self, context: Context | None = None) -> datetime:
        """Cap bookmarks at the simulated "now" (``as_of``) instead of the wall clock.

        Args:
            context: Stream partition or context dictionary (unused).

        Returns:
            The simulator's ``as_of``.
        """
        return self.simulator.as_of

    def get_records(self, context: Context | None) -> Iterable[Record]:
        """Yield records with ``bookmark < updated_at <= as_of``, oldest first.

        Args:
            context: Stream partition or context dictionary (unused).

        Yields:
            One record per simulated event.
        """
        # start_date when there is no bookmark (the SDK keeps the later of the two)
        bookmark = self.get_starting_timestamp(context)
        for index in self.simulator.pending_indexes(after=bookmark):
            self._pace()
            yield self.make_record(index)


class CustomersStream(_IncrementalShopSimStream):
    """Shop customers; ``scale`` new customers per simulated day."""

    name = "customers"
    schema = th.PropertiesList(
        th.Property("id", th.IntegerType, required=True),
        th.Property("name", th.StringType),
        th.Property("email", th.EmailType),
        th.Property("country", th.StringType, description="ISO 3166-1 alpha-2 code"),
        th.Property("created_at", th.DateTimeType),
        th.Property("updated_at", th.DateTimeType, required=True),
    ).to_dict()

    def make_record(self, index: int) -> Record:
        """Return customer ``index``."""
        return self.simulator.customer(index)


class ProductsStream(ShopSimStream):
    """The product catalogue: ``scale`` products, re-sent in full on every run."""

    name = "products"
    primary_keys: Sequence[str] = ("id",)
    replication_key = None
    schema = th.PropertiesList(
        th.Property("id", th.IntegerType, required=True),
        th.Property("sku", th.StringType),
        th.Property("name", th.StringType),
        th.Property("category", th.StringType),
        th.Property("price", th.NumberType),
        th.Property("updated_at", th.DateTimeType),
    ).to_dict()

    def get_records(self, context: Context | None) -> Iterable[Record]:
        """Yield every product.

        Args:
            context: Stream partition or context dictionary (unused).

        Yields:
            One record per product.
        """
        for index in range(self.simulator.scale):
            self._pace()
            yield self.simulator.product(index)


class OrdersStream(_IncrementalShopSimStream):
    """Orders; ``scale`` new orders per simulated day, each with 1-4 ``order_items``."""

    name = "orders"
    schema = th.PropertiesList(
        th.Property("id", th.IntegerType, required=True),
        th.Property("customer_id", th.IntegerType),
        th.Property(
            "status",
            th.StringType,
            allowed_values=["pending", "paid", "shipped", "cancelled"],
        ),
        th.Property("currency", th.StringType, allowed_values=["EUR", "USD", "GBP"]),
        th.Property("total", th.NumberType),
        th.Property("created_at", th.DateTimeType),
        th.Property("updated_at", th.DateTimeType, required=True),
    ).to_dict()

    def make_record(self, index: int) -> Record:
        """Return order ``index``."""
        return self.simulator.order(index)

    def get_child_context(self, record: Record, context: Context | None) -> dict[str, Any]:
        """Pass the order id to ``order_items``.

        Args:
            record: An order record.
            context: Stream partition or context dictionary (unused).

        Returns:
            The child context ``{"order_id": ...}``.
        """
        return {"order_id": record["id"]}


class OrderItemsStream(ShopSimStream):
    """Line items of each order; synced by the SDK once per emitted order."""

    name = "order_items"
    parent_stream_type = OrdersStream
    primary_keys: Sequence[str] = ("order_id", "line_number")
    replication_key = None
    # One state entry for the whole stream instead of one partition per order.
    state_partitioning_keys: Sequence[str] | None = ()
    schema = th.PropertiesList(
        th.Property("order_id", th.IntegerType, required=True),
        th.Property("line_number", th.IntegerType, required=True),
        th.Property("product_id", th.IntegerType),
        th.Property("quantity", th.IntegerType),
        th.Property("unit_price", th.NumberType),
    ).to_dict()

    def get_records(self, context: Context | None) -> Iterable[Record]:
        """Yield the items of the order given in ``context``.

        Args:
            context: ``{"order_id": ...}`` from :meth:`OrdersStream.get_child_context`.

        Yields:
            One record per order line.
        """
        if not context:
            return
        for item in self.simulator.order_items(int(context["order_id"]) - 1):
            self._pace()
            yield item
