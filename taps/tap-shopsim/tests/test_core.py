"""Tests for tap-shopsim: SDK standard tests plus determinism, resume and test-knob checks."""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
import time
from collections import Counter
from contextlib import redirect_stdout
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.testing import get_tap_test_class
from tap_shopsim.generator import ShopSimulator, parse_datetime
from tap_shopsim.tap import ShopSimFailure, TapShopSim

SAMPLE_CONFIG: dict[str, Any] = {"scale": 10, "start_date": "2024-01-01T00:00:00Z"}
DAY_1 = "2024-01-02T00:00:00Z"
DAY_2 = "2024-01-03T00:00:00Z"
STREAMS = ("customers", "products", "orders", "order_items")

# The Singer SDK's standard tap, stream and attribute tests.
TestTapShopSim = get_tap_test_class(TapShopSim, config=dict(SAMPLE_CONFIG))


# -- helpers --------------------------------------------------------------------------------


class SyncResult:
    """Parsed output of one in-process sync."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        self.records: dict[str, list[dict[str, Any]]] = {name: [] for name in STREAMS}
        self.states: list[dict[str, Any]] = []
        for message in messages:
            if message["type"] == "RECORD":
                self.records[message["stream"]].append(message["record"])
            elif message["type"] == "STATE":
                self.states.append(message["value"])

    @property
    def counts(self) -> dict[str, int]:
        return {name: len(records) for name, records in self.records.items()}

    @property
    def final_state(self) -> dict[str, Any]:
        assert self.states, "no STATE message was emitted"
        return self.states[-1]


def _parse(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def run_tap(
    config: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
) -> SyncResult:
    """Run a full sync in-process and parse what it wrote to stdout."""
    tap = TapShopSim(
        config=copy.deepcopy(config if config is not None else SAMPLE_CONFIG),
        state=copy.deepcopy(state) if state else None,
    )
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        tap.sync_all()
    return SyncResult(_parse(buffer.getvalue()))


def run_tap_expecting_failure(config: dict[str, Any]) -> tuple[SyncResult, ShopSimFailure]:
    tap = TapShopSim(config=copy.deepcopy(config))
    buffer = io.StringIO()
    with redirect_stdout(buffer), pytest.raises(ShopSimFailure) as excinfo:
        tap.sync_all()
    return SyncResult(_parse(buffer.getvalue())), excinfo.value


def bookmark(state: dict[str, Any], stream: str) -> str:
    return str(state["bookmarks"][stream]["replication_key_value"])


# -- counts and data shape ------------------------------------------------------------------


def test_default_run_counts() -> None:
    """No settings at all: scale 100, one simulated day."""
    result = run_tap({})
    counts = result.counts
    assert counts["customers"] == 100
    assert counts["orders"] == 100
    assert counts["products"] == 100
    per_order = Counter(item["order_id"] for item in result.records["order_items"])
    assert set(per_order) == {order["id"] for order in result.records["orders"]}
    assert all(1 <= n <= 4 for n in per_order.values())
    assert counts["order_items"] == sum(per_order.values())
    assert len(set(per_order.values())) > 1, "item counts per order should vary"


def test_sample_config_counts_and_integrity() -> None:
    result = run_tap()
    assert result.counts["customers"] == 10
    assert result.counts["orders"] == 10
    assert result.counts["products"] == 10

    customer_ids = {c["id"] for c in result.records["customers"]}
    product_ids = {p["id"] for p in result.records["products"]}
    assert customer_ids == set(range(1, 11))
    assert {o["customer_id"] for o in result.records["orders"]} <= customer_ids
    assert {i["product_id"] for i in result.records["order_items"]} <= product_ids

    products = {p["id"]: p for p in result.records["products"]}
    for order in result.records["orders"]:
        items = [i for i in result.records["order_items"] if i["order_id"] == order["id"]]
        assert [i["line_number"] for i in items] == list(range(1, len(items) + 1))
        total = sum(round(i["unit_price"] * i["quantity"], 2) for i in items)
        assert order["total"] == pytest.approx(total, abs=0.011)
        assert order["status"] in {"pending", "paid", "shipped", "cancelled"}
        assert order["currency"] in {"EUR", "USD", "GBP"}
        for item in items:
            assert item["unit_price"] == round(item["unit_price"], 2)
            if order["currency"] == "EUR":
                assert item["unit_price"] == products[item["product_id"]]["price"]
    for product in result.records["products"]:
        assert product["price"] == round(product["price"], 2)
        assert product["updated_at"] == "2024-01-01T00:00:00+00:00"
    for customer in result.records["customers"]:
        assert "@" in customer["email"]
        assert " " in customer["name"]
        assert len(customer["country"]) == 2
        assert customer["created_at"] <= customer["updated_at"]


def test_updated_at_schedule_and_order() -> None:
    result = run_tap({"scale": 100})
    orders = result.records["orders"]
    assert orders[0]["updated_at"] == "2024-01-01T00:14:24+00:00"
    assert orders[-1]["updated_at"] == "2024-01-02T00:00:00+00:00"
    for stream in ("customers", "orders"):
        stamps = [parse_datetime(r["updated_at"]) for r in result.records[stream]]
        assert stamps == sorted(stamps)
        assert len(set(stamps)) == len(stamps)
        assert all(stamp.utcoffset() == timedelta(0) for stamp in stamps)


@pytest.mark.parametrize("scale", [1, 7, 10, 100, 1000, 86_401])
def test_index_math_matches_brute_force(scale: int) -> None:
    start = parse_datetime("2024-01-01T00:00:00Z")
    sim = ShopSimulator(scale=scale, start_date=start, as_of=start + timedelta(days=1))
    assert sim.end_index() == scale
    sim3 = ShopSimulator(scale=scale, start_date=start, as_of=start + timedelta(days=3))
    assert sim3.end_index() == 3 * scale
    probes: list[datetime] = [
        start - timedelta(hours=1),
        start,
        sim.updated_at(0),
        sim.updated_at(0) - timedelta(microseconds=1),
        sim.updated_at(scale // 2),
        sim.updated_at(scale // 2) + timedelta(microseconds=1),
        start + timedelta(days=1),
    ]
    for probe in probes:
        expected = next(i for i in range(3 * scale + 1) if sim.updated_at(i) > probe)
        assert sim.first_index_after(probe) == expected, probe


# -- determinism ----------------------------------------------------------------------------


def test_two_runs_are_identical() -> None:
    first = run_tap()
    second = run_tap()
    assert first.records == second.records
    assert sum(first.counts.values()) > 30


def test_seed_changes_the_data() -> None:
    """Guards the determinism test against comparing constant output."""
    base = run_tap()
    other = run_tap({**SAMPLE_CONFIG, "seed": 7})
    assert base.counts["orders"] == other.counts["orders"]
    assert base.records["customers"] != other.records["customers"]
    assert base.records["orders"] != other.records["orders"]


def test_records_do_not_depend_on_as_of() -> None:
    """A record is a pure function of (seed, stream, index): a later as_of only appends."""
    one_day = run_tap({**SAMPLE_CONFIG, "as_of": DAY_1})
    two_days = run_tap({**SAMPLE_CONFIG, "as_of": DAY_2})
    assert two_days.counts["orders"] == 20
    for stream in ("customers", "orders", "order_items", "products"):
        prefix = two_days.records[stream][: len(one_day.records[stream])]
        assert prefix == one_day.records[stream]


# -- incremental resume ---------------------------------------------------------------------


def test_resume_with_advanced_as_of_emits_one_more_day() -> None:
    run1 = run_tap()
    state = run1.final_state
    assert bookmark(state, "orders") == "2024-01-02T00:00:00+00:00"
    assert bookmark(state, "customers") == "2024-01-02T00:00:00+00:00"
    assert len(json.dumps(state["bookmarks"].get("order_items", {}))) < 50

    run2 = run_tap({**SAMPLE_CONFIG, "as_of": DAY_2}, state=state)
    assert run2.counts["orders"] == 10
    assert run2.counts["customers"] == 10
    assert run2.counts["products"] == 10
    cutoff = parse_datetime(bookmark(state, "orders"))
    for stream in ("orders", "customers"):
        assert all(parse_datetime(r["updated_at"]) > cutoff for r in run2.records[stream])
    new_order_ids = {o["id"] for o in run2.records["orders"]}
    assert new_order_ids == set(range(11, 21))
    assert {i["order_id"] for i in run2.records["order_items"]} == new_order_ids

    # run1 + run2 together equal one uninterrupted two-day run
    full = run_tap({**SAMPLE_CONFIG, "as_of": DAY_2})
    for stream in ("customers", "orders", "order_items"):
        assert run1.records[stream] + run2.records[stream] == full.records[stream]
    assert bookmark(run2.final_state, "orders") == "2024-01-03T00:00:00+00:00"


def test_resume_with_same_as_of_emits_nothing_incremental() -> None:
    state = run_tap().final_state
    run2 = run_tap(state=state)
    assert run2.counts["orders"] == 0
    assert run2.counts["customers"] == 0
    assert run2.counts["order_items"] == 0
    assert run2.counts["products"] == 10  # full table
    assert bookmark(run2.final_state, "orders") == bookmark(state, "orders")


def test_interrupted_run_resumes_from_mid_stream_state() -> None:
    """With state_every, a run that fails part-way leaves a usable mid-stream bookmark."""
    config = {**SAMPLE_CONFIG, "as_of": DAY_2, "state_every": 3, "fail_after_records": 35}
    partial, _ = run_tap_expecting_failure(config)
    assert sum(partial.counts.values()) == 35
    last_state = partial.states[-1]
    orders_bm = bookmark(last_state, "orders")
    assert orders_bm < "2024-01-03"  # the orders stream was interrupted mid-way

    clean = {k: v for k, v in config.items() if k != "fail_after_records"}
    resumed = run_tap(clean, state=last_state)
    full = run_tap(clean)
    resumed_ids = [o["id"] for o in resumed.records["orders"]]
    full_ids = [o["id"] for o in full.records["orders"]]
    assert 0 < len(resumed_ids) < len(full_ids)
    assert all(o["updated_at"] > orders_bm for o in resumed.records["orders"])
    # at-least-once: nothing after the bookmark is lost
    seen = {o["id"] for o in partial.records["orders"]} | set(resumed_ids)
    assert seen == set(full_ids)


# -- test knobs ------------------------------------------------------------------------------


def test_fail_after_records_raises_with_message() -> None:
    result, error = run_tap_expecting_failure({**SAMPLE_CONFIG, "fail_after_records": 7})
    assert str(error) == "tap-shopsim: failing on purpose after 7 records (fail_after_records)"
    assert sum(result.counts.values()) == 7


def test_fail_after_records_above_total_fails_at_the_end() -> None:
    total = sum(run_tap().counts.values())
    result, error = run_tap_expecting_failure({**SAMPLE_CONFIG, "fail_after_records": total})
    assert f"after {total} records" in str(error)
    assert sum(result.counts.values()) == total
    ok = run_tap({**SAMPLE_CONFIG, "fail_after_records": total + 1})
    assert sum(ok.counts.values()) == total


def test_state_every_emits_more_state_messages() -> None:
    without = run_tap()
    with_knob = run_tap({**SAMPLE_CONFIG, "state_every": 2})
    assert with_knob.records == without.records
    assert len(with_knob.states) > len(without.states)
    # a STATE message right after the 2nd customer carries its bookmark
    second_customer = with_knob.records["customers"][1]["updated_at"]
    customer_bookmarks = [
        s["bookmarks"]["customers"].get("replication_key_value")
        for s in with_knob.states
        if "customers" in s.get("bookmarks", {})
    ]
    assert second_customer in customer_bookmarks
    assert second_customer not in [
        s["bookmarks"].get("customers", {}).get("replication_key_value") for s in without.states
    ]


def test_record_delay_ms_slows_the_sync() -> None:
    config = {"scale": 2, "record_delay_ms": 25}
    started = time.perf_counter()
    result = run_tap(config)
    elapsed = time.perf_counter() - started
    n_records = sum(result.counts.values())
    assert n_records >= 8
    assert elapsed >= n_records * 0.025


def test_api_key_is_declared_secret() -> None:
    schema = TapShopSim.config_jsonschema["properties"]["api_key"]
    assert schema.get("secret") is True
    assert schema.get("writeOnly") is True
    result = run_tap({**SAMPLE_CONFIG, "api_key": "s3cr3t-value"})
    assert "s3cr3t-value" not in json.dumps(result.messages)


# -- the real CLI -----------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tap_shopsim.tap", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_discover_and_sync(tmp_path: Path) -> None:
    discover = _cli("--discover")
    assert discover.returncode == 0, discover.stderr
    catalog = json.loads(discover.stdout)
    assert sorted(s["tap_stream_id"] for s in catalog["streams"]) == sorted(STREAMS)

    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(SAMPLE_CONFIG))
    sync = _cli("--config", str(config_path))
    assert sync.returncode == 0, sync.stderr
    counts = Counter(m["stream"] for m in _parse(sync.stdout) if m["type"] == "RECORD")
    assert counts["customers"] == counts["orders"] == counts["products"] == 10


def test_cli_fail_after_records_exits_non_zero(tmp_path: Path) -> None:
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps({**SAMPLE_CONFIG, "fail_after_records": 5}))
    proc = _cli("--config", str(config_path))
    assert proc.returncode != 0
    assert "tap-shopsim: failing on purpose after 5 records (fail_after_records)" in proc.stderr
    assert sum(1 for m in _parse(proc.stdout) if m["type"] == "RECORD") == 5


# -- windows (end_date) ---------------------------------------------------------------------


def test_end_date_emits_only_records_before_it_and_is_the_default_as_of() -> None:
    window = run_tap({**SAMPLE_CONFIG, "end_date": DAY_1})
    end = parse_datetime(DAY_1)
    for stream in ("customers", "orders"):
        updated = [parse_datetime(r["updated_at"]) for r in window.records[stream]]
        assert updated
        assert all(parse_datetime(SAMPLE_CONFIG["start_date"]) < u < end for u in updated)
    assert window.counts["orders"] == 9  # the 10th record is at end_date: the next window's
    two_days = run_tap({**SAMPLE_CONFIG, "end_date": DAY_2})  # as_of defaults to end_date
    assert two_days.counts["orders"] == 19
    capped = run_tap({**SAMPLE_CONFIG, "as_of": DAY_1, "end_date": DAY_2})  # the earlier bound wins
    assert capped.counts["orders"] == 10
    assert bookmark(window.final_state, "orders") < DAY_1.replace("Z", "+00:00")
