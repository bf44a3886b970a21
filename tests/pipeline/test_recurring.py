"""Fee lines (pipeline/recurring.py): Kill Bill's periodic fees, credits and activation fees.

Every expected amount is worked out by hand in the test: days active over days in the term,
times the fee in minor units, rounded half away from zero.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.catalog import CatalogFrames, catalog_frames, parse_catalog
from pipeline.charges import account_context
from pipeline.money import round_half_away_int
from pipeline.periods import first_boundary, period_containing, periods_between, term_of
from pipeline.recurring import fee_lines


def fee_catalog(
    mode: str = "in_advance",
    months: int = 1,
    fee: str = "30.00",
    currency: str = "USD",
    prorate_first: bool = True,
    prorate_last: bool = True,
    activation_fee: str = "0",
) -> CatalogFrames:
    """One add-on `ADD` ("Pack") with one subscription and one fee plan `P`."""
    return catalog_frames(parse_catalog({
        "currencies": {"USD": 2, "EUR": 2, "JPY": 0},
        "main_products": [{"id": "MP", "name": "Main", "available_addons": ["ADD"]}],
        "addons": [{"id": "ADD", "name": "Pack", "priority": 10, "subscription": "SUB"}],
        "subscriptions": [{
            "id": "SUB", "charge_mode": mode, "prorate_first": prorate_first,
            "prorate_last": prorate_last, "activation_fee": activation_fee,
            "fee_plans": [{"id": "P", "term_months": months, "fee": fee, "currency": currency}],
        }],
    }))


def accounts(billing_day: int = 1, currency: str = "USD") -> pl.DataFrame:
    return pl.DataFrame({
        "account_id": ["A"], "currency": [currency], "main_product_id": ["MP"],
        "billing_day": [billing_day], "status": ["active"], "opened_on": [date(2000, 1, 1)],
        "closed_on": [None], "effective_from": [date(2000, 1, 1)],
    }, schema_overrides={"closed_on": pl.Date})


def lifecycles(*rows: tuple[str, date, date | None, int]) -> pl.DataFrame:
    """(assignment_id, eff_start, eff_end, quantity) rows, all billable on account A."""
    return pl.DataFrame({
        "assignment_id": [r[0] for r in rows],
        "account_id": ["A"] * len(rows),
        "addon_id": ["ADD"] * len(rows),
        "fee_plan_id": ["P"] * len(rows),
        "quantity": [r[3] for r in rows],
        "assigned_at": [datetime(2000, 1, 1)] * len(rows),
        "start_date": [r[1] for r in rows],
        "end_date": [r[2] for r in rows],
        "eff_start": [r[1] for r in rows],
        "eff_end": [r[2] for r in rows],
        "billable": [True] * len(rows),
        "end_reason": [None] * len(rows),
    }, schema_overrides={"end_date": pl.Date, "eff_end": pl.Date, "end_reason": pl.Utf8})


def lines(
    catalog: CatalogFrames,
    start: date,
    end: date | None,
    period: str,
    billing_day: int = 1,
    quantity: int = 1,
    cutoff: date | None = None,
    currency: str = "USD",
) -> list[tuple[str, int, date]]:
    """`(line_type, amount_minor, line_date)` of one assignment's fee lines in `period`."""
    context = account_context(catalog, accounts(billing_day, currency), period, cutoff)
    got = fee_lines(catalog, lifecycles(("S1", start, end, quantity)), context, period)
    return sorted(got.select("line_type", "amount_minor", "line_date").rows())


def test_30_a_month_in_advance_activated_june_11_is_20_dollars_for_june() -> None:
    # June 11..30 is 20 of June's 30 days: 30.00 * 20 / 30 = 20.00.
    assert lines(fee_catalog(), date(2026, 6, 11), None, "2026-06") == [
        ("recurring", 2000, date(2026, 6, 11))
    ]
    assert lines(fee_catalog(), date(2026, 6, 11), None, "2026-07") == [
        ("recurring", 3000, date(2026, 7, 1))
    ]


def test_kill_bill_leap_year_charge_and_credit() -> None:
    # $29 from 2012-02-01, ended 2012-02-15: February 2012 has 29 days; 14 used, 15 unused.
    # Charge 29.00 in advance; credit 29.00 * 15 / 29 = 15.00 on the end date.
    cat = fee_catalog(fee="29.00")
    assert lines(cat, date(2012, 2, 1), date(2012, 2, 15), "2012-02") == [
        ("credit", -1500, date(2012, 2, 15)),
        ("recurring", 2900, date(2012, 2, 1)),
    ]
    assert lines(cat, date(2012, 2, 1), date(2012, 2, 15), "2012-03") == []


