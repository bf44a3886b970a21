"""SPEC §7 end to end through the real flows: promotions, suspension credits and rollover
parcels stored in `quota_rollovers`, carried across a catch-up, idempotent, and recomputed by
a reprocess. Amounts are worked out by hand in the comments (billing day 1, $0.10 a minute).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from flows.load import load_flow
from flows.nightly import nightly_flow
from flows.reprocess import reprocess_flow
from tests.flows.conftest import write_drop

D = Decimal

CATALOG = """
currencies: {USD: 2}
main_products:
  - {id: MP, name: Main, available_addons: [ADD_PROMO, ADD_SUSP, ADD_Q]}
addons:
  - {id: ADD_PROMO, name: Promo pack, priority: 10, subscription: SUB_PROMO}
  - {id: ADD_SUSP, name: Pausable pack, priority: 10, subscription: SUB_SUSP}
  - {id: ADD_Q, name: Rolling minutes, priority: 20, discount_plan: DP_ROLL}
subscriptions:
  - id: SUB_PROMO
    fee_plans:
      - {id: PR, term_months: 1, fee: "12.99", currency: USD,
         promotions: [{terms: 1, fee: "0"}, {terms: 1, fee: "9.99"}]}
  - id: SUB_SUSP
    credit_suspended_days: true
    fee_plans: [{id: SU, term_months: 1, fee: "30.00", currency: USD}]
discount_plans:
  - id: DP_ROLL
    entries:
      - {service: voice, destination_group: US, threshold_type: quantity, rollover: 1,
         tiers: [[0, 100], [100, 0]]}
"""

ACCOUNTS = (
    "account_id,currency,main_product_id,billing_day,status,opened_on,closed_on,effective_from\n"
    """P1,USD,MP,1,active,2026-01-01,,
S1,USD,MP,1,active,2026-01-01,,2026-01-01
S1,USD,MP,1,suspended,2026-01-01,,2026-03-10
S1,USD,MP,1,active,2026-01-01,,2026-03-20
R1,USD,MP,1,active,2026-01-01,,
""")

ASSIGNMENTS = (
    "assignment_id,account_id,addon_id,fee_plan_id,start_date,end_date,assigned_at,quantity\n"
    """AP,P1,ADD_PROMO,PR,2026-01-01,,2025-12-30 10:00:00,1
