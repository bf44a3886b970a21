"""End to end through real Prefect flows on a real DuckDB file (SPEC §5).

Every amount is worked out by hand from the scenario in conftest.py:
- TV pack $30/month in advance from Jan 11 (billing day 1): 30 x 21/31 = 20.3226 -> $20.32,
  plus a $10.00 activation fee;
- 100 free US minutes add-on $5/month from Jan 1;
- voice usage at $0.10/minute: 50 min on Jan 5 and 70 min on Jan 25; the first 100 are free.
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

D = Decimal


def q(db: Path, sql: str, *args: object) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, list(args)).fetchall()


def invoice(db: Path, period: str) -> tuple:
    rows = q(db, "SELECT total, status FROM invoices WHERE account_id='A1' AND period=?", period)
    assert len(rows) == 1, rows
    return rows[0]


def lines(db: Path, period: str) -> list[tuple]:
    return q(
        db,
        "SELECT line_type, assignment_id, amount FROM charges WHERE account_id='A1' AND period=? "
        "ORDER BY line_type, assignment_id",
        period,
    )


def dump(db: Path) -> dict[str, list[tuple]]:
    tables = ["charges", "invoices", "decisions", "discount_counters", "adjustments",
              "counter_periods", "activation_locks"]
    return {t: q(db, f"SELECT * FROM {t} ORDER BY ALL") for t in tables}


@pytest.fixture(scope="module")
def billed_january_once(module_scenario: dict[str, Path]) -> Path:
    """Loaded, drafted as of Jan 20, then finalized as of Feb 1."""
    db = module_scenario["tmp"] / "billed-january.duckdb"
    load_flow(str(module_scenario["drop"]), str(db))
    nightly_flow(as_of=date(2026, 1, 20), db=str(db))
    nightly_flow(as_of=date(2026, 2, 1), db=str(db))
    return db


@pytest.fixture()
def billed_january(billed_january_once: Path, scenario: dict[str, Path], copy_db) -> Path:
    """The module's January-billed database, copied for this test (built once per module)."""
    return copy_db(billed_january_once, scenario["db"])


def test_draft_then_final_with_counters_continuing_across_runs(scenario: dict[str, Path]) -> None:
    db = scenario["db"]
    load_flow(str(scenario["drop"]), str(db))

    nightly_flow(as_of=date(2026, 1, 20), db=str(db))
    # Draft as of Jan 20: only the Jan 5 call (50 min, all free) is in.
    assert lines(db, "2026-01") == [
        ("activation", "AS_TV", D("10.00")),
        ("discount", "AS_V100", D("-5.00")),
        ("recurring", "AS_TV", D("20.32")),
        ("recurring", "AS_V100", D("5.00")),
        ("usage", "AS_V100", D("5.00")),
    ]
    assert invoice(db, "2026-01") == (D("35.32"), "draft")
    assert q(db, "SELECT value FROM discount_counters WHERE account_id='A1'") == [(D("50"),)]

    nightly_flow(as_of=date(2026, 2, 1), db=str(db))
    # The counter continues from 50: the 70-minute call is 50 free + 20 paid ($2.00).
    assert invoice(db, "2026-01") == (D("37.32"), "final")
    assert ("discount", "AS_V100", D("-10.00")) in lines(db, "2026-01")
    assert ("usage", "AS_V100", D("12.00")) in lines(db, "2026-01")
    assert q(
        db, "SELECT window_start, value FROM discount_counters WHERE account_id='A1'"
    ) == [(date(2026, 1, 1), D("120"))]
    # February's draft: both monthly fees in advance, nothing else yet.
    assert invoice(db, "2026-02") == (D("35.00"), "draft")
    assert q(db, "SELECT count(*) FROM runs WHERE kind='nightly' AND status='success'") == [(2,)]


def test_same_night_twice_changes_nothing(billed_january: Path) -> None:
    before = dump(billed_january)
    nightly_flow(as_of=date(2026, 2, 1), db=str(billed_january))
    assert dump(billed_january) == before


def test_late_usage_on_a_final_period_becomes_an_adjustment(
    billed_january: Path, scenario: dict[str, Path], write_drop_fixture
) -> None:
    db = billed_january
    final_lines = lines(db, "2026-01")
    # A late 10-minute call on Jan 28 ($1.00): past the 100 free minutes, so no discount.
    late = write_drop_fixture(
        scenario["tmp"] / "late",
        usage="event_id,account_id,service,destination_group,started_at,quantity,amount\n"
        "E3,A1,voice,US,2026-01-28 08:00:00,10,1.00\n",
    )
    load_flow(str(late), str(db))
    nightly_flow(as_of=date(2026, 2, 2), db=str(db))
    assert lines(db, "2026-01") == final_lines  # a final period is never rewritten

    reprocess_flow(period="2026-01", db=str(db))
    assert invoice(db, "2026-01") == (D("37.32"), "final")
    assert lines(db, "2026-01") == final_lines
    assert q(
        db, "SELECT line_type, assignment_id, quantity, amount FROM adjustments"
    ) == [("usage", "AS_V100", D("10"), D("1.00"))]

    reprocess_flow(period="2026-01", db=str(db))
    assert q(db, "SELECT count(*) FROM adjustments") == [(1,)]


