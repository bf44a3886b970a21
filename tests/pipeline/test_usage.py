"""Usage lines and discounts (pipeline/usage/): entry selection, counters, tier splitting.

Amounts are worked out by hand in each test: minutes times the price, times the tier's
percentage, summed exactly and rounded once per line, half away from zero.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.catalog import catalog_frames, parse_catalog
from pipeline.charges import account_context
from pipeline.usage import UsageResult, usage_charges
from pipeline.usage import rating as usage_module

M = 1_000_000  # one unit (a minute, an SMS, a dollar) in 10^-6
PICO = 10**12

CATALOG = catalog_frames(parse_catalog({
    "currencies": {"USD": 2, "JPY": 0},
    "main_products": [
        {"id": "MP_NONE", "name": "None"},
        {"id": "MP_PLUS", "name": "Plus", "discount_plan": "MDP"},
    ],
    "addons": [
        {"id": "V100", "name": "100 free", "priority": 20, "discount_plan": "FREE100"},
        {"id": "V200", "name": "200 free", "priority": 20, "discount_plan": "FREE200"},
        {"id": "HALF", "name": "Half price", "priority": 30, "discount_plan": "HALF"},
        {"id": "INTL", "name": "Intl saver", "priority": 25, "discount_plan": "TIERS"},
        {"id": "SPEND", "name": "Spend saver", "priority": 40, "discount_plan": "SPEND"},
        {"id": "SMS", "name": "SMS bundle", "priority": 15, "discount_plan": "DAILY"},
        {"id": "ROAM", "name": "Roaming life", "priority": 35, "discount_plan": "LIFE"},
        {"id": "TV", "name": "TV pack", "priority": 50},
    ],
    "discount_plans": [
        {"id": "FREE100", "entries": [{"service": "voice", "destination_group": "US",
                                       "threshold_type": "quantity",
                                       "tiers": [[0, 100], [100, 0]]}]},
        {"id": "FREE200", "entries": [{"service": "voice", "destination_group": "US",
                                       "threshold_type": "quantity",
                                       "tiers": [[0, 100], [200, 0]]}]},
        {"id": "HALF", "entries": [{"service": "voice", "destination_group": "US",
                                    "threshold_type": "quantity", "tiers": [[0, 50]]}]},
        {"id": "TIERS", "entries": [{"service": "voice", "destination_group": "INTL",
                                     "threshold_type": "quantity",
                                     "tiers": [[0, 0], [400, 10], [1100, 20]]}]},
        {"id": "SPEND", "entries": [{"service": "voice", "destination_group": "INTL",
                                     "threshold_type": "amount",
                                     "tiers": [[0, 0], [20, 5], [50, 12.5]]}]},
        {"id": "DAILY", "entries": [{"service": "sms", "destination_group": "ANY",
                                     "threshold_type": "quantity", "reset": "daily",
                                     "tiers": [[0, 100], [50, 0]]}]},
        {"id": "LIFE", "entries": [{"service": "voice", "destination_group": "ROAM",
                                    "threshold_type": "quantity", "reset": "never",
                                    "tiers": [[0, 100], [500, 0]]}]},
        {"id": "MDP", "entries": [{"service": "voice", "destination_group": "US",
                                   "threshold_type": "quantity",
                                   "tiers": [[0, 0], [1000, 5]]}]},
    ],
}))

EMPTY_COUNTERS = pl.DataFrame(schema={
    "account_id": pl.Utf8, "service": pl.Utf8, "destination_group": pl.Utf8,
    "threshold_type": pl.Utf8, "window_start": pl.Date, "value_units": pl.Int64,
})


def accounts(*rows: tuple[str, str, int, str, date]) -> pl.DataFrame:
    """(account_id, main_product_id, billing_day, currency, effective_from) rows."""
    return pl.DataFrame({
        "account_id": [r[0] for r in rows],
        "currency": [r[3] for r in rows],
        "main_product_id": [r[1] for r in rows],
        "billing_day": [r[2] for r in rows],
        "status": ["active"] * len(rows),
        "opened_on": [date(2020, 1, 1)] * len(rows),
        "closed_on": [None] * len(rows),
        "effective_from": [r[4] for r in rows],
    }, schema_overrides={"closed_on": pl.Date})


ONE_ACCOUNT = accounts(("A", "MP_NONE", 1, "USD", date(2020, 1, 1)))


def assignments(*rows: tuple) -> pl.DataFrame:
    """(assignment_id, addon_id, eff_start, eff_end[, assigned_at[, account_id]]) rows."""
    full = [(*r, *[None] * (6 - len(r))) for r in rows]
    return pl.DataFrame({
        "assignment_id": [r[0] for r in full],
        "account_id": [r[5] or "A" for r in full],
        "addon_id": [r[1] for r in full],
        "fee_plan_id": [None] * len(full),
        "quantity": [1] * len(full),
        "assigned_at": [r[4] or datetime(2020, 1, 1) for r in full],
        "start_date": [r[2] for r in full],
        "end_date": [r[3] for r in full],
        "eff_start": [r[2] for r in full],
        "eff_end": [r[3] for r in full],
        "billable": [True] * len(full),
        "end_reason": [None] * len(full),
    }, schema={
        "assignment_id": pl.Utf8, "account_id": pl.Utf8, "addon_id": pl.Utf8,
        "fee_plan_id": pl.Utf8, "quantity": pl.Int64, "assigned_at": pl.Datetime("us"),
        "start_date": pl.Date, "end_date": pl.Date, "eff_start": pl.Date, "eff_end": pl.Date,
        "billable": pl.Boolean, "end_reason": pl.Utf8,
    })


def events(*rows: tuple) -> pl.DataFrame:
    """(event_id, service, group, started_at, quantity, amount[, account_id]) rows; quantity
    and amount as decimal text."""
    full = [(*r, *[None] * (7 - len(r))) for r in rows]
    return pl.DataFrame({
        "event_id": [r[0] for r in full],
        "account_id": [r[6] or "A" for r in full],
        "service": [r[1] for r in full],
        "destination_group": [r[2] for r in full],
        "started_at": [r[3] for r in full],
        "quantity_units": [int(Decimal(r[4]) * M) for r in full],
        "amount_units": [int(Decimal(r[5]) * M) for r in full],
    }, schema_overrides={"started_at": pl.Datetime("us")})


def run(lifecycles: pl.DataFrame, usage: pl.DataFrame, period: str = "2026-06",
        account_rows: pl.DataFrame = ONE_ACCOUNT, counters_before: pl.DataFrame = EMPTY_COUNTERS,
        cutoff: date | None = None) -> UsageResult:
    context = account_context(CATALOG, account_rows, period, cutoff)
    return usage_charges(CATALOG, account_rows, lifecycles, usage, counters_before, context,
                         period)


def line_amounts(result: UsageResult) -> list[tuple]:
    """(line_type, assignment_id, addon_id, service, group, amount_minor), sorted."""
    return sorted(
        result.lines.select("line_type", "assignment_id", "addon_id", "service",
                            "destination_group", "amount_minor").rows(),
        key=lambda r: tuple("" if v is None else str(v) for v in r),
    )


def at(day: int, hour: int = 12, month: int = 6) -> datetime:
    return datetime(2026, month, day, hour)


def test_portabilling_two_free_minutes_left_and_an_eight_minute_call() -> None:
    # 98 of 100 free minutes used; then 8 minutes at 0.10: 2 free, 6 paid = 0.60.
    result = run(
        assignments(("S1", "V100", date(2026, 6, 1), None)),
        events(("e1", "voice", "US", at(2), "98", "9.80"), ("e2", "voice", "US", at(12), "8",
                                                            "0.80")),
    )
    call = result.detail.filter(pl.col("event_id") == "e2").sort("tier_no")
    assert call.select("pct", "quantity_units", "amount_pico", "discount_pico").rows() == [
        (10000, 2 * M, 20 * PICO // 100, 20 * PICO // 100),  # 2 min, 0.20, 100 % off
        (0, 6 * M, 60 * PICO // 100, 0),  # 6 min, 0.60, nothing off
    ]
    assert call.select("counter_from_units", "counter_to_units").rows() == [
        (98 * M, 100 * M), (100 * M, 106 * M)
    ]
    # Lines: usage 9.80 + 0.80 = 10.60; discount 9.80 + 0.20 = 10.00; the call nets 0.60.
    assert line_amounts(result) == [
        ("discount", "S1", "V100", "voice", "US", -1000),
        ("usage", "S1", "V100", "voice", "US", 1060),
    ]


@pytest.mark.parametrize("calls", [1, 3, 15])
def test_tiers_over_1500_minutes(calls: int) -> None:
    # 0 -> 0 %, 400 -> 10 %, 1100 -> 20 %; 1500 minutes at 0.01:
    # 700 x 0.01 x 10 % + 400 x 0.01 x 20 % = 0.70 + 0.80 = 1.50, however the calls fall.
    minutes = 1500 // calls
    usage = events(*[
        (f"e{i:02d}", "voice", "INTL", at(1 + i), str(minutes), str(Decimal(minutes) / 100))
        for i in range(calls)
    ])
    result = run(assignments(("S1", "INTL", date(2026, 1, 1), None)), usage)
    assert line_amounts(result) == [
        ("discount", "S1", "INTL", "voice", "INTL", -150),
        ("usage", "S1", "INTL", "voice", "INTL", 1500),
    ]
    assert result.counters_after.select("window_start", "value_units", "reset").rows() == [
        (date(2026, 6, 1), 1500 * M, "billing_period")
    ]


def test_counter_carries_over_when_an_addon_replaces_another_with_the_same_entry() -> None:
    # 100 free until June 15, then 200 free (the rules layer ended S1 when S2 started).
    # 80 minutes before the change; after it only 200 - 80 = 120 are free, not 200:
    # of 150 minutes at 0.10, 120 free (12.00) and 30 paid.
    result = run(
        assignments(("S1", "V100", date(2026, 5, 1), date(2026, 6, 15)),
                    ("S2", "V200", date(2026, 6, 15), None)),
        events(("e1", "voice", "US", at(10), "80", "8.00"),
               ("e2", "voice", "US", at(20), "150", "15.00")),
    )
    assert line_amounts(result) == [
        ("discount", "S1", "V100", "voice", "US", -800),
        ("discount", "S2", "V200", "voice", "US", -1200),
        ("usage", "S1", "V100", "voice", "US", 800),
        ("usage", "S2", "V200", "voice", "US", 1500),
    ]
    assert result.counters_after.select("threshold_type", "value_units").rows() == [
        ("quantity", 230 * M)
    ]


def test_the_higher_priority_addon_takes_the_event() -> None:
    # HALF (priority 30) beats V100 (priority 20): 10 minutes at 0.10 -> 50 % off = 0.50.
    result = run(
        assignments(("S1", "V100", date(2026, 1, 1), None), ("S2", "HALF", date(2026, 6, 5),
                                                            date(2026, 6, 10))),
        events(("e1", "voice", "US", at(6), "10", "1.00"),
               ("e2", "voice", "US", at(12), "10", "1.00")),
    )
    # e1 (June 6) is HALF's; e2 (June 12, after HALF ended) is V100's and free.
    assert line_amounts(result) == [
        ("discount", "S1", "V100", "voice", "US", -100),
        ("discount", "S2", "HALF", "voice", "US", -50),
        ("usage", "S1", "V100", "voice", "US", 100),
        ("usage", "S2", "HALF", "voice", "US", 100),
    ]


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [
        (("S1", datetime(2026, 1, 1)), ("S2", datetime(2026, 2, 1)), "S2"),  # later assigned
        (("S2", datetime(2026, 2, 1)), ("S1", datetime(2026, 1, 1)), "S2"),
        (("S1", datetime(2026, 1, 1)), ("S2", datetime(2026, 1, 1)), "S2"),  # then larger id
    ],
)
def test_a_priority_tie_goes_to_the_later_assignment(first: tuple, second: tuple,
                                                     winner: str) -> None:
    lifecycles = assignments(
        (first[0], "V100", date(2026, 1, 1), None, first[1]),
        (second[0], "V200", date(2026, 1, 1), None, second[1]),
    )
    result = run(lifecycles, events(("e1", "voice", "US", at(3), "10", "1.00")))
    assert result.lines.filter(pl.col("line_type") == "usage")["assignment_id"].to_list() == [
        winner
    ]


def test_the_main_product_plan_applies_when_no_addon_has_an_entry() -> None:
    # MP_PLUS: 0 -> 0 %, 1000 -> 5 % on voice/US. V100 holds June 1..10 only.
    # June 3: 50 min at 0.01 with V100 -> free (0.50). June 12..: 1200 minutes at 0.01 on the
    # main product's own counter window... which is the same counter (account, voice, US,
    # quantity, period): it starts at 50, so 1200 + 50 - 1000 = 250 minutes at 5 % of 0.01.
    result = run(
        assignments(("S1", "V100", date(2026, 1, 1), date(2026, 6, 10))),
        events(("e1", "voice", "US", at(3), "50", "0.50"),
               ("e2", "voice", "US", at(12), "1200", "12.00"),
               ("e3", "data", "ANY", at(12), "7", "0.35")),
        account_rows=accounts(("A", "MP_PLUS", 1, "USD", date(2020, 1, 1))),
    )
    # 250 x 0.01 x 5 % = 0.125 -> 0.13 (half away from zero).
    assert line_amounts(result) == [
        ("discount", None, "MP_PLUS", "voice", "US", -13),
        ("discount", "S1", "V100", "voice", "US", -50),
        ("usage", None, None, "data", "ANY", 35),
        ("usage", None, "MP_PLUS", "voice", "US", 1200),
        ("usage", "S1", "V100", "voice", "US", 50),
    ]
    descriptions = dict(result.lines.select("addon_id", "description").rows())
    assert descriptions["MP_PLUS"].endswith("Plus (main product)")


def test_the_main_product_at_the_event_date_applies() -> None:
    # MP_NONE until June 15, then MP_PLUS (a product change row): only the later event can use
    # MDP, and it does: 1100 minutes after the change, tier 1000 -> 5 % on 100 of them.
    result = run(
        assignments(),
        events(("e1", "voice", "US", at(5), "1100", "11.00"),
               ("e2", "voice", "US", at(20), "1100", "11.00")),
        account_rows=accounts(("A", "MP_NONE", 1, "USD", date(2020, 1, 1)),
                              ("A", "MP_PLUS", 1, "USD", date(2026, 6, 15))),
    )
    assert line_amounts(result) == [
        ("discount", None, "MP_PLUS", "voice", "US", -5),  # 100 x 0.01 x 5 %
        ("usage", None, None, "voice", "US", 1100),
        ("usage", None, "MP_PLUS", "voice", "US", 1100),
    ]


def test_daily_reset() -> None:
    # 50 free SMS a day at 0.05: June 1 has 40 + 20 (10 paid), June 2 has 60 (10 paid).
    result = run(
        assignments(("S1", "SMS", date(2026, 1, 1), None)),
        events(("e1", "sms", "ANY", at(1, 8), "40", "2.00"),
               ("e2", "sms", "ANY", at(1, 9), "20", "1.00"),
               ("e3", "sms", "ANY", at(2, 9), "60", "3.00")),
    )
    assert line_amounts(result) == [
        ("discount", "S1", "SMS", "sms", "ANY", -500),  # 100 free SMS x 0.05
        ("usage", "S1", "SMS", "sms", "ANY", 600),
    ]
    assert result.counters_after.select("window_start", "value_units", "reset").rows() == [
        (date(2026, 6, 1), 60 * M, "daily"),
        (date(2026, 6, 2), 60 * M, "daily"),
    ]


def test_a_never_reset_counter_continues_from_counters_before() -> None:
    # 500 roaming minutes for life, 480 used in earlier periods: of 30 minutes at 0.50,
    # 20 are free (10.00) and 10 paid.
    before = pl.DataFrame({
        "account_id": ["A", "A", "Z"],
        "service": ["voice", "sms", "voice"],
        "destination_group": ["ROAM", "ANY", "ROAM"],
        "threshold_type": ["quantity"] * 3,
        "window_start": [date(1970, 1, 1)] * 3,
        "value_units": [480 * M, 7 * M, 9 * M],
    })
    result = run(
        assignments(("S1", "ROAM", date(2025, 1, 1), None)),
        events(("e1", "voice", "ROAM", at(9), "30", "15.00")),
        counters_before=before,
    )
    assert line_amounts(result) == [
        ("discount", "S1", "ROAM", "voice", "ROAM", -1000),
        ("usage", "S1", "ROAM", "voice", "ROAM", 1500),
    ]
    # The touched window moves on; A's other never window is carried; Z is not in this run.
    assert result.counters_after.select(
        "account_id", "service", "window_start", "value_units", "reset"
    ).rows() == [
        ("A", "sms", date(1970, 1, 1), 7 * M, "never"),
        ("A", "voice", date(1970, 1, 1), 510 * M, "never"),
    ]


def test_amount_threshold_splits_in_amount_space() -> None:
    # Spend tiers 0 -> 0 %, 20 -> 5 %, 50 -> 12.5 %. 15.00 spent, then a 40.00 call of 80 min:
    # 5.00 at 0 %, 30.00 at 5 % = 1.50, 5.00 at 12.5 % = 0.625; 2.125 -> 2.13.
    result = run(
        assignments(("S1", "SPEND", date(2026, 1, 1), None)),
        events(("e1", "voice", "INTL", at(2), "30", "15.00"),
               ("e2", "voice", "INTL", at(3), "80", "40.00")),
    )
    assert line_amounts(result) == [
        ("discount", "S1", "SPEND", "voice", "INTL", -213),
        ("usage", "S1", "SPEND", "voice", "INTL", 5500),
    ]
    parts = result.detail.filter(pl.col("event_id") == "e2").sort("tier_no")
    assert parts.select("quantity_units", "amount_pico", "discount_pico").rows() == [
        (10 * M, 5 * PICO, 0),  # 5.00 of 40.00 is 10 of the 80 minutes
        (60 * M, 30 * PICO, 150 * PICO // 100),
        (10 * M, 5 * PICO, 625 * PICO // 1000),
    ]
    assert result.lines.filter(pl.col("line_type") == "discount")["quantity_units"].to_list() == [
        70 * M  # the minutes that got a discount
    ]


def test_jpy_lines_round_to_whole_yen() -> None:
    # 101 minutes at 0.5 yen: usage 50.5 -> 51 yen; 100 free minutes -> 50 yen off.
    # Data: 3 x 333.5 = 1000.5 -> 1001 yen.
    result = run(
        assignments(("S1", "V100", date(2026, 1, 1), None)),
        events(("e1", "voice", "US", at(4), "101", "50.5"),
               *[(f"d{i}", "data", "ANY", at(5 + i), "1", "333.5") for i in range(3)]),
        account_rows=accounts(("A", "MP_NONE", 1, "JPY", date(2020, 1, 1))),
    )
    assert line_amounts(result) == [
        ("discount", "S1", "V100", "voice", "US", -50),
        ("usage", None, None, "data", "ANY", 1001),
        ("usage", "S1", "V100", "voice", "US", 51),
    ]
    assert set(result.lines["currency"]) == {"JPY"}


def test_billing_day_15_bounds_the_events_and_the_window() -> None:
    result = run(
        assignments(("S1", "V100", date(2026, 1, 1), None)),
        events(("e1", "voice", "US", at(14), "10", "1.00"),
               ("e2", "voice", "US", at(15, 0), "10", "1.00"),
               ("e3", "voice", "US", at(14, 23, month=7), "10", "1.00"),
               ("e4", "voice", "US", at(15, 0, month=7), "10", "1.00")),
        account_rows=accounts(("A", "MP_NONE", 15, "USD", date(2020, 1, 1))),
    )
    assert sorted(result.detail["event_id"]) == ["e2", "e3"]
    assert result.counters_after.select("window_start", "value_units").rows() == [
        (date(2026, 6, 15), 20 * M)
    ]
    assert set(result.lines["line_date"]) == {date(2026, 7, 14)}


def test_cutoff_counts_events_before_the_next_day_only() -> None:
    usage = events(("e1", "voice", "US", at(9, 23), "60", "6.00"),
                   ("e2", "voice", "US", at(10, 0), "60", "6.00"))
    result = run(assignments(("S1", "V100", date(2026, 1, 1), None)), usage,
                 cutoff=date(2026, 6, 9))
    assert line_amounts(result) == [
        ("discount", "S1", "V100", "voice", "US", -600),
        ("usage", "S1", "V100", "voice", "US", 600),
    ]
    assert result.counters_after["value_units"].to_list() == [60 * M]
    assert set(result.lines["line_date"]) == {date(2026, 6, 9)}


def test_events_at_the_same_instant_count_in_event_id_order() -> None:
    # Both at 12:00; e1 (60 min at 0.10) counts first and is free; e2 (60 min at 0.20) gets
    # the 40 free minutes left: 6.00 + 40 x 0.20 = 14.00 (the other order would give 16.00).
    result = run(
        assignments(("S1", "V100", date(2026, 1, 1), None)),
        events(("e2", "voice", "US", at(3), "60", "12.00"),
               ("e1", "voice", "US", at(3), "60", "6.00")),
    )
    assert ("discount", "S1", "V100", "voice", "US", -1400) in line_amounts(result)


def test_a_zero_quantity_event_takes_the_tier_its_counter_is_in() -> None:
    # A 0.50 set-up charge with no minutes while the free tier holds: 100 % off.
    result = run(
        assignments(("S1", "V100", date(2026, 1, 1), None)),
        events(("e1", "voice", "US", at(3), "0", "0.50")),
    )
    assert ("discount", "S1", "V100", "voice", "US", -50) in line_amounts(result)


def test_events_outside_the_accounts_or_the_period_are_ignored() -> None:
    result = run(
        assignments(),
        events(("e1", "data", "ANY", at(3), "1", "1.00", "NOBODY"),
               ("e2", "data", "ANY", at(3, month=5), "1", "1.00"),
               ("e3", "data", "ANY", at(3), "1", "1.00")),
    )
    assert result.lines.select("line_type", "amount_minor").rows() == [("usage", 100)]


def test_ineligible_assignments_do_not_discount() -> None:
    lifecycles = assignments(("S1", "V100", date(2026, 1, 1), None)).with_columns(
        billable=pl.lit(False)
    )
    result = run(lifecycles, events(("e1", "voice", "US", at(3), "10", "1.00")))
    assert line_amounts(result) == [("usage", None, None, "voice", "US", 100)]


SERVICES = [("voice", "US"), ("voice", "INTL"), ("voice", "ROAM"), ("sms", "ANY"),
            ("data", "ANY")]

event_rows = st.lists(
    st.tuples(
        st.sampled_from(SERVICES),
        st.integers(1, 30),  # day
        st.integers(0, 23),  # hour
        st.integers(0, 300 * M),  # quantity
        st.integers(0, 40 * M),  # amount
    ),
    min_size=1,
    max_size=40,
)


def random_usage(rows: list[tuple]) -> pl.DataFrame:
    """Account A's events from `event_rows`, in June 2026, ids e000, e001, ..."""
    return pl.DataFrame({
        "event_id": [f"e{i:03d}" for i in range(len(rows))],
        "account_id": ["A"] * len(rows),
        "service": [r[0][0] for r in rows],
        "destination_group": [r[0][1] for r in rows],
        "started_at": [datetime(2026, 6, r[1], r[2]) for r in rows],
        "quantity_units": [r[3] for r in rows],
        "amount_units": [r[4] for r in rows],
    })


