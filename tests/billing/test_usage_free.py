"""A period without usage events takes the usage-free path (pipeline/usage/usage_free.py,
docs/CHARGES.md "A period without usage"): every frame `bill` returns is the full path's, row
for row, and counters and rollover parcels carry across it as SPEC §4 and §7.3 say.

Sample catalog (data/sample/catalog.yaml), billing day 1 unless drawn:
- ADD_VOICE100R (VDP_US100R): the first 100 voice/US minutes of a period free; unused minutes
  roll over one period (SPEC §7.3);
- ADD_VOICE100 (VDP_US100): the same 100 minutes, no rollover;
- ADD_ROAM (RDP_LIFE): 500 roaming minutes for life, a never-reset counter (SPEC §4).
"""

from __future__ import annotations

from dataclasses import fields
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.bill import Bill, BillInputs, bill
from pipeline.catalog import catalog_frames, parse_catalog
from pipeline.contracts import (
    COUNTER_INPUT_SCHEMA,
    LOCK_SCHEMA,
    NEVER_START,
    PARCEL_SCHEMA,
    USAGE_SCHEMA,
)
from rules.promotions import with_verdicts

SAMPLE = parse_catalog(
    (Path(__file__).resolve().parents[2] / "data" / "sample" / "catalog.yaml").read_text()
)
FRAMES = with_verdicts(catalog_frames(SAMPLE))
M = 1_000_000
NO_USAGE = pl.DataFrame(schema=USAGE_SCHEMA)
NO_COUNTERS = pl.DataFrame(schema=COUNTER_INPUT_SCHEMA)
# Add-ons of MP_PLUS with and without discounts, rolling or not, and a never-reset counter
# (ADD_ROAM is MP_BIZ's: an ineligible add-on the rules settle too).
PLANS = {"ADD_VOICE100R": "VR1", "ADD_VOICE100": "V1", "ADD_VOICE200": "V200_1",
         "ADD_TV": "TV1", "ADD_SMS": "S1", "ADD_ROAM": "R12", "ADD_DATA5": "D5_1"}
ASSIGNMENT_COLUMNS = {
    "assignment_id": pl.Utf8, "account_id": pl.Utf8, "addon_id": pl.Utf8,
    "fee_plan_id": pl.Utf8, "start_date": pl.Date, "end_date": pl.Date,
    "assigned_at": pl.Datetime("us"), "quantity": pl.Int64,
}
KEYS = [("voice", "US", "quantity"), ("voice", "ROAM", "quantity"),
        ("voice", "INTL", "amount")]


def _inputs(accounts: list[dict], assignments: list[dict]) -> BillInputs:
    return BillInputs(
        catalog=SAMPLE, policy="replace",
        accounts=pl.DataFrame(accounts, schema_overrides={"closed_on": pl.Date}),
        assignments=pl.DataFrame(assignments, schema=ASSIGNMENT_COLUMNS),
        usage=NO_USAGE, locks=pl.DataFrame(schema=LOCK_SCHEMA), frames=FRAMES,
    )


def _account(account_id: str, day: int = 1, main: str = "MP_PLUS",
             closed_on: date | None = None) -> dict:
    return {"account_id": account_id, "currency": "USD", "main_product_id": main,
            "billing_day": day, "status": "closed" if closed_on else "active",
            "opened_on": date(2025, 1, 1), "closed_on": closed_on,
            "effective_from": date(2025, 1, 1)}


def _assignment(assignment_id: str, account_id: str, addon: str, start: date,
                end: date | None = None, assigned: datetime | None = None) -> dict:
    return {"assignment_id": assignment_id, "account_id": account_id, "addon_id": addon,
            "fee_plan_id": PLANS[addon], "start_date": start, "end_date": end,
            "assigned_at": assigned or datetime.combine(start, datetime.min.time()),
            "quantity": 1}


def _both(inputs: BillInputs, period: str, cutoff: date | None, counters: pl.DataFrame,
          parcels: pl.DataFrame, detail: bool) -> tuple[Bill, Bill]:
    fast = bill(inputs, period, cutoff, counters, parcels_before=parcels, detail=detail)
    full = bill(inputs, period, cutoff, counters, parcels_before=parcels, detail=detail,
                _full=True)
    return fast, full


def _assert_same(fast: Bill, full: Bill) -> None:
    for f in fields(Bill):
        a, b = getattr(fast, f.name), getattr(full, f.name)
        assert a.schema == b.schema, f.name
        assert a.equals(b), f.name


DAYS = st.integers(min_value=0, max_value=120).map(lambda d: date(2025, 12, 1) + timedelta(d))


