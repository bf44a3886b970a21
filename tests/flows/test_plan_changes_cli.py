"""Every example of SPEC §8.1-§8.2, worked by hand, through the real CLI on a real DuckDB file.

One catalog, one account per example, billing day 1, all fees in USD:
- A1, A2: `$30 monthly` (SUB_M, plan_change immediate) from 2026-01-01; from 2026-03-11 A1 moves
  to the $150 6-month plan, A2 to 3 seats (issue 20's table);
- A3: SUB_E (end_of_term) $30 monthly to $20 monthly requested from 2026-03-11;
- A4, A5: SUB_U (upgrades_now) $60 quarterly from 2026-01-01, to $25 monthly (an upgrade) or
  $15 monthly (not one) from 2026-02-15;
- A6, A7, A8: SUB_C $20 monthly with minimum_terms 12 and an early-termination fee of 100.00,
  from 2026-01-11, ending 2026-06-16, 2026-12-31 and 2027-01-01.
Nights: as of 2026-02-10 (January final), then a drop with every change and a nightly as of
2026-03-12, then as of 2027-01-02; then `reprocess --period 2026-02` adds no adjustment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

CATALOG = """
currencies: {USD: 2}
main_products:
  - {id: MP, name: Main, available_addons: [ADD_M, ADD_E, ADD_U, ADD_C]}
addons:
  - {id: ADD_M, name: Monthly, priority: 1, subscription: SUB_M}
  - {id: ADD_E, name: End of term, priority: 2, subscription: SUB_E}
  - {id: ADD_U, name: Upgrades now, priority: 3, subscription: SUB_U}
  - {id: ADD_C, name: Committed, priority: 4, subscription: SUB_C}
subscriptions:
  - id: SUB_M
    fee_plans:
      - {id: M30, term_months: 1, fee: "30.00", currency: USD}
      - {id: M150, term_months: 6, fee: "150.00", currency: USD}
  - id: SUB_E
    plan_change: end_of_term
    fee_plans:
      - {id: E30, term_months: 1, fee: "30.00", currency: USD}
      - {id: E20, term_months: 1, fee: "20.00", currency: USD}
  - id: SUB_U
    plan_change: upgrades_now
    fee_plans:
      - {id: U60Q, term_months: 3, fee: "60.00", currency: USD}
      - {id: U25, term_months: 1, fee: "25.00", currency: USD}
      - {id: U15, term_months: 1, fee: "15.00", currency: USD}
  - id: SUB_C
    fee_plans:
      - {id: C20, term_months: 1, fee: "20.00", currency: USD, minimum_terms: 12,
         early_termination_fee: "100.00"}