def roam_counter(value: int) -> pl.DataFrame:
    """Account A's never-reset voice/ROAM counter at `value` before the period."""
    return EMPTY_COUNTERS.vstack(pl.DataFrame({
        "account_id": ["A"], "service": ["voice"], "destination_group": ["ROAM"],
        "threshold_type": ["quantity"], "window_start": [date(1970, 1, 1)],
        "value_units": [value],
    }))


# The random runs' account and add-ons: every entry kind, add-ons replacing one another.
RANDOM_ACCOUNT = accounts(("A", "MP_PLUS", 1, "USD", date(2020, 1, 1)))
RANDOM_LIFECYCLES = assignments(
    ("S1", "V100", date(2026, 1, 1), date(2026, 6, 10)),
    ("S2", "V200", date(2026, 6, 10), None),
    ("S3", "INTL", date(2026, 6, 5), None),
    ("S4", "SPEND", date(2026, 6, 1), date(2026, 6, 20)),
    ("S5", "SMS", date(2026, 6, 3), None),
    ("S6", "ROAM", date(2026, 1, 1), None),
)


def random_run(rows: list[tuple], roam_before: int) -> UsageResult:
    return run(RANDOM_LIFECYCLES, random_usage(rows), counters_before=roam_counter(roam_before),
               account_rows=RANDOM_ACCOUNT)


