"""SPEC §7.3 quota rollover, to the cent (pipeline/usage/rollover.py, rules/promotions.py).

100 free minutes a period at $0.10 a minute, billing day 1. Each period is billed with the
parcels the previous one left, as a catch-up run does; the expected discounts are worked out by
hand: free minutes × 0.10.
"""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.catalog import CatalogError, CatalogFrames, catalog_frames, parse_catalog
from pipeline.charges import ChargesResult, compute_charges
from pipeline.usage.rollover import empty_parcels
from rules.promotions import with_verdicts

M = 1_000_000


def catalog(rollover: int | None = 1, second_rollover: int | None = None,
            main_plan: bool = False) -> CatalogFrames:
    """Add-on Q100 (100 free voice/US minutes, `rollover`); Q100B the same at equal priority.
    `main_plan`: the main product MP has a plan on the same counter key without rollover (5 %
    off from the 1000th minute, so 0 % on every call here)."""
    def entry(n: int | None) -> dict:
        base = {"service": "voice", "destination_group": "US", "threshold_type": "quantity",
                "tiers": [[0, 100], [100, 0]]}
        return base if n is None else {**base, "rollover": n}

    main = {"service": "voice", "destination_group": "US", "threshold_type": "quantity",
            "tiers": [[0, 0], [1000, 5]]}
    return with_verdicts(catalog_frames(parse_catalog({
        "currencies": {"USD": 2},
        "main_products": [{"id": "MP", "name": "Main", "available_addons": ["Q100", "Q100B"],
                           "discount_plan": "MDP" if main_plan else None}],
        "addons": [
            {"id": "Q100", "name": "100 free", "priority": 20, "discount_plan": "DP"},
            {"id": "Q100B", "name": "100 free bis", "priority": 20, "discount_plan": "DPB"},
        ],
        "discount_plans": [{"id": "DP", "entries": [entry(rollover)]},
                           {"id": "DPB", "entries": [entry(second_rollover)]},
                           {"id": "MDP", "entries": [main]}],
    })))


ACCOUNTS = pl.DataFrame({
    "account_id": ["A"], "currency": ["USD"], "main_product_id": ["MP"], "billing_day": [1],
    "status": ["active"], "opened_on": [date(2020, 1, 1)], "closed_on": [None],
    "effective_from": [date(2020, 1, 1)],
}, schema_overrides={"closed_on": pl.Date})


def lifecycles(*rows: tuple[str, str, date, date | None]) -> pl.DataFrame:
    """(assignment_id, addon_id, eff_start, eff_end) on account A."""
    return pl.DataFrame({
        "assignment_id": [r[0] for r in rows], "account_id": ["A"] * len(rows),
        "addon_id": [r[1] for r in rows], "fee_plan_id": [None] * len(rows),
        "quantity": [1] * len(rows),
        "assigned_at": [datetime(2020, 1, 1, i) for i in range(len(rows))],
        "eff_start": [r[2] for r in rows], "eff_end": [r[3] for r in rows],
        "billable": [True] * len(rows),
    }, schema={"assignment_id": pl.Utf8, "account_id": pl.Utf8, "addon_id": pl.Utf8,
               "fee_plan_id": pl.Utf8, "quantity": pl.Int64, "assigned_at": pl.Datetime("us"),
               "eff_start": pl.Date, "eff_end": pl.Date, "billable": pl.Boolean})


ALWAYS = lifecycles(("S1", "Q100", date(2026, 1, 1), None))


def calls(minutes: dict[str, int]) -> pl.DataFrame:
    """One call on the 15th of each period, of the given minutes at 0.10."""
    return pl.DataFrame({
        "event_id": [f"e{p}" for p in minutes],
        "account_id": ["A"] * len(minutes),
        "service": ["voice"] * len(minutes), "destination_group": ["US"] * len(minutes),
        "started_at": [datetime(int(p[:4]), int(p[5:]), 15, 12) for p in minutes],
        "quantity_units": [m * M for m in minutes.values()],
        "amount_units": [m * 100_000 for m in minutes.values()],
    }, schema_overrides={"started_at": pl.Datetime("us")})


def catch_up(cat: CatalogFrames, minutes: dict[str, int], periods: list[str],
             life: pl.DataFrame = ALWAYS) -> dict[str, ChargesResult]:
    """Bill the periods in order, each with the parcels the previous one left."""
    usage = calls({p: m for p, m in minutes.items() if m})
    parcels, out = empty_parcels(), {}
    for period in periods:
        result = compute_charges(cat, ACCOUNTS, life, usage, pl.DataFrame(), period,
                                 parcels_before=parcels)
        out[period], parcels = result, result.parcels
    return out


def discount(result: ChargesResult) -> int:
    return sum(result.charges.filter(pl.col("line_type") == "discount")["amount_minor"])


def parcels(result: ChargesResult) -> list[tuple]:
    return result.parcels.select(
        "granted_window_start", "expires_after_window_start", "remaining_units"
    ).rows()


