"""Deterministic, clock-free generator for the simulated shop's records."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

Record = dict[str, Any]

SECONDS_PER_DAY = 86_400
MICROS_PER_DAY = SECONDS_PER_DAY * 1_000_000

DEFAULT_SEED = 42
DEFAULT_SCALE = 100
DEFAULT_START_DATE = "2024-01-01T00:00:00Z"

FIRST_NAMES: tuple[str, ...] = (
    "Alice", "Ben", "Chloé", "David", "Elena", "Farid", "Greta", "Hiro", "Isabel", "Jonas",
    "Karin", "Liam", "Maja", "Noah", "Olivia", "Pedro", "Quinn", "Rosa", "Samir", "Tanja",
    "Ugo", "Vera", "William", "Xenia", "Yusuf", "Zoë", "Anna", "Lukas", "Sofia", "Mateo",
)  # fmt: skip
LAST_NAMES: tuple[str, ...] = (
    "Müller", "Smith", "García", "Rossi", "Dubois", "Novak", "Jensen", "Kowalski", "Silva",
    "Johnson", "Schmidt", "Brown", "Martin", "Bianchi", "Nielsen", "Fischer", "Lopez", "Taylor",
    "Weber", "Moreau", "Andersson", "Costa", "Wilson", "Becker", "Romano", "Hughes",
)  # fmt: skip
EMAIL_DOMAINS: tuple[str, ...] = ("example.com", "example.org", "example.net", "mail.example")
# (ISO 3166-1 alpha-2 code, relative weight)
COUNTRIES: tuple[tuple[str, int], ...] = (
    ("DE", 22), ("US", 20), ("GB", 14), ("FR", 10), ("NL", 8), ("ES", 6), ("IT", 6),
    ("SE", 4), ("PL", 4), ("AT", 3), ("BE", 3),
)  # fmt: skip
# category -> (SKU prefix, min price, max price, nouns)
CATEGORIES: dict[str, tuple[str, int, int, tuple[str, ...]]] = {
    "Apparel": ("APP", 12, 120, ("T-Shirt", "Hoodie", "Jacket", "Scarf", "Beanie", "Socks")),
    "Books": ("BOO", 8, 45, ("Cookbook", "Novel", "Field Guide", "Atlas", "Notebook")),
    "Electronics": ("ELE", 15, 400, ("Headphones", "Charger", "Speaker", "Keyboard", "Lamp")),
    "Home & Kitchen": ("HOM", 6, 150, ("Mug", "Kettle", "Cutting Board", "Blanket", "Vase")),
    "Sports": ("SPO", 10, 250, ("Yoga Mat", "Water Bottle", "Backpack", "Dumbbell", "Cap")),
    "Toys": ("TOY", 5, 90, ("Puzzle", "Building Set", "Plush Bear", "Board Game", "Kite")),
}
ADJECTIVES: tuple[str, ...] = (
    "Classic", "Everyday", "Premium", "Compact", "Vintage", "Organic", "Deluxe", "Urban",
    "Nordic", "Eco", "Travel", "Studio",
)  # fmt: skip
# (status, relative weight)
ORDER_STATUSES: tuple[tuple[str, int], ...] = (
    ("pending", 15), ("paid", 35), ("shipped", 40), ("cancelled", 10),
)  # fmt: skip
# (currency, relative weight, price multiplier applied to the EUR list price)
CURRENCIES: tuple[tuple[str, int, Decimal], ...] = (
    ("EUR", 55, Decimal("1.00")),
    ("USD", 30, Decimal("1.09")),
    ("GBP", 15, Decimal("0.86")),
)
CENT = Decimal("0.01")


def parse_datetime(value: str | datetime) -> datetime:
    """Parse an ISO 8601 date-time (``Z`` suffix allowed); naive values are taken as UTC."""
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_datetime(value: datetime) -> str:
    """Render a date-time as ISO 8601 in UTC, e.g. ``2024-01-01T00:14:24+00:00``."""
    return value.astimezone(UTC).isoformat()


_DEFAULT_START = parse_datetime(DEFAULT_START_DATE)


def _round_money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _ceil_div(numerator: int, denominator: int) -> int:
    return -((-numerator) // denominator)


@dataclass(frozen=True)
class ShopSimulator:
    """Pure-function model of a small online shop.

    Record ``i`` of an incremental stream (``customers``, ``orders``) is updated at
    ``start_date + (i + 1) * 86400 / scale`` seconds (floored to whole microseconds); all of
    its other fields depend only on ``(seed, stream name, i)``. Ids are ``i + 1``.

    Attributes:
        seed: Seed mixed into every record's private random generator.
        scale: Records per incremental stream per simulated day; also the product count.
        start_date: Beginning of the simulated timeline (UTC).
        as_of: The simulated "now"; records updated after it do not exist yet.
        end_date: End of the window (exclusive): records updated at or after it are not emitted.
    """

    seed: int = DEFAULT_SEED
    scale: int = DEFAULT_SCALE
    start_date: datetime = _DEFAULT_START
    as_of: datetime = _DEFAULT_START + timedelta(days=1)
    end_date: datetime | None = None

    def __post_init__(self) -> None:
        """Validate the parameters."""
        if self.scale < 1:
            msg = f"tap-shopsim: scale must be >= 1, got {self.scale}"
            raise ValueError(msg)

    @classmethod
    def from_settings(
        cls,
        *,
        seed: int | None = None,
        scale: int | None = None,
        start_date: str | datetime | None = None,
        as_of: str | datetime | None = None,
        end_date: str | datetime | None = None,
    ) -> ShopSimulator:
        """Build a simulator from (possibly missing) tap settings, applying the defaults.

        Without ``as_of``, the simulated now is ``end_date`` if given, else start_date + 1 day.
        """
        start = parse_datetime(start_date if start_date is not None else DEFAULT_START_DATE)
        end = parse_datetime(end_date) if end_date is not None else None
        if as_of is not None:
            now = parse_datetime(as_of)
        else:
            now = end if end is not None else start + timedelta(days=1)
        return cls(
            seed=DEFAULT_SEED if seed is None else seed,
            scale=DEFAULT_SCALE if scale is None else scale,
            start_date=start,
            as_of=now,
            end_date=end,
        )

    # -- timeline -------------------------------------------------------------------------

    def _offset_micros(self, index: int) -> int:
        return (index + 1) * MICROS_PER_DAY // self.scale

    def updated_at(self, index: int) -> datetime:
        """Return the ``updated_at`` of incremental record ``index``."""
        return self.start_date + timedelta(microseconds=self._offset_micros(index))

    def _micros_since_start(self, value: datetime) -> int:
        delta = value - self.start_date
        return (delta.days * SECONDS_PER_DAY + delta.seconds) * 1_000_000 + delta.microseconds

    def end_index(self) -> int:
        """Return how many incremental records exist at ``as_of`` (``updated_at <= as_of`` and,
        with an ``end_date``, ``updated_at < end_date``)."""
        limit = self._micros_since_start(self.as_of)
        if self.end_date is not None:
            limit = min(limit, self._micros_since_start(self.end_date) - 1)
        if limit < 0:
            return 0
        # largest k = index + 1 with floor(k * MICROS_PER_DAY / scale) <= limit
        return ((limit + 1) * self.scale - 1) // MICROS_PER_DAY

    def first_index_after(self, bookmark: datetime | None) -> int:
        """Return the first record index whose ``updated_at`` is strictly after ``bookmark``."""
        if bookmark is None:
            return 0
        after = self._micros_since_start(parse_datetime(bookmark))
        if after < 0:
            return 0
        # smallest k = index + 1 with floor(k * MICROS_PER_DAY / scale) > after
        return max(1, _ceil_div((after + 1) * self.scale, MICROS_PER_DAY)) - 1

    def _rng(self, stream: str, index: int) -> random.Random:
        digest = hashlib.sha256(f"tap-shopsim|{self.seed}|{stream}|{index}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    # -- records --------------------------------------------------------------------------

    def customer(self, index: int) -> Record:
        """Return customer record ``index`` (id ``index + 1``)."""
        rng = self._rng("customers", index)
        first = rng.choice(FIRST_NAMES)
        last = rng.choice(LAST_NAMES)
        country = rng.choices([c for c, _ in COUNTRIES], weights=[w for _, w in COUNTRIES])[0]
        updated = self.updated_at(index)
        created = max(self.start_date, updated - timedelta(seconds=rng.randint(0, 6 * 3600)))
        customer_id = index + 1
        local_part = f"{_ascii(first)}.{_ascii(last)}{customer_id}"
        return {
            "id": customer_id,
            "name": f"{first} {last}",
            "email": f"{local_part}@{rng.choice(EMAIL_DOMAINS)}",
            "country": country,
            "created_at": format_datetime(created),
            "updated_at": format_datetime(updated),
        }

    def _product_parts(self, index: int) -> tuple[str, str, str, Decimal]:
        rng = self._rng("products", index)
        category = rng.choice(sorted(CATEGORIES))
        prefix, low, high, nouns = CATEGORIES[category]
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(nouns)}"
        price = Decimal(rng.randint(low, high)) + rng.choice(
            (Decimal("0.99"), Decimal("0.49"), Decimal("0.00"), Decimal("0.95"))
        )
        sku = f"{prefix}-{index + 1:05d}"
        return sku, name, category, price

    def product(self, index: int) -> Record:
        """Return product record ``index`` (id ``index + 1``); products never change."""
        sku, name, category, price = self._product_parts(index)
        return {
            "id": index + 1,
            "sku": sku,
            "name": name,
            "category": category,
            "price": float(price),
            "updated_at": format_datetime(self.start_date),
        }

    def _order_header(self, index: int) -> tuple[int, str, str, Decimal, int]:
        rng = self._rng("orders", index)
        # customer i shares order i's timestamp, so ids 1..index+1 always exist already
        customer_id = rng.randint(1, index + 1)
        status = rng.choices([s for s, _ in ORDER_STATUSES], weights=[w for _, w in ORDER_STATUSES])
        currency, _, rate = rng.choices(CURRENCIES, weights=[w for _, w, _ in CURRENCIES])[0]
        age_seconds = rng.randint(0, 3 * 3600)
        return customer_id, status[0], currency, rate, age_seconds

    def order_items(self, order_index: int) -> list[Record]:
        """Return the 1-4 line items of order ``order_index`` (order id ``order_index + 1``)."""
        _, _, _, rate, _ = self._order_header(order_index)
        rng = self._rng("order_items", order_index)
        count = min(rng.randint(1, 4), self.scale)
        product_indexes = rng.sample(range(self.scale), count)
        items: list[Record] = []
        for line_number, product_index in enumerate(product_indexes, start=1):
            list_price = self._product_parts(product_index)[3]
            items.append(
                {
                    "order_id": order_index + 1,
                    "line_number": line_number,
                    "product_id": product_index + 1,
                    "quantity": rng.choices((1, 2, 3, 5), weights=(70, 20, 8, 2))[0],
                    "unit_price": float(_round_money(list_price * rate)),
                }
            )
        return items

    def order(self, index: int) -> Record:
        """Return order record ``index`` (id ``index + 1``); its total sums its items."""
        customer_id, status, currency, _, age_seconds = self._order_header(index)
        total = sum(
            (Decimal(str(item["unit_price"])) * item["quantity"] for item in self.order_items(index)),
            Decimal(0),
        )
        updated = self.updated_at(index)
        created = max(self.start_date, updated - timedelta(seconds=age_seconds))
        return {
            "id": index + 1,
            "customer_id": customer_id,
            "status": status,
            "currency": currency,
            "total": float(_round_money(total)),
            "created_at": format_datetime(created),
            "updated_at": format_datetime(updated),
        }

    def pending_indexes(self, after: datetime | None = None) -> range:
        """Return the incremental record indexes with ``after < updated_at <= as_of`` (and
        ``< end_date``)."""
        return range(self.first_index_after(after), self.end_index())


_ASCII_FOLD = str.maketrans({"é": "e", "ü": "ue", "ö": "oe", "ë": "e", "í": "i", "á": "a"})


def _ascii(value: str) -> str:
    return value.translate(_ASCII_FOLD).lower().replace(" ", "")