@settings(max_examples=60, deadline=None)
@given(rows=event_rows, roam_before=st.integers(0, 600 * M))
def test_discounts_are_never_negative_nor_above_the_usage(rows: list[tuple],
                                                         roam_before: int) -> None:
    result = random_run(rows, roam_before)
    per_event = result.detail.group_by("event_id").agg(
        pl.col("amount_pico").sum(), pl.col("discount_pico").sum(), pl.col("discount_pico").min()
        .alias("smallest"), pl.col("quantity_units").sum(),
    )
    for _, amount, discount, smallest, _ in per_event.rows():
        assert smallest >= 0
        assert 0 <= discount <= amount
    lines = result.lines
    usage = {(r[0], r[1]): r[2] for r in lines.filter(pl.col("line_type") == "usage").select(
        "service", "addon_id", "amount_minor").rows()}
    for service, addon, amount in lines.filter(pl.col("line_type") == "discount").select(
            "service", "addon_id", "amount_minor").rows():
        assert -usage[(service, addon)] <= amount <= 0


@settings(max_examples=60, deadline=None)
@given(rows=event_rows, roam_before=st.integers(0, 600 * M))
def test_counters_are_monotone_within_a_window_and_parts_add_up(rows: list[tuple],
                                                              roam_before: int) -> None:
    result = random_run(rows, roam_before)
    usage = {f"e{i:03d}": (r[3], r[4]) for i, r in enumerate(rows)}
    window = ["service", "destination_group", "threshold_type", "window_start"]
    for key, parts in result.detail.sort("started_at", "event_id", "tier_no").group_by(
            window, maintain_order=True):
        previous = None
        for event_id, event_parts in parts.group_by("event_id", maintain_order=True):
            froms = event_parts["counter_from_units"].to_list()
            tos = event_parts["counter_to_units"].to_list()
            assert all(a <= b for a, b in zip(froms, tos, strict=True))
            assert all(b == a for a, b in zip(tos, froms[1:], strict=False))  # parts are contiguous
            if previous is not None:
                assert froms[0] == previous  # the counter never goes back
            previous = tos[-1]
            quantity, amount = usage[event_id[0]]
            assert event_parts["quantity_units"].sum() == quantity
            assert event_parts["amount_pico"].sum() == amount * M
        after = result.counters_after.filter(
            (pl.col("service") == key[0]) & (pl.col("destination_group") == key[1])
            & (pl.col("threshold_type") == key[2]) & (pl.col("window_start") == key[3])
        )
        assert after["value_units"].to_list() == [previous]


def test_pairs_matched_by_join_or_by_comparisons_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [(("voice", "US"), 2, 1, 120 * M, 12 * M), (("sms", "ANY"), 3, 1, 70 * M, 3 * M),
            (("voice", "INTL"), 4, 1, 900 * M, 9 * M), (("video", "ANY"), 4, 1, M, M)]
    compared = random_run(rows, 0)
    monkeypatch.setattr(usage_module, "MAX_COMPARED_PAIRS", 0)
    joined = random_run(rows, 0)
    assert compared.lines.sort("line_type", "service", "destination_group", "addon_id").equals(
        joined.lines.sort("line_type", "service", "destination_group", "addon_id")
    )
    assert compared.detail.equals(joined.detail)