"""
ACCOUNTS = "account_id,currency,main_product_id,billing_day,status,opened_on,closed_on\n" + "".join(
    f"A{n},USD,MP,1,active,2025-12-01,\n" for n in range(1, 9)
)
HEADER = ("assignment_id,account_id,addon_id,fee_plan_id,start_date,end_date,assigned_at,quantity,"
          "effective_from\n")
BASE = HEADER + """S1,A1,ADD_M,M30,2026-01-01,,2025-12-20 10:00:00,1,
S2,A2,ADD_M,M30,2026-01-01,,2025-12-20 10:00:00,1,
S3,A3,ADD_E,E30,2026-01-01,,2025-12-20 10:00:00,1,
S4,A4,ADD_U,U60Q,2026-01-01,,2025-12-20 10:00:00,1,
S5,A5,ADD_U,U60Q,2026-01-01,,2025-12-20 10:00:00,1,
S6,A6,ADD_C,C20,2026-01-11,2026-06-16,2025-12-20 10:00:00,1,
S7,A7,ADD_C,C20,2026-01-11,2026-12-31,2025-12-20 10:00:00,1,
S8,A8,ADD_C,C20,2026-01-11,2027-01-01,2025-12-20 10:00:00,1,
"""
CHANGES = HEADER + """S1,A1,ADD_M,M150,2026-01-01,,2025-12-20 10:00:00,1,2026-03-11
S2,A2,ADD_M,M30,2026-01-01,,2025-12-20 10:00:00,3,2026-03-11
S3,A3,ADD_E,E20,2026-01-01,,2025-12-20 10:00:00,1,2026-03-11
S4,A4,ADD_U,U25,2026-01-01,,2025-12-20 10:00:00,1,2026-02-15
S5,A5,ADD_U,U15,2026-01-01,,2025-12-20 10:00:00,1,2026-02-15
"""

# (account, period) -> invoice total, worked by hand (docstring; SPEC §8.1-§8.2 examples).
EXPECTED = {
    # 30.00 - 30 x 21/31 (-20.32) + 150 x 21/182 (17.31) = 26.99; the 6-month term to October.
    ("A1", "2026-03"): "26.99", ("A1", "2026-04"): "150.00", ("A1", "2026-10"): "150.00",
    # 30.00 + 30 x 2 x 21/31 (40.65) = 70.65; then 3 x 30.00.
    ("A2", "2026-03"): "70.65", ("A2", "2026-04"): "90.00",
    # end_of_term: takes effect 2026-04-01.
    ("A3", "2026-03"): "30.00", ("A3", "2026-04"): "20.00",
    # upgrade: credit 60 x 45/90 = -30.00 and 25 x 14/28 = 12.50 in February.
    ("A4", "2026-01"): "60.00", ("A4", "2026-02"): "-17.50", ("A4", "2026-03"): "25.00",
    # not an upgrade: waits for 2026-04-01.
    ("A5", "2026-01"): "60.00", ("A5", "2026-04"): "15.00",
    # 20 x 21/31 = 13.55 in January; June: 20.00 - 20 x 15/30 + 100.00 fee.
    ("A6", "2026-01"): "13.55", ("A6", "2026-06"): "110.00",
    # December: 20.00 - 20 x 1/31 (0.65) + 100.00: the 12th term is a day short.
    ("A7", "2026-12"): "119.35",
    # Active through December 31: the commitment is met, no fee.
    ("A8", "2026-12"): "20.00",
}
NO_INVOICE = [("A1", f"2026-{m:02d}") for m in (5, 6, 7, 8, 9, 11, 12)] + [
    ("A5", "2026-02"), ("A5", "2026-03"), ("A6", "2026-07")]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    got = subprocess.run([sys.executable, "-m", "billrun.cli", *args], capture_output=True,
                         text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    assert got.returncode == 0, got.stderr
    return got


@pytest.fixture(scope="module")
def billed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("plan_changes")
    drop1, drop2 = tmp / "drop1", tmp / "drop2"
    drop1.mkdir()
    drop2.mkdir()
    (drop1 / "catalog.yaml").write_text(CATALOG)
    (drop1 / "accounts.csv").write_text(ACCOUNTS)
    (drop1 / "assignments.csv").write_text(BASE)
    (drop2 / "assignments.csv").write_text(CHANGES)
    db = str(tmp / "billrun.duckdb")
    cli("nightly", "--as-of", "2026-02-10", "--input", str(drop1), "--db", db)
    cli("nightly", "--as-of", "2026-03-12", "--input", str(drop2), "--db", db)
    cli("nightly", "--as-of", "2027-01-02", "--allow-future", "--db", db)
    cli("reprocess", "--period", "2026-02", "--db", db)
    return Path(db)


def test_every_example_bills_what_the_spec_says(billed: Path) -> None:
    with duckdb.connect(str(billed), read_only=True) as con:
        totals = {(a, p): t for a, p, t in con.execute(
            "SELECT account_id, period, total FROM invoices").fetchall()}
    for key, total in EXPECTED.items():
        assert totals.get(key) == Decimal(total), key
    for key in NO_INVOICE:
        assert key not in totals, key


def test_the_termination_fee_and_its_decision(billed: Path) -> None:
    with duckdb.connect(str(billed), read_only=True) as con:
        fees = con.execute(
            "SELECT account_id, period, amount FROM charges WHERE line_type = 'termination_fee' "
            "ORDER BY ALL").fetchall()
        decided = con.execute(
            "SELECT DISTINCT assignment_id, outcome FROM decisions "
            "WHERE rule = 'early termination' ORDER BY ALL").fetchall()
    assert fees == [("A6", "2026-06", Decimal("100.00")), ("A7", "2026-12", Decimal("100.00"))]
    assert decided == [("S6", "fee charged"), ("S7", "fee charged")]


def test_each_change_is_decided_and_in_the_history(billed: Path) -> None:
    with duckdb.connect(str(billed), read_only=True) as con:
        history = con.execute(
            "SELECT assignment_id, effective_from, takes_effect_on, status FROM "
            "assignment_history WHERE effective_from IS NOT NULL ORDER BY ALL").fetchall()
        timing = con.execute(
            "SELECT DISTINCT assignment_id, outcome, effective_start FROM decisions "
            "WHERE rule = 'plan change timing' ORDER BY ALL").fetchall()
    from datetime import date

    assert [(a, t, s) for a, _, t, s in history] == [
        ("S1", date(2026, 3, 11), "in effect"), ("S2", date(2026, 3, 11), "in effect"),
        ("S3", date(2026, 4, 1), "in effect"), ("S4", date(2026, 2, 15), "in effect"),
        ("S5", date(2026, 4, 1), "in effect")]
    assert [(a, s, t) for a, s, t in timing] == [(a, s, t) for a, t, s in
                                                 [(a, t, s) for a, _, t, s in history]]


def test_reprocessing_an_unchanged_period_adds_no_adjustment(billed: Path) -> None:
    with duckdb.connect(str(billed), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM adjustments").fetchone() == (0,)


def test_explain_tells_the_change_story(billed: Path) -> None:
    from datetime import date

    got = cli("explain", "--account", "A1", "--period", "2026-03", "--db", str(billed))
    assert "Versions of each changed add-on" in got.stdout
    with duckdb.connect(str(billed), read_only=True) as con:
        from billrun.explain import explain_frames

        versions = explain_frames(con, "A1", "2026-03")["versions"]
    assert versions.select("fee_plan_id", "takes_effect_on", "status").rows() == [
        ("M30", date(2026, 1, 1), "base"), ("M150", date(2026, 3, 11), "in effect")]


@pytest.mark.parametrize("account, change, january, february", [
    # immediate: S2 holds M30 x3. January: 90.00, credit 90 x 21/31 = -60.97, and M150 x3's
    # partial first term up to 2027-02-01, of the full term 2026-08-01..2027-02-01 (184 days):
    # 450 x 21/184 = 51.36. So 80.39; February starts M150's first whole term: 450.00.
    ("A2", "assignment=S2,plan=M150,from=2027-01-11", "80.39", "450.00"),
    # end_of_term: E20 stays through January; E30 from 2027-02-01.
    ("A3", "assignment=S3,plan=E30,from=2027-01-11", "20.00", "30.00"),
    # upgrades_now, 25 a month above 15: on its date. 15.00 - 15 x 21/31 (10.16) + 25 x 21/31
    # (16.94) = 21.78.
    ("A5", "assignment=S5,plan=U25,from=2027-01-11", "21.78", "25.00"),
])
def test_preview_prices_a_plan_change_under_each_policy(
    billed: Path, account: str, change: str, january: str, february: str
) -> None:
    import json

    got = cli("preview", "--db", str(billed), "--account", account, "--change", change, "--json")
    jan, feb = json.loads(got.stdout)["periods"]
    assert (jan["period"], jan["total_after"]) == ("2027-01", january)
    assert (feb["period"], feb["total_after"]) == ("2027-02", february)


def test_preview_adds_30_monthly_from_june_11_without_activation_fee(billed: Path) -> None:
    import json

    # SUB_M has no activation fee: 30 x 20/30 = 20.00, A3's own E20 beside it.
    got = cli("preview", "--db", str(billed), "--account", "A3", "--add",
              "addon=ADD_M,plan=M30,start=2027-06-11", "--periods", "2027-06", "--json")
    june = json.loads(got.stdout)["periods"][0]
    assert (june["total_before"], june["total_after"]) == ("20.00", "40.00")
