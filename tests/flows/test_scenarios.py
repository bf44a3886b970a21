"""Acceptance-style billing scenarios, end to end through the real flows (SPEC §1-6).

One small "world" holds one account per scenario (so that the Prefect flows run once for all of
them). The world is loaded, then billed night after night:

    load drop1 -> nightly 03-20 -> nightly 04-01 -> load drop2 (updates) -> reprocess 2026-03
    -> nightly 04-20 -> nightly 05-01 -> 06-01 -> 08-01 (which finalizes June and July)

and a snapshot of the results tables is kept after each step. Every amount below is worked out
BY HAND from the spec (never copied from output); the working is in the comment beside it.
Policy `reject` runs on its own small database, once through `nightly_flow(conflict_policy=...)`
and once through the CLI in a subprocess.

Shared facts used by the working:
- March, May, July, August have 31 days; April, June have 30; 2026 is not a leap year.
- Terms are aligned on the billing day; a partial first term is measured against the full term
  that ends at the first boundary (SPEC §4).
- Lines are rounded once, half away from zero, to the currency's minor unit.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from flows.load import load_flow
from flows.nightly import nightly_flow
from flows.reprocess import reprocess_flow

D = Decimal

CATALOG = """
currencies: {USD: 2, EUR: 2, JPY: 0}
conflict_policy: replace
main_products:
  - id: MP_ALL
    name: All
    available_addons: [ADD_TV, ADD_Q, ADD_ARR, ADD_ARRNL, ADD_NOFIRST, ADD_V100, ADD_V200,
                       ADD_SEATS, ADD_OA, ADD_OB, ADD_JTV, ADD_SMS, ADD_DATA, ADD_AMT, ADD_HALF,
                       ADD_MULTI]
  - {id: MP_NOVOICE, name: No voice, available_addons: [ADD_TV, ADD_SEATS]}
  - {id: MP_DISC, name: Discounted, available_addons: [ADD_V100], discount_plan: VDP_MAIN}
addons:
  - {id: ADD_TV, name: TV pack, priority: 10, subscription: SUB_M30}
  - {id: ADD_Q, name: Quarterly, priority: 10, subscription: SUB_Q}
  - {id: ADD_ARR, name: Arrears, priority: 10, subscription: SUB_ARR}
  - {id: ADD_ARRNL, name: Arrears full last, priority: 10, subscription: SUB_ARRNL}
  - {id: ADD_NOFIRST, name: Full first, priority: 10, subscription: SUB_NOFIRST}
  - {id: ADD_V100, name: 100 free US minutes, priority: 20, discount_plan: VDP_US100,
     subscription: SUB_V100}
  - {id: ADD_V200, name: 200 free US minutes, priority: 20, discount_plan: VDP_US200,
     subscription: SUB_V200}
  - {id: ADD_SEATS, name: Seats, priority: 10, subscription: SUB_SEATS}
  - {id: ADD_OA, name: Once A, priority: 10, subscription: SUB_ONCE}
  - {id: ADD_OB, name: Once B, priority: 10, subscription: SUB_ONCE}
  - {id: ADD_JTV, name: Yen pack, priority: 10, discount_plan: VDP_JP50, subscription: SUB_JPY}
  - {id: ADD_SMS, name: 50 free SMS a day, priority: 5, discount_plan: VDP_SMS_DAILY}
  - {id: ADD_DATA, name: 1000 free MB forever, priority: 5, discount_plan: VDP_DATA_NEVER}
  - {id: ADD_AMT, name: Half price past 10 dollars, priority: 5, discount_plan: VDP_AMT}
  - {id: ADD_HALF, name: Half price US calls, priority: 30, discount_plan: VDP_HALF}
  - {id: ADD_MULTI, name: Extra line, priority: 10, subscription: SUB_MULTI}
subscriptions:
  - id: SUB_M30
    fee_plans: [{id: M30, term_months: 1, fee: "30.00", currency: USD}]
  - id: SUB_Q
    fee_plans:
      - {id: V1, term_months: 1, fee: "5.00", currency: USD}
      - {id: V3, term_months: 3, fee: "9.00", currency: USD}
      - {id: V6, term_months: 6, fee: "12.00", currency: USD}
  - id: SUB_ARR
    charge_mode: in_arrears
    fee_plans:
      - {id: A1, term_months: 1, fee: "31.00", currency: USD}
      - {id: A3, term_months: 3, fee: "90.00", currency: USD}
  - id: SUB_ARRNL
    charge_mode: in_arrears
    prorate_last: false
    fee_plans: [{id: AN1, term_months: 1, fee: "31.00", currency: USD}]
  - id: SUB_NOFIRST
    prorate_first: false
    fee_plans: [{id: NF1, term_months: 1, fee: "30.00", currency: USD}]
  - id: SUB_V100
    fee_plans: [{id: P100, term_months: 1, fee: "10.00", currency: USD}]
  - id: SUB_V200
    fee_plans: [{id: P200, term_months: 1, fee: "20.00", currency: USD}]
  - id: SUB_SEATS
    activation_fee: "5.00"
    fee_plans: [{id: S10, term_months: 1, fee: "10.00", currency: USD}]
  - id: SUB_ONCE
    fee_plans: [{id: O6, term_months: 1, fee: "6.00", currency: USD}]
  - id: SUB_JPY
    fee_plans: [{id: J1, term_months: 1, fee: "1000", currency: JPY}]
  - id: SUB_MULTI
    once_per_account: false
    fee_plans: [{id: X4, term_months: 1, fee: "4.00", currency: USD}]
discount_plans:
  - id: VDP_US100
    entries: [{service: voice, destination_group: US, threshold_type: quantity,
               tiers: [[0, 100], [100, 0]]}]
  - id: VDP_US200
    entries: [{service: voice, destination_group: US, threshold_type: quantity,
               tiers: [[0, 100], [200, 0]]}]
  - id: VDP_MAIN
    entries: [{service: voice, destination_group: US, threshold_type: quantity,
               tiers: [[0, 10]]}]
  - id: VDP_JP50
    entries: [{service: voice, destination_group: JP, threshold_type: quantity,
               tiers: [[0, 50]]}]
  - id: VDP_SMS_DAILY
    entries: [{service: sms, destination_group: ALL, threshold_type: quantity, reset: daily,
               tiers: [[0, 100], [50, 0]]}]
  - id: VDP_DATA_NEVER
    entries: [{service: data, destination_group: ALL, threshold_type: quantity, reset: never,
               tiers: [[0, 100], [1000, 0]]}]
  - id: VDP_AMT
    entries: [{service: voice, destination_group: INTL, threshold_type: amount,
               tiers: [[0, 0], [10, 50]]}]
  - id: VDP_HALF
    entries: [{service: voice, destination_group: US, threshold_type: quantity,
               tiers: [[0, 50]]}]
