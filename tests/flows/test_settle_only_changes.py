"""SPEC §8.1 verdicts of an account that no period bills yet, through the real CLI on a real
DuckDB file (docs/RULES.md "Accounts no period bills").

One account, billing day 1, USD; its add-on starts 2026-05-01, after the first night:
- S1: ADD_M on the $30 monthly plan M30 from 2026-05-01;
- a change to the $150 6-month plan M150 from 2026-06-11: SUB_M is `immediate`, so it takes
  effect on its effective_from, 2026-06-11;
- a change to M_EUR from 2026-07-01: a plan in EUR for a USD account fails §3's eligibility,
  so it is refused (and supersedes nothing, so the first change stays in effect).
`nightly --as-of 2026-02-10`: the account's first activity (2026-05-01) is after the open
period, so no period bills it; only the settle round sees it. Its verdicts are recorded all the
same, as its life cycle is. Its decision rows (§8.1's `plan change timing`) belong to billed
periods: none yet. `nightly --as-of 2026-05-02` bills May, 30.00 (a full month of M30), and
the verdicts stay as they were, now with their decision rows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.slow

CATALOG = """
currencies: {USD: 2, EUR: 2}
main_products:
  - {id: MP, name: Main, available_addons: [ADD_M]}
addons:
  - {id: ADD_M, name: Monthly, priority: 1, subscription: SUB_M}
subscriptions:
  - id: SUB_M
    fee_plans:
      - {id: M30, term_months: 1, fee: "30.00", currency: USD}
      - {id: M150, term_months: 6, fee: "150.00", currency: USD}
      - {id: M_EUR, term_months: 1, fee: "25.00", currency: EUR}
"""
ACCOUNTS = ("account_id,currency,main_product_id,billing_day,status,opened_on,closed_on\n"
            "A1,USD,MP,1,active,2026-01-01,\n")
ASSIGNMENTS = (
    "assignment_id,account_id,addon_id,fee_plan_id,start_date,end_date,assigned_at,quantity,"
    "effective_from\n"
    "S1,A1,ADD_M,M30,2026-05-01,,2026-01-20 10:00:00,1,\n"
    "S1,A1,ADD_M,M150,2026-05-01,,2026-01-20 10:00:00,1,2026-06-11\n"
    "S1,A1,ADD_M,M_EUR,2026-05-01,,2026-01-20 10:00:00,1,2026-07-01\n"
)
VERDICTS = [
    (date(2026, 6, 11), date(2026, 6, 11), "M150", "in effect"),
    (date(2026, 7, 1), None, "M_EUR", "refused"),
]
# What each verdict's reason must name (the rule's own wording around it may change).
REASONS = [("immediate", "2026-06-11"), ("M_EUR", "EUR", "USD")]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    got = subprocess.run([sys.executable, "-m", "billrun.cli", *args], capture_output=True,
                         text=True, timeout=600, env={**os.environ, "COLUMNS": "80"})
    assert got.returncode == 0, got.stderr
    assert "Traceback" not in got.stderr
    return got


def history(db: Path) -> list[tuple]:
    """The account's changes in `assignment_history`; checks each reason names its cause."""
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT effective_from, takes_effect_on, fee_plan_id, status, reason "
            "FROM assignment_history WHERE effective_from IS NOT NULL ORDER BY effective_from"
        ).fetchall()
    if len(rows) == len(REASONS) and all(r[3] != "not in effect" for r in rows):
        for row, words in zip(rows, REASONS, strict=True):
            assert all(w in row[4] for w in words), row
    return [row[:4] for row in rows]


def facts(db: Path) -> tuple[list[tuple], list[tuple], int]:
    with duckdb.connect(str(db), read_only=True) as con:
        invoices = con.execute("SELECT period, total FROM invoices ORDER BY period").fetchall()
        timing = con.execute(
            "SELECT DISTINCT outcome, effective_start FROM decisions "
            "WHERE rule = 'plan change timing' ORDER BY ALL").fetchall()
        lifecycles = con.execute("SELECT count(*) FROM assignment_lifecycles").fetchone()[0]
    return invoices, timing, lifecycles


@pytest.fixture(scope="module")
def drop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("settle_only") / "drop"
    folder.mkdir()
    (folder / "catalog.yaml").write_text(CATALOG)
    (folder / "accounts.csv").write_text(ACCOUNTS)
    (folder / "assignments.csv").write_text(ASSIGNMENTS)
    return folder


def test_an_account_no_period_bills_gets_its_change_verdicts(drop: Path) -> None:
    db = drop.parent / "billrun.duckdb"
    cli("nightly", "--as-of", "2026-02-10", "--input", str(drop), "--db", str(db))
    invoices, timing, lifecycles = facts(db)
    assert invoices == [] and timing == []  # nothing billed: no period, no decision row
    assert lifecycles == 1  # the settle round records the life cycle...
    assert history(db) == VERDICTS  # ...and, as SPEC §8.1 asks, each change's verdict


def test_the_verdicts_stand_once_the_account_is_billed(drop: Path) -> None:
    db = drop.parent / "billrun.duckdb"
    assert db.exists(), "runs after the test above"
    cli("nightly", "--as-of", "2026-05-02", "--allow-future", "--db", str(db))
    invoices, timing, _ = facts(db)
    assert invoices == [("2026-05", Decimal("30.00"))]
    assert history(db) == VERDICTS
    # The decision rows say the same as the verdicts (the refused change has no start).
    assert timing == [("in effect", date(2026, 6, 11)), ("refused", None)]