PERIODS = ["2026-01", "2026-02", "2026-03", "2026-04"]


def test_spec_example_ten_unused_minutes_carry_one_period() -> None:
    # January uses 90: 10 left, expiring after February. February's band is 100 + 10 = 110:
    # a 150-minute call is 110 free (-11.00) and 40 paid. March's band is 100 again: a
    # 150-minute call is 100 free (-10.00).
    got = catch_up(catalog(1), {"2026-01": 90, "2026-02": 150, "2026-03": 150}, PERIODS[:3])
    assert discount(got["2026-01"]) == -900
    assert parcels(got["2026-01"]) == [(date(2026, 1, 1), date(2026, 2, 1), 10 * M)]
    assert discount(got["2026-02"]) == -1100
    assert parcels(got["2026-02"]) == []
    assert discount(got["2026-03"]) == -1000


def test_spec_example_an_unused_period_carries_its_whole_allowance() -> None:
    # January: no usage, its 100 carry into February. February uses 30 of them; the other 70
    # expire after February, and February's own 100 carry into March: March's band is 200, a
    # 250-minute call gets 200 x 0.10 = -20.00.
    got = catch_up(catalog(1), {"2026-02": 30, "2026-03": 250}, PERIODS[:3])
    assert parcels(got["2026-01"]) == [(date(2026, 1, 1), date(2026, 2, 1), 100 * M)]
    assert discount(got["2026-02"]) == -300
    assert parcels(got["2026-02"]) == [(date(2026, 2, 1), date(2026, 3, 1), 100 * M)]
    assert discount(got["2026-03"]) == -2000
    use = got["2026-02"].parcel_use.select(
        "granted_window_start", "available_units", "used_units", "left_units"
    ).rows()
    assert use == [(date(2026, 1, 1), 100 * M, 30 * M, 70 * M),
                   (date(2026, 2, 1), 100 * M, 0, 100 * M)]


def test_spec_example_rollover_two_uses_oldest_parcels_first() -> None:
    # Jan and Feb unused: March's band is 100 + 100 + 100 = 300; a 250-minute call is all free
    # (-25.00): January's 100, then February's 100, then 50 of March's own (50 left, expiring
    # after May). April: band 100 + 50 = 150, a 200-minute call gets 150 x 0.10 = -15.00.
    got = catch_up(catalog(2), {"2026-03": 250, "2026-04": 200}, PERIODS)
    assert discount(got["2026-03"]) == -2500
    assert parcels(got["2026-03"]) == [(date(2026, 3, 1), date(2026, 5, 1), 50 * M)]
    assert discount(got["2026-04"]) == -1500


def test_parcels_expire_unused() -> None:
    # rollover 1: January's 100 may be used in February only. No usage until March: February's
    # band was 200 but unused; January's parcel expires after February, February's own 100
    # carry: March's band is 200; a 300-minute call gets -20.00. April's band: 100 + 0 (March's
    # allowance used up) = 100.
    got = catch_up(catalog(1), {"2026-03": 300, "2026-04": 300}, PERIODS)
    assert parcels(got["2026-02"]) == [(date(2026, 2, 1), date(2026, 3, 1), 100 * M)]
    assert discount(got["2026-03"]) == -2000
    assert parcels(got["2026-03"]) == []
    assert discount(got["2026-04"]) == -1000


def test_rollover_follows_the_counter_key_across_a_same_priority_replacement() -> None:
    # Q100 until 2026-02-10, then Q100B (same priority, same entry key, rollover 1 each).
    # January unused: 100 carry. February: deciding entry is Q100B's (the last in force); band
    # 200; 150 minutes free after the replacement: -15.00.
    life = lifecycles(("S1", "Q100", date(2026, 1, 1), date(2026, 2, 10)),
                      ("S2", "Q100B", date(2026, 2, 10), None))
    got = catch_up(catalog(1, 1), {"2026-02": 150}, PERIODS[:2], life)
    assert discount(got["2026-02"]) == -1500
    # 200 available, 150 used: January's 100 first, then 50 of February's: 50 left to March.
    assert parcels(got["2026-02"]) == [(date(2026, 2, 1), date(2026, 3, 1), 50 * M)]


def test_replacement_without_rollover_keeps_parcels_unused_until_they_expire() -> None:
    # Q100B has no rollover: in February the carried 100 are not used (band 100) and expire
    # after February; nothing new carries. A 150-minute call gets -10.00.
    life = lifecycles(("S1", "Q100", date(2026, 1, 1), date(2026, 2, 1)),
                      ("S2", "Q100B", date(2026, 2, 1), None))
    got = catch_up(catalog(1, None), {"2026-02": 150}, PERIODS[:2], life)
    assert discount(got["2026-02"]) == -1000
    assert parcels(got["2026-02"]) == []