"""

ACCOUNTS = """
account_id,currency,main_product_id,billing_day,status,opened_on,closed_on,effective_from
S01,USD,MP_ALL,15,active,2026-03-01,,
S02,USD,MP_ALL,1,active,2026-03-01,,
S03A,USD,MP_ALL,1,active,2026-03-01,,
S03B,USD,MP_ALL,1,active,2026-03-01,,
S03C,USD,MP_ALL,1,active,2026-03-01,,
S03D,USD,MP_ALL,1,active,2026-03-01,,
S03E,USD,MP_ALL,1,active,2026-03-01,,
S04,USD,MP_ALL,1,active,2026-03-01,,
S05,USD,MP_ALL,1,active,2026-03-01,,
S07,USD,MP_ALL,1,active,2026-03-01,,2026-03-01
S07,USD,MP_NOVOICE,1,active,2026-03-01,,2026-03-20
S07C,USD,MP_ALL,1,closed,2026-03-01,2026-04-10,
S08,USD,MP_ALL,1,active,2026-03-01,,
S09,USD,MP_ALL,1,active,2026-03-01,,
S09B,USD,MP_ALL,1,active,2026-03-01,,
S10E,EUR,MP_ALL,1,active,2026-03-01,,
S10J,JPY,MP_ALL,1,active,2026-03-01,,
S11,USD,MP_ALL,1,active,2026-03-01,,
S12,USD,MP_DISC,1,active,2026-03-01,,
S13,USD,MP_ALL,1,active,2026-03-01,,
S14,USD,MP_ALL,1,active,2026-03-01,,
S15,USD,MP_ALL,1,active,2026-03-01,,
S16,USD,MP_ALL,1,active,2026-03-01,,
S17,USD,MP_ALL,1,active,2026-03-01,,
S18,USD,MP_ALL,28,active,2026-03-01,,
S19,USD,MP_ALL,1,active,2026-03-01,,
S22,USD,MP_ALL,1,active,2026-03-01,,
S23,USD,MP_ALL,1,active,2026-03-01,,
S26,USD,MP_ALL,1,active,2026-03-01,,
"""

ASSIGNMENT_HEADER = (
    "assignment_id,account_id,addon_id,fee_plan_id,start_date,end_date,assigned_at,quantity\n"
)
ASSIGNMENTS = ASSIGNMENT_HEADER + """\
S01_TV,S01,ADD_TV,M30,2026-03-20,,2026-03-19 10:00:00,
S02_Q,S02,ADD_Q,V3,2026-03-11,,2026-03-10 10:00:00,
S03A_A1,S03A,ADD_ARR,A1,2026-03-11,,2026-03-10 10:00:00,
S03B_A3,S03B,ADD_ARR,A3,2026-04-01,,2026-03-10 10:00:00,
S03C_A1,S03C,ADD_ARR,A1,2026-03-01,2026-05-11,2026-02-25 10:00:00,
S03D_A3,S03D,ADD_ARR,A3,2026-04-01,2026-05-16,2026-03-10 10:00:00,
S03E_AN,S03E,ADD_ARRNL,AN1,2026-03-01,2026-05-11,2026-02-25 10:00:00,
S04_NF,S04,ADD_NOFIRST,NF1,2026-03-11,,2026-03-10 10:00:00,
S05_V100,S05,ADD_V100,P100,2026-03-01,,2026-02-25 10:00:00,
S05_V200,S05,ADD_V200,P200,2026-03-17,,2026-03-10 10:00:00,
S07_V100,S07,ADD_V100,P100,2026-03-01,,2026-02-25 10:00:00,
S07_TV,S07,ADD_TV,M30,2026-03-01,,2026-02-25 10:00:00,
S07C_TV,S07C,ADD_TV,M30,2026-03-01,,2026-02-25 10:00:00,
S07C_SEATS,S07C,ADD_SEATS,S10,2026-03-01,,2026-02-25 10:00:00,
S08_SEATS,S08,ADD_SEATS,S10,2026-03-11,,2026-03-10 10:00:00,3
S09_OA,S09,ADD_OA,O6,2026-03-01,,2026-02-20 10:00:00,
S09_OB,S09,ADD_OB,O6,2026-03-15,,2026-03-01 10:00:00,
S09B_OA,S09B,ADD_OA,O6,2026-03-01,2026-03-15,2026-02-20 10:00:00,
S09B_OB,S09B,ADD_OB,O6,2026-03-15,,2026-03-01 10:00:00,
S10E_TV,S10E,ADD_TV,M30,2026-03-11,,2026-03-10 10:00:00,
S10J_JTV,S10J,ADD_JTV,J1,2026-03-11,,2026-03-10 10:00:00,
S11_SMS,S11,ADD_SMS,,2026-03-01,,2026-02-25 10:00:00,
S11_DATA,S11,ADD_DATA,,2026-03-01,,2026-02-25 10:00:00,
S11_AMT,S11,ADD_AMT,,2026-03-01,,2026-02-25 10:00:00,
S12_V100,S12,ADD_V100,P100,2026-03-10,,2026-03-09 10:00:00,
S13_TV,S13,ADD_TV,M30,2026-03-11,,2026-03-01 10:00:00,
S13_SEATS,S13,ADD_SEATS,S10,2026-03-11,,2026-03-01 10:00:00,
S13_LATER,S13,ADD_Q,V1,2026-06-01,,2026-03-01 10:00:00,
S14_BAD,S14,ADD_NOPE,,2026-03-01,,2026-02-25 10:00:00,
S14_TV,S14,ADD_TV,M30,2026-03-01,,2026-02-25 10:00:00,
S15_Q,S15,ADD_Q,V3,2026-04-01,2026-05-16,2026-03-10 10:00:00,
S16_V100,S16,ADD_V100,P100,2026-03-01,,2026-02-25 10:00:00,
S16_HALF,S16,ADD_HALF,,2026-03-15,,2026-03-10 10:00:00,
S17_V100,S17,ADD_V100,P100,2026-04-01,,2026-02-25 10:00:00,
S17_V200,S17,ADD_V200,P200,2026-03-15,,2026-03-10 10:00:00,
S18_SEATS,S18,ADD_SEATS,S10,2026-03-10,,2026-03-09 10:00:00,
S19_Q,S19,ADD_Q,V6,2026-03-11,,2026-03-10 10:00:00,
S22_SEATS,S22,ADD_SEATS,S10,2026-03-11,2026-03-11,2026-03-10 10:00:00,
S26_M1,S26,ADD_MULTI,X4,2026-03-01,,2026-02-25 10:00:00,
S26_M2,S26,ADD_MULTI,X4,2026-03-11,,2026-03-10 10:00:00,
S14_WRONGPLAN,S14,ADD_SEATS,M30,2026-03-01,,2026-02-25 10:00:00,
S07C_LATE,S07C,ADD_SEATS,S10,2026-04-15,,2026-04-14 10:00:00,
S07_V100B,S07,ADD_V100,P100,2026-03-25,,2026-03-24 10:00:00,
"""

USAGE_HEADER = "event_id,account_id,service,destination_group,started_at,quantity,amount\n"
USAGE = USAGE_HEADER + """\
U05_1,S05,voice,US,2026-03-10 09:00:00,80,8.00
U05_2,S05,voice,US,2026-03-20 09:00:00,150,15.00
U10J_1,S10J,voice,JP,2026-03-12 09:00:00,1,10.5
U10J_2,S10J,voice,JP,2026-03-13 09:00:00,1,10.5
U10J_3,S10J,voice,JP,2026-03-14 09:00:00,1,10.5
U11_S1,S11,sms,ALL,2026-03-10 08:00:00,30,1.50
U11_S2,S11,sms,ALL,2026-03-10 12:00:00,30,1.50
U11_S3,S11,sms,ALL,2026-03-11 09:00:00,40,2.00
U11_S4,S11,sms,ALL,2026-03-31 23:00:00,45,2.25
U11_S5,S11,sms,ALL,2026-04-01 00:30:00,10,0.50
U11_D1,S11,data,ALL,2026-03-15 10:00:00,600,6.00
U11_D2,S11,data,ALL,2026-04-10 10:00:00,600,6.00
U11_D3,S11,data,ALL,2026-05-05 10:00:00,100,1.00
U11_A1,S11,voice,INTL,2026-03-05 10:00:00,40,8.00
U11_A2,S11,voice,INTL,2026-03-06 10:00:00,20,4.00
U11_A3,S11,voice,INTL,2026-03-07 10:00:00,10,2.00
U12_1,S12,voice,US,2026-03-05 10:00:00,50,5.00
U12_2,S12,voice,US,2026-03-12 10:00:00,30,3.00
U12_3,S12,voice,US,2026-03-20 10:00:00,40,4.00
U14_OK,S14,voice,US,2026-03-05 10:00:00,10,1.00
U14_BADACC,NOPE,voice,US,2026-03-05 10:00:00,10,1.00
U14_BADAMT,S14,voice,US,2026-03-05 11:00:00,10,1.2.3
U14_OK,S14,voice,US,2026-03-06 10:00:00,20,2.00
U16_1,S16,voice,US,2026-03-10 10:00:00,50,5.00
U16_2,S16,voice,US,2026-03-20 10:00:00,80,8.00
U16_3,S16,voice,US,2026-03-25 10:00:00,60,6.00
U23_1,S23,voice,US,2026-03-20 23:59:59,10,1.00
U23_2,S23,voice,US,2026-03-21 00:00:00,20,2.00
"""

# The second drop, loaded after the 04-01 night (scenario 13):
# - S13_TV moves its (already billed) activation date from 03-11 to 03-05: refused, `locked`;
# - S13_SEATS only gains an end date (04-16): applies;
# - S13_LATER, never billed yet (starts 06-01), moves to 06-15: applies.
UPDATES = ASSIGNMENT_HEADER + """\
S13_TV,S13,ADD_TV,M30,2026-03-05,,2026-03-01 10:00:00,
S13_SEATS,S13,ADD_SEATS,S10,2026-03-11,2026-04-16,2026-03-01 10:00:00,
S13_LATER,S13,ADD_Q,V1,2026-06-15,,2026-03-01 10:00:00,
"""

ALL_PERIODS = ["2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06", "2026-07",
               "2026-08"]


# --- helpers ---------------------------------------------------------------------------------


def write_drop(folder: Path, **files: str) -> Path:
    """A drop folder: `catalog` -> catalog.yaml, any other name -> `<name>.csv`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        target = folder / ("catalog.yaml" if name == "catalog" else f"{name}.csv")
        target.write_text(text.lstrip("\n"))
    return folder


