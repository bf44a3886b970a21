"""Property (SPEC §7): with no promotions, suspensions or rollover in play, every result is
exactly what the §1–§6 billing gives.

Catalog B is catalog A plus every new key, none of them in play for the generated inputs:
`credit_suspended_days: true` (no account is ever suspended), `promotions: []` and
`rollover: 0` written out, a promotional plan and a rollover quota that no assignment uses.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.catalog import catalog_frames, parse_catalog
from pipeline.charges import compute_charges
from rules.promotions import with_verdicts

M = 1_000_000


def _catalog(extras: bool) -> dict:
    sub = {"id": "SUB", "charge_mode": "in_advance",
           "fee_plans": [{"id": "P1", "term_months": 1, "fee": "9.99", "currency": "USD"},
                         {"id": "P3", "term_months": 3, "fee": "25.00", "currency": "USD"}]}
    entry = {"service": "voice", "destination_group": "US", "threshold_type": "quantity",
             "tiers": [[0, 100], [60, 0]]}
    cat = {
        "currencies": {"USD": 2},
        "main_products": [{"id": "MP", "name": "Main", "available_addons": ["ADD", "Q"]}],
        "addons": [{"id": "ADD", "name": "Pack", "priority": 10, "subscription": "SUB"},
                   {"id": "Q", "name": "Quota", "priority": 20, "discount_plan": "DP"}],
        "subscriptions": [sub],
        "discount_plans": [{"id": "DP", "entries": [entry]}],
    }
    if extras:
        sub["credit_suspended_days"] = True
        for plan in sub["fee_plans"]:
            plan["promotions"] = []
        sub["fee_plans"].append({"id": "PP", "term_months": 1, "fee": "5", "currency": "USD",
                                 "promotions": [{"terms": 2, "fee": "0"}]})
        entry["rollover"] = 0
        cat["discount_plans"].append({"id": "DR", "entries": [{
            "service": "voice", "destination_group": "INTL", "threshold_type": "quantity",
            "rollover": 2, "tiers": [[0, 100], [10, 0]]}]})
    return cat


PLAIN = catalog_frames(parse_catalog(_catalog(False)))
EXTRAS = with_verdicts(catalog_frames(parse_catalog(_catalog(True))))

ACCOUNTS = pl.DataFrame({
    "account_id": ["A", "B"], "currency": ["USD", "USD"], "main_product_id": ["MP", "MP"],
    "billing_day": [1, 15], "status": ["active", "active"],
    "opened_on": [date(2025, 1, 1)] * 2, "closed_on": [None, None],
    "effective_from": [date(2025, 1, 1)] * 2,
}, schema_overrides={"closed_on": pl.Date})

assignment = st.tuples(
    st.sampled_from(["A", "B"]), st.sampled_from([("ADD", "P1"), ("ADD", "P3"), ("Q", None)]),
    st.integers(0, 150), st.one_of(st.none(), st.integers(1, 150)), st.integers(1, 3),
)
call = st.tuples(st.sampled_from(["A", "B"]), st.integers(0, 150), st.integers(0, 90))


@settings(max_examples=30, deadline=None)
@given(assignments=st.lists(assignment, min_size=1, max_size=5),
       calls=st.lists(call, max_size=12),
       period=st.sampled_from(["2026-01", "2026-02", "2026-03", "2026-04"]))
def test_new_keys_out_of_play_change_nothing(assignments: list, calls: list, period: str) -> None:
    start = date(2026, 1, 1)
    life = pl.DataFrame({
        "assignment_id": [f"S{i}" for i in range(len(assignments))],
        "account_id": [a[0] for a in assignments],
        "addon_id": [a[1][0] for a in assignments],
        "fee_plan_id": [a[1][1] for a in assignments],
        "quantity": [a[4] for a in assignments],
        "assigned_at": [datetime(2025, 12, 1, i) for i in range(len(assignments))],
        "eff_start": [start + timedelta(days=a[2]) for a in assignments],
        "eff_end": [None if a[3] is None else start + timedelta(days=a[2] + a[3])
                    for a in assignments],
        "billable": [True] * len(assignments),
    }, schema_overrides={"eff_end": pl.Date, "fee_plan_id": pl.Utf8})
    usage = pl.DataFrame({
        "event_id": [f"e{i}" for i in range(len(calls))],
        "account_id": [c[0] for c in calls],
        "service": ["voice"] * len(calls), "destination_group": ["US"] * len(calls),
        "started_at": [datetime(2026, 1, 1, 12) + timedelta(days=c[1]) for c in calls],
        "quantity_units": [c[2] * M for c in calls],
        "amount_units": [c[2] * 100_000 for c in calls],
    }, schema_overrides={"started_at": pl.Datetime("us"), "account_id": pl.Utf8,
                         "event_id": pl.Utf8, "service": pl.Utf8,
                         "destination_group": pl.Utf8})
    plain = compute_charges(PLAIN, ACCOUNTS, life, usage, pl.DataFrame(), period)
    extras = compute_charges(EXTRAS, ACCOUNTS, life, usage, pl.DataFrame(), period)
    assert extras.charges.equals(plain.charges)
    assert extras.invoices.equals(plain.invoices)
    assert extras.counters_after.equals(plain.counters_after)
    assert extras.usage_detail.equals(plain.usage_detail)
    assert extras.parcels.height == 0