def test_reprocessing_a_period_whose_usage_changed_recomputes_its_parcels() -> None:
    # First January used 90 (10 carry); a late 40-minute call makes it 130: nothing carries,
    # and February's 150-minute call is back to 100 free (-10.00).
    first = catch_up(catalog(1), {"2026-01": 90, "2026-02": 150}, PERIODS[:2])
    assert discount(first["2026-02"]) == -1100
    late = calls({"2026-01": 90, "2026-02": 150}).vstack(pl.DataFrame({
        "event_id": ["late"], "account_id": ["A"], "service": ["voice"],
        "destination_group": ["US"], "started_at": [datetime(2026, 1, 20)],
        "quantity_units": [40 * M], "amount_units": [4 * M],
    }, schema_overrides={"started_at": pl.Datetime("us")}))
    jan = compute_charges(catalog(1), ACCOUNTS, ALWAYS, late, pl.DataFrame(), "2026-01",
                          parcels_before=empty_parcels())
    assert jan.parcels.height == 0
    feb = compute_charges(catalog(1), ACCOUNTS, ALWAYS, late, pl.DataFrame(), "2026-02",
                          parcels_before=jan.parcels)
    assert discount(feb) == -1000


CLOSED = ACCOUNTS.with_columns(status=pl.lit("closed"), closed_on=pl.lit(date(2026, 1, 27)))


@pytest.mark.parametrize("cutoff", [date(2026, 1, 26), date(2026, 1, 27), date(2026, 1, 30),
                                    None])
def test_a_closing_account_keeps_its_carried_minutes_to_the_end_of_the_period(
    cutoff: date | None,
) -> None:
    # Account A closes on 2026-01-27; Q100 (rollover 1) from 2025-12-01 ends that day (SPEC
    # §3). MP's plan shares Q100's counter key, without rollover. December has no usage: its
    # 100 carry into January. January has one 250-minute call on the 15th ($25.00). From the
    # 27th the account is closed: no add-on and no main product, so no entry wins those days,
    # and January's deciding entry is Q100's, the last in force: C = 100, band 200, 200
    # minutes free = -20.00, in a draft before or after the closing day as in the final. (MP's
    # plan winning 27-31 January made it -10.00 once the as-of reached the closing day.)
    cat = catalog(1, main_plan=True)
    life = lifecycles(("S1", "Q100", date(2025, 12, 1), date(2026, 1, 27)))
    usage = calls({"2026-01": 250})
    december = compute_charges(cat, CLOSED, life, usage, pl.DataFrame(), "2025-12",
                               parcels_before=empty_parcels())
    assert parcels(december) == [(date(2025, 12, 1), date(2026, 1, 1), 100 * M)]
    january = compute_charges(cat, CLOSED, life, usage, pl.DataFrame(), "2026-01", cutoff,
                              parcels_before=december.parcels)
    assert discount(january) == -2000
    # used: December's 100 first (it expires first), then all 100 of January's own
    use = january.parcel_use.select("granted_window_start", "used_units", "left_units").rows()
    assert use == [(date(2025, 12, 1), 100 * M, 0), (date(2026, 1, 1), 100 * M, 0)]
    assert parcels(january) == []


@pytest.mark.parametrize(("entry", "problem"), [
    ({"rollover": 4}, "discount_plans[DP].entries.0.rollover"),
    ({"rollover": -1}, "discount_plans[DP].entries.0.rollover"),
    ({"rollover": 1, "reset": "daily"},
     "discount_plans[DP].entries[0].rollover: 1 needs reset billing_period"),
    ({"rollover": 1, "tiers": [[0, 50], [100, 0]]},
     "discount_plans[DP].entries[0].rollover: 1 needs a billing-period quota"),
    ({"rollover": 1, "tiers": [[0, 100]]},
     "discount_plans[DP].entries[0].rollover: 1 needs a billing-period quota"),
])
def test_bad_rollover_names_the_field_and_the_plan(entry: dict, problem: str) -> None:
    with pytest.raises(CatalogError) as err:
        parse_catalog({
            "currencies": {"USD": 2},
            "main_products": [{"id": "MP", "name": "Main"}],
            "discount_plans": [{"id": "DP", "entries": [{
                "service": "voice", "destination_group": "US", "threshold_type": "quantity",
                "tiers": [[0, 100], [100, 0]], **entry}]}],
        })
    assert any(p.replace("[0]", ".0").startswith(problem.replace("[0]", ".0"))
               for p in err.value.problems), err.value.problems


@settings(max_examples=25, deadline=None)
@given(minutes=st.lists(st.integers(0, 400), min_size=4, max_size=4),
       rollover=st.integers(0, 3))
def test_allowance_used_never_exceeds_q_plus_c(minutes: list[int], rollover: int) -> None:
    # Free minutes in a period never exceed 100 + what the stored parcels offered at its start.
    got = catch_up(catalog(rollover), dict(zip(PERIODS, minutes, strict=True)), PERIODS)
    carried = 0
    for period in PERIODS:
        result = got[period]
        free = -discount(result) // 10  # cents at 0.10 a minute -> minutes
        assert free <= 100 + carried
        assert free == min(minutes[PERIODS.index(period)], 100 + carried)
        carried = sum(result.parcels["remaining_units"]) // M if rollover else 0
