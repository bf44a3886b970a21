"""Document numbers (SPEC §9) on a database made before they existed: the schema gains the
columns, and the next commit numbers what was final already, in the order of the runs that
finalized it, with their as-of dates (store/documents.py)."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

import store
from pipeline.documents import DocumentTerms, document_number
from store.documents import issue_documents
from store.results_schema import RESULTS_DDL
from store.runs import RunRecord, record_run

NEW_INVOICE_COLUMNS = re.compile(r",\s*invoice_number VARCHAR, issued_on DATE, due_on DATE")
NEW_ADJUSTMENT_COLUMN = re.compile(r",\s*document_number VARCHAR\)")


def _old_database(path: Path) -> None:
    """The results tables as an older billrun made them: no numbers, no `documents`."""
    kept = [ddl for ddl in RESULTS_DDL if "TABLE IF NOT EXISTS documents" not in ddl]
    old = [NEW_ADJUSTMENT_COLUMN.sub(")", NEW_INVOICE_COLUMNS.sub("", ddl)) for ddl in kept]
    assert len(old) == len(RESULTS_DDL) - 1
    assert sum(a != b for a, b in zip(old, kept)) == 2  # invoices and adjustments lost them
    with duckdb.connect(str(path)) as con:
        for ddl in old:
            con.execute(ddl)
        con.execute("""CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL,
            period VARCHAR, as_of DATE, started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP,
            status VARCHAR NOT NULL, rows_in BIGINT, rows_out BIGINT, message VARCHAR)""")
        runs = [("n1", "nightly", None, date(2026, 2, 1), datetime(2026, 2, 1, 2)),
                ("n2", "nightly", None, date(2026, 3, 1), datetime(2026, 3, 1, 2)),
                ("r1", "reprocess", "2026-01", None, datetime(2026, 3, 2, 9))]
        for run_id, kind, period, as_of, started in runs:
            con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, 'success', 0, 0, NULL)",
                        [run_id, kind, period, as_of, started, started])
        # n2 finalized February before n1's January in insertion order: the run order rules.
        for account, period, total, status, run_id in [
            ("B", "2026-02", "7.00", "final", "n2"), ("A", "2026-02", "6.00", "final", "n2"),
            ("B", "2026-01", "5.00", "final", "n1"), ("A", "2026-01", "4.00", "final", "n1"),
            ("A", "2026-03", "1.00", "draft", "n2"),
        ]:
            con.execute("INSERT INTO invoices VALUES (?, ?, 'USD', ?, ?, ?)",
                        [account, period, Decimal(total), status, run_id])
        for account, amount in (("B", "-1.00"), ("A", "0.50"), ("A", "-0.50")):
            con.execute(
                """INSERT INTO adjustments (account_id, period, line_type, amount, currency,
                   run_id, reason) VALUES (?, '2026-01', 'usage', ?, 'USD', 'r1', 'late')""",
                [account, Decimal(amount)])


def test_an_older_database_gains_the_columns_and_its_finals_are_numbered_in_run_order(
    tmp_path: Path,
) -> None:
    db = tmp_path / "old.duckdb"
    _old_database(db)
    con = store.connect(db)  # ensures the schema: adds the missing columns and `documents`
    try:
        con.execute("BEGIN TRANSACTION")
        record_run(con, RunRecord("n3", "nightly", datetime(2026, 3, 2, 10),
                                  as_of=date(2026, 3, 2)), "success")
        issued = issue_documents(con, "n3", DocumentTerms(payment_terms_days=10))
        con.execute("COMMIT")
        got = con.execute(
            "SELECT document_number, kind, account_id, period, total, issued_on, due_on, "
            "corrects FROM documents ORDER BY kind DESC, sequence").fetchall()
        invoices = con.execute(
            "SELECT account_id, period, invoice_number FROM invoices ORDER BY ALL").fetchall()
        lines = con.execute(
            "SELECT account_id, document_number FROM adjustments ORDER BY ALL").fetchall()
    finally:
        con.close()
    assert issued == {"invoices_issued": 4, "credit_notes_issued": 2, "debit_notes_issued": 0}
    d = date
    assert got == [
        ("INV-00000001", "invoice", "A", "2026-01", Decimal("4.00"), d(2026, 2, 1), d(2026, 2, 11),
         None),
        ("INV-00000002", "invoice", "B", "2026-01", Decimal("5.00"), d(2026, 2, 1), d(2026, 2, 11),
         None),
        ("INV-00000003", "invoice", "A", "2026-02", Decimal("6.00"), d(2026, 3, 1), d(2026, 3, 11),
         None),
        ("INV-00000004", "invoice", "B", "2026-02", Decimal("7.00"), d(2026, 3, 1), d(2026, 3, 11),
         None),
        # the reprocess has no as-of date: its notes are issued on the last nightly's, 03-01;
        # A's lines sum to zero: a credit note (SPEC §9: zero or less)
        ("CN-00000001", "credit_note", "A", "2026-01", Decimal("0.00"), d(2026, 3, 1),
         d(2026, 3, 11), "INV-00000001"),
        ("CN-00000002", "credit_note", "B", "2026-01", Decimal("-1.00"), d(2026, 3, 1),
         d(2026, 3, 11), "INV-00000002"),
    ]
    assert ("A", "2026-03", None) in invoices  # a draft has no number
    assert lines == [("A", "CN-00000001"), ("A", "CN-00000001"), ("B", "CN-00000002")]


@pytest.mark.parametrize(("prefix", "sequence", "number"), [
    ("INV-", 1, "INV-00000001"),
    ("F", 12345678, "F12345678"),
    ("X" * 16, 123456789, "X" * 16 + "123456789"),  # more than 8 digits: never cut
])
def test_document_number(prefix: str, sequence: int, number: str) -> None:
    assert document_number(prefix, sequence) == number


def test_a_gap_in_a_sequence_fails_the_commit(tmp_path: Path) -> None:
    from store.documents import NumberingError

    con = store.connect(tmp_path / "gap.duckdb")
    try:
        con.execute("""INSERT INTO documents VALUES ('INV-00000002', 'invoice', 'A', '2026-01',
                       'USD', 1, DATE '2026-02-01', DATE '2026-03-03', NULL, 'n0', 2)""")
        with pytest.raises(NumberingError, match="invoice"):
            issue_documents(con, "n1", DocumentTerms())
    finally:
        con.close()