def q(db: Path, sql: str, *args: object) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, list(args)).fetchall()


@dataclass
class Snapshot:
    """The results tables after one step."""

    lines: list[tuple]  # account, period, line_type, assignment, addon, service, dg, qty, amount
    invoices: dict[tuple[str, str], tuple[Decimal, str, str]]  # (acct, period) -> total, st, cur
    decisions: list[tuple]  # assignment, account, period, rule, outcome, reason, start, end
    counters: list[tuple]  # account, service, dg, threshold_type, window_start, value
    adjustments: list[tuple]
    descriptions: dict[tuple, str] = field(default_factory=dict)

    def account_lines(self, account: str, period: str) -> Counter:
        return Counter(
            (r[2], r[3], r[8]) for r in self.lines if r[0] == account and r[1] == period
        )


def snapshot(db: Path) -> Snapshot:
    lines = q(
        db,
        "SELECT account_id, period, line_type, assignment_id, addon_id, service, "
        "destination_group, quantity, amount, description FROM charges ORDER BY ALL",
    )
    return Snapshot(
        lines=[r[:9] for r in lines],
        invoices={
            (a, p): (t, s, c)
            for a, p, t, s, c in q(
                db, "SELECT account_id, period, total, status, currency FROM invoices"
            )
        },
        decisions=q(
            db,
            "SELECT assignment_id, account_id, period, rule, outcome, reason, effective_start, "
            "effective_end FROM decisions ORDER BY ALL",
        ),
        counters=q(
            db,
            "SELECT account_id, service, destination_group, threshold_type, window_start, value "
            "FROM discount_counters ORDER BY ALL",
        ),
        adjustments=q(db, "SELECT * EXCLUDE (run_id) FROM adjustments ORDER BY ALL"),
        descriptions={(r[0], r[1], r[2], r[3]): r[9] for r in lines},
    )


@dataclass
class World:
    db: Path
    steps: dict[str, Snapshot]
    reprocess_adjustments: int


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    tmp = tmp_path_factory.mktemp("world")
    db = tmp / "world.duckdb"
    drop1 = write_drop(
        tmp / "drop1", catalog=CATALOG, accounts=ACCOUNTS, assignments=ASSIGNMENTS, usage=USAGE
    )
    drop2 = write_drop(tmp / "drop2", assignments=UPDATES)
    steps: dict[str, Snapshot] = {}
    load_flow(str(drop1), str(db))
    for day in (date(2026, 3, 20), date(2026, 4, 1)):
        nightly_flow(as_of=day, db=str(db))
        steps[day.isoformat()] = snapshot(db)
    load_flow(str(drop2), str(db))
    summary = reprocess_flow(period="2026-03", db=str(db))
    steps["reprocess-03"] = snapshot(db)
    for day in (date(2026, 4, 20), date(2026, 5, 1), date(2026, 6, 1), date(2026, 8, 1)):
        nightly_flow(as_of=day, db=str(db))
        steps[day.isoformat()] = snapshot(db)
    return World(db=db, steps=steps, reprocess_adjustments=summary.adjustments)


# --- the ledger: every line of every scenario account, as of 2026-08-01 -----------------------
#
# (account) -> {period: [(line_type, assignment_id, amount), ...]}. A period that is not listed
# has no line (and no invoice).

