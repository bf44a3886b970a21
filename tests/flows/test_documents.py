"""Invoice documents (SPEC §9, issue 22): numbers, dates and notes, through real flows.

The scenario (conftest.py, plus an account A2 and the catalog's payment terms), worked by hand:
- A1, January: TV activation 10.00 + 30.00 x 21/31 = 20.32, voice add-on 5.00, 120 US minutes
  at 0.10 = 12.00 with the first 100 free (-10.00): 37.32. February: 30.00 + 5.00 = 35.00.
- A2 holds the voice add-on (5.00 a month, in advance) from January 1: 5.00 each month.
- nightly 2026-02-01 finalizes January: INV-00000001 (A1), INV-00000002 (A2), issued
  2026-02-01, due 14 days later, 2026-02-15. The same night again issues nothing.
- nightly 2026-03-01 finalizes February: INV-00000003 (A1), INV-00000004 (A2).
- A late January call of A1 (30 min, 3.00) arrives; the January counter already stands at 120,
  past the 100 free minutes, so the whole call is paid: reprocess 2026-01 writes one adjustment
  line of +3.00 (usage), a debit note DN-00000001 correcting INV-00000001, issued on the last
  nightly's as-of date 2026-03-01, due 2026-03-15.
- A2's voice add-on is then ended on 2026-02-15 (a backdated removal): reprocess 2026-02 writes
  a credit of 5.00 x 14/28 = -2.50, a credit note CN-00000001 correcting INV-00000004.
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
from store.snapshot import analyst_path

from .conftest import ACCOUNTS, ASSIGNMENTS, CATALOG, USAGE, write_drop

pytestmark = pytest.mark.slow

DOC_CATALOG = CATALOG + """
payment_terms_days: 14
seller: {name: "Acme Telecom & Co", address: "1 Main St, Springfield", tax_id: "US-123"}
"""
DOC_ACCOUNTS = ACCOUNTS + "A2,USD,MP_BASIC,1,active,2026-01-01,,\n"
DOC_ASSIGNMENTS = ASSIGNMENTS + "AS2_V,A2,ADD_VOICE100,V1,2026-01-01,,2025-12-30 11:00:00,1\n"
LATE_USAGE = (
    "event_id,account_id,service,destination_group,started_at,quantity,amount\n"
    "E9,A1,voice,US,2026-01-28 09:00:00,30,3.00\n"
)
REMOVAL = (
    "assignment_id,account_id,addon_id,fee_plan_id,start_date,end_date,assigned_at,quantity\n"
    "AS2_V,A2,ADD_VOICE100,V1,2026-01-01,2026-02-15,2025-12-30 11:00:00,1\n"
)


def documents(db: Path) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(
            "SELECT document_number, kind, account_id, period, total, issued_on, due_on, "
            "corrects FROM documents ORDER BY run_id, kind, sequence"
        ).fetchall()


@pytest.fixture(scope="module")
def billed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The whole story above, run once; what each step left is kept for the tests."""
    tmp = tmp_path_factory.mktemp("documents")
    db = tmp / "billrun.duckdb"
    drop = write_drop(tmp / "drop1", catalog=DOC_CATALOG, accounts=DOC_ACCOUNTS,
                      assignments=DOC_ASSIGNMENTS, usage=USAGE)
    load_flow(str(drop), str(db))
    story: dict[str, object] = {"db": db, "tmp": tmp}
    story["first"] = nightly_flow(as_of=date(2026, 2, 1), db=str(db))
    story["after_first"] = documents(db)
    story["again"] = nightly_flow(as_of=date(2026, 2, 1), db=str(db))
    story["after_again"] = documents(db)
    story["second"] = nightly_flow(as_of=date(2026, 3, 1), db=str(db))
    load_flow(str(write_drop(tmp / "late", usage=LATE_USAGE)), str(db))
    story["debit"] = reprocess_flow(period="2026-01", db=str(db))
    load_flow(str(write_drop(tmp / "removal", assignments=REMOVAL)), str(db))
    story["credit"] = reprocess_flow(period="2026-02", db=str(db))
    story["repeat"] = reprocess_flow(period="2026-02", db=str(db))
    return story


