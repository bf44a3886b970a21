"""SPEC §7.1 promotional fees and §7.2 suspension credits, to the cent (pipeline/promotions.py,
pipeline/suspensions.py, rules/promotions.py).

Each expected amount is worked out by hand in a comment: fee × days / days_in_term, in cents,
rounded half away from zero, once per line.
"""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.catalog import CatalogError, CatalogFrames, catalog_frames, parse_catalog
from pipeline.charges import compute_charges
from pipeline.promotions import MissingVerdicts
from rules.promotions import with_verdicts

NO_COUNTERS = pl.DataFrame()
NO_USAGE = pl.DataFrame()


def catalog(fee: str = "12.99", months: int = 1, promotions: list | None = None,
            mode: str = "in_advance", credit: bool = False) -> CatalogFrames:
    """One add-on `ADD` with subscription `SUB` and fee plan `P`."""
    plan = {"id": "P", "term_months": months, "fee": fee, "currency": "USD"}
    if promotions is not None:
        plan["promotions"] = promotions
    return with_verdicts(catalog_frames(parse_catalog({
        "currencies": {"USD": 2},
        "main_products": [{"id": "MP", "name": "Main", "available_addons": ["ADD"]}],
        "addons": [{"id": "ADD", "name": "Pack", "priority": 10, "subscription": "SUB"}],
        "subscriptions": [{"id": "SUB", "charge_mode": mode, "credit_suspended_days": credit,
                           "fee_plans": [plan]}],
    })))


def accounts(*statuses: tuple[str, date]) -> pl.DataFrame:
    """Account A's rows: (status, effective_from); the first is active from 2020-01-01."""
    rows = [("active", date(2020, 1, 1)), *statuses]
    return pl.DataFrame({
        "account_id": ["A"] * len(rows), "currency": ["USD"] * len(rows),
        "main_product_id": ["MP"] * len(rows), "billing_day": [1] * len(rows),
        "status": [r[0] for r in rows], "opened_on": [date(2020, 1, 1)] * len(rows),
        "closed_on": [None] * len(rows), "effective_from": [r[1] for r in rows],
    }, schema_overrides={"closed_on": pl.Date})


def lifecycle(start: date, end: date | None = None, quantity: int = 1) -> pl.DataFrame:
    return pl.DataFrame({
        "assignment_id": ["S1"], "account_id": ["A"], "addon_id": ["ADD"],
        "fee_plan_id": ["P"], "quantity": [quantity], "assigned_at": [datetime(2020, 1, 1)],
        "eff_start": [start], "eff_end": [end], "billable": [True],
    }, schema_overrides={"eff_end": pl.Date})


def fees(cat: CatalogFrames, life: pl.DataFrame, period: str,
         rows: pl.DataFrame | None = None, cutoff: date | None = None) -> list[tuple]:
    """(line_type, amount_minor) of the period's lines, sorted."""
    result = compute_charges(cat, accounts() if rows is None else rows, life, NO_USAGE,
                             NO_COUNTERS, period, cutoff)
    return sorted(result.charges.select("line_type", "amount_minor").rows())


PROMO = [{"terms": 3, "fee": "0"}, {"terms": 6, "fee": "9.99"}]


@pytest.mark.parametrize(("period", "amount"), [
    # 3 months free (terms 1-3), then 6 at 9.99 (terms 4-9), then 12.99 (term 10 on).
    ("2026-01", 0), ("2026-02", 0), ("2026-03", 0),
    ("2026-04", 999), ("2026-06", 999), ("2026-09", 999),
    ("2026-10", 1299), ("2027-05", 1299),
])
def test_spec_example_three_months_free_then_six_at_9_99(period: str, amount: int) -> None:
    assert fees(catalog(promotions=PROMO), lifecycle(date(2026, 1, 1)), period) == [
        ("recurring", amount)
    ]


def test_a_free_promotional_term_still_shows_a_zero_line_that_names_it() -> None:
    result = compute_charges(catalog(promotions=PROMO), accounts(), lifecycle(date(2026, 1, 1)),
                             NO_USAGE, NO_COUNTERS, "2026-01")
    assert result.charges["amount_minor"].to_list() == [0]
    assert result.charges["description"].to_list() == [
        "Pack P 2026-01-01..2026-02-01 (31/31) promotion 1 at 0"
    ]


def test_spec_example_partial_first_term_is_the_promotional_term() -> None:
    # From 2026-01-11: term 1 is January's 21 of 31 days at 6.00: 600 x 21 / 31 = 406.45 -> 4.06.
    cat = catalog(promotions=[{"terms": 1, "fee": "6.00"}])
    assert fees(cat, lifecycle(date(2026, 1, 11)), "2026-01") == [("recurring", 406)]
    # February is term 2: the plan's 12.99.
    assert fees(cat, lifecycle(date(2026, 1, 11)), "2026-02") == [("recurring", 1299)]