LEDGER: dict[str, dict[str, list[tuple[str, str | None, str]]]] = {
    # 1. Billing day 15, $30/month in advance from 03-20. First boundary 04-15; the full term
    #    ending there is [03-15, 04-15) = 17 (Mar 15..31) + 14 (Apr 1..14) = 31 days; active
    #    [03-20, 04-15) = 12 + 14 = 26 days -> 30 x 26/31 = 25.1613 -> 25.16, in period 2026-03
    #    ([03-15, 04-15)). Every later period [d-15, next d-15) gets the full $30; 2026-07 is
    #    the draft as of 08-01 (its in-advance fee is dated 07-15).
    "S01": {
        "2026-03": [("recurring", "S01_TV", "25.16")],
        "2026-04": [("recurring", "S01_TV", "30.00")],
        "2026-05": [("recurring", "S01_TV", "30.00")],
        "2026-06": [("recurring", "S01_TV", "30.00")],
        "2026-07": [("recurring", "S01_TV", "30.00")],
    },
    # 2. 3-month $9 from 03-11, billing day 1: first boundary 04-01, full term [01-01, 04-01) =
    #    31+28+31 = 90 days, active 21 (Mar 11..31) -> 9 x 21/90 = 2.10. Term [04-01, 07-01) is
    #    charged in April (in advance), nothing in May and June, term [07-01, 10-01) in July.
    "S02": {
        "2026-03": [("recurring", "S02_Q", "2.10")],
        "2026-04": [("recurring", "S02_Q", "9.00")],
        "2026-07": [("recurring", "S02_Q", "9.00")],
    },
    # 3a. in_arrears $31/month from 03-11: term [03-01, 04-01) of 31 days, 21 used -> 21.00,
    #     charged in the period holding the term's last day (March). Then $31 each month, each
    #     in its own month (last day inside it); August's term ends 08-31 > as-of: not yet.
    "S03A": {
        "2026-03": [("recurring", "S03A_A1", "21.00")],
        "2026-04": [("recurring", "S03A_A1", "31.00")],
        "2026-05": [("recurring", "S03A_A1", "31.00")],
        "2026-06": [("recurring", "S03A_A1", "31.00")],
        "2026-07": [("recurring", "S03A_A1", "31.00")],
    },
    # 3b. in_arrears 3-month $90 from 04-01 (on the billing day: no partial term): term
    #     [04-01, 07-01), last day 06-30 -> the whole $90 in June; nothing in April or May.
    #     The next term [07-01, 10-01) ends after the as-of date.
    "S03B": {
        "2026-06": [("recurring", "S03B_A3", "90.00")],
    },
    # 3c. in_arrears $31/month from 03-01, ends 05-11: March and April whole; May's term is cut
    #     short: used 05-01..05-10 = 10 of 31 days -> 31 x 10/31 = 10.00, in May (the period of
    #     the last used day, 05-10).
    "S03C": {
        "2026-03": [("recurring", "S03C_A1", "31.00")],
        "2026-04": [("recurring", "S03C_A1", "31.00")],
        "2026-05": [("recurring", "S03C_A1", "10.00")],
    },
    # 3d. in_arrears 3-month $90 from 04-01, ends 05-16: term [04-01, 07-01) = 30+31+30 = 91
    #     days, used [04-01, 05-16) = 30 + 15 = 45 days -> 90 x 45/91 = 44.5055 -> 44.51, in
    #     May (the period of the last used day 05-15), not in June (the term's own last day).
    "S03D": {
        "2026-05": [("recurring", "S03D_A3", "44.51")],
    },
    # 3e. Same as 3c with prorate_last false: May is charged the whole $31.
    "S03E": {
        "2026-03": [("recurring", "S03E_AN", "31.00")],
        "2026-04": [("recurring", "S03E_AN", "31.00")],
        "2026-05": [("recurring", "S03E_AN", "31.00")],
    },
    # 4. prorate_first false, $30 from 03-11: the partial first term is charged the full fee.
    "S04": {
        p: [("recurring", "S04_NF", "30.00")]
        for p in ("2026-03", "2026-04", "2026-05", "2026-06", "2026-07", "2026-08")
    },
    # 5. replace: V100 ($10/month, 100 free US min) from 03-01; V200 ($20/month, 200 free, same
    #    priority 20, same (voice, US, quantity) entry) assigned later, from 03-17. V100 ends
    #    03-17: March $10 (in advance) and a credit for [03-17, 04-01) = 15 of 31 days ->
    #    -10 x 15/31 = -4.8387 -> -4.84. V200's first term: 15/31 x 20 = 9.6774 -> 9.68.
    #    Usage at $0.10/min: 80 min on 03-10 under V100: all free (-8.00). 150 min ($15) on
    #    03-20 under V200: the counter carries 80 -> 230, free up to 200 -> 120 free minutes ->
    #    15 x 120/150 = 12.00 off. From April only V200's $20.
    "S05": {
        "2026-03": [
            ("recurring", "S05_V100", "10.00"), ("credit", "S05_V100", "-4.84"),
            ("recurring", "S05_V200", "9.68"),
            ("usage", "S05_V100", "8.00"), ("discount", "S05_V100", "-8.00"),
            ("usage", "S05_V200", "15.00"), ("discount", "S05_V200", "-12.00"),
        ],
        **{
            p: [("recurring", "S05_V200", "20.00")]
            for p in ("2026-04", "2026-05", "2026-06", "2026-07", "2026-08")
        },
    },
    # 7. Main product change on 03-20 to MP_NOVOICE, which offers the TV pack but not V100:
    #    V100 ($10, from 03-01) ends 03-20 -> credit [03-20, 04-01) = 12/31 x 10 = 3.8710 ->
    #    -3.87. The TV pack runs on.
    "S07": {
        "2026-03": [
            ("recurring", "S07_V100", "10.00"), ("credit", "S07_V100", "-3.87"),
            ("recurring", "S07_TV", "30.00"),
        ],
        **{
            p: [("recurring", "S07_TV", "30.00")]
            for p in ("2026-04", "2026-05", "2026-06", "2026-07", "2026-08")
        },
    },
    # 7b. The account closes on 04-10: every add-on ends that day. April's prepaid terms are
    #     credited for [04-10, 05-01) = 21 of 30 days: TV -30 x 21/30 = -21.00, seats
    #     -10 x 21/30 = -7.00. Seats' $5 activation fee in March (quantity 1).
    "S07C": {
        "2026-03": [
            ("recurring", "S07C_TV", "30.00"),
            ("recurring", "S07C_SEATS", "10.00"), ("activation", "S07C_SEATS", "5.00"),
        ],
        "2026-04": [
            ("recurring", "S07C_TV", "30.00"), ("credit", "S07C_TV", "-21.00"),
            ("recurring", "S07C_SEATS", "10.00"), ("credit", "S07C_SEATS", "-7.00"),
        ],
    },
    # 8. quantity 3 of $10/month seats from 03-11: 10 x 3 x 21/31 = 20.3226 -> 20.32; the $5
    #    activation fee once x 3 = 15.00, in March only; then 30.00 a month.
    "S08": {
        "2026-03": [("recurring", "S08_SEATS", "20.32"), ("activation", "S08_SEATS", "15.00")],
        **{
            p: [("recurring", "S08_SEATS", "30.00")]
            for p in ("2026-04", "2026-05", "2026-06", "2026-07", "2026-08")
        },
    },
    # 9. once_per_account SUB_ONCE ($6/month) through two add-ons. Overlapping: OB (assigned
    #    later) is ineligible and never charged; OA pays $6 a month.
    "S09": {
        p: [("recurring", "S09_OA", "6.00")]
        for p in ("2026-03", "2026-04", "2026-05", "2026-06", "2026-07", "2026-08")
    },
    # 9b. Not overlapping: OA [03-01, 03-15), OB from 03-15. OA: $6 and a credit of
    #     [03-15, 04-01) = 17/31 x 6 = 3.2903 -> -3.29; OB: 17/31 x 6 = 3.29, then $6.
    "S09B": {
        "2026-03": [
            ("recurring", "S09B_OA", "6.00"), ("credit", "S09B_OA", "-3.29"),
            ("recurring", "S09B_OB", "3.29"),
        ],
        **{
            p: [("recurring", "S09B_OB", "6.00")]
            for p in ("2026-04", "2026-05", "2026-06", "2026-07", "2026-08")
        },
    },
    # 10. EUR account with a USD fee plan: ineligible, nothing billed at all.
    "S10E": {},
    # 10b. JPY (0 minor units): ¥1000/month from 03-11 -> 1000 x 21/31 = 677.42 -> ¥677.
    #      Three JP calls of ¥10.5: usage 31.5 -> ¥32 (half away from zero, rounded once);
    #      50 % off -> 15.75 -> ¥16 off.
    "S10J": {
        "2026-03": [
            ("recurring", "S10J_JTV", "677"),
            ("usage", "S10J_JTV", "32"), ("discount", "S10J_JTV", "-16"),
        ],
        **{
            p: [("recurring", "S10J_JTV", "1000")]
            for p in ("2026-04", "2026-05", "2026-06", "2026-07", "2026-08")
        },
    },
    # 11. Add-ons without subscription (no fee lines):
    #   SMS, 50 free a day ($0.05 each): 03-10: 30 ($1.50, free) + 30 ($1.50; 20 free, 10 paid
    #   -> 1.00 off); 03-11: 40 ($2.00, a new day: free); 03-31 23:00: 45 ($2.25, free).
    #   March: usage 7.25, discount 1.50+1.00+2.00+2.25 = 6.75. 04-01 00:30: 10 ($0.50) in a new
    #   day (and period): free.
    #   Data, 1000 MB free forever ($0.01/MB): 600 on 03-15 (free, -6.00); 600 on 04-10: the
    #   counter carries 600 -> 1200 across the periods, 400 free -> 6 x 400/600 = 4.00 off;
    #   100 on 05-05: none free, so no discount line.
    #   Voice INTL, 50 % off the money spent beyond $10 in the period (amount threshold):
    #   $8 (0 -> 8, 0 %), $4 (8 -> 12: $2 at 0 %, $2 at 50 % -> 1.00), $2 (12 -> 14: 1.00)
    #   -> usage 14.00, discount -2.00.
    "S11": {
        "2026-03": [
            ("usage", "S11_SMS", "7.25"), ("discount", "S11_SMS", "-6.75"),
            ("usage", "S11_DATA", "6.00"), ("discount", "S11_DATA", "-6.00"),
            ("usage", "S11_AMT", "14.00"), ("discount", "S11_AMT", "-2.00"),
        ],
        "2026-04": [
            ("usage", "S11_SMS", "0.50"), ("discount", "S11_SMS", "-0.50"),
            ("usage", "S11_DATA", "6.00"), ("discount", "S11_DATA", "-4.00"),
        ],
        "2026-05": [("usage", "S11_DATA", "1.00")],
    },
    # 12. Main product MP_DISC has 10 % off voice US; V100 ($10) from 03-10: 10 x 22/31 =
    #     7.0968 -> 7.10. 50 min ($5) on 03-05: no add-on yet -> the main product's plan:
    #     usage 5.00, discount -0.50 (assignment null, add-on MP_DISC). From 03-10 V100's entry
    #     wins: 30 min ($3) on 03-12 and 40 min ($4) on 03-20. The counter is per (account,
    #     service, destination group, threshold type, window), not per plan, so it continues
    #     from 50: 50 -> 80 all free (3.00), 80 -> 120: 20 of 40 free (2.00) -> -5.00.
    "S12": {
        "2026-03": [
            ("recurring", "S12_V100", "7.10"),
            ("usage", None, "5.00"), ("discount", None, "-0.50"),
            ("usage", "S12_V100", "7.00"), ("discount", "S12_V100", "-5.00"),
        ],
        **{
            p: [("recurring", "S12_V100", "10.00")]
            for p in ("2026-04", "2026-05", "2026-06", "2026-07", "2026-08")
        },
    },
    # 13. TV from 03-11 (locked after the first night): 30 x 21/31 = 20.3226 -> 20.32 stays
    #     even though drop2 tries to move the start to 03-05 (which would be 27/31 -> 26.13).
    #     Seats from 03-11: 10 x 21/31 = 6.7742 -> 6.77 + $5 activation; drop2 sets end 04-16:
    #     April $10 and a credit [04-16, 05-01) = 15/30 x 10 = -5.00. S13_LATER (V1 $5/month),
    #     moved before it was ever billed from 06-01 to 06-15: June 5 x 16/30 = 2.6667 -> 2.67,
    #     then $5.
    "S13": {
        "2026-03": [
            ("recurring", "S13_TV", "20.32"),
            ("recurring", "S13_SEATS", "6.77"), ("activation", "S13_SEATS", "5.00"),
        ],
        "2026-04": [
            ("recurring", "S13_TV", "30.00"),
            ("recurring", "S13_SEATS", "10.00"), ("credit", "S13_SEATS", "-5.00"),
        ],
        "2026-05": [("recurring", "S13_TV", "30.00")],
        "2026-06": [("recurring", "S13_TV", "30.00"), ("recurring", "S13_LATER", "2.67")],
        "2026-07": [("recurring", "S13_TV", "30.00"), ("recurring", "S13_LATER", "5.00")],
        "2026-08": [("recurring", "S13_TV", "30.00"), ("recurring", "S13_LATER", "5.00")],
    },
    # 14. Bad rows are rejected, the good ones billed: TV $30 from 03-01 and the one valid call
    #     (U14_OK, $1.00, first occurrence; no discount entry -> a plain usage line).
    "S14": {
        "2026-03": [("recurring", "S14_TV", "30.00"), ("usage", None, "1.00")],
        **{
            p: [("recurring", "S14_TV", "30.00")]
            for p in ("2026-04", "2026-05", "2026-06", "2026-07", "2026-08")
        },
    },
    # Extra edge cases.
    # 3-month $9 in advance from 04-01, ends 05-16: April's term [04-01, 07-01) is charged in
    # full (the charge never depends on a later end); May: credit of [05-16, 07-01) = 16 + 30 =
    # 46 of 91 days -> -9 x 46/91 = -4.5495 -> -4.55.
    "S15": {
        "2026-04": [("recurring", "S15_Q", "9.00")],
        "2026-05": [("credit", "S15_Q", "-4.55")],
    },
    # Priority: V100 (priority 20, $10) from 03-01, HALF (priority 30, 50 % off voice US, no
    # fee) from 03-15. 03-10: 50 min ($5) -> V100, all free. 03-20: 80 min ($8) and 03-25:
    # 60 min ($6) -> HALF wins: 50 % -> 4.00 + 3.00 off.
    "S16": {
        "2026-03": [
            ("recurring", "S16_V100", "10.00"),
            ("usage", "S16_V100", "5.00"), ("discount", "S16_V100", "-5.00"),
            ("usage", "S16_HALF", "14.00"), ("discount", "S16_HALF", "-7.00"),
        ],
        **{
            p: [("recurring", "S16_V100", "10.00")]
            for p in ("2026-04", "2026-05", "2026-06", "2026-07", "2026-08")
        },
    },
    # replace where the later-assigned V200 starts (03-15) before the earlier V100 (04-01):
    # V100 ends the day V200 starts, before its own start -> never active, never charged.
    # V200: 20 x 17/31 = 10.9677 -> 10.97, then $20.
    "S17": {
        "2026-03": [("recurring", "S17_V200", "10.97")],
        **{
            p: [("recurring", "S17_V200", "20.00")]
            for p in ("2026-04", "2026-05", "2026-06", "2026-07", "2026-08")
        },
    },
    # Billing day 28, seats $10 from 03-10: the period holding 03-10 is [02-28, 03-28), named
    # 2026-02 (the month it starts in). First boundary 03-28, full term [02-28, 03-28) = 28
    # days, active 18 -> 10 x 18/28 = 6.4286 -> 6.43, and the $5 activation fee. Then $10 in
    # each period; 2026-07 ([07-28, 08-28)) is the draft as of 08-01.
    "S18": {
        "2026-02": [("recurring", "S18_SEATS", "6.43"), ("activation", "S18_SEATS", "5.00")],
        **{
            p: [("recurring", "S18_SEATS", "10.00")]
            for p in ("2026-03", "2026-04", "2026-05", "2026-06", "2026-07")
        },
    },
    # 6-month $12 from 03-11: full term ending at 04-01 is [2025-10-01, 2026-04-01) =
    # 31+30+31+31+28+31 = 182 days, 21 active -> 12 x 21/182 = 1.3846 -> 1.38; then the term
    # [04-01, 10-01) in April; nothing until October.
    "S19": {
        "2026-03": [("recurring", "S19_Q", "1.38")],
        "2026-04": [("recurring", "S19_Q", "12.00")],
    },
    # end_date = start_date: never active, nothing charged (no activation fee either).
    "S22": {},
    # Draft horizon: 03-20 23:59:59 ($1) is in the 03-20 draft, 03-21 00:00 ($2) is not.
    "S23": {"2026-03": [("usage", None, "3.00")]},
    # once_per_account false: the same add-on twice, overlapping, both charged: $4 from 03-01,
    # and 4 x 21/31 = 2.7097 -> 2.71 from 03-11.
    "S26": {
        "2026-03": [("recurring", "S26_M1", "4.00"), ("recurring", "S26_M2", "2.71")],
        **{
            p: [("recurring", "S26_M1", "4.00"), ("recurring", "S26_M2", "4.00")]
            for p in ("2026-04", "2026-05", "2026-06", "2026-07", "2026-08")
        },
    },
}

