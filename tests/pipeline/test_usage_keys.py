"""The packed keys of pipeline/usage: bit budgets sized from the data and checked.

Before the split, `(account, pair)` was packed as `acct_idx * 2^12 + sdg`: with more than 4096
discounted pairs, account 0's pair 4096 and account 1's pair 0 shared one key.
"""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest

from pipeline.catalog import catalog_frames, parse_catalog
from pipeline.charges import account_context
from pipeline.usage import KeyBudget, KeyBudgetError, usage_charges
from pipeline.usage.keys import DAY_BITS, bits_for

M = 1_000_000
PAIRS = 5000

BIG = catalog_frames(parse_catalog({
    "currencies": {"USD": 2},
    "main_products": [{"id": "MP", "name": "Plain"}],
    "addons": [{"id": "BIG", "name": "Big bundle", "priority": 10, "discount_plan": "BIG"}],
    "discount_plans": [{"id": "BIG", "entries": [
        # The first 10 minutes of each destination are free, the rest at full price.
        {"service": "voice", "destination_group": f"G{i:04d}", "threshold_type": "quantity",
         "tiers": [[0, 100], [10, 0]]}
        for i in range(PAIRS)
    ]}],
}))

ACCOUNTS = pl.DataFrame({
    "account_id": ["A", "B"], "currency": ["USD", "USD"], "main_product_id": ["MP", "MP"],
    "billing_day": [1, 1], "status": ["active", "active"],
    "opened_on": [date(2020, 1, 1)] * 2, "closed_on": [None, None],
    "effective_from": [date(2020, 1, 1)] * 2,
}, schema_overrides={"closed_on": pl.Date})

LIFECYCLES = pl.DataFrame({
    "assignment_id": ["SA", "SB"], "account_id": ["A", "B"], "addon_id": ["BIG", "BIG"],
    "fee_plan_id": [None, None], "quantity": [1, 1],
    "assigned_at": [datetime(2020, 1, 1)] * 2,
    "start_date": [date(2026, 1, 1)] * 2, "end_date": [None, None],
    "eff_start": [date(2026, 1, 1)] * 2, "eff_end": [None, None],
    "billable": [True, True], "end_reason": [None, None],
}, schema={
    "assignment_id": pl.Utf8, "account_id": pl.Utf8, "addon_id": pl.Utf8,
    "fee_plan_id": pl.Utf8, "quantity": pl.Int64, "assigned_at": pl.Datetime("us"),
    "start_date": pl.Date, "end_date": pl.Date, "eff_start": pl.Date, "eff_end": pl.Date,
    "billable": pl.Boolean, "end_reason": pl.Utf8,
})

EMPTY_COUNTERS = pl.DataFrame(schema={
    "account_id": pl.Utf8, "service": pl.Utf8, "destination_group": pl.Utf8,
    "threshold_type": pl.Utf8, "window_start": pl.Date, "value_units": pl.Int64,
})


def test_five_thousand_discounted_pairs_bill_each_account_on_its_own_counter() -> None:
    # acct_idx: A = 0, B = 1 (account_id order); pairs sorted: G4096 has index 4096.
    # Old packing: A/G4096 = 0 * 4096 + 4096 = B/G0000 = 1 * 4096 + 0, one counter for both.
    usage = pl.DataFrame({
        "event_id": ["a1", "a2", "b1", "b2"],
        "account_id": ["A", "A", "B", "B"],
        "service": ["voice"] * 4,
        "destination_group": ["G4096", "G4999", "G0000", "G0000"],
        "started_at": [datetime(2026, 6, d, 12) for d in (2, 3, 4, 5)],
        # minutes and amounts at 0.10 a minute
        "quantity_units": [15 * M, 4 * M, 6 * M, 7 * M],
        "amount_units": [1_500_000, 400_000, 600_000, 700_000],
    }, schema_overrides={"started_at": pl.Datetime("us")})
    context = account_context(BIG, ACCOUNTS, "2026-06", None)
    result = usage_charges(BIG, ACCOUNTS, LIFECYCLES, usage, EMPTY_COUNTERS, context, "2026-06")
    lines = sorted(result.lines.select(
        "account_id", "destination_group", "line_type", "amount_minor", "quantity_units"
    ).rows())
    assert lines == [
        # A/G4096: 15 min, 10 free: usage 1.50, discount 10 x 0.10 = 1.00.
        ("A", "G4096", "discount", -100, 10 * M),
        ("A", "G4096", "usage", 150, 15 * M),
        # A/G4999: 4 min, all free: 0.40.
        ("A", "G4999", "discount", -40, 4 * M),
        ("A", "G4999", "usage", 40, 4 * M),
        # B/G0000: 6 + 7 = 13 min on B's own counter (not after A's 15): 10 free = 1.00.
        ("B", "G0000", "discount", -100, 10 * M),
        ("B", "G0000", "usage", 130, 13 * M),
    ]
    counters = sorted(result.counters_after.select(
        "account_id", "destination_group", "value_units"
    ).rows())
    assert counters == [("A", "G4096", 15 * M), ("A", "G4999", 4 * M), ("B", "G0000", 13 * M)]


@pytest.mark.parametrize(("count", "bits"), [(0, 1), (1, 1), (2, 1), (3, 2), (4096, 12),
                                             (4097, 13), (5000, 13)])
def test_bits_hold_every_index(count: int, bits: int) -> None:
    # indices 0 .. count - 1: 4096 of them fit in 12 bits (0 .. 4095), 4097 need 13.
    assert bits_for(count) == bits


def test_a_budget_that_would_overflow_is_refused() -> None:
    # 2^31 accounts (31 bits) + 5000 pairs (13 bits) + 20 day bits = 64: fits exactly.
    assert KeyBudget.of(2**31, 5000).pair_bits == 13
    # one more account needs 32 bits: 65 > 64.
    with pytest.raises(KeyBudgetError, match="65 bits"):
        KeyBudget.of(2**31 + 1, 5000)
    assert DAY_BITS == 20
