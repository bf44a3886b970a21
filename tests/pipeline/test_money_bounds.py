"""Issue 12: money never wraps. Amounts, quantities, fees and assignment quantities up to the
stated bounds (pipeline/bounds.py) bill exactly: lines, counters and invoice totals are compared
with Python `Decimal` arithmetic done here, following SPEC §4 (usage parts exact at 10^-12,
each line rounded once, half away from zero; the invoice is the sum of its rounded lines).

Thousands of maximal events on one account push the sums past Int64 (10^4 events of 10^15
micro-units make 10^19 > 9.2 × 10^18): the case where the charges used to wrap silently.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.bounds import (
    MAX_ASSIGNMENT_QUANTITY,
    MAX_FEE,
    MAX_USAGE_UNITS,
    MoneyOverflowError,
)
from pipeline.catalog import catalog_frames, parse_catalog
from pipeline.charges import compute_charges

MICRO = Decimal(10) ** -6
CENT = Decimal("0.01")
PICO = Decimal(10) ** -12

ACCOUNTS = pl.DataFrame(
    [{"account_id": "A1", "currency": "USD", "main_product_id": "MP", "billing_day": 1,
      "status": "active", "opened_on": date(2026, 1, 1), "closed_on": None,
      "effective_from": date(2026, 1, 1)}],
    schema={"account_id": pl.Utf8, "currency": pl.Utf8, "main_product_id": pl.Utf8,
            "billing_day": pl.Int64, "status": pl.Utf8, "opened_on": pl.Date,
            "closed_on": pl.Date, "effective_from": pl.Date},
)
NO_COUNTERS = pl.DataFrame(schema={
    "account_id": pl.Utf8, "service": pl.Utf8, "destination_group": pl.Utf8,
    "threshold_type": pl.Utf8, "window_start": pl.Date, "value_units": pl.Int64,
})


def catalog(fee: Decimal, free: Decimal, threshold: str = "quantity") -> object:
    """One add-on at `fee` a month in advance, whose plan makes the first `free` US minutes
    (or dollars spent, for an `amount` threshold) free (tiers [0, 100 %], [free, 0 %])."""
    return catalog_frames(parse_catalog({
        "currencies": {"USD": 2},
        "main_products": [{"id": "MP", "name": "Main", "available_addons": ["ADD"]}],
        "addons": [{"id": "ADD", "name": "Add-on", "priority": 10, "discount_plan": "DP",
                    "subscription": "SUB"}],
        "subscriptions": [{"id": "SUB", "fee_plans": [
            {"id": "FP", "term_months": 1, "fee": str(fee), "currency": "USD"}]}],
        "discount_plans": [{"id": "DP", "entries": [
            {"service": "voice", "destination_group": "US", "threshold_type": threshold,
             "tiers": [[0, 100], [str(free), 0]]}]}],
    }))


def lifecycles(quantity: int) -> pl.DataFrame:
    return pl.DataFrame(
        [{"assignment_id": "S1", "account_id": "A1", "addon_id": "ADD", "fee_plan_id": "FP",
          "quantity": quantity, "assigned_at": datetime(2026, 5, 1), "eff_start": date(2026, 6, 1),
          "eff_end": None, "billable": True}],
        schema={"assignment_id": pl.Utf8, "account_id": pl.Utf8, "addon_id": pl.Utf8,
                "fee_plan_id": pl.Utf8, "quantity": pl.Int64, "assigned_at": pl.Datetime("us"),
                "eff_start": pl.Date, "eff_end": pl.Date, "billable": pl.Boolean},
    )


def usage(groups: list[tuple[int, int, int]]) -> pl.DataFrame:
    """`copies` events of (quantity_units, amount_units) per group, in time order."""
    quantity, amount = [], []
    for q, a, copies in groups:
        quantity += [q] * copies
        amount += [a] * copies
    n = len(quantity)
    start = datetime(2026, 6, 2)
    return pl.DataFrame({
        "event_id": [f"E{i:06d}" for i in range(n)],
        "account_id": ["A1"] * n,
        "service": ["voice"] * n,
        "destination_group": ["US"] * n,
        "started_at": [start + timedelta(seconds=i) for i in range(n)],
        "quantity_units": quantity,
        "amount_units": amount,
    }, schema_overrides={"started_at": pl.Datetime("us")})


def expected(groups: list[tuple[int, int, int]], fee: Decimal, qty: int,
             free: Decimal, threshold: str = "quantity") -> dict[str, Decimal]:
    """The lines, the total and the counter, by Decimal arithmetic (SPEC §4)."""
    with localcontext() as ctx:
        ctx.prec = 80
        counter, used, discount = Decimal(0), Decimal(0), Decimal(0)
        for q_units, a_units, copies in groups:
            q, a = Decimal(q_units) * MICRO, Decimal(a_units) * MICRO
            x = q if threshold == "quantity" else a  # what the counter adds up
            for _ in range(copies):
                used += a
                free_part = max(Decimal(0), min(counter + x, free) - counter)
                if x > 0:
                    # The event's amount shared out in proportion to its free part, exact at
                    # 10^-12 (half away from zero), as the lines carry their parts.
                    discount += (a * free_part / x).quantize(PICO, rounding=ROUND_HALF_UP)
                elif counter < free:  # a zero event takes the tier its counter is in
                    discount += a
                counter += x
        lines = {
            "recurring": (fee * qty).quantize(CENT, rounding=ROUND_HALF_UP),
            "usage": used.quantize(CENT, rounding=ROUND_HALF_UP),
            "discount": -discount.quantize(CENT, rounding=ROUND_HALF_UP),
        }
        return {**lines, "total": sum(lines.values(), Decimal(0)), "counter": counter}


def dollars(minor: int) -> Decimal:
    return Decimal(minor) * CENT


UNITS = st.one_of(st.just(MAX_USAGE_UNITS), st.just(0), st.integers(0, MAX_USAGE_UNITS))
# At most 9 000 events in all: within the stated limit of 9 223 events at the largest quantity.
GROUPS = st.lists(st.tuples(UNITS, UNITS, st.integers(1, 1800)), min_size=1, max_size=5)
FEES = st.one_of(st.just(MAX_FEE.quantize(CENT, rounding="ROUND_DOWN")),
                 st.integers(0, 99_999_999_999).map(lambda c: Decimal(c) * CENT))
QUANTITIES = st.one_of(st.just(MAX_ASSIGNMENT_QUANTITY), st.integers(1, MAX_ASSIGNMENT_QUANTITY))
FREE = st.one_of(st.just(Decimal(100)), st.integers(1, 10**12).map(lambda u: Decimal(u) * MICRO))


def check(groups: list[tuple[int, int, int]], fee: Decimal, qty: int, free: Decimal,
          threshold: str = "quantity") -> None:
    result = compute_charges(catalog(fee, free, threshold), ACCOUNTS, lifecycles(qty),
                             usage(groups), NO_COUNTERS, "2026-06")
    want = expected(groups, fee, qty, free, threshold)
    lines = {t: dollars(a) for t, a in result.charges.select("line_type", "amount_minor").rows()}
    # A zero discount line says nothing and is dropped (docs/CHARGES.md).
    assert lines == {k: v for k, v in want.items()
                     if k in ("recurring", "usage", "discount") and (v or k != "discount")}
    assert [dollars(t) for t in result.invoices["total_minor"]] == [want["total"]]
    counter = result.counters_after["value_units"].to_list()
    assert [Decimal(v) * MICRO for v in counter] == [want["counter"]]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(GROUPS, FEES, QUANTITIES, FREE, st.sampled_from(["quantity", "amount"]))
def test_lines_and_totals_match_decimal_up_to_the_bounds(
    groups: list[tuple[int, int, int]], fee: Decimal, qty: int, free: Decimal, threshold: str
) -> None:
    check(groups, fee, qty, free, threshold)


@pytest.mark.parametrize("events", [10, 10_000])
def test_many_maximal_amounts_on_one_account_do_not_wrap(events: int) -> None:
    # 10 000 one-minute events of 999 999 999.999999 dollars each: 9 999 999 999 999.99 dollars
    # of usage, 10^19 - 10^4 micro-units, beyond Int64 (9.22 × 10^18): this used to give
    # -8 446 744 073 709.56. The first 100 minutes are free: the first 100 events, 100 ×
    # 999 999 999.999999 = 99 999 999 999.9999 dollars of discount, rounded to 100 000 000 000.00.
    groups = [(10**6, MAX_USAGE_UNITS, events)]
    check(groups, Decimal("5.00"), 1, Decimal(100))
    want = expected(groups, Decimal("5.00"), 1, Decimal(100))
    assert want["discount"] == -(Decimal("999999999.999999") * min(events, 100)).quantize(CENT)
    assert want["usage"] == (Decimal("999999999.999999") * events).quantize(CENT, ROUND_HALF_UP)


def test_a_quantity_sum_beyond_int64_fails_loudly_and_never_wraps() -> None:
    # 10 000 events of 999 999 999.999999 minutes: 10^19 - 10^4 micro-units in one counter
    # window, beyond the stated limit of 9 223 events at the largest quantity.
    groups = [(MAX_USAGE_UNITS, 1, 10_000)]
    with pytest.raises(MoneyOverflowError, match="period 2026-06: a usage line, counter"):
        compute_charges(catalog(Decimal("5.00"), Decimal(100)), ACCOUNTS, lifecycles(1),
                        usage(groups), NO_COUNTERS, "2026-06")


def test_a_fee_times_quantity_beyond_int64_fails_loudly() -> None:
    # An assignment stored before the quantity bound (10^9 seats) at 999 999 999.99 dollars:
    # 99 999 999 999 cents × 10^9 = 10^20 - 10^9 cents, beyond Int64. It used to wrap.
    with pytest.raises(MoneyOverflowError, match="period 2026-06"):
        compute_charges(catalog(Decimal("999999999.99"), Decimal(100)), ACCOUNTS,
                        lifecycles(10**9), usage([(10**6, 10**6, 1)]), NO_COUNTERS, "2026-06")


def test_the_largest_fee_line_bills_exactly() -> None:
    # 999 999 999.99 dollars × 100 000 seats = 99 999 999 999 000.00 dollars, one line.
    check([(10**6, 10**6, 1)], Decimal("999999999.99"), MAX_ASSIGNMENT_QUANTITY, Decimal(100))
    want = expected([(10**6, 10**6, 1)], Decimal("999999999.99"), MAX_ASSIGNMENT_QUANTITY,
                    Decimal(100))
    assert want["recurring"] == Decimal("99999999999000.00")