SCENARIO_OF = {
    "S01": "1-billing-day-15", "S02": "2-quarterly-plan", "S03A": "3-arrears-partial-first",
    "S03B": "3-arrears-quarterly", "S03C": "3-arrears-ended-mid-term",
    "S03D": "3-arrears-quarterly-ended", "S03E": "3-arrears-no-prorate-last",
    "S04": "4-no-prorate-first", "S05": "5-replace", "S07": "7-main-product-change",
    "S07C": "7-account-closure", "S08": "8-quantity-3", "S09": "9-once-per-account-overlap",
    "S09B": "9-once-per-account-no-overlap", "S10E": "10-wrong-currency",
    "S10J": "10-jpy", "S11": "11-daily-never-amount", "S12": "12-main-product-discount",
    "S13": "13-activation-lock", "S14": "14-bad-input", "S15": "x-quarterly-credit",
    "S16": "x-higher-priority-wins", "S17": "x-replaced-before-start",
    "S18": "x-billing-day-28", "S19": "x-six-month-partial", "S22": "x-zero-length",
    "S23": "x-draft-horizon", "S26": "x-not-once-per-account",
}


@pytest.mark.parametrize("account", list(LEDGER), ids=[SCENARIO_OF[a] for a in LEDGER])
def test_ledger(world: World, account: str) -> None:
    """Every line of the account in every period, and its invoices, as of 2026-08-01."""
    final = world.steps["2026-08-01"]
    open_period = {"S01": "2026-07", "S18": "2026-07"}.get(account, "2026-08")
    for period in ALL_PERIODS:
        expected = Counter(
            (t, a, D(amount)) for t, a, amount in LEDGER[account].get(period, [])
        )
        assert final.account_lines(account, period) == expected, (account, period)
        invoice = final.invoices.get((account, period))
        if not expected:
            assert invoice is None, (account, period)
            continue
        total = sum((D(amount) for _, _, amount in LEDGER[account][period]), D(0))
        status = "draft" if period == open_period else "final"
        assert invoice is not None and invoice[:2] == (total, status), (account, period)


def test_invoice_currencies(world: World) -> None:
    final = world.steps["2026-08-01"]
    assert {c for (a, _), (_, _, c) in final.invoices.items() if a == "S10J"} == {"JPY"}
    assert {c for (a, _), (_, _, c) in final.invoices.items() if a != "S10J"} == {"USD"}
    # Whole yen: every JPY amount is an integer.
    assert all(r[8] == r[8].to_integral_value() for r in final.lines if r[0] == "S10J")


# --- drafts along the way ---------------------------------------------------------------------