@st.composite
def usage_free_runs(draw: st.DrawFn) -> tuple:
    n = draw(st.integers(min_value=1, max_value=3))
    accounts, assignments, counters, parcels = [], [], [], []
    for i in range(n):
        account_id = f"A{i}"
        closed = draw(st.none() | DAYS)
        accounts.append(_account(account_id, draw(st.integers(1, 28)),
                                 draw(st.sampled_from(["MP_PLUS", "MP_BASIC", "MP_BIZ"])),
                                 closed))
        for j in range(draw(st.integers(min_value=0, max_value=4))):
            start = draw(DAYS)
            end = draw(st.none() | DAYS.filter(lambda d, s=start: d > s))
            assigned = datetime.combine(start, datetime.min.time()) - timedelta(
                hours=draw(st.integers(0, 2000)))
            assignments.append(_assignment(f"{account_id}-{j}", account_id,
                                           draw(st.sampled_from(sorted(PLANS))), start, end,
                                           assigned))
        for service, group, kind in draw(st.lists(st.sampled_from(KEYS), unique=True)):
            # a never-reset window (carried) or a period window (ignored before a period)
            start = draw(st.sampled_from([NEVER_START, date(2026, 2, 1)]))
            counters.append((account_id, service, group, kind, start,
                             draw(st.integers(0, 900)) * M))
        for _ in range(draw(st.integers(0, 2))):
            granted = draw(st.sampled_from([date(2025, 12, 1), date(2026, 1, 1),
                                            date(2026, 2, 1)]))
            window = draw(st.sampled_from([date(2026, 1, 1), date(2026, 2, 1)]))
            expires = draw(st.sampled_from([date(2026, 1, 1), date(2026, 2, 1),
                                            date(2026, 3, 1), date(2026, 4, 1)]))
            parcels.append((account_id, "voice", "US", "quantity", window, granted, expires,
                            draw(st.integers(1, 100)) * M))
    period = draw(st.sampled_from(["2026-01", "2026-02", "2026-03"]))
    cutoff = draw(st.none() | DAYS)
    return (accounts, assignments, pl.DataFrame(counters, schema=COUNTER_INPUT_SCHEMA,
                                                 orient="row"),
            pl.DataFrame(parcels, schema=PARCEL_SCHEMA, orient="row").unique(
                ["account_id", "window_start", "granted_window_start"], keep="first",
                maintain_order=True),
            period, cutoff, draw(st.booleans()))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(usage_free_runs())
def test_the_usage_free_path_gives_every_frame_of_the_full_path(run: tuple) -> None:
    accounts, assignments, counters, parcels, period, cutoff, detail = run
    inputs = _inputs(accounts, assignments)
    _assert_same(*_both(inputs, period, cutoff, counters, parcels, detail))


def test_a_never_reset_counter_carries_unchanged_across_a_usage_free_period() -> None:
    # SPEC §4: a `never` counter is never reset. A1 (Business, ADD_ROAM) had used 120 of its
    # 500 lifetime roaming minutes; a period without usage leaves the window at 120 minutes,
    # bills no usage or discount line, and drops the stored billing-period window (a period
    # window is recomputed from the period's own events, none here).
    inputs = _inputs([_account("A1", main="MP_BIZ")],
                     [_assignment("A1-R", "A1", "ADD_ROAM", date(2025, 6, 1))])
    counters = pl.DataFrame(
        [("A1", "voice", "ROAM", "quantity", NEVER_START, 120 * M),
         ("A1", "voice", "US", "quantity", date(2026, 1, 1), 40 * M)],
        schema=COUNTER_INPUT_SCHEMA, orient="row",
    )
    fast, full = _both(inputs, "2026-02", None, counters, pl.DataFrame(schema=PARCEL_SCHEMA),
                       False)
    _assert_same(fast, full)
    assert fast.counters_after.rows() == [
        ("A1", "voice", "ROAM", "quantity", NEVER_START, 120 * M, "never")
    ]
    assert fast.charges.filter(pl.col("line_type").is_in(["usage", "discount"])).height == 0
    assert fast.usage_sums.height == 0


def test_an_unused_rolling_allowance_is_granted_then_expires_after_a_replacement() -> None:
    # SPEC §7.3, two periods without usage. January: ADD_VOICE100R decides voice/US, its 100
    # minutes are unused and carry one period (a parcel granted 01-01, expiring after the
    # window of 02-01). February: ADD_VOICE100R ends on 02-10 and ADD_VOICE100 (no rollover)
    # replaces it, so it decides the key at the period's end: no parcel of February's own, and
    # January's 100 minutes are not usable (used 0, left 100) and expire with February.
    inputs = _inputs(
        [_account("A1")],
        [_assignment("A1-R", "A1", "ADD_VOICE100R", date(2026, 1, 1), date(2026, 2, 10)),
         _assignment("A1-V", "A1", "ADD_VOICE100", date(2026, 2, 10))],
    )
    january, full = _both(inputs, "2026-01", None, NO_COUNTERS,
                          pl.DataFrame(schema=PARCEL_SCHEMA), False)
    _assert_same(january, full)
    assert january.parcels.rows() == [
        ("A1", "voice", "US", "quantity", date(2026, 1, 1), date(2026, 1, 1),
         date(2026, 2, 1), 100 * M)
    ]
    february, full = _both(inputs, "2026-02", None, NO_COUNTERS, january.parcels, False)
    _assert_same(february, full)
    assert february.parcels.height == 0
    assert february.parcel_use.select(
        "granted_window_start", "available_units", "used_units", "left_units"
    ).rows() == [(date(2026, 1, 1), 100 * M, 0, 100 * M)]


def test_a_rolling_allowance_unused_for_two_periods_keeps_one_parcel_a_period() -> None:
    # SPEC §7.3 with rollover 1: each usage-free period grants its own 100 minutes, and the
    # previous period's parcel, unused, expires after that period: only one parcel is ever
    # left, the latest one. Billing day 15: the periods start on the 15th.
    inputs = _inputs([_account("A1", day=15)],
                     [_assignment("A1-R", "A1", "ADD_VOICE100R", date(2025, 12, 1))])
    parcels = pl.DataFrame(schema=PARCEL_SCHEMA)
    for period, start in (("2026-01", date(2026, 1, 15)), ("2026-02", date(2026, 2, 15))):
        fast, full = _both(inputs, period, None, NO_COUNTERS, parcels, False)
        _assert_same(fast, full)
        parcels = fast.parcels
        assert parcels.select("granted_window_start", "remaining_units").rows() == [
            (start, 100 * M)
        ]
    assert fast.parcel_use.select("granted_window_start", "used_units", "left_units").rows() \
        == [(date(2026, 1, 15), 0, 100 * M), (date(2026, 2, 15), 0, 100 * M)]
