"""SPEC §8.1-§8.2 through the one pure `bill`: changes of fee plan and quantity from a date, their
timing policies, supersession and refusal, and commitments.

Every amount is worked out by hand in the test from the SPEC's formula (fee × Σ quantity per
active day / days_in_term, each line rounded once, half away from zero). Billing day 1 unless
said otherwise; the add-on `ADD` ("Pack") has one subscription `SUB`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any

import polars as pl
import pytest
from hypothesis import given as hyp_given
from hypothesis import settings
from hypothesis import strategies as st

from billing.bill import Bill, BillInputs, bill
from pipeline.catalog import parse_catalog
from pipeline.contracts import CHANGE_SCHEMA, COUNTER_INPUT_SCHEMA, LOCK_SCHEMA
from pipeline.periods import periods_between, term_of

NO_COUNTERS = pl.DataFrame(schema=COUNTER_INPUT_SCHEMA)


def catalog(plans: list[dict[str, Any]], *, mode: str = "in_advance", policy: str = "immediate",
            activation_fee: str = "0", **sub: Any) -> Any:
    return parse_catalog({
        "currencies": {"USD": 2, "EUR": 2},
        "main_products": [{"id": "MP", "name": "Main", "available_addons": ["ADD", "OTHER"]}],
        "addons": [{"id": "ADD", "name": "Pack", "priority": 10, "subscription": "SUB"},
                   {"id": "OTHER", "name": "Other", "priority": 5, "subscription": "SUB2"}],
        "subscriptions": [
            {"id": "SUB", "charge_mode": mode, "plan_change": policy,
             "activation_fee": activation_fee, "fee_plans": plans, **sub},
            {"id": "SUB2", "fee_plans": [{"id": "O1", "term_months": 1, "fee": "1.00",
                                          "currency": "USD"}]},
        ],
    })


def plan(pid: str, months: int, fee: str, currency: str = "USD", **extra: Any) -> dict[str, Any]:
    return {"id": pid, "term_months": months, "fee": fee, "currency": currency, **extra}


M30 = plan("M30", 1, "30.00")
M20 = plan("M20", 1, "20.00")
M25 = plan("M25", 1, "25.00")
M15 = plan("M15", 1, "15.00")
H150 = plan("H150", 6, "150.00")
Q60 = plan("Q60", 3, "60.00")


def inputs(cat: Any, *, start: date, plan_id: str, quantity: int = 1, end: date | None = None,
           changes: list[tuple[date, str, int]] = (), billing_day: int = 1,
           statuses: list[tuple[str, date]] = ()) -> BillInputs:
    rows = [("active", date(2025, 1, 1)), *statuses]
    accounts = pl.DataFrame(
        [{"account_id": "A", "currency": "USD", "main_product_id": "MP",
          "billing_day": billing_day, "status": status, "opened_on": date(2025, 1, 1),
          "closed_on": None, "effective_from": day} for status, day in rows],
        schema_overrides={"closed_on": pl.Date},
    )
    assignments = pl.DataFrame(
        [{"assignment_id": "S", "account_id": "A", "addon_id": "ADD", "fee_plan_id": plan_id,
          "start_date": start, "end_date": end, "assigned_at": datetime(2025, 12, 1),
          "quantity": quantity}],
        schema_overrides={"end_date": pl.Date},
    )
    return BillInputs(
        catalog=cat, policy="replace", accounts=accounts, assignments=assignments,
        locks=pl.DataFrame(schema=LOCK_SCHEMA),
        changes=pl.DataFrame(
            [{"assignment_id": "S", "effective_from": d, "fee_plan_id": p, "quantity": q}
             for d, p, q in changes], schema=CHANGE_SCHEMA),
    )


def lines(given: BillInputs, period: str) -> list[tuple[str, int]]:
    """(line_type, amount in cents) of the period, in line order."""
    got = bill(given, period, None, NO_COUNTERS).charges
    return [(t, a) for t, a in got.select("line_type", "amount_minor").iter_rows()]


def total(given: BillInputs, period: str) -> int:
    return sum(a for _, a in lines(given, period))


def history(given: BillInputs) -> list[tuple[date, date | None, str]]:
    """(effective_from, takes_effect_on, status) of each change."""
    got: Bill = bill(given, "2026-01", None, NO_COUNTERS)
    return list(got.plan_changes.select("effective_from", "takes_effect_on", "status")
                .iter_rows())


# --- SPEC §8.1 examples -------------------------------------------------------------------------
def test_quantity_1_to_3_from_march_11_in_advance() -> None:
    # March: 30.00, then 30 x 2 x 21/31 = 40.645 -> 40.65; April 90.00.
    given = inputs(catalog([M30]), start=date(2026, 1, 1), plan_id="M30",
                   changes=[(date(2026, 3, 11), "M30", 3)])
    assert lines(given, "2026-02") == [("recurring", 3000)]
    assert sorted(lines(given, "2026-03")) == [("recurring", 3000), ("recurring", 4065)]
    assert lines(given, "2026-04") == [("recurring", 9000)]


def test_quantity_1_to_3_from_march_11_in_arrears() -> None:
    # One line: 30 x (1 x 10 + 3 x 21) / 31 = 70.645 -> 70.65.
    given = inputs(catalog([M30], mode="in_arrears"), start=date(2026, 1, 1), plan_id="M30",
                   changes=[(date(2026, 3, 11), "M30", 3)])
    assert lines(given, "2026-03") == [("recurring", 7065)]
    assert lines(given, "2026-04") == [("recurring", 9000)]


def test_monthly_to_six_month_plan_immediately() -> None:
    # March: 30.00, credit 30 x 21/31 = -20.32, new plan 150 x 21/182 = 17.31 -> 26.99.
    given = inputs(catalog([M30, H150]), start=date(2026, 1, 1), plan_id="M30",
                   changes=[(date(2026, 3, 11), "H150", 1)])
    assert sorted(lines(given, "2026-03")) == [
        ("credit", -2032), ("recurring", 1731), ("recurring", 3000)]
    assert total(given, "2026-03") == 2699
    assert lines(given, "2026-04") == [("recurring", 15000)]
    for month in ("05", "06", "07", "08", "09"):
        assert lines(given, f"2026-{month}") == []
    assert lines(given, "2026-10") == [("recurring", 15000)]


def test_end_of_term_change_waits_for_the_boundary() -> None:
    given = inputs(catalog([M30, M20], policy="end_of_term"), start=date(2026, 1, 1),
                   plan_id="M30", changes=[(date(2026, 3, 11), "M20", 1)])
    assert lines(given, "2026-03") == [("recurring", 3000)]
    assert lines(given, "2026-04") == [("recurring", 2000)]
    assert history(given) == [(date(2026, 3, 11), date(2026, 4, 1), "in effect")]


def test_upgrades_now_an_upgrade_takes_effect_on_its_date() -> None:
    # 60.00 quarterly (20 a month) from 01-01; to 25 monthly from 02-15 (an upgrade).
    # February: credit 60 x 45/90 = -30.00, new 25 x 14/28 = 12.50 -> -17.50; March 25.00.
    given = inputs(catalog([Q60, M25], policy="upgrades_now"), start=date(2026, 1, 1),
                   plan_id="Q60", changes=[(date(2026, 2, 15), "M25", 1)])
    assert lines(given, "2026-01") == [("recurring", 6000)]
    assert sorted(lines(given, "2026-02")) == [("credit", -3000), ("recurring", 1250)]
    assert lines(given, "2026-03") == [("recurring", 2500)]


def test_upgrades_now_a_downgrade_waits_for_the_term_end() -> None:
    given = inputs(catalog([Q60, M15], policy="upgrades_now"), start=date(2026, 1, 1),
                   plan_id="Q60", changes=[(date(2026, 2, 15), "M15", 1)])
    assert lines(given, "2026-02") == []
    assert lines(given, "2026-03") == []
    assert lines(given, "2026-04") == [("recurring", 1500)]
    assert history(given) == [(date(2026, 2, 15), date(2026, 4, 1), "in effect")]


# --- supersession, refusal, scope ---------------------------------------------------------------
def test_a_later_change_supersedes_one_that_waits() -> None:
    # end_of_term: 03-11 would take effect 04-01; 03-20 comes before it and supersedes it.
    given = inputs(catalog([M30, M20, M15], policy="end_of_term"), start=date(2026, 1, 1),
                   plan_id="M30", changes=[(date(2026, 3, 11), "M20", 1),
                                           (date(2026, 3, 20), "M15", 1)])
    assert history(given) == [(date(2026, 3, 11), None, "superseded"),
                              (date(2026, 3, 20), date(2026, 4, 1), "in effect")]
    assert lines(given, "2026-04") == [("recurring", 1500)]


def test_a_change_after_one_took_effect_reads_the_new_version() -> None:
    # immediate 02-10 to M20, then immediate 03-05 to quantity 2 of M20.
    given = inputs(catalog([M30, M20]), start=date(2026, 1, 1), plan_id="M30",
                   changes=[(date(2026, 2, 10), "M20", 1), (date(2026, 3, 5), "M20", 2)])
    assert [s for *_, s in history(given)] == ["in effect", "in effect"]
    # March: M20 x1 20.00, then +20 x 1 x 27/31 = 17.419 -> 17.42.
    assert sorted(lines(given, "2026-03")) == [("recurring", 1742), ("recurring", 2000)]


def test_a_refused_change_keeps_the_version_before_and_supersedes_nothing() -> None:
    eur = plan("E30", 1, "30.00", currency="EUR")
    given = inputs(catalog([M30, M20, eur], policy="end_of_term"), start=date(2026, 1, 1),
                   plan_id="M30", changes=[(date(2026, 3, 11), "M20", 1),
                                           (date(2026, 3, 15), "E30", 1),
                                           (date(2026, 3, 16), "O1", 1)])
    assert history(given) == [(date(2026, 3, 11), date(2026, 4, 1), "in effect"),
                              (date(2026, 3, 15), None, "refused"),
                              (date(2026, 3, 16), None, "refused")]
    assert lines(given, "2026-04") == [("recurring", 2000)]


def test_a_change_from_the_end_or_after_is_not_in_effect() -> None:
    given = inputs(catalog([M30, M20], policy="end_of_term"), start=date(2026, 1, 1),
                   plan_id="M30", end=date(2026, 3, 20),
                   changes=[(date(2026, 3, 11), "M20", 1), (date(2026, 3, 25), "M20", 2)])
    # 03-11 would take effect 04-01, after the end 03-20; 03-25 is after the end.
    assert history(given) == [(date(2026, 3, 11), None, "not in effect"),
                              (date(2026, 3, 25), None, "not in effect")]
    # March: 30.00 and the credit of 12 unused days 30 x 12/31 = -11.61.
    assert sorted(lines(given, "2026-03")) == [("credit", -1161), ("recurring", 3000)]


def test_a_change_on_the_start_date_holds_from_the_first_day() -> None:
    # end_of_term does not matter on the start date; the activation fee is charged once, at the
    # first day's quantity (2 x 10.00).
    given = inputs(catalog([M30, M20], policy="end_of_term", activation_fee="10.00"),
                   start=date(2026, 1, 11), plan_id="M30",
                   changes=[(date(2026, 1, 11), "M20", 2)])
    # January: M20 x2 for 21 of 31 days: 40 x 21/31 = 27.096 -> 27.10; activation 20.00.
    assert sorted(lines(given, "2026-01")) == [("activation", 2000), ("recurring", 2710)]
    assert lines(given, "2026-02") == [("recurring", 4000)]


def test_an_add_on_never_active_is_charged_nothing() -> None:
    given = inputs(catalog([M30, M20], activation_fee="10.00"), start=date(2026, 1, 11),
                   plan_id="M30", end=date(2026, 1, 11), changes=[(date(2026, 1, 11), "M20", 1)])
    assert lines(given, "2026-01") == []
    assert history(given) == [(date(2026, 1, 11), None, "not in effect")]


def test_promotions_restart_with_a_new_plan_but_never_twice() -> None:
    promo = plan("P13", 1, "12.99", promotions=[{"terms": 1, "fee": "0"}])
    given = inputs(catalog([promo, M20]), start=date(2026, 1, 1), plan_id="P13",
                   changes=[(date(2026, 2, 1), "M20", 1), (date(2026, 3, 1), "P13", 1)])
    assert lines(given, "2026-01") == [("recurring", 0)]
    assert lines(given, "2026-02") == [("recurring", 2000)]
    # P13 was had before: March is at its own fee, not its promotion.
    assert lines(given, "2026-03") == [("recurring", 1299)]


def test_quantity_decrease_is_a_credit_and_removal_credit_uses_the_last_quantity() -> None:
    # 30 monthly x3 from 01-01; x1 from 03-11; ends 03-21.
    # March: 90.00; 30 x (1-3) x 21/31 = -40.65; removal credit 30 x 1 x 11/31 = -10.65.
    given = inputs(catalog([M30]), start=date(2026, 1, 1), plan_id="M30", quantity=3,
                   end=date(2026, 3, 21), changes=[(date(2026, 3, 11), "M30", 1)])
    got = sorted(lines(given, "2026-03"))
    assert got == [("credit", -4065), ("credit", -1065), ("recurring", 9000)]
    # Over the term: 30 x (3 x 10 + 1 x 10) / 31 = 38.71, within a cent of the lines' 38.70.
    assert abs(sum(a for _, a in got) - 3871) <= 1


def test_suspension_credit_uses_each_days_quantity() -> None:
    # x1, then x3 from 03-11; suspended 03-06 .. 03-16: 5 days at 1 and 5 days at 3.
    # 30 x (5 + 15) / 31 = 19.354 -> -19.35.
    given = inputs(catalog([M30], credit_suspended_days=True), start=date(2026, 1, 1),
                   plan_id="M30", changes=[(date(2026, 3, 11), "M30", 3)],
                   statuses=[("suspended", date(2026, 3, 6)), ("active", date(2026, 3, 16))])
    assert sorted(lines(given, "2026-03")) == [
        ("recurring", 3000), ("recurring", 4065), ("suspension_credit", -1935)]


# --- SPEC §8.2 commitments ------------------------------------------------------------------------
C20 = plan("C20", 1, "20.00", minimum_terms=12, early_termination_fee="100.00")


@pytest.mark.parametrize("end, fee", [
    (date(2026, 6, 16), 10000),   # June: 20.00, credit 20 x 15/30 = -10.00, fee 100.00
    (date(2026, 12, 31), 10000),  # the 12th term is December: a day short
    (date(2027, 1, 1), None),     # active through December 31: met
])
def test_ending_before_the_commitment_charges_the_fee(end: date, fee: int | None) -> None:
    given = inputs(catalog([C20]), start=date(2026, 1, 11), plan_id="C20", end=end)
    period = f"{end.year}-{end.month:02d}"
    got = dict((t, a) for t, a in lines(given, period) if t == "termination_fee")
    assert got.get("termination_fee") == fee
    if end == date(2026, 6, 16):
        assert sorted(lines(given, period)) == [
            ("credit", -1000), ("recurring", 2000), ("termination_fee", 10000)]
        decided = bill(given, period, None, NO_COUNTERS).decisions.filter(
            pl.col("rule") == "early termination")
        assert decided["outcome"].to_list() == ["fee charged"]
        assert "its end date" in decided["reason"][0]


def test_termination_fee_is_times_the_last_days_quantity() -> None:
    given = inputs(catalog([C20]), start=date(2026, 1, 1), plan_id="C20", end=date(2026, 5, 1),
                   changes=[(date(2026, 3, 1), "C20", 2)])
    assert ("termination_fee", 20000) in lines(given, "2026-05")


def test_a_change_to_a_committed_plan_replaces_the_commitment() -> None:
    c30 = plan("C30", 1, "30.00", minimum_terms=6, early_termination_fee="50.00")
    given = inputs(catalog([C20, c30, M20]), start=date(2026, 1, 1), plan_id="C20",
                   changes=[(date(2026, 3, 1), "C30", 1)])
    assert lines(given, "2026-03") == [("recurring", 3000)]
    # To a plan without commitment the fee is charged on the change day.
    given = inputs(catalog([C20, c30, M20]), start=date(2026, 1, 1), plan_id="C20",
                   changes=[(date(2026, 3, 1), "M20", 1)])
    assert sorted(lines(given, "2026-03")) == [("recurring", 2000), ("termination_fee", 10000)]


# --- properties ---------------------------------------------------------------------------------
PLANS = {"M30": (1, 3000), "Q60": (3, 6000)}


@st.composite
def lives(draw: Any) -> tuple[str, date, date, str, int, list[tuple[date, str, int]]]:
    mode = draw(st.sampled_from(["in_advance", "in_arrears"]))
    start = date(2026, 1, 1) + timedelta(days=draw(st.integers(0, 40)))
    end = start + timedelta(days=draw(st.integers(1, 300)))
    base = draw(st.sampled_from(list(PLANS)))
    days = draw(st.lists(st.integers(1, (end - start).days), max_size=3, unique=True))
    changes = [(start + timedelta(days=d), draw(st.sampled_from(list(PLANS))),
                draw(st.integers(1, 4))) for d in sorted(days)]
    return mode, start, end, base, draw(st.integers(1, 4)), changes


@settings(max_examples=15, deadline=None)
@hyp_given(lives(), st.randoms(use_true_random=False))
def test_the_lines_of_a_life_sum_to_the_term_formula(life: Any, rnd: Any) -> None:
    """Whatever the changes, the lines sum to Σ over terms of fee × Σ quantity per active day /
    days_in_term (each line rounded once: within half a cent per line), in any row order."""
    mode, start, end, base, quantity, changes = life
    shuffled = list(changes)
    rnd.shuffle(shuffled)
    given = inputs(catalog([plan("M30", 1, "30.00"), plan("Q60", 3, "60.00")], mode=mode),
                   start=start, plan_id=base, quantity=quantity, end=end,
                   changes=shuffled).with_settlement()
    got = [bill(given, p, None, NO_COUNTERS).charges
           for p in periods_between("2026-01", "2027-02")]
    amounts = pl.concat(got)["amount_minor"].to_list()

    # By hand: walk the days; a change of plan starts a new term grid on its day.
    version, seg_start, per_term = (base, quantity), start, {}
    by_day = {d: (p, q) for d, p, q in changes}
    day = start
    while day < end:
        if day in by_day:
            if by_day[day][0] != version[0]:
                seg_start = day
            version = by_day[day]
        months, fee = PLANS[version[0]]
        term = (seg_start, *term_of(day, seg_start, 1, months))
        q_days, _, _ = per_term.get(term, (0, fee, months))
        per_term[term] = (q_days + version[1], fee, months)
        day += timedelta(days=1)
    expected = sum(Fraction(fee * q_days, (t_end - t_start).days)
                   for (_, t_start, t_end), (q_days, fee, _) in per_term.items())
    assert abs(sum(amounts) - expected) <= Fraction(len(amounts), 2)


@settings(max_examples=10, deadline=None)
@hyp_given(st.lists(lives(), min_size=2, max_size=3))
def test_billing_accounts_together_or_one_by_one_gives_the_same_rows(many: Any) -> None:
    """Shards: the changes of one account never move another's lines or verdicts."""
    cat = catalog([plan("M30", 1, "30.00"), plan("Q60", 3, "60.00")])
    parts = []
    for n, (_, start, end, base, quantity, changes) in enumerate(many):
        one = inputs(cat, start=start, plan_id=base, quantity=quantity, end=end, changes=changes)
        rename = {"account_id": pl.lit(f"A{n}"), "assignment_id": pl.lit(f"S{n}")}
        parts.append(replace(
            one, accounts=one.accounts.with_columns(account_id=rename["account_id"]),
            assignments=one.assignments.with_columns(**rename),
            changes=one.changes.with_columns(assignment_id=rename["assignment_id"])))
    together = replace(parts[0], accounts=pl.concat([p.accounts for p in parts]),
                       assignments=pl.concat([p.assignments for p in parts]),
                       changes=pl.concat([p.changes for p in parts]))
    for period in ("2026-03", "2026-07"):
        whole = bill(together, period, None, NO_COUNTERS)
        alone = [bill(p, period, None, NO_COUNTERS) for p in parts]
        assert sorted(whole.charges.rows()) == sorted(
            r for a in alone for r in a.charges.rows())
        assert sorted(whole.plan_changes.rows()) == sorted(
            r for a in alone for r in a.plan_changes.rows())