def test_spec_example_removal_credit_uses_the_promotional_fee() -> None:
    # Active 2026-01-01 to 2026-02-16, 2 terms at 6.00: January 6.00, February 6.00 and a credit
    # of the 13 unused days of 28: 600 x 13 / 28 = 278.57 -> -2.79.
    cat = catalog(promotions=[{"terms": 2, "fee": "6.00"}])
    life = lifecycle(date(2026, 1, 1), date(2026, 2, 16))
    assert fees(cat, life, "2026-01") == [("recurring", 600)]
    assert fees(cat, life, "2026-02") == [("credit", -279), ("recurring", 600)]


def test_promotion_counts_terms_not_months_and_multiplies_by_quantity() -> None:
    # Quarterly 30.00 plan, 1 promotional quarter at 15.00, quantity 3, in arrears:
    # Q1 (Jan-Mar) charged in March 15.00 x 3 = 45.00; Q2 charged in June 30.00 x 3 = 90.00.
    cat = catalog(fee="30.00", months=3, promotions=[{"terms": 1, "fee": "15.00"}],
                  mode="in_arrears")
    life = lifecycle(date(2026, 1, 1), quantity=3)
    assert fees(cat, life, "2026-01") == []
    assert fees(cat, life, "2026-03") == [("recurring", 4500)]
    assert fees(cat, life, "2026-06") == [("recurring", 9000)]


def test_promotion_runs_out_during_a_catch_up() -> None:
    # A catch-up bills Jan..Apr one period after another: 2 terms at 1.00, then 12.99.
    cat = catalog(promotions=[{"terms": 2, "fee": "1.00"}])
    got = [fees(cat, lifecycle(date(2026, 1, 1)), p)[0][1]
           for p in ("2026-01", "2026-02", "2026-03", "2026-04")]
    assert got == [100, 100, 1299, 1299]


def test_a_catalog_with_promotions_needs_the_rules_verdicts() -> None:
    raw = catalog_frames(parse_catalog({
        "currencies": {"USD": 2},
        "main_products": [{"id": "MP", "name": "Main", "available_addons": ["ADD"]}],
        "addons": [{"id": "ADD", "name": "Pack", "priority": 10, "subscription": "SUB"}],
        "subscriptions": [{"id": "SUB", "fee_plans": [{
            "id": "P", "term_months": 1, "fee": "1", "currency": "USD",
            "promotions": [{"terms": 1, "fee": "0"}]}]}],
    }))
    with pytest.raises(MissingVerdicts):
        compute_charges(raw, accounts(), lifecycle(date(2026, 1, 1)), NO_USAGE, NO_COUNTERS,
                        "2026-01")


# --- §7.2 suspension credits -------------------------------------------------------------------

def test_spec_example_monthly_30_suspended_ten_march_days() -> None:
    # Suspended 2026-03-10 .. 2026-03-20 (10 days of March's 31): 3000 x 10 / 31 = 967.74 -> -9.68.
    rows = accounts(("suspended", date(2026, 3, 10)), ("active", date(2026, 3, 20)))
    cat = catalog(fee="30.00", credit=True)
    got = fees(cat, lifecycle(date(2026, 1, 1)), "2026-03", rows)
    assert got == [("recurring", 3000), ("suspension_credit", -968)]
    assert sum(a for _, a in got) == 2032  # the invoice: 20.32
    assert fees(cat, lifecycle(date(2026, 1, 1)), "2026-04", rows) == [("recurring", 3000)]


def test_spec_example_quarterly_term_suspension_spans_a_period_boundary() -> None:
    # $9 quarter 2026-04-01..2026-07-01 (91 days), suspended 2026-05-25 .. 2026-06-05:
    # May 25..31 = 7 days: 900 x 7 / 91 = 69.23 -> -0.69; June 1..4 = 4 days: 900 x 4 / 91 =
    # 39.56 -> -0.40.
    rows = accounts(("suspended", date(2026, 5, 25)), ("active", date(2026, 6, 5)))
    cat = catalog(fee="9.00", months=3, credit=True)
    life = lifecycle(date(2026, 4, 1))
    assert fees(cat, life, "2026-05", rows) == [("suspension_credit", -69)]
    assert fees(cat, life, "2026-06", rows) == [("suspension_credit", -40)]