@pytest.mark.parametrize(
    ("period", "expected"),
    [
        # Activated 2026-03-11, first boundary 2026-04-01; the full term Jan 1 - Apr 1 has
        # 31 + 28 + 31 = 90 days, March 11..31 is 21 of them: 9.00 * 21 / 90 = 2.10.
        ("2026-03", [("recurring", 210, date(2026, 3, 11))]),
        ("2026-04", [("recurring", 900, date(2026, 4, 1))]),  # term Apr 1 - Jul 1
        ("2026-05", []),
        ("2026-06", []),
        ("2026-07", [("recurring", 900, date(2026, 7, 1))]),  # term Jul 1 - Oct 1
    ],
)
def test_three_month_plan_activated_march_11(period: str, expected: list) -> None:
    assert lines(fee_catalog(months=3, fee="9.00"), date(2026, 3, 11), None, period) == expected


def test_lago_monthly_plan_started_march_15_is_17_31_of_the_fee() -> None:
    # March 15..31 is 17 of March's 31 days: 10.00 * 17 / 31 = 5.4838... -> 5.48.
    assert lines(fee_catalog(fee="10.00"), date(2022, 3, 15), None, "2022-03") == [
        ("recurring", 548, date(2022, 3, 15))
    ]


@pytest.mark.parametrize(
    ("period", "expected"),
    [
        # 7.50 in arrears from 2026-03-11: March 11..31 = 21/31 -> 5.0806 -> 5.08 on Mar 31.
        ("2026-03", [("recurring", 508, date(2026, 3, 31))]),
        ("2026-04", [("recurring", 750, date(2026, 4, 30))]),
        # Ended 2026-05-20: May 1..19 = 19/31 -> 4.5967 -> 4.60, on the last used day.
        ("2026-05", [("recurring", 460, date(2026, 5, 19))]),
        ("2026-06", []),
    ],
)
def test_in_arrears_charges_the_period_holding_the_last_day(period: str, expected: list) -> None:
    cat = fee_catalog(mode="in_arrears", fee="7.50")
    assert lines(cat, date(2026, 3, 11), date(2026, 5, 20), period) == expected


def test_in_arrears_with_prorate_flags_off_charges_whole_terms() -> None:
    cat = fee_catalog(mode="in_arrears", fee="7.50", prorate_first=False, prorate_last=False)
    assert lines(cat, date(2026, 3, 11), date(2026, 5, 20), "2026-03") == [
        ("recurring", 750, date(2026, 3, 31))
    ]
    assert lines(cat, date(2026, 3, 11), date(2026, 5, 20), "2026-05") == [
        ("recurring", 750, date(2026, 5, 19))
    ]


def test_in_arrears_ending_on_a_boundary_bills_the_last_whole_term_only() -> None:
    cat = fee_catalog(mode="in_arrears", fee="7.50")
    assert lines(cat, date(2026, 3, 1), date(2026, 5, 1), "2026-04") == [
        ("recurring", 750, date(2026, 4, 30))
    ]
    assert lines(cat, date(2026, 3, 1), date(2026, 5, 1), "2026-05") == []


def test_in_advance_prorate_first_off_charges_the_whole_first_term() -> None:
    cat = fee_catalog(prorate_first=False)
    assert lines(cat, date(2026, 6, 11), None, "2026-06") == [
        ("recurring", 3000, date(2026, 6, 11))
    ]


def test_in_advance_prorate_last_off_gives_no_credit() -> None:
    cat = fee_catalog(fee="29.00", prorate_last=False)
    assert lines(cat, date(2012, 2, 1), date(2012, 2, 15), "2012-02") == [
        ("recurring", 2900, date(2012, 2, 1))
    ]


def test_in_advance_ended_inside_its_partial_first_term() -> None:
    # June 11 - June 21: charged 20/30 of 30.00 = 20.00, then June 21..30 (10 days) credited:
    # 30.00 * 10 / 30 = 10.00.
    assert lines(fee_catalog(), date(2026, 6, 11), date(2026, 6, 21), "2026-06") == [
        ("credit", -1000, date(2026, 6, 21)),
        ("recurring", 2000, date(2026, 6, 11)),
    ]


def test_in_advance_ending_on_a_boundary_has_no_credit() -> None:
    assert lines(fee_catalog(), date(2026, 6, 1), date(2026, 7, 1), "2026-06") == [
        ("recurring", 3000, date(2026, 6, 1))
    ]
    assert lines(fee_catalog(), date(2026, 6, 1), date(2026, 7, 1), "2026-07") == []


