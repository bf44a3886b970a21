"""Never-reset counters across periods, and their roll-forward after a reprocess (SPEC §4-5)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D
from pathlib import Path

import duckdb

from flows.load import load_flow
from flows.nightly import nightly_flow
from flows.reprocess import reprocess_flow

CATALOG = """
currencies: {USD: 2}
main_products:
  - {id: MP, name: Main, available_addons: [ADD_ROAM]}
addons:
  - {id: ADD_ROAM, name: 500 roaming minutes for life, priority: 10, discount_plan: LIFE}
discount_plans:
  - id: LIFE
    entries:
      - {service: voice, destination_group: ROAM, threshold_type: quantity, reset: never,
         tiers: [[0, 100], [500, 0]]}
"""
ACCOUNTS = (
    "account_id,currency,main_product_id,billing_day,status,opened_on,closed_on,effective_from\n"
    "R1,USD,MP,1,active,2026-01-01,,\n"
)
ASSIGNMENTS = "assignment_id,account_id,addon_id,fee_plan_id,start_date,end_date,assigned_at," \
    "quantity\nAS_R,R1,ADD_ROAM,,2026-01-01,,2026-01-01 00:00:00,1\n"
HEADER = "event_id,account_id,service,destination_group,started_at,quantity,amount\n"
# 300 minutes in January and 300 in February at $0.20 a minute.
USAGE = HEADER + "J1,R1,voice,ROAM,2026-01-10 10:00:00,300,60.00\n" \
    "F1,R1,voice,ROAM,2026-02-10 10:00:00,300,60.00\n"


def q(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_never_reset_counter_carries_across_periods_and_rolls_forward(
    tmp_path: Path, write_drop_fixture
) -> None:
    db = tmp_path / "billrun.duckdb"
    drop = write_drop_fixture(tmp_path / "d1", catalog=CATALOG, accounts=ACCOUNTS,
                              assignments=ASSIGNMENTS, usage=USAGE)
    load_flow(str(drop), str(db))
    nightly_flow(as_of=date(2026, 2, 1), db=str(db))
    nightly_flow(as_of=date(2026, 3, 1), db=str(db))
    # January: 300 of the 500 lifetime minutes, all free (-$60). February starts at 300:
    # 200 free (-$40) and 100 paid.
    discounts = "SELECT period, amount FROM charges WHERE line_type = 'discount' ORDER BY period"
    assert q(db, discounts) == [("2026-01", D("-60.00")), ("2026-02", D("-40.00"))]
    # March's draft carries the window unchanged, since nothing was used yet.
    assert q(db, "SELECT period, value FROM counter_periods ORDER BY period") == [
        ("2026-01", D("300")), ("2026-02", D("600")), ("2026-03", D("600"))
    ]

    # 100 late January minutes ($20.00), free: the counter ends January at 400, and February's
    # stored value rolls forward from 600 to 700.
    late = write_drop_fixture(tmp_path / "late",
                              usage=HEADER + "J2,R1,voice,ROAM,2026-01-20 10:00:00,100,20.00\n")
    load_flow(str(late), str(db))
    reprocess_flow(period="2026-01", db=str(db))
    assert q(db, "SELECT line_type, amount FROM adjustments ORDER BY line_type") == [
        ("discount", D("-20.00")), ("usage", D("20.00"))
    ]
    assert q(db, "SELECT period, value FROM counter_periods ORDER BY period") == [
        ("2026-01", D("400")), ("2026-02", D("700")), ("2026-03", D("700"))
    ]
    assert q(db, "SELECT window_start, value FROM discount_counters") == [
        (date(1970, 1, 1), D("700"))
    ]
    # Reprocessing February now starts from 400: only 100 minutes were free (-$20, not -$40).
    reprocess_flow(period="2026-02", db=str(db))
    assert q(db, "SELECT amount FROM adjustments WHERE period = '2026-02'") == [(D("20.00"),)]
    assert q(db, "SELECT period, value FROM counter_periods ORDER BY period") == [
        ("2026-01", D("400")), ("2026-02", D("700")), ("2026-03", D("700"))
    ]


def test_rolled_forward_counters_equal_a_fresh_computation(
    tmp_path: Path, write_drop_fixture
) -> None:
    """After a late event and the reprocess that shifts the later periods, both counter tables
    hold, run ids aside, what a database that had the event from the start holds: 400 at the
    end of January, 700 after (300 + 100, then + 300 in February), the window's row 700."""
    counters = ("SELECT * EXCLUDE (run_id) FROM {} ORDER BY ALL")
    late = HEADER + "J2,R1,voice,ROAM,2026-01-20 10:00:00,100,20.00\n"
    shifted, fresh = tmp_path / "shifted.duckdb", tmp_path / "fresh.duckdb"
    load_flow(str(write_drop_fixture(tmp_path / "d1", catalog=CATALOG, accounts=ACCOUNTS,
                                     assignments=ASSIGNMENTS, usage=USAGE)), str(shifted))
    load_flow(str(write_drop_fixture(tmp_path / "d2", catalog=CATALOG, accounts=ACCOUNTS,
                                     assignments=ASSIGNMENTS, usage=USAGE + late[len(HEADER):])),
              str(fresh))
    for db in (shifted, fresh):
        nightly_flow(as_of=date(2026, 2, 1), db=str(db))
        nightly_flow(as_of=date(2026, 3, 1), db=str(db))
    load_flow(str(write_drop_fixture(tmp_path / "late", usage=late)), str(shifted))
    reprocess_flow(period="2026-01", db=str(shifted))
    for table in ("counter_periods", "discount_counters"):
        assert q(shifted, counters.format(table)) == q(fresh, counters.format(table))
    assert [r[6:] for r in q(fresh, counters.format("counter_periods"))] == [
        ("2026-01", D("400")), ("2026-02", D("700")), ("2026-03", D("700"))]
    assert [r[5] for r in q(fresh, counters.format("discount_counters"))] == [D("700")]