DRAFTS = [
    # as of 03-20: the partial first term of S01 (dated 03-20) is on the draft, in period
    # 2026-03 of billing day 15.
    ("2026-03-20", "S01", "2026-03", [("recurring", "S01_TV", "25.16")], "draft"),
    # as of 03-20: an in-arrears term's fee is dated on its last day (03-31): not there yet.
    ("2026-03-20", "S03A", "2026-03", [], None),
    # as of 03-20 the replacement on 03-17 is visible: V100's $10 and its credit, V200's first
    # term and both calls (03-10 and 03-20, started before 03-21).
    ("2026-03-20", "S05", "2026-03", LEDGER["S05"]["2026-03"], "draft"),
    # as of 04-01: March is final with its arrears fee; April's draft holds no arrears fee.
    ("2026-04-01", "S03A", "2026-03", [("recurring", "S03A_A1", "21.00")], "final"),
    ("2026-04-01", "S03A", "2026-04", [], None),
    # as of 04-01: the 3-month term [04-01, 07-01) is charged on April's draft.
    ("2026-04-01", "S02", "2026-04", [("recurring", "S02_Q", "9.00")], "draft"),
    # Scenario 2 night after night: May and June stay without a line (final, no invoice).
    ("2026-05-01", "S02", "2026-04", [("recurring", "S02_Q", "9.00")], "final"),
    ("2026-06-01", "S02", "2026-05", [], None),
    ("2026-06-01", "S02", "2026-06", [], None),
    # as of 04-20: the data counter carried 600 from March: 400 free of 600 -> 4.00 off; the
    # 04-01 SMS are free in their own day.
    ("2026-04-20", "S11", "2026-04", LEDGER["S11"]["2026-04"], "draft"),
    # as of 04-20: drop2's end date 04-16 of S13_SEATS is applied: credit -5.00.
    ("2026-04-20", "S13", "2026-04", LEDGER["S13"]["2026-04"], "draft"),
    ("2026-03-20", "S23", "2026-03", [("usage", None, "1.00")], "draft"),
    ("2026-04-01", "S23", "2026-03", [("usage", None, "3.00")], "final"),
    # as of 04-20: the account closure (04-10) credits are on April's draft.
    ("2026-04-20", "S07C", "2026-04", LEDGER["S07C"]["2026-04"], "draft"),
]


@pytest.mark.parametrize("step,account,period,expected,status", DRAFTS)
def test_draft_as_of(
    world: World, step: str, account: str, period: str, expected: list, status: str | None
) -> None:
    snap = world.steps[step]
    assert snap.account_lines(account, period) == Counter(
        (t, a, D(amount)) for t, a, amount in expected
    )
    invoice = snap.invoices.get((account, period))
    assert (invoice[1] if invoice else None) == status


# --- descriptions of fee lines ------------------------------------------------------------------


@pytest.mark.parametrize(
    "key,fragment",
    [
        # Scenario 1: the days covered and the ratio (26/31) of the full term ending 04-15.
        (("S01", "2026-03", "recurring", "S01_TV"), "2026-03-20..2026-04-15 (26/31)"),
        # Scenario 2: 21/90.
        (("S02", "2026-03", "recurring", "S02_Q"), "(21/90)"),
        # Scenario 8: quantity shows.
        (("S08", "2026-03", "recurring", "S08_SEATS"), "x3"),
        (("S08", "2026-03", "activation", "S08_SEATS"), "x3"),
    ],
)
def test_fee_line_description(world: World, key: tuple, fragment: str) -> None:
    assert fragment in world.steps["2026-08-01"].descriptions[key]


# --- decisions --------------------------------------------------------------------------------

REPLACES = "a later same-priority add-on with a shared discount entry replaces the earlier one"
REFUSES = "a later same-priority add-on with a shared discount entry is refused"
ONCE = "once-per-account subscription is not already active on the account"
CURRENCY = "fee plan currency is the account currency"
CHANGE = "main product change ends add-ons it does not offer"
CLOSURE = "account closure ends every add-on"
LOCKED = "activation date cannot move once billed"
ELIGIBLE = "add-on meets every eligibility condition"
FEE_PLAN = "fee plan belongs to the add-on's subscription"
NOT_CLOSED = "account is not closed at activation"
AVAILABLE = "add-on is available with the main product at activation"


def decisions_of(snap: Snapshot, assignment: str, period: str) -> list[tuple]:
    return [
        (r[3], r[4], r[6], r[7]) for r in snap.decisions if r[0] == assignment and r[2] == period
    ]


@pytest.mark.parametrize(
    "assignment,period,rule,outcome,start,end",
    [
        # 5. V100 is replaced by V200 and ends the day V200 starts (03-17).
        ("S05_V100", "2026-03", REPLACES, "replaced", date(2026, 3, 1), date(2026, 3, 17)),
        ("S05_V200", "2026-03", ELIGIBLE, "eligible", date(2026, 3, 17), date(2026, 4, 1)),
        # 7. The product change ends V100 on 03-20 (the add-on is still active in March).
        ("S07_V100", "2026-03", CHANGE, "active", date(2026, 3, 1), date(2026, 3, 20)),
        # 7b. Closure ends both add-ons of S07C on 04-10.
        ("S07C_TV", "2026-04", CLOSURE, "active", date(2026, 4, 1), date(2026, 4, 10)),
        ("S07C_SEATS", "2026-04", CLOSURE, "active", date(2026, 4, 1), date(2026, 4, 10)),
        # 9. The overlapping second holder of the once-per-account subscription.
        ("S09_OB", "2026-03", ONCE, "ineligible", None, None),
        # 10. Fee plan in USD for a EUR account.
        ("S10E_TV", "2026-03", CURRENCY, "ineligible", None, None),
        # 10/14. Other eligibility failures: a fee plan of another subscription; an add-on
        # starting after the account closed; an add-on the main product at activation (after
        # the change to MP_NOVOICE) does not offer.
        ("S14_WRONGPLAN", "2026-03", FEE_PLAN, "ineligible", None, None),
        ("S07C_LATE", "2026-04", NOT_CLOSED, "ineligible", None, None),
        ("S07_V100B", "2026-03", AVAILABLE, "ineligible", None, None),
        # Replaced before it ever started: never active.
        ("S17_V100", "2026-04", REPLACES, "replaced", None, None),
        ("S17_V100", "2026-04", "add-on is expired from its end date", "expired", None, None),
        # end_date = start_date: never active.
        ("S22_SEATS", "2026-03", "add-on is expired from its end date", "expired", None, None),
        # 13. The moved activation date is refused (decisions of the drafts after drop2).
        ("S13_TV", "2026-04", LOCKED, "locked", date(2026, 4, 1), date(2026, 5, 1)),
    ],
)
def test_decision_recorded(
    world: World, assignment: str, period: str, rule: str, outcome: str,
    start: date | None, end: date | None,
) -> None:
    rows = decisions_of(world.steps["2026-08-01"], assignment, period)
    assert (rule, outcome, start, end) in rows, rows


def test_ineligible_and_refused_reasons_name_the_cause(world: World) -> None:
    final = world.steps["2026-08-01"]
    reasons = {(r[0], r[3]): r[5] for r in final.decisions if r[2] == "2026-03"}
    assert "S09_OA" in reasons[("S09_OB", ONCE)]
    assert "USD" in reasons[("S10E_TV", CURRENCY)] and "EUR" in reasons[("S10E_TV", CURRENCY)]
    assert "S05_V200" in reasons[("S05_V100", REPLACES)]
    locked = {r[5] for r in final.decisions if r[0] == "S13_TV" and r[4] == "locked"}
    assert locked and all("2026-03-11" in r and "2026-03-05" in r for r in locked)


def test_non_overlapping_once_per_account_both_eligible(world: World) -> None:
    final = world.steps["2026-08-01"]
    outcomes = {(r[0], r[4]) for r in final.decisions if r[1] == "S09B"}
    assert ("S09B_OA", "ineligible") not in outcomes
    assert ("S09B_OB", "ineligible") not in outcomes
    assert {("S09B_OA", "eligible"), ("S09B_OB", "eligible")} <= outcomes


def test_later_addon_is_not_ended_by_the_replacement(world: World) -> None:
    """V200 runs open-ended; V100 is expired from April on."""
    final = world.steps["2026-08-01"]
    assert ("add-on is expired from its end date", "expired", None, None) in decisions_of(
        final, "S05_V100", "2026-04"
    )
    assert not [r for r in decisions_of(final, "S05_V200", "2026-04") if r[1] == "replaced"]


# --- counters ---------------------------------------------------------------------------------

NEVER = date(1970, 1, 1)


