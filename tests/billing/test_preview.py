"""`billing.preview`: one account billed as it stands and with hypothetical changes (SPEC §8.4).

Amounts worked out by hand (billing day 1): $30 a month from June 11 is 30 × 20/30 = 20.00.
"""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest

from billing.bill import BillInputs
from billing.preview import (
    AddAddon,
    ChangeAssignment,
    EndAssignment,
    PreviewError,
    preview,
)
from pipeline.catalog import parse_catalog
from pipeline.contracts import CHANGE_SCHEMA, COUNTER_INPUT_SCHEMA, LOCK_SCHEMA

NO_COUNTERS = pl.DataFrame(schema=COUNTER_INPUT_SCHEMA)


def catalog(activation_fee: str = "0", policy: str = "immediate") -> object:
    entry = {"service": "voice", "destination_group": "US", "threshold_type": "quantity",
             "tiers": [[0, 100], [100, 0]]}
    return parse_catalog({
        "currencies": {"USD": 2},
        "main_products": [{"id": "MP", "name": "Main",
                           "available_addons": ["TV", "VOICE_A", "VOICE_B"]}],
        "addons": [
            {"id": "TV", "name": "TV pack", "priority": 10, "subscription": "S_TV"},
            {"id": "VOICE_A", "name": "Voice A", "priority": 20, "discount_plan": "DA",
             "subscription": "S_VA"},
            {"id": "VOICE_B", "name": "Voice B", "priority": 20, "discount_plan": "DB",
             "subscription": "S_VB"},
        ],
        "subscriptions": [
            {"id": "S_TV", "activation_fee": activation_fee, "plan_change": policy,
             "fee_plans": [{"id": "TV1", "term_months": 1, "fee": "30.00", "currency": "USD"},
                           {"id": "TV6", "term_months": 6, "fee": "150.00",
                            "currency": "USD"}]},
            {"id": "S_VA", "fee_plans": [{"id": "VA1", "term_months": 1, "fee": "30.00",
                                          "currency": "USD"}]},
            {"id": "S_VB", "fee_plans": [{"id": "VB1", "term_months": 1, "fee": "15.00",
                                          "currency": "USD"}]},
        ],
        "discount_plans": [{"id": "DA", "entries": [entry]}, {"id": "DB", "entries": [entry]}],
    })


def inputs(cat: object, *assignments: tuple[str, str, str, date]) -> BillInputs:
    return BillInputs(
        catalog=cat, policy="replace",  # type: ignore[arg-type]
        accounts=pl.DataFrame(
            [{"account_id": "A", "currency": "USD", "main_product_id": "MP", "billing_day": 1,
              "status": "active", "opened_on": date(2025, 1, 1), "closed_on": None,
              "effective_from": date(2025, 1, 1)}], schema_overrides={"closed_on": pl.Date}),
        assignments=pl.DataFrame(
            [{"assignment_id": a, "account_id": "A", "addon_id": addon, "fee_plan_id": plan,
              "start_date": start, "end_date": None, "assigned_at": datetime(2026, 1, 1),
              "quantity": 1} for a, addon, plan, start in assignments],
            schema={"assignment_id": pl.Utf8, "account_id": pl.Utf8, "addon_id": pl.Utf8,
                    "fee_plan_id": pl.Utf8, "start_date": pl.Date, "end_date": pl.Date,
                    "assigned_at": pl.Datetime("us"), "quantity": pl.Int64}),
        locks=pl.DataFrame(schema=LOCK_SCHEMA),
        changes=pl.DataFrame(schema=CHANGE_SCHEMA),
    )


def run(given: BillInputs, *items: object, periods: tuple[str, ...] = ("2026-06", "2026-07")):
    return preview(given, items, periods,  # type: ignore[arg-type]
                   counters_before={p: NO_COUNTERS for p in periods})


@pytest.mark.parametrize("fee, extra", [("0", []), ("10.00", [1000])])
def test_adding_30_monthly_from_june_11_is_20_dollars(fee: str, extra: list[int]) -> None:
    got = run(inputs(catalog(fee)), AddAddon("TV", "TV1", date(2026, 6, 11)))
    june, july = got.periods
    assert june.total_before == 0 and june.total_after == 2000 + sum(extra)
    assert sorted(june.lines["amount_after"].to_list()) == sorted([2000, *extra])
    assert july.total_after == 3000
    assert got.new_ids == {0: "preview-1"}
    eligible = got.decisions.filter(pl.col("outcome") == "eligible")
    assert eligible["assignment_id"].to_list() == ["preview-1"]


def test_a_same_priority_add_on_replaces_the_existing_one() -> None:
    given = inputs(catalog(), ("S1", "VOICE_A", "VA1", date(2026, 1, 1)))
    got = run(given, AddAddon("VOICE_B", "VB1", date(2026, 6, 11)))
    june = got.periods[0]
    # VOICE_A ends June 11: credit 30 × 20/30 = -20.00; VOICE_B 15 × 20/30 = 10.00.
    assert june.total_before == 3000
    assert june.total_after == 3000 - 2000 + 1000
    replaced = got.decisions.filter(pl.col("outcome") == "replaced")
    assert replaced["assignment_id"].to_list() == ["S1"]
    assert "preview-1" in replaced["reason"][0]


def test_ending_an_add_on_mid_term_credits_the_rest() -> None:
    given = inputs(catalog(), ("S1", "TV", "TV1", date(2026, 1, 1)))
    got = run(given, EndAssignment("S1", date(2026, 6, 21)))
    june, july = got.periods
    # 30 × 10/30 unused days = -10.00.
    assert (june.total_before, june.total_after) == (3000, 2000)
    assert (july.total_before, july.total_after) == (3000, 0)


@pytest.mark.parametrize("policy, june, took_effect", [
    # immediate, 06-11: 30.00 - 30 × 20/30, and the new plan's partial first term up to the
    # first boundary 07-01, against the full term 01-01..07-01 (181 days): 150 × 20/181 = 16.57.
    ("immediate", 3000 - 2000 + 1657, date(2026, 6, 11)),
    ("end_of_term", 3000, date(2026, 7, 1)),
    ("upgrades_now", 3000, date(2026, 7, 1)),  # 150/6 = 25 a month is not above 30
])
def test_a_plan_change_under_each_policy(policy: str, june: int, took_effect: date) -> None:
    given = inputs(catalog(policy=policy), ("S1", "TV", "TV1", date(2026, 1, 1)))
    got = run(given, ChangeAssignment("S1", date(2026, 6, 11), fee_plan_id="TV6"))
    assert got.periods[0].total_after == june
    assert got.plan_changes.select("takes_effect_on", "status").row(0) == (
        took_effect, "in effect")


def test_no_change_bills_as_it_stands() -> None:
    given = inputs(catalog(), ("S1", "TV", "TV1", date(2026, 1, 1)))
    got = run(given)
    for shown in got.periods:
        assert shown.total_before == shown.total_after == 3000
        assert shown.lines["difference"].to_list() == [0]
    assert got.decisions.height == 0


def test_an_unknown_assignment_is_refused() -> None:
    with pytest.raises(PreviewError, match="unknown assignment 'NOPE'"):
        run(inputs(catalog()), EndAssignment("NOPE", date(2026, 6, 1)))
