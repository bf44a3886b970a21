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
    assert pl.read_parquet(sets / "documents").height == len(EXPECTED)
    assert "invoice_number" in pl.read_parquet(sets / "invoices").columns


# --- the document itself: `billrun invoice`, rendered and printed by headless Chromium -------

def test_the_invoice_prints_its_number_total_and_every_line_on_a4_and_letter(
    billed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from billrun.cli import main
    from billrun.invoice import load_document, open_copy

    from .pdf_text import media_box, print_to_pdf

    page = tmp_path / "a1.html"
    assert main(["invoice", "--db", str(billed["db"]), "--account", "A1", "--period", "2026-01",
                 "--out", str(page)]) == 0
    assert str(page.resolve()) in capsys.readouterr().out
    con = open_copy(billed["db"])
    try:
        doc = load_document(con, "A1", "2026-01")
    finally:
        con.close()
    # Worked by hand (module doc): the lines are 10.00, 20.32, 5.00, usage 12.00, discount
    # -10.00; the debit note adds 3.00.
    assert sorted(doc.line_amounts) == sorted(["10.00", "20.32", "5.00", "12.00", "-10.00"])
    for paper, size in ((None, (612, 792)), ("A4", (595, 842))):
        pdf = tmp_path / f"a1-{paper or 'letter'}.pdf"
        text = "\n".join(print_to_pdf(page, pdf, paper))
        assert media_box(pdf) == pytest.approx(size, abs=1)
        lines = text.splitlines()
        assert "INV-00000001" in lines and "Invoice INV-00000001" in lines
        assert "Total 37.32 USD" in lines
        for amount in doc.line_amounts:
            assert amount in lines, amount
        assert {"2026-02-01", "2026-02-15", "Acme Telecom & Co", "Tax id: US-123"} <= set(lines)
        flat = " ".join(text.split())  # a narrower page may wrap a cell's words
        for shown in ("21/31 days", "2026-01-11 to 2026-02-01", "full term"):
            assert shown in flat, shown
        assert {"DN-00000001", "Total with corrections 40.32 USD"} <= set(lines)
    html = page.read_text()
    assert "Acme Telecom &amp; Co" in html  # autoescaped
    assert "<script" not in html and "http" not in html.replace("http-equiv", "")  # self-contained


def test_a_draft_is_marked_and_has_no_number(billed, tmp_path: Path) -> None:
    from billrun.cli import main

    from .pdf_text import print_to_pdf

    page = tmp_path / "draft.html"
    assert main(["invoice", "--db", str(billed["db"]), "--account", "A1", "--period", "2026-03",
                 "--out", str(page)]) == 0
    text = "\n".join(print_to_pdf(page, tmp_path / "draft.pdf"))
    assert "DRAFT" in text and "INV-" not in text and "Issued on" not in text
    assert "Total 35.00 USD" in text.splitlines()


def test_all_writes_one_file_per_final_invoice_of_the_period(
    billed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from billrun.cli import main

    out = tmp_path / "feb"
    assert main(["invoice", "--db", str(billed["db"]), "--period", "2026-02", "--all",
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "invoice-A1-2026-02.html", "invoice-A2-2026-02.html"]
    assert "CN-00000001" in (out / "invoice-A2-2026-02.html").read_text()
    monkeypatch.chdir(tmp_path)  # without --out: ./invoice-<account>-<period>.html
    assert main(["invoice", "--db", str(billed["db"]), "--account", "A2", "--period",
                 "2026-01"]) == 0
    assert (tmp_path / "invoice-A2-2026-01.html").exists()


def test_the_account_list_as_json_has_amounts_at_the_currency_precision(
    billed, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from billrun.cli import main

    capsys.readouterr()
    assert main(["invoice", "--db", str(billed["db"]), "--account", "A2", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    import jsonschema

    schema = Path(__file__).resolve().parents[2] / "docs" / "invoice-list.schema.json"
    jsonschema.validate(listing, json.loads(schema.read_text()))  # the documented contract
    assert [(d["period"], d["kind"], d["number"], d["total"], d["corrects"])
            for d in listing["documents"]] == [
        ("2026-01", "invoice", "INV-00000002", "5.00", None),
        ("2026-02", "invoice", "INV-00000004", "5.00", None),
        ("2026-02", "credit_note", "CN-00000001", "-2.50", "INV-00000004"),
        ("2026-03", "invoice", None, "5.00", None),
    ]
    assert main(["invoice", "--db", str(billed["db"]), "--account", "A1"]) == 0
    assert "DN-00000001" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["--account", "NOPE", "--period", "2026-01"],
    ["--account", "A1", "--period", "2025-01"],
    ["--account", "NOPE"],
    ["--period", "2025-01", "--all"],
])
def test_no_such_invoice_is_exit_2_with_one_line(
    billed, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from billrun.cli import main

    capsys.readouterr()
    assert main(["invoice", "--db", str(billed["db"]), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("billrun: error: no ") and err.count("\n") == 1, err


def test_a_page_break_never_splits_a_line(tmp_path: Path) -> None:
    """The stylesheet keeps each row whole and repeats the header; a 3-page invoice of rows
    whose descriptions wrap shows every row's start, end and amount on one page."""
    from billrun.invoice_html import STYLE, render_invoice
    from pipeline.documents import invoice_document

    from .pdf_text import print_to_pdf

    assert "tr { break-inside: avoid; page-break-inside: avoid; }" in STYLE
    assert "thead { display: table-header-group; }" in STYLE
    words = " ".join(f"word{n}" for n in range(30))
    lines = [{"line_type": "recurring", "addon_id": "ADD_X", "assignment_id": f"S{n:03d}",
              "quantity": Decimal(1), "amount": Decimal(n), "term_start": None,
              "description": f"R{n:03d}start {words} R{n:03d}end"} for n in range(1, 61)]
    total = sum(Decimal(n) for n in range(1, 61))
    doc = invoice_document(
        {"account_id": "A9", "period": "2026-01", "currency": "USD", "total": total,
         "status": "final", "invoice_number": "INV-00000009", "issued_on": date(2026, 2, 1),
         "due_on": date(2026, 3, 3)},
        lines, [], [], minor_units=2, addon_names={"ADD_X": "X pack"},
        account={"account_id": "A9", "billing_day": 1}, seller=None,
    )
    page = tmp_path / "long.html"
    page.write_text(render_invoice(doc))
    pages = print_to_pdf(page, tmp_path / "long.pdf")
    assert len(pages) >= 2
    for n in range(1, 61):
        holding = [i for i, text in enumerate(pages)
                   if f"R{n:03d}start" in text or f"R{n:03d}end" in text]
        assert len(set(holding)) == 1, (n, holding)
        assert f"{n}.00" in pages[holding[0]].splitlines()
    assert all("Add-on / line" in text for text in pages[:-1])  # the header repeats
    assert "Total 1,830.00 USD" in pages[-1].splitlines()


def test_the_summaries_and_the_run_report_say_what_each_run_issued(
    billed, capsys: pytest.CaptureFixture[str]
) -> None:
    from billrun.commands import _print_run_summary
    from flows.publish import documents_issued
    from flows.run_report import run_facts

    none = {"invoices issued": "0", "credit notes issued": "0", "debit notes issued": "0"}
    assert documents_issued(billed["first"]) == {
        **none, "invoices issued": "2 (INV-00000001 to INV-00000002)"}
    assert documents_issued(billed["again"]) == none
    assert documents_issued(billed["debit"]) == {**none, "debit notes issued": "1 (DN-00000001)"}
    assert ("credit notes issued", "1 (CN-00000001)") in run_facts(billed["credit"])
    capsys.readouterr()
    _print_run_summary(billed["second"])
    out = capsys.readouterr().out
    assert "invoices issued" in out and "2 (INV-00000003 to INV-00000004)" in out
    report = billed["db"].with_name("billrun.report.html").read_text()
    assert "credit notes issued" in report  # the last run's report (the repeated reprocess)
