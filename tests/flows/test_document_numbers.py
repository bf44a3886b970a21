"""SPEC §9's numbers where people look: `billrun explain` shows the invoice's number and the
notes correcting it, and `billrun invoice --number` prints one note on its own (HTML, printed
by headless Chromium, and plain text).

The story is test_documents.py's, worked by hand there:
- A1 2026-01: INV-00000001, 37.32, issued 2026-02-01, due 2026-02-15; a late call gives the
  debit note DN-00000001 of +3.00 (usage), issued 2026-03-01, due 2026-03-15: 40.32 with it.
- A2 2026-02: INV-00000004, 5.00, issued 2026-03-01, due 2026-03-15; the removal of its voice
  add-on on 2026-02-15 gives the credit note CN-00000001 of 5.00 x 14/28 = -2.50, issued
  2026-03-01, due 2026-03-15: 2.50 with it.
- A1 2026-03 is a draft: no number.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .test_documents import billed  # noqa: F401  (the module-scoped story, run once here)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    got = subprocess.run([sys.executable, "-m", "billrun.cli", *args], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "COLUMNS": "80"})
    assert got.returncode == code, got.stderr
    assert "Traceback" not in got.stderr
    return got


def fits_80(text: str) -> None:
    wide = [line for line in text.splitlines() if len(line) > 80]
    assert wide == [], wide


# --- explain -------------------------------------------------------------------------------

def test_explain_shows_the_number_dates_and_correcting_note(billed) -> None:  # noqa: F811
    out = cli("explain", "--db", str(billed["db"]), "--account", "A1", "--period",
              "2026-01").stdout
    fits_80(out)
    assert "Number: INV-00000001, issued on 2026-02-01, due on 2026-02-15" in out
    assert "Credit and debit notes correcting the invoice" in out
    assert "DN-00000001" in out and "debit_note" in out
    assert "Total with corrections: 40.32" in out


def test_explain_says_a_draft_has_no_number(billed) -> None:  # noqa: F811
    out = cli("explain", "--db", str(billed["db"]), "--account", "A1", "--period",
              "2026-03").stdout
    fits_80(out)
    assert "Number: none (a draft has no number until a nightly finalizes it)" in out
    assert "INV-" not in out and "Total with corrections" not in out


def test_explain_json_has_the_number_and_the_notes(billed) -> None:  # noqa: F811
    import jsonschema

    schema = json.loads((ROOT / "docs" / "explain.schema.json").read_text())
    doc = json.loads(cli("explain", "--db", str(billed["db"]), "--account", "A2", "--period",
                         "2026-02", "--json").stdout)
    jsonschema.validate(doc, schema)
    invoice = doc["invoice"][0]
    assert (invoice["invoice_number"], invoice["issued_on"], invoice["due_on"],
            invoice["total"], invoice["status"]) == (
        "INV-00000004", "2026-03-01", "2026-03-15", "5.00", "final")
    assert [{k: n[k] for k in ("document_number", "kind", "total", "issued_on", "due_on",
                               "corrects")} for n in doc["notes"]] == [
        {"document_number": "CN-00000001", "kind": "credit_note", "total": "-2.50",
         "issued_on": "2026-03-01", "due_on": "2026-03-15", "corrects": "INV-00000004"}]
    assert [(a["amount"], a["document_number"]) for a in doc["adjustments"]] == [
        ("-2.50", "CN-00000001")]
    draft = json.loads(cli("explain", "--db", str(billed["db"]), "--account", "A2", "--period",
                           "2026-03", "--json").stdout)
    jsonschema.validate(draft, schema)
    assert draft["invoice"][0]["status"] == "draft"
    assert (draft["invoice"][0]["invoice_number"], draft["invoice"][0]["issued_on"]) == (
        None, None)
    assert draft["notes"] == []


# --- billrun invoice --number --------------------------------------------------------------

def test_a_credit_note_prints_on_its_own_on_a4_and_letter(
    billed, tmp_path: Path  # noqa: F811
) -> None:
    from .pdf_text import media_box, print_to_pdf

    page = tmp_path / "cn.html"
    got = cli("invoice", "--db", str(billed["db"]), "--number", "CN-00000001", "--out",
              str(page))
    assert f"credit note CN-00000001 written to {page.resolve()}" in " ".join(got.stdout.split())
    for paper, size in ((None, (612, 792)), ("A4", (595, 842))):
        pdf = tmp_path / f"cn-{paper or 'letter'}.pdf"
        lines = "\n".join(print_to_pdf(page, pdf, paper)).splitlines()
        assert media_box(pdf) == pytest.approx(size, abs=1)
        assert "Credit note CN-00000001" in lines
        assert "Corrects invoice INV-00000004" in lines
        assert {"2026-03-01", "2026-03-15", "-2.50", "Acme Telecom & Co"} <= set(lines)
        assert "Credit note total -2.50 USD" in lines
        flat = " ".join(" ".join(lines).split())
        assert "Invoice INV-00000004 total 5.00 USD" in flat
        assert "Total with corrections 2.50 USD" in lines
        assert "14/28 days" in flat
    html = page.read_text()
    assert "Acme Telecom &amp; Co" in html and "<script" not in html


def test_a_debit_note_by_default_goes_to_note_number_html(
    billed, tmp_path: Path  # noqa: F811
) -> None:
    from .pdf_text import print_to_pdf

    subprocess.run([sys.executable, "-m", "billrun.cli", "invoice", "--db",
                    str(billed["db"]), "--number", "DN-00000001"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=300)
    page = tmp_path / "note-DN-00000001.html"
    lines = print_to_pdf(page, tmp_path / "dn.pdf")[0].splitlines()
    assert {"Debit note DN-00000001", "Corrects invoice INV-00000001", "3.00",
            "Debit note total 3.00 USD", "Total with corrections 40.32 USD"} <= set(lines)


def test_a_note_as_text_fits_80_columns(billed) -> None:  # noqa: F811
    out = cli("invoice", "--db", str(billed["db"]), "--number", "CN-00000001", "--text").stdout
    fits_80(out)
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert lines[:3] == ["CREDIT NOTE CN-00000001", "Corrects invoice INV-00000004",
                         "Issued on 2026-03-01, due on 2026-03-15"]
    assert "Credit note total (USD) -2.50" in lines
    assert "Invoice INV-00000004 total 5.00" in lines
    assert "Total with corrections 2.50" in lines
    assert any(line.startswith("credit") and line.endswith("14/28 days -2.50")
               for line in lines), lines


def test_an_invoice_number_writes_that_invoice(billed, tmp_path: Path) -> None:  # noqa: F811
    page = tmp_path / "inv.html"
    cli("invoice", "--db", str(billed["db"]), "--number", "INV-00000003", "--out", str(page))
    html = page.read_text()
    assert "Invoice INV-00000003" in html and "Total 35.00 USD" in html


@pytest.mark.parametrize("argv, message", [
    (["--number", "CN-00000099"], "no invoice or note numbered CN-00000099"),
    (["--number", "CN-00000001", "--account", "A2"], "--number names one document"),
    (["--number", "INV-00000001", "--text"], "INV-00000001 is an invoice"),
    (["--number", "CN-00000001", "--text", "--out", "x.html"], "--text prints the note"),
    (["--account", "A2", "--text"], "--text prints a credit or debit note"),
])
def test_bad_number_arguments_are_exit_2_with_one_line(
    billed, argv: list[str], message: str  # noqa: F811
) -> None:
    err = cli("invoice", "--db", str(billed["db"]), *argv, code=2).stderr
    assert err.startswith("billrun: error: ") and err.count("\n") == 1, err
    assert message in err