@pytest.mark.parametrize(
    "account,service,group,kind,window,value",
    [
        # 5. One counter for both add-ons: 80 + 150 = 230 in March's window.
        ("S05", "voice", "US", "quantity", date(2026, 3, 1), "230"),
        # 11. Daily SMS windows: 30 + 30 on 03-10, 40 on 03-11, 45 on 03-31, 10 on 04-01.
        ("S11", "sms", "ALL", "quantity", date(2026, 3, 10), "60"),
        ("S11", "sms", "ALL", "quantity", date(2026, 3, 11), "40"),
        ("S11", "sms", "ALL", "quantity", date(2026, 3, 31), "45"),
        ("S11", "sms", "ALL", "quantity", date(2026, 4, 1), "10"),
        # 11. Never-reset data: 600 + 600 + 100 = 1300 across three periods.
        ("S11", "data", "ALL", "quantity", NEVER, "1300"),
        # 11. Amount counter: $8 + $4 + $2 = 14 spent in March.
        ("S11", "voice", "INTL", "amount", date(2026, 3, 1), "14"),
        # 12. Shared by the main product's plan and V100: 50 + 30 + 40.
        ("S12", "voice", "US", "quantity", date(2026, 3, 1), "120"),
    ],
)
def test_counter(world: World, account, service, group, kind, window, value) -> None:
    rows = [
        r[5] for r in world.steps["2026-08-01"].counters
        if r[:5] == (account, service, group, kind, window)
    ]
    assert rows == [D(value)]


def test_never_counter_as_of_each_night(world: World) -> None:
    """The never-reset counter at the as-of date: 600 after March, 1200 after April."""
    def data_counter(step: str) -> list:
        return [r[5] for r in world.steps[step].counters
                if r[:5] == ("S11", "data", "ALL", "quantity", NEVER)]

    assert data_counter("2026-03-20") == [D(600)]
    assert data_counter("2026-04-20") == [D(1200)]
    assert data_counter("2026-05-01") == [D(1200)]
    assert data_counter("2026-06-01") == [D(1300)]


def test_amount_threshold_discount_line_quantity(world: World) -> None:
    """The discount line carries the quantity that got a discount: 10 of the 20-minute call
    ($2 of its $4 past the threshold) and the whole 10-minute call -> 20 (docs/CHARGES.md)."""
    rows = [r for r in world.steps["2026-08-01"].lines
            if r[0] == "S11" and r[1] == "2026-03" and r[2] == "discount" and r[5] == "voice"]
    assert [r[7] for r in rows] == [D(20)]


# --- scenario 12: the main product as the discounting owner -----------------------------------


def test_main_product_discount_line_is_owned_by_the_main_product(world: World) -> None:
    rows = [(r[2], r[3], r[4]) for r in world.steps["2026-08-01"].lines
            if r[0] == "S12" and r[1] == "2026-03" and r[2] in ("usage", "discount")]
    assert sorted(rows, key=str) == sorted([
        ("usage", None, "MP_DISC"), ("discount", None, "MP_DISC"),
        ("usage", "S12_V100", "ADD_V100"), ("discount", "S12_V100", "ADD_V100"),
    ], key=str)


# --- scenario 13: reprocessing a final period with the refused move adds nothing --------------


def test_reprocess_after_refused_move_adds_no_adjustment(world: World) -> None:
    assert world.reprocess_adjustments == 0
    assert world.steps["2026-08-01"].adjustments == []


def test_moved_start_of_never_billed_addon_applies(world: World) -> None:
    final = world.steps["2026-08-01"]
    assert not [r for r in final.decisions if r[0] == "S13_LATER" and r[4] == "locked"]
    assert ("add-on is pending before its start date", "pending", None, None) in decisions_of(
        final, "S13_LATER", "2026-05"
    )


# --- scenario 14: rejected rows ---------------------------------------------------------------


def test_bad_rows_are_kept_with_file_line_and_reason(world: World) -> None:
    rows = q(world.db, "SELECT source, line, reason, raw FROM rejected_rows ORDER BY source, line")
    by_raw = {raw.split(",")[0]: (source, line, reason) for source, line, reason, raw in rows}
    # usage.csv: header is line 1; U14_BADACC is the 21st data row -> line 22, and so on.
    assert by_raw["U14_BADACC"][:2] == ("usage.csv", 22)
    assert "unknown account" in by_raw["U14_BADACC"][2]
    assert by_raw["U14_BADAMT"][:2] == ("usage.csv", 23)
    assert "amount" in by_raw["U14_BADAMT"][2]
    dup = [(s, line, r) for s, line, r, raw in rows if raw.startswith("U14_OK,")]
    assert dup == [("usage.csv", 24, dup[0][2])] and "duplicate" in dup[0][2]
    assert by_raw["S14_BAD"][:2] == ("assignments.csv", 30)
    assert "addon_id" in by_raw["S14_BAD"][2]
    assert len(rows) == 4, rows


# --- scenario 6: policy reject (own databases) -------------------------------------------------

REJECT_ACCOUNTS = """
account_id,currency,main_product_id,billing_day,status,opened_on,closed_on,effective_from
S05,USD,MP_ALL,1,active,2026-03-01,,
"""
REJECT_ASSIGNMENTS = ASSIGNMENT_HEADER + """\
S05_V100,S05,ADD_V100,P100,2026-03-01,,2026-02-25 10:00:00,
S05_V200,S05,ADD_V200,P200,2026-03-17,,2026-03-10 10:00:00,
"""
REJECT_USAGE = USAGE_HEADER + """\
U05_1,S05,voice,US,2026-03-10 09:00:00,80,8.00
U05_2,S05,voice,US,2026-03-20 09:00:00,150,15.00
"""

# 6. Under `reject` V200 is refused: V100 keeps running. March: V100 $10 and both calls under
#    V100: 80 (free) then 150 with the counter 80 -> 230: 20 free -> 15 x 20/150 = 2.00 off;
#    usage 8 + 15 = 23.00, discount -8.00 - 2.00 = -10.00. April: V100 $10 (draft as of 04-01).
REJECT_LEDGER = {
    "2026-03": Counter([
        ("recurring", "S05_V100", D("10.00")),
        ("usage", "S05_V100", D("23.00")), ("discount", "S05_V100", D("-10.00")),
    ]),
    "2026-04": Counter([("recurring", "S05_V100", D("10.00"))]),
}


def _reject_drop(folder: Path) -> Path:
    return write_drop(folder, catalog=CATALOG, accounts=REJECT_ACCOUNTS,
                      assignments=REJECT_ASSIGNMENTS, usage=REJECT_USAGE)


def _check_rejected(db: Path) -> None:
    snap = snapshot(db)
    for period, expected in REJECT_LEDGER.items():
        assert snap.account_lines("S05", period) == expected, period
    assert snap.invoices[("S05", "2026-03")][:2] == (D("23.00"), "final")
    assert snap.invoices[("S05", "2026-04")][:2] == (D("10.00"), "draft")
    assert (REFUSES, "rejected", None, None) in decisions_of(snap, "S05_V200", "2026-03")
    assert not [r for r in snap.decisions if r[0] == "S05_V100" and r[4] == "replaced"]
    assert not [r for r in snap.lines if r[3] == "S05_V200"]


@pytest.fixture(scope="module")
def reject_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("reject")
    db = tmp / "reject.duckdb"
    load_flow(str(_reject_drop(tmp / "drop")), str(db))
    nightly_flow(as_of=date(2026, 4, 1), db=str(db), conflict_policy="reject")
    return db


def test_reject_policy_via_flow_parameter(reject_db: Path) -> None:
    _check_rejected(reject_db)