D = Decimal
EXPECTED = [
    ("INV-00000001", "invoice", "A1", "2026-01", D("37.32"), date(2026, 2, 1), date(2026, 2, 15),
     None),
    ("INV-00000002", "invoice", "A2", "2026-01", D("5.00"), date(2026, 2, 1), date(2026, 2, 15),
     None),
    ("INV-00000003", "invoice", "A1", "2026-02", D("35.00"), date(2026, 3, 1), date(2026, 3, 15),
     None),
    ("INV-00000004", "invoice", "A2", "2026-02", D("5.00"), date(2026, 3, 1), date(2026, 3, 15),
     None),
    ("DN-00000001", "debit_note", "A1", "2026-01", D("3.00"), date(2026, 3, 1), date(2026, 3, 15),
     "INV-00000001"),
    ("CN-00000001", "credit_note", "A2", "2026-02", D("-2.50"), date(2026, 3, 1),
     date(2026, 3, 15), "INV-00000004"),
]


def test_numbers_are_gapless_in_spec_order_over_nightlies_and_reprocesses(billed) -> None:
    assert billed["after_first"] == EXPECTED[:2]
    assert documents(billed["db"]) == EXPECTED


def test_the_same_night_twice_issues_no_number(billed) -> None:
    assert billed["after_again"] == billed["after_first"]
    assert billed["again"].changes["invoices_issued"] == 0
    assert billed["first"].changes["invoices_issued"] == 2
    # a reprocess with nothing new issues no note either
    assert billed["repeat"].changes["credit_notes_issued"] == 0
    assert billed["repeat"].changes["debit_notes_issued"] == 0


def test_invoices_carry_their_number_and_dates_drafts_none(billed) -> None:
    with duckdb.connect(str(billed["db"]), read_only=True) as con:
        got = con.execute(
            "SELECT account_id, period, status, invoice_number, issued_on, due_on FROM invoices "
            "ORDER BY period, account_id"
        ).fetchall()
    finals = [(e[2], e[3], "final", e[0], e[5], e[6]) for e in EXPECTED[:4]]
    assert got[:4] == finals
    assert [(r[2], r[3], r[4], r[5]) for r in got[4:]] == [("draft", None, None, None)] * 2


def test_notes_totals_equal_their_lines_and_every_line_carries_its_number(billed) -> None:
    with duckdb.connect(str(billed["db"]), read_only=True) as con:
        lines = con.execute(
            "SELECT document_number, account_id, period, line_type, amount FROM adjustments "
            "ORDER BY document_number"
        ).fetchall()
        mismatched = con.execute(
            """SELECT d.document_number FROM documents d
               LEFT JOIN (SELECT document_number, sum(amount) s FROM adjustments GROUP BY ALL) a
               USING (document_number) WHERE d.kind <> 'invoice' AND d.total <> a.s
               UNION ALL
               SELECT d.document_number FROM documents d JOIN invoices i
               ON i.invoice_number = d.document_number
               LEFT JOIN (SELECT account_id, period, sum(amount) s FROM charges GROUP BY ALL) c
               ON c.account_id = i.account_id AND c.period = i.period
               WHERE d.total <> c.s OR i.total <> d.total"""
        ).fetchall()
    assert lines == [
        ("CN-00000001", "A2", "2026-02", "credit", D("-2.50")),
        ("DN-00000001", "A1", "2026-01", "usage", D("3.00")),
    ]
    assert mismatched == []


def test_the_analyst_copy_and_parquet_set_hold_the_documents(billed) -> None:
    import polars as pl

    db = billed["db"]
    with duckdb.connect(str(analyst_path(db)), read_only=True) as con:
        assert con.execute(
            "SELECT count(*) FROM documents").fetchone() == (len(EXPECTED),)
        assert con.execute(
            "SELECT count(*) FROM adjustments WHERE document_number IS NOT NULL").fetchone() == (2,)
    sets = db.with_name("billrun.analyst")
    assert pl.read_parquet(sets / "documents.parquet").height == len(EXPECTED)
    assert "invoice_number" in pl.read_parquet(sets / "invoices.parquet").columns