def test_backdated_removal_credits_the_unused_days(
    billed_january: Path, scenario: dict[str, Path], write_drop_fixture
) -> None:
    db = billed_january
    # The TV pack is removed as of Jan 21: 11 unused days of 31 -> -30 x 11/31 = -$10.65.
    removal = write_drop_fixture(
        scenario["tmp"] / "removal",
        assignments="assignment_id,account_id,addon_id,fee_plan_id,start_date,end_date,"
        "assigned_at,quantity\nAS_TV,A1,ADD_TV,TV1,2026-01-11,2026-01-21,2026-01-10 09:00:00,1\n",
    )
    load_flow(str(removal), str(db))
    reprocess_flow(period="2026-01", db=str(db))
    assert q(db, "SELECT line_type, assignment_id, amount FROM adjustments") == [
        ("credit", "AS_TV", D("-10.65"))
    ]
    assert invoice(db, "2026-01") == (D("37.32"), "final")
    # The next night drops the TV fee from February's draft: only the $5 voice add-on is left.
    nightly_flow(as_of=date(2026, 2, 2), db=str(db))
    assert invoice(db, "2026-02") == (D("5.00"), "draft")


def test_reprocess_of_a_draft_replaces_it(
    billed_january: Path, scenario: dict[str, Path], write_drop_fixture
) -> None:
    db = billed_january
    # 20 minutes on Feb 1, loaded after the Feb 1 night: free (February's counter starts at 0).
    more = write_drop_fixture(
        scenario["tmp"] / "feb",
        usage="event_id,account_id,service,destination_group,started_at,quantity,amount\n"
        "E4,A1,voice,US,2026-02-01 12:00:00,20,2.00\n",
    )
    load_flow(str(more), str(db))
    reprocess_flow(period="2026-02", db=str(db))
    assert invoice(db, "2026-02") == (D("35.00"), "draft")
    assert ("usage", "AS_V100", D("2.00")) in lines(db, "2026-02")
    assert ("discount", "AS_V100", D("-2.00")) in lines(db, "2026-02")
    assert q(db, "SELECT count(*) FROM adjustments") == [(0,)]


def test_corrected_assignment_on_a_final_period_becomes_an_adjustment(
    billed_january: Path, scenario: dict[str, Path], write_drop_fixture
) -> None:
    db = billed_january
    # The voice add-on was in fact taken twice (quantity 2): one more $5.00 for January.
    fix = write_drop_fixture(
        scenario["tmp"] / "fix",
        assignments="assignment_id,account_id,addon_id,fee_plan_id,start_date,end_date,"
        "assigned_at,quantity\nAS_V100,A1,ADD_VOICE100,V1,2026-01-01,,2025-12-30 10:00:00,2\n",
    )
    load_flow(str(fix), str(db))
    reprocess_flow(period="2026-01", db=str(db))
    rows = q(db, "SELECT line_type, assignment_id, quantity, amount, reason FROM adjustments")
    assert [r[:4] for r in rows] == [("recurring", "AS_V100", D("1"), D("5.00"))]
    assert rows[0][4].startswith("corrected assignment: recurring line changed")


def test_a_failed_run_is_recorded_and_changes_no_result(tmp_path: Path) -> None:
    import store

    db = tmp_path / "empty.duckdb"
    store.connect(str(db)).close()  # a database with the schema but no catalog loaded
    with pytest.raises(Exception):
        nightly_flow(as_of=date(2026, 2, 1), db=str(db))
    rows = q(db, "SELECT kind, status, as_of, message FROM runs")
    assert [r[:3] for r in rows] == [("nightly", "failed", date(2026, 2, 1))]
    assert "catalog" in rows[0][3].lower()
    assert q(db, "SELECT count(*) FROM charges") == [(0,)]


def test_a_run_before_any_activity_bills_nothing_but_settles_every_assignment(
    scenario: dict[str, Path],
) -> None:
    """As of Dec 20 nothing has started (AS_V100 from Jan 1, AS_TV from Jan 11, the first call on
    Jan 5): no period to bill, yet both life cycles are settled and recorded; the run's row
    holds its UTC start and end and a run id of the one scheme."""
    import re

    from store.clock import utc_now

    db = scenario["db"]
    load_flow(str(scenario["drop"]), str(db))
    before = utc_now()
    summary = nightly_flow(as_of=date(2025, 12, 20), db=str(db))
    after = utc_now()
    assert summary.account_periods == 0
    assert q(db, "SELECT count(*) FROM invoices") == [(0,)]
    assert q(db, "SELECT assignment_id, eff_start, billable FROM assignment_lifecycles "
                 "ORDER BY ALL") == [
        ("AS_TV", date(2026, 1, 11), True), ("AS_V100", date(2026, 1, 1), True),
    ]
    assert q(db, "SELECT count(*) FROM activation_locks") == [(0,)]  # nothing active yet
    ((run_id, started, finished),) = q(
        db, "SELECT run_id, started_at, finished_at FROM runs WHERE kind = 'nightly'"
    )
    assert re.fullmatch(r"nightly-\d{8}T\d{6}-[0-9a-f]{6}", run_id) and run_id == summary.run_id
    assert before <= started <= finished <= after
