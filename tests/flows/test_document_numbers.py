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