AS,S1,ADD_SUSP,SU,2026-01-01,,2025-12-30 10:00:00,1
AQ,R1,ADD_Q,,2026-01-01,,2025-12-30 10:00:00,1
""")

# R1: 90 minutes in January (10 carry into February), 150 in February.
USAGE = """event_id,account_id,service,destination_group,started_at,quantity,amount
E1,R1,voice,US,2026-01-05 10:00:00,90,9.00
E2,R1,voice,US,2026-02-10 10:00:00,150,15.00
"""

LATE = """event_id,account_id,service,destination_group,started_at,quantity,amount
E3,R1,voice,US,2026-01-25 10:00:00,40,4.00
"""


def q(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def lines(db: Path, account: str, table: str = "charges") -> list[tuple]:
    return q(db, f"""SELECT period, line_type, amount FROM {table} WHERE account_id = '{account}'
                     ORDER BY period, line_type""")


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("s7")
    path = tmp / "billrun.duckdb"
    load_flow(str(write_drop(tmp / "drop1", catalog=CATALOG, accounts=ACCOUNTS,
                             assignments=ASSIGNMENTS, usage=USAGE)), str(path))
    nightly_flow(as_of=date(2026, 4, 1), db=str(path))  # catch-up: Jan..Mar final, Apr draft
    return path


def test_promotion_prices_each_term_across_the_catch_up(db: Path) -> None:
    # Term 1 free (a 0.00 line that names it), term 2 at 9.99, then 12.99 (April is the
    # draft, charged in advance on April 1).
    assert lines(db, "P1") == [
        ("2026-01", "recurring", D("0.0000")), ("2026-02", "recurring", D("9.9900")),
        ("2026-03", "recurring", D("12.9900")), ("2026-04", "recurring", D("12.9900")),
    ]
    assert q(db, """SELECT description FROM charges WHERE account_id = 'P1'
                    AND period = '2026-01'""") == [
        ("Promo pack PR 2026-01-01..2026-02-01 (31/31) promotion 1 at 0",)
    ]


def test_suspension_credit_is_its_own_line_and_revenue_bucket(db: Path) -> None:
    # March: 30.00 and 10 suspended days of 31: 3000 x 10 / 31 = 967.74 -> -9.68.
    assert [r for r in lines(db, "S1") if r[0] == "2026-03"] == [
        ("2026-03", "recurring", D("30.0000")), ("2026-03", "suspension_credit", D("-9.6800")),
    ]
    rows = q(db, """SELECT suspension_credits FROM revenue_by_addon
                    WHERE addon_id = 'ADD_SUSP' AND period = '2026-03'""")
    assert [float(r[0]) for r in rows if r[0] is not None] == [-9.68]


def test_parcels_are_stored_and_carried_across_the_catch_up(db: Path) -> None:
    # January leaves 10 (expiring after February); February's band is 110: 150 minutes give
    # 110 x 0.10 = -11.00 and leave nothing.
    assert q(db, """SELECT window_start, granted_window_start, expires_after_window_start,
                           remaining FROM quota_rollovers WHERE account_id = 'R1'
                    ORDER BY window_start""") == [
        (date(2026, 1, 1), date(2026, 1, 1), date(2026, 2, 1), D("10.000000")),
        # March and April have no usage: each grants 100 that carry one period.
        (date(2026, 3, 1), date(2026, 3, 1), date(2026, 4, 1), D("100.000000")),
        (date(2026, 4, 1), date(2026, 4, 1), date(2026, 5, 1), D("100.000000")),
    ]
    assert [r for r in lines(db, "R1") if r[1] == "discount"] == [
        ("2026-01", "discount", D("-9.0000")), ("2026-02", "discount", D("-11.0000")),
    ]


def test_unchanged_inputs_change_no_table_and_reprocess_recomputes_parcels(db: Path) -> None:
    tables = ["charges", "invoices", "quota_rollovers", "adjustments"]
    before = {t: q(db, f"SELECT * FROM {t} ORDER BY ALL") for t in tables}
    nightly_flow(as_of=date(2026, 4, 1), db=str(db))
    assert {t: q(db, f"SELECT * FROM {t} ORDER BY ALL") for t in tables} == before
    # A late 40-minute January call: January used 130, nothing carries; reprocess 2026-01
    # (final) adds the difference as adjustments: usage +4.00, discount -1.00 (the 100
    # free were 90 + 10 of the late call), and January's parcel is gone.
    load_flow(str(write_drop(db.parent / "drop2", usage=LATE)), str(db))
    reprocess_flow(period="2026-01", db=str(db))
    assert lines(db, "R1", "adjustments") == [
        ("2026-01", "discount", D("-1.0000")), ("2026-01", "usage", D("4.0000")),
    ]
    assert q(db, """SELECT count(*) FROM quota_rollovers WHERE account_id = 'R1'
                    AND window_start = DATE '2026-01-01'""") == [(0,)]
    # February is final and keeps its invoice (its 110-minute band stands: docs/RUNS.md).
    assert [r for r in lines(db, "R1") if r[0] == "2026-02" and r[1] == "discount"] == [
        ("2026-02", "discount", D("-11.0000"))
    ]


def test_explain_shows_promotion_suspended_days_and_parcels(db: Path) -> None:
    from rich.console import Console

    from billrun.explain import explain_frames, recomputed_detail

    with duckdb.connect(str(db), read_only=True) as con:
        promo = explain_frames(con, "P1", "2026-02")["fee_terms"]
        susp = explain_frames(con, "S1", "2026-03")["fee_terms"]
        _, parcels = recomputed_detail(con, "R1", "2026-03")
    # February is term 2: promotion 2 at 9.99.
    assert promo.select("promotion", "promotional_fee").rows() == [("2", "9.99")]
    # March: the credit is for 10 suspended days (03-10..03-19).
    assert susp.filter(susp["line_type"] == "suspension_credit")["suspended_days"].to_list() == [
        "10"
    ]
    # March: February's parcels are all used or expired; March grants its own 100, unused.
    assert parcels.select("granted_window_start", "available", "used", "left").rows() == [
        (date(2026, 3, 1), "100.00", "0.00", "100.00")
    ]
    console = Console(record=True, width=220)
    from billrun.explain import explain_invoice

    explain_invoice(str(db), "R1", "2026-03", console)
    assert "Rollover parcels: available, used and left" in console.export_text()


def test_available_addons_lists_each_plans_promotions(db: Path) -> None:
    # R1 holds only ADD_Q: the promo pack is offered with its two promotional terms.
    assert q(db, """SELECT fee_plans FROM available_addons
                    WHERE account_id = 'R1' AND addon_id = 'ADD_PROMO'""") == [
        ("PR (1 mo 12.99 USD; promotions: 1 term(s) at 0.00 USD, 1 term(s) at 9.99 USD)",)
    ]
    assert q(db, """SELECT fee_plans FROM available_addons
                    WHERE account_id = 'R1' AND addon_id = 'ADD_SUSP'""") == [
        ("SU (1 mo 30.00 USD)",)
    ]