@pytest.mark.slow
def test_reject_policy_via_cli(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    drop = _reject_drop(tmp_path / "drop")
    args = ["nightly", "--as-of", "2026-04-01", "--input", str(drop), "--db", str(db),
            "--conflict-policy", "reject"]
    code = f"import sys; from billrun.cli import main; sys.exit(main({args!r}))"
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    _check_rejected(db)


# --- typed Parquet inputs -----------------------------------------------------------------------


def test_typed_parquet_inputs_are_billed(tmp_path: Path) -> None:
    """Parquet with real types (SPEC §2: CSV or Parquet): DATE, INT, zoned TIMESTAMP and
    DECIMAL(18,8) columns load without rejections and are billed like CSV text.

    P1 takes V100 ($10/month, 100 free US minutes) from 03-11: 10 x 21/31 = 6.7742 -> 6.77.
    Calls: 120 min ($12) on 03-12 09:00 UTC, and 10 min ($1) at 2026-04-01 00:30 Paris time,
    which is 2026-03-31 22:30 UTC (Paris is UTC+2 from 03-29): a March call. March: usage
    13.00, counter 0 -> 130, the first 100 free -> 12 x 100/120 = 10.00 off.
    """
    import polars as pl

    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "catalog.yaml").write_text(CATALOG)
    pl.DataFrame({
        "account_id": ["P1"], "currency": ["USD"], "main_product_id": ["MP_ALL"],
        "billing_day": [1], "status": ["active"], "opened_on": [date(2026, 3, 1)],
        "closed_on": [None], "effective_from": [None],
    }, schema_overrides={"closed_on": pl.Date, "effective_from": pl.Date}).write_parquet(
        drop / "accounts.parquet")
    pl.DataFrame({
        "assignment_id": ["P1_V100"], "account_id": ["P1"], "addon_id": ["ADD_V100"],
        "fee_plan_id": ["P100"], "start_date": [date(2026, 3, 11)], "end_date": [None],
        "assigned_at": [datetime(2026, 3, 10, 10, 0)], "quantity": [1],
    }, schema_overrides={"end_date": pl.Date}).with_columns(
        pl.col("assigned_at").dt.replace_time_zone("UTC")
    ).write_parquet(drop / "assignments.parquet")
    pl.DataFrame({
        "event_id": ["PE1", "PE2"], "account_id": ["P1", "P1"], "service": ["voice", "voice"],
        "destination_group": ["US", "US"],
        "started_at": [datetime(2026, 3, 12, 9, 0), datetime(2026, 3, 31, 22, 30)],
        "quantity": [D("120"), D("10")], "amount": [D("12"), D("1")],
    }, schema_overrides={"quantity": pl.Decimal(18, 8), "amount": pl.Decimal(18, 8)}).with_columns(
        pl.col("started_at").dt.replace_time_zone("UTC").dt.convert_time_zone("Europe/Paris")
    ).write_parquet(drop / "usage.parquet")

    db = tmp_path / "parquet.duckdb"
    load_flow(str(drop), str(db))
    assert q(db, "SELECT source, reason FROM rejected_rows") == []
    nightly_flow(as_of=date(2026, 4, 1), db=str(db))
    snap = snapshot(db)
    assert snap.account_lines("P1", "2026-03") == Counter([
        ("recurring", "P1_V100", D("6.77")),
        ("usage", "P1_V100", D("13.00")), ("discount", "P1_V100", D("-10.00")),
    ])
    assert snap.invoices[("P1", "2026-03")][:2] == (D("9.77"), "final")


# --- available_addons (SPEC §6): "the add-ons that its current main product offers and that it
# does not hold", each with `would_conflict_with` under the policy --------------------------------


def available(db: Path, account: str) -> dict[str, tuple]:
    rows = q(db, "SELECT addon_id, would_conflict_with, conflict_outcome FROM available_addons "
                 "WHERE account_id = ?", account)
    return {addon: (conflict, outcome) for addon, conflict, outcome in rows}


def test_available_addons_lists_what_the_account_does_not_hold(world: World) -> None:
    # S09 holds S09_OA only; V100 and V200 would conflict with nothing it holds.
    offered = available(world.db, "S09")
    assert offered["ADD_V100"] == (None, None) and offered["ADD_V200"] == (None, None)
    assert "ADD_OA" not in offered
    # S07's current main product (MP_NOVOICE) offers the TV pack (held) and seats.
    assert set(available(world.db, "S07")) == {"ADD_SEATS"}


def test_available_addons_offers_back_a_replaced_addon(world: World) -> None:
    # S05_V100 was replaced on 03-17 by S05_V200: S05 no longer holds V100. Adding it again
    # would replace S05_V200 (same priority, same voice/US/quantity entry).
    assert available(world.db, "S05").get("ADD_V100") == ("S05_V200", "would replace")


def test_available_addons_offers_a_refused_addon_with_its_refusal(reject_db: Path) -> None:
    # Under `reject`, S05_V200 was refused: S05 does not hold V200; adding it would again be
    # refused against S05_V100.
    assert available(reject_db, "S05").get("ADD_V200") == ("S05_V100", "would be refused")


# --- exit codes (SPEC §6) ---------------------------------------------------------------------


def test_cli_nightly_with_an_invalid_catalog_exits_2(tmp_path: Path) -> None:
    from billrun.cli import main

    drop = write_drop(tmp_path / "bad", catalog=CATALOG.replace("term_months: 3", "term_months: 2"))
    assert main(["nightly", "--as-of", "2026-04-01", "--input", str(drop),
                 "--db", str(tmp_path / "x.duckdb")]) == 2


def test_cli_nightly_with_a_missing_input_folder_exits_2(tmp_path: Path) -> None:
    from billrun.cli import main

    assert main(["load", str(tmp_path / "nope"), "--db", str(tmp_path / "x.duckdb")]) == 2
    assert main(["nightly", "--as-of", "2026-04-01", "--input", str(tmp_path / "nope"),
                 "--db", str(tmp_path / "x.duckdb")]) == 2


# --- reprocess rolls a never-reset counter forward (SPEC §4-5, docs/RUNS.md) ------------------

ROLL_ACCOUNTS = """
account_id,currency,main_product_id,billing_day,status,opened_on,closed_on,effective_from
R1,USD,MP_ALL,1,active,2026-03-01,,
"""
ROLL_ASSIGNMENTS = ASSIGNMENT_HEADER + "R1_DATA,R1,ADD_DATA,,2026-03-01,,2026-02-25 10:00:00,\n"


def test_late_usage_moves_a_never_counter_forward(tmp_path: Path) -> None:
    """1000 MB free forever, $0.01/MB.
    - 03-15: 600 MB ($6), free. Night 04-01: March final (usage 6.00, discount -6.00), 600.
    - 04-10: 600 MB ($6). Night 04-15: April draft, 600 -> 1200: 400 free -> 4.00 off.
    - A late March call arrives: 03-20, 300 MB ($3). Reprocess March: all 900 free, so the final
      March gets adjustments usage +3.00 and discount -3.00 (its invoice stays 0.00); the
      never counter moves by +300 (April's stored value 1200 -> 1500).
    - Night 04-20: April's draft starts from 900: 900 -> 1500, 100 free -> 1.00 off; April
      invoice 6.00 - 1.00 = 5.00.
    """
    db = tmp_path / "roll.duckdb"

    def drop(name: str, **files: str) -> str:
        return str(write_drop(tmp_path / name, **files))

    load_flow(drop("d1", catalog=CATALOG, accounts=ROLL_ACCOUNTS, assignments=ROLL_ASSIGNMENTS,
                   usage=USAGE_HEADER + "RD1,R1,data,ALL,2026-03-15 10:00:00,600,6.00\n"), str(db))
    nightly_flow(as_of=date(2026, 4, 1), db=str(db))
    load_flow(drop("d2", usage=USAGE_HEADER + "RD2,R1,data,ALL,2026-04-10 10:00:00,600,6.00\n"),
              str(db))
    nightly_flow(as_of=date(2026, 4, 15), db=str(db))
    snap = snapshot(db)
    assert snap.account_lines("R1", "2026-04") == Counter(
        [("usage", "R1_DATA", D("6.00")), ("discount", "R1_DATA", D("-4.00"))])
    load_flow(drop("d3", usage=USAGE_HEADER + "RD0,R1,data,ALL,2026-03-20 10:00:00,300,3.00\n"),
              str(db))
    reprocess_flow(period="2026-03", db=str(db))
    assert q(db, "SELECT line_type, assignment_id, amount FROM adjustments ORDER BY ALL") == [
        ("discount", "R1_DATA", D("-3.00")), ("usage", "R1_DATA", D("3.00"))]
    assert q(db, "SELECT total, status FROM invoices WHERE period = '2026-03'") == [
        (D("0.00"), "final")]
    assert q(db, "SELECT value FROM discount_counters") == [(D(1500),)]
    nightly_flow(as_of=date(2026, 4, 20), db=str(db))
    snap = snapshot(db)
    assert snap.account_lines("R1", "2026-04") == Counter(
        [("usage", "R1_DATA", D("6.00")), ("discount", "R1_DATA", D("-1.00"))])
    assert snap.invoices[("R1", "2026-04")][:2] == (D("5.00"), "draft")
    assert q(db, "SELECT value FROM discount_counters") == [(D(1500),)]
    # Reprocessing again with the same inputs adds nothing.
    reprocess_flow(period="2026-03", db=str(db))
    assert q(db, "SELECT count(*) FROM adjustments") == [(2,)]
