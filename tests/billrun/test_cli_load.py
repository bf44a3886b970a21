"""`billrun load` and friends, end to end: real files, a real DuckDB file, a real Prefect flow."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from billrun.cli import main

Write = Callable[[Path, str, str], Path]
ROOT = Path(__file__).resolve().parents[2]
CATALOG = (ROOT / "data" / "sample" / "catalog.yaml").read_text()

# One file of each input, with every kind of bad row of SPEC §2 at a known line.
ACCOUNTS = """
account_id,currency,main_product_id,billing_day,status,opened_on,closed_on,effective_from
A1,USD,MP_BASIC,,active,2025-01-01,,
A2,GBP,MP_BASIC,1,active,2025-01-01,,
A3,USD,MP_BASIC,1,active,2025-01-01,2024-12-01,
A1,USD,MP_PLUS,1,active,2025-01-01,,
A4,EUR,MP_PLUS,1,active,2025-01-xx,,
"""
ASSIGNMENTS = """
assignment_id,account_id,addon_id,fee_plan_id,start_date,end_date,assigned_at,quantity
S1,A1,ADD_TV,TV1,2025-03-01,,2025-02-28 10:00:00,
S2,A9,ADD_TV,TV1,2025-03-01,,2025-02-28 10:00:00,
S3,A1,ADD_NOPE,,2025-03-01,,2025-02-28 10:00:00,
S4,A1,ADD_SMS,S1,2025-03-01,2025-02-01,2025-02-28 10:00:00,
S1,A1,ADD_TV,TV1,2025-04-01,,2025-03-28 10:00:00,
S5,A1,ADD_SEATS,SEAT1,2025-03-01,,2025-02-28 10:00:00,two
"""
USAGE = """
event_id,account_id,service,destination_group,started_at,quantity,amount
E1,A1,voice,US,2026-01-05 10:00:00,12.5,0.123456
E2,A1,voice,US,2026-01-05 10:00:00,1,1.2.3
E3,A9,voice,US,2026-01-05 10:00:00,1,1
E1,A1,voice,US,2026-01-05 10:00:00,12.5,0.123456
E4,A1,voice,US,2026-01-05 25:00:00,1,1
"""

EXPECTED_REJECTS = [
    ("accounts.csv", 3, "currency: wrong currency 'GBP': not declared in the catalog"),
    ("accounts.csv", 4, "closed_on: closed before it was opened"),
    ("accounts.csv", 5, "account_id: duplicate account_id, effective_from ('A1', 2025-01-01)"),
    ("accounts.csv", 6, "opened_on: '2025-01-xx' is not a date (YYYY-MM-DD)"),
    ("assignments.csv", 3, "account_id: unknown account 'A9'"),
    ("assignments.csv", 4, "addon_id: unknown add-on 'ADD_NOPE'"),
    ("assignments.csv", 5, "end_date: end before start (2025-02-01 < 2025-03-01)"),
    ("assignments.csv", 6, "assignment_id: duplicate assignment_id 'S1' (first at line 2)"),
    ("assignments.csv", 7, "quantity: 'two' is not a whole number"),
    ("usage.csv", 3, "amount: '1.2.3' is not a decimal number"),
    ("usage.csv", 4, "account_id: unknown account 'A9'"),
    ("usage.csv", 5, "event_id: duplicate event_id 'E1' (first at line 2)"),
    ("usage.csv", 6, "started_at: '2026-01-05 25:00:00' is not a timestamp"),
]


def _write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text.lstrip("\n"), encoding="utf-8")


@pytest.fixture(scope="module")
def bad_drop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    """The folder above, loaded once through `billrun load` (one flow run for the module)."""
    folder = tmp_path_factory.mktemp("drop")
    for name, text in [("catalog.yaml", CATALOG), ("accounts.csv", ACCOUNTS),
                       ("assignments.csv", ASSIGNMENTS), ("usage.csv", USAGE)]:
        _write(folder, name, text)
    db = folder / "billrun.duckdb"
    code = main(["load", str(folder), "--db", str(db)])
    return folder, db, code


def test_load_exits_0(bad_drop: tuple[Path, Path, int]) -> None:
    assert bad_drop[2] == 0


@pytest.mark.parametrize(("source", "line", "reason"), EXPECTED_REJECTS)
def test_each_bad_row_is_stored_with_its_reason(
    bad_drop: tuple[Path, Path, int], source: str, line: int, reason: str
) -> None:
    with duckdb.connect(str(bad_drop[1]), read_only=True) as con:
        rows = con.execute(
            "SELECT reason FROM rejected_rows WHERE source = ? AND line = ?", [source, line]
        ).fetchall()
    assert len(rows) == 1
    assert rows[0][0].startswith(reason)


def test_nothing_else_is_rejected_and_the_good_rows_load(bad_drop: tuple[Path, Path, int]) -> None:
    with duckdb.connect(str(bad_drop[1]), read_only=True) as con:
        rejected = con.execute("SELECT count(*) FROM rejected_rows").fetchall()[0][0]
        counts = [
            con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
            for t in ("accounts", "assignments", "usage")
        ]
        run = con.execute("SELECT kind, status, rows_in, rows_out FROM runs").fetchall()
    assert rejected == len(EXPECTED_REJECTS)
    assert counts == [1, 1, 1]
    assert run == [("load", "success", 16, 3)]


@pytest.mark.slow
def test_an_invalid_catalog_exits_2_naming_field_and_id(tmp_path: Path) -> None:
    bad = CATALOG.replace("discount_plan: DDP_5", "discount_plan: DDP_NOPE")
    _write(tmp_path, "catalog.yaml", bad)
    _write(tmp_path, "accounts.csv", ACCOUNTS)
    db = tmp_path / "billrun.duckdb"
    done = subprocess.run(
        [sys.executable, "-m", "billrun.cli", "load", str(tmp_path), "--db", str(db)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert "addons[ADD_DATA5].discount_plan: unknown discount plan 'DDP_NOPE'" in done.stderr
    assert not db.exists()


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('{id: TV1, term_months: 1, fee: "30.00", currency: USD}',
         '{id: TV1, term_months: 1, fee: "30.00", currency: USD, minimum_terms: 12}',
         "subscriptions[SUB_TV].fee_plans[TV1].early_termination_fee"),
        ('{id: TV1, term_months: 1, fee: "30.00", currency: USD}',
         '{id: TV1, term_months: 1, fee: "30.00", currency: USD, minimum_terms: 12, '
         'early_termination_fee: "9.999"}',
         "subscriptions[SUB_TV].fee_plans[TV1].early_termination_fee"),
        ("conflict_policy: replace", "conflict_policy: replace\nfinalize_grace_days: 32",
         "finalize_grace_days"),
        ("  - id: SUB_TV\n", "  - id: SUB_TV\n    plan_change: sometimes\n",
         "subscriptions[SUB_TV].plan_change"),
    ],
)
def test_a_section_8_catalog_mistake_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, field: str
) -> None:
    assert old in CATALOG
    _write(tmp_path, "catalog.yaml", CATALOG.replace(old, new, 1))
    db = tmp_path / "billrun.duckdb"
    assert main(["load", str(tmp_path), "--db", str(db)]) == 2  # checked before any flow runs
    assert field in " ".join(capsys.readouterr().err.split())
    assert not db.exists()


def test_a_missing_folder_exits_2(tmp_path: Path) -> None:
    assert main(["load", str(tmp_path / "nowhere"), "--db", str(tmp_path / "x.duckdb")]) == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["nightly", "--as-of", "2026-13-01"],
        ["reprocess", "--period", "2026-1"],
        ["generate", "--accounts", "0", "--out", "x"],
        ["load"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2


def test_demo_bills_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "demo"
    assert main(["demo", "--dir", str(work)]) == 0
    out = capsys.readouterr().out
    assert "billrun.duckdb" in out and "demo done" in out and "analysts open" in out
    assert "130.000000" not in out and "minor units" not in out  # issue 21: read as people do
    # SPEC §9: the invoices of the last finalized period (February), one page each.
    invoices = work / "invoices" / "2026-02"
    assert f"of 2026-02, one HTML page each, in {invoices.resolve()}" in out.replace("\n", "")
    pages = list(invoices.glob("invoice-*-2026-02.html"))
    assert pages and all("Invoice INV-" in p.read_text() for p in pages[:3])
    with duckdb.connect(str(work / "billrun.analyst.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(DISTINCT account_id) FROM accounts").fetchall()[0][0] > 150
        assert con.execute("SELECT count(*) FROM usage").fetchall()[0][0] > 10_000
        statuses = dict(con.execute("SELECT status, count(*) FROM invoices GROUP BY 1").fetchall())
        assert statuses["final"] > 0 and statuses["draft"] > 0
        # What the README says the demo prints: 17 periods from 2024-11 to 2026-03.
        periods = [r[0] for r in con.execute(
            "SELECT DISTINCT period FROM invoice_summary ORDER BY 1").fetchall()]
        assert (len(periods), periods[0], periods[-1]) == (17, "2024-11", "2026-03")
        readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
        assert "17 periods, 2024-11 to 2026-03" in " ".join(readme.split())
        # Five late January calls of 130 minutes, $2.60 each, past any free US minutes.
        late = con.execute(
            "SELECT count(*), sum(amount) FROM adjustments WHERE line_type = 'usage'"
        ).fetchall()
        assert late == [(5, Decimal("13.00"))]
        assert con.execute(
            "SELECT count(*) FROM invoices WHERE period = '2026-02' AND status = 'final'"
        ).fetchone() == (len(pages),)
        # the reprocess of January issued one debit note per account with late calls
        assert con.execute(
            "SELECT count(*) FROM documents WHERE kind = 'debit_note'").fetchone() == (5,)


def test_generate_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--accounts", "20", "--out", str(tmp_path), "--months", "1"]) == 0
    assert "usage.csv" in capsys.readouterr().out


def test_a_bad_document_key_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path, "catalog.yaml", CATALOG + "\ninvoice_prefix: ABCDEFGHIJKLMNOPQ\n")
    db = tmp_path / "billrun.duckdb"
    assert main(["load", str(tmp_path), "--db", str(db)]) == 2  # checked before any flow
    assert "invoice_prefix: String should have at most 16 characters" in capsys.readouterr().err
    assert not db.exists()