def test_quarterly_credit_lands_in_the_period_of_the_end_date() -> None:
    # 9.00 for Apr 1 - Jul 1 (30 + 31 + 30 = 91 days), ended May 16: May 16 .. Jun 30 is
    # 16 + 30 = 46 unused days: 9.00 * 46 / 91 = 4.5494... -> 4.55.
    cat = fee_catalog(months=3, fee="9.00")
    assert lines(cat, date(2026, 4, 1), date(2026, 5, 16), "2026-04") == [
        ("recurring", 900, date(2026, 4, 1))
    ]
    assert lines(cat, date(2026, 4, 1), date(2026, 5, 16), "2026-05") == [
        ("credit", -455, date(2026, 5, 16))
    ]
    assert lines(cat, date(2026, 4, 1), date(2026, 5, 16), "2026-06") == []


def test_a_credit_of_exactly_half_a_cent_rounds_away_from_zero() -> None:
    # 0.03 for June, ended June 16: 15 of 30 days unused -> 1.5 cents -> -2 cents, not -1.
    assert lines(fee_catalog(fee="0.03"), date(2026, 6, 1), date(2026, 6, 16), "2026-06") == [
        ("credit", -2, date(2026, 6, 16)),
        ("recurring", 3, date(2026, 6, 1)),
    ]


def test_quantity_multiplies_the_fee_before_the_one_rounding() -> None:
    # 3 x 9.00 x 21 / 90 = 6.30 (not 3 x round(2.10)).
    cat = fee_catalog(months=3, fee="9.00")
    assert lines(cat, date(2026, 3, 11), None, "2026-03", quantity=3) == [
        ("recurring", 630, date(2026, 3, 11))
    ]
    # 3 x 0.10 x 1 / 30 = 0.01 exactly, where 3 x round(0.10 / 30) would be 0.
    assert lines(fee_catalog(fee="0.10"), date(2026, 6, 30), None, "2026-06", quantity=3) == [
        ("recurring", 1, date(2026, 6, 30))
    ]


def test_activation_fee_is_charged_once_times_quantity() -> None:
    cat = fee_catalog(activation_fee="10.00")
    assert lines(cat, date(2026, 6, 11), None, "2026-06", quantity=2) == [
        ("activation", 2000, date(2026, 6, 11)),
        ("recurring", 4000, date(2026, 6, 11)),  # 2 x 30.00 x 20 / 30
    ]
    assert lines(cat, date(2026, 6, 11), None, "2026-07", quantity=2) == [
        ("recurring", 6000, date(2026, 7, 1))
    ]


def test_jpy_has_no_minor_unit() -> None:
    # 1000 JPY from June 12: 19 of 30 days = 633.33 -> 633 yen.
    cat = fee_catalog(fee="1000", currency="JPY")
    assert lines(cat, date(2026, 6, 12), None, "2026-06", currency="JPY") == [
        ("recurring", 633, date(2026, 6, 12))
    ]


def test_billing_day_15() -> None:
    # Period 2026-06 is Jun 15 - Jul 15 (30 days); activated Jun 20: 25 days -> 25.00.
    cat = fee_catalog()
    assert lines(cat, date(2026, 6, 20), None, "2026-06", billing_day=15) == [
        ("recurring", 2500, date(2026, 6, 20))
    ]
    assert lines(cat, date(2026, 6, 20), None, "2026-07", billing_day=15) == [
        ("recurring", 3000, date(2026, 7, 15))
    ]
    # Activated Jun 10 with billing day 15: period 2026-05 (May 15 - Jun 15, 31 days), 5 days.
    assert lines(cat, date(2026, 6, 10), None, "2026-05", billing_day=15) == [
        ("recurring", 484, date(2026, 6, 10))  # 30.00 * 5 / 31 = 4.8387 -> 4.84
    ]


def test_cutoff_keeps_only_lines_dated_on_or_before_it() -> None:
    assert lines(fee_catalog(), date(2026, 6, 11), None, "2026-06",
                 cutoff=date(2026, 6, 10)) == []
    assert lines(fee_catalog(), date(2026, 6, 11), None, "2026-06",
                 cutoff=date(2026, 6, 11)) == [("recurring", 2000, date(2026, 6, 11))]
    arrears = fee_catalog(mode="in_arrears", fee="7.50")
    assert lines(arrears, date(2026, 3, 11), None, "2026-03", cutoff=date(2026, 3, 30)) == []
    assert lines(arrears, date(2026, 3, 11), None, "2026-03", cutoff=date(2026, 3, 31)) == [
        ("recurring", 508, date(2026, 3, 31))
    ]