def test_subscription_without_the_flag_gets_no_credit() -> None:
    rows = accounts(("suspended", date(2026, 3, 10)), ("active", date(2026, 3, 20)))
    assert fees(catalog(fee="30.00"), lifecycle(date(2026, 1, 1)), "2026-03", rows) == [
        ("recurring", 3000)
    ]


def test_suspension_on_a_removed_addon_credits_only_active_days() -> None:
    # Suspended from 2026-03-10 (never active again); the add-on ends 2026-03-15.
    # Removal credit: 17 unused days (15..31) of 31: 3000 x 17 / 31 = 1645.16 -> -16.45.
    # Suspension credit: active and suspended 10..14 = 5 days: 3000 x 5 / 31 = 483.87 -> -4.84.
    rows = accounts(("suspended", date(2026, 3, 10)))
    cat = catalog(fee="30.00", credit=True)
    life = lifecycle(date(2026, 1, 1), date(2026, 3, 15))
    assert fees(cat, life, "2026-03", rows) == [
        ("credit", -1645), ("recurring", 3000), ("suspension_credit", -484)
    ]
    assert fees(cat, life, "2026-04", rows) == []


def test_suspension_of_a_closed_account_stops_at_the_close() -> None:
    # Suspended from 2026-03-10, closed from 2026-03-20 (the rules end the add-on that day):
    # credited 10..19 = 10 days: 3000 x 10 / 31 = -9.68; removal credit 12 days: -11.61.
    rows = accounts(("suspended", date(2026, 3, 10)), ("closed", date(2026, 3, 20)))
    cat = catalog(fee="30.00", credit=True)
    life = lifecycle(date(2026, 1, 1), date(2026, 3, 20))
    assert fees(cat, life, "2026-03", rows) == [
        ("credit", -1161), ("recurring", 3000), ("suspension_credit", -968)
    ]


def test_suspension_credit_uses_the_promotional_fee_and_the_draft_cutoff() -> None:
    # Term 1 at 6.00 (promotion), suspended from 2026-01-05; a draft as of 2026-01-14 counts
    # 5..14 = 10 days of 31: 600 x 10 / 31 = 193.55 -> -1.94.
    rows = accounts(("suspended", date(2026, 1, 5)))
    cat = catalog(promotions=[{"terms": 1, "fee": "6.00"}], credit=True)
    assert fees(cat, lifecycle(date(2026, 1, 1)), "2026-01", rows, cutoff=date(2026, 1, 14)) == [
        ("recurring", 600), ("suspension_credit", -194)
    ]


@settings(max_examples=40, deadline=None)
@given(start=st.integers(0, 120), length=st.integers(1, 120), fee=st.integers(0, 100_000),
       months=st.sampled_from([1, 3, 6, 12]), quantity=st.integers(1, 5),
       end=st.one_of(st.none(), st.integers(1, 200)))
def test_suspension_credit_never_exceeds_the_terms_fee(start: int, length: int, fee: int,
                                                       months: int, quantity: int,
                                                       end: int | None) -> None:
    first = date(2026, 1, 1)
    suspended = date.fromordinal(first.toordinal() + start)
    back = date.fromordinal(suspended.toordinal() + length)
    rows = accounts(("suspended", suspended), ("active", back))
    cat = catalog(fee=f"{fee / 100:.2f}", months=months, credit=True)
    life = lifecycle(first, None if end is None else date.fromordinal(first.toordinal() + end),
                     quantity)
    for period in ("2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06"):
        for line_type, amount in fees(cat, life, period, rows):
            if line_type == "suspension_credit":
                assert -fee * quantity <= amount < 0


@pytest.mark.parametrize(("plan", "problem"), [
    ({"promotions": [{"terms": 0, "fee": "1"}]},
     "subscriptions[SUB].fee_plans[P].promotions[0].terms: Input should be greater than or"),
    ({"promotions": [{"terms": 1, "fee": "-1"}]},
     "subscriptions[SUB].fee_plans[P].promotions[0].fee: Input should be greater than or"),
    ({"promotions": [{"terms": 1, "fee": "0.001"}]},
     "subscriptions[SUB].fee_plans[P].promotions[0].fee: 0.001 has more decimals"),
])
def test_bad_promotions_name_the_field_and_the_plan(plan: dict, problem: str) -> None:
    with pytest.raises(CatalogError) as err:
        parse_catalog({
            "currencies": {"USD": 2},
            "main_products": [{"id": "MP", "name": "Main"}],
            "subscriptions": [{"id": "SUB", "fee_plans": [
                {"id": "P", "term_months": 1, "fee": "1", "currency": "USD", **plan}]}],
        })
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems
