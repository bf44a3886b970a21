"""A change delivered and then corrected bills the same as the correction delivered alone
(SPEC §8.1: a later row with the same (assignment_id, effective_from) replaces it), through the
real load and nightly flows on real DuckDB files."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from flows.load import load_flow
from flows.nightly import nightly_flow

CATALOG = """
currencies: {USD: 2}
main_products:
  - {id: MP, name: Main, available_addons: [ADD_M]}
addons:
  - {id: ADD_M, name: Monthly, priority: 1, subscription: SUB_M}
subscriptions:
  - id: SUB_M
    fee_plans:
      - {id: M30, term_months: 1, fee: "30.00", currency: USD}
      - {id: M150, term_months: 6, fee: "150.00", currency: USD}
"""
ACCOUNTS = ("account_id,currency,main_product_id,billing_day,status,opened_on,closed_on\n"
            "A1,USD,MP,1,active,2025-12-01,\n")
HEADER = ("assignment_id,account_id,addon_id,fee_plan_id,start_date,end_date,assigned_at,"
          "quantity,effective_from\n")
BASE = HEADER + "S1,A1,ADD_M,M30,2026-01-01,,2025-12-20 10:00:00,1,\n"

FIRST = HEADER + "S1,A1,ADD_M,M150,2026-01-01,,2025-12-20 10:00:00,2,2026-03-11\n"
CORRECTED = HEADER + "S1,A1,ADD_M,M30,2026-01-01,,2025-12-20 10:00:00,3,2026-03-11\n"
TABLES = {
    "invoices": "account_id, period, total, status",
    "charges": "account_id, period, line_type, assignment_id, amount, description",
    "plan_change_verdicts": "assignment_id, effective_from, takes_effect_on, status",
}


def _drop(folder: Path, assignments: str, *, base: bool) -> str:
    folder.mkdir(parents=True)
    if base:
        (folder / "catalog.yaml").write_text(CATALOG)
        (folder / "accounts.csv").write_text(ACCOUNTS)
    (folder / "assignments.csv").write_text(assignments if not base else BASE + assignments
                                           .split("\n", 1)[1])
    return str(folder)


def _tables(db: str) -> dict[str, list[tuple]]:
    with duckdb.connect(db, read_only=True) as con:
        return {t: con.execute(f"SELECT {cols} FROM {t} ORDER BY ALL").fetchall()
                for t, cols in TABLES.items()}


@pytest.mark.parametrize("first_night", [date(2026, 3, 20)])  # after it took effect
def test_a_corrected_change_bills_as_the_correction_alone(tmp_path: Path,
                                                          first_night: date) -> None:
    # Delivered, billed (before or after it took effect), then corrected.
    twice = str(tmp_path / "twice.duckdb")
    load_flow(_drop(tmp_path / "t1", FIRST, base=True), twice)
    nightly_flow(as_of=first_night, db=twice)
    load_flow(_drop(tmp_path / "t2", CORRECTED, base=False), twice)
    nightly_flow(as_of=date(2026, 4, 2), db=twice)
    # The correction alone.
    once = str(tmp_path / "once.duckdb")
    load_flow(_drop(tmp_path / "o1", CORRECTED, base=True), once)
    nightly_flow(as_of=first_night, db=once)
    nightly_flow(as_of=date(2026, 4, 2), db=once)
    assert _tables(twice) == _tables(once)
    # March: 30.00 and 30 x (3 - 1) x 21/31 = 40.65.
    march = [t for a, p, t, _ in _tables(once)["invoices"] if (a, p) == ("A1", "2026-03")]
    assert march == [Decimal("70.65")]