def test_non_billable_and_fee_less_assignments_have_no_fee_lines() -> None:
    cat = fee_catalog()
    context = account_context(cat, accounts(), "2026-06", None)
    rows = lifecycles(("S1", date(2026, 6, 1), None, 1), ("S2", date(2026, 6, 1), None, 1))
    rows = rows.with_columns(
        billable=pl.Series([False, True]), fee_plan_id=pl.Series(["P", None], dtype=pl.Utf8)
    )
    assert fee_lines(cat, rows, context, "2026-06").height == 0


def test_fee_lines_carry_the_line_schema_and_a_readable_description() -> None:
    cat = fee_catalog(activation_fee="10.00")
    context = account_context(cat, accounts(), "2026-06", None)
    got = fee_lines(cat, lifecycles(("S1", date(2026, 6, 11), date(2026, 6, 21), 3)), context,
                    "2026-06").sort("line_type")
    assert got.select("line_type", "description", "quantity_units", "term_start").rows() == [
        ("activation", "Activation Pack P 2026-06-11 x3", 3_000_000, date(2026, 6, 11)),
        ("credit", "Credit Pack P 2026-06-21..2026-07-01 (10/30) x3", 3_000_000,
         date(2026, 6, 11)),
        ("recurring", "Pack P 2026-06-11..2026-07-01 (20/30) x3", 3_000_000, date(2026, 6, 11)),
    ]
    assert set(got["currency"]) == {"USD"}
    assert set(got["assignment_id"]) == {"S1"}


def period_total(catalog: CatalogFrames, rows: pl.DataFrame, billing_day: int,
                 first: date, last: date) -> int:
    """The sum of every fee line from the period holding `first` to the one holding `last`."""
    total = 0
    for period in periods_between(period_containing(first, billing_day),
                                  period_containing(last, billing_day)):
        context = account_context(catalog, accounts(billing_day), period, None)
        total += fee_lines(catalog, rows, context, period)["amount_minor"].sum()
    return total


@settings(max_examples=60, deadline=None)
@given(
    fee=st.integers(0, 100_000),
    quantity=st.integers(1, 5),
    billing_day=st.integers(1, 28),
    month=st.integers(0, 36),
    split=st.integers(1, 30),
)
def test_replacing_within_a_month_charges_exactly_the_fee(
    fee: int, quantity: int, billing_day: int, month: int, split: int
) -> None:
    """A's charge, A's credit and B's prorated first term add up to the fee, to the cent."""
    start = first_boundary(date(2025, 1, 1) + timedelta(days=31 * month), billing_day)
    _, end = term_of(start, start, billing_day, 1)
    cut = min(start + timedelta(days=split), end - timedelta(days=1))
    cat = fee_catalog(fee=f"{fee / 100:.2f}")
    rows = lifecycles(("A1", start, cut, quantity), ("B1", cut, None, quantity))
    assert period_total(cat, rows, billing_day, start, start) == fee * quantity


@settings(max_examples=40, deadline=None)
@given(
    fee=st.integers(0, 100_000),
    quantity=st.integers(1, 5),
    months=st.sampled_from([1, 3, 6, 12]),
    billing_day=st.integers(1, 28),
    used=st.integers(1, 370),
)
def test_prorated_part_plus_credit_equals_the_fee_over_any_split(
    fee: int, quantity: int, months: int, billing_day: int, used: int
) -> None:
    """Over one term cut at any day: the in-arrears charge for the days used plus the
    in-advance credit for the days left is the fee. Each line is rounded on its own, so when
    both are exactly half a cent they both round up and the sum is one cent over."""
    start = first_boundary(date(2026, 1, 1), billing_day)
    _, end = term_of(start, start, billing_day, months)
    full = (end - start).days
    cut = start + timedelta(days=min(used, full - 1))
    days_used = (cut - start).days
    amount = fee * quantity
    rows = lifecycles(("S1", start, cut, quantity))
    arrears = period_total(fee_catalog("in_arrears", months, f"{fee / 100:.2f}"), rows,
                           billing_day, start, cut)
    advance = period_total(fee_catalog("in_advance", months, f"{fee / 100:.2f}"), rows,
                           billing_day, start, cut)
    credit = advance - amount
    assert arrears == round_half_away_int(amount * days_used, full)
    assert credit == -round_half_away_int(amount * (full - days_used), full)
    tie = (2 * amount * days_used) % (2 * full) == full
    assert arrears + (-credit) == amount + (1 if tie else 0)
