"""The invoice document model (SPEC §9), pure: rows in, every number worked out and formatted."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from pipeline.catalog import Seller
from pipeline.documents import DocumentTerms, invoice_document, plain_amount

D = Decimal


def _invoice(**overrides: object) -> dict:
    row = {"account_id": "J1", "period": "2026-01", "currency": "JPY", "total": D("2724"),
           "status": "final", "invoice_number": "F-00000007", "issued_on": date(2026, 2, 1),
           "due_on": date(2026, 2, 1)}
    return {**row, **overrides}


LINES = [
    {"line_type": "recurring", "addon_id": "ADD_TV", "assignment_id": "S1", "quantity": D(2),
     "amount": D("2000"), "term_start": date(2026, 1, 11),
     "description": "TV pack TV1 x2 2026-01-11..2026-02-01 (21/31)"},
    {"line_type": "activation", "addon_id": "ADD_TV", "assignment_id": "S1", "quantity": D(2),
     "amount": D("1000"), "term_start": date(2026, 1, 11),
     "description": "Activation TV pack TV1 2026-01-11 x2"},
    {"line_type": "usage", "addon_id": "ADD_V", "assignment_id": "S2", "service": "voice",
     "destination_group": "US", "quantity": D("120.5"), "amount": D("1224"),
     "description": "Usage voice US: Voice"},
    {"line_type": "usage", "addon_id": None, "assignment_id": None, "service": "voice",
     "destination_group": "US", "quantity": D("10"), "amount": D("100"),
     "description": "Usage voice US"},
    {"line_type": "discount", "addon_id": "ADD_V", "assignment_id": "S2", "service": "voice",
     "destination_group": "US", "quantity": D("100"), "amount": D("-1600"),
     "description": "Discount voice US: Voice"},
]


def _doc(invoice: dict | None = None, notes: list | None = None, note_lines: list | None = None):
    return invoice_document(
        invoice or _invoice(), LINES, notes or [], note_lines or [], minor_units=0,
        addon_names={"ADD_TV": "TV pack", "ADD_V": "Voice"},
        account={"account_id": "J1", "main_product": "Basic", "billing_day": 1},
        seller=Seller(name="Acme", address="1 Main St\nSpringfield", tax_id="T-1"),
    )


def test_fee_lines_are_grouped_by_addon_with_their_term_and_proration() -> None:
    doc = _doc()
    assert [g.name for g in doc.groups] == ["TV pack"]
    rows = doc.groups[0].rows
    assert [(r.line_type, r.term, r.proration, r.quantity, r.amount) for r in rows] == [
        ("activation", "", "", "2", "1,000"),
        ("recurring", "2026-01-11 to 2026-02-01", "21/31 days", "2", "2,000"),
    ]
    assert doc.groups[0].subtotal == "3,000"


def test_usage_is_summed_by_service_and_group_with_its_discount() -> None:
    (row,) = _doc().usage
    assert (row.service, row.destination_group, row.quantity, row.usage, row.discount,
            row.net, row.discounted_by) == ("voice", "US", "130.5", "1,324", "-1,600", "-276",
                                            "Voice")
    assert _doc().usage_total == "-276"


def test_totals_at_the_currency_precision_and_the_notes_that_correct_it() -> None:
    notes = [{"document_number": "CN-1", "kind": "credit_note", "total": D("-500"),
              "issued_on": date(2026, 3, 1), "due_on": date(2026, 3, 1)}]
    note_lines = [{"document_number": "CN-1", "description": "adjustment: x",
                   "amount": D("-500")}]
    doc = _doc(notes=notes, note_lines=note_lines)
    assert (doc.total, doc.balance, doc.number) == ("2,724", "2,224", "F-00000007")
    assert [(n.number, n.kind, n.total, [x.amount for x in n.lines]) for n in doc.notes] == [
        ("CN-1", "Credit note", "-500", ["-500"])]
    assert doc.seller is not None and doc.seller.address == ("1 Main St", "Springfield")
    assert doc.period_start == "2026-01-01" and doc.period_end == "2026-02-01"


def test_a_draft_has_no_number_and_no_dates() -> None:
    doc = _doc(_invoice(status="draft", invoice_number=None, issued_on=None, due_on=None))
    assert doc.draft and (doc.number, doc.issued_on, doc.due_on) == ("", "", "")


def test_a_total_that_is_not_the_sum_of_its_lines_is_refused() -> None:
    with pytest.raises(ValueError, match="differs from its lines"):
        _doc(_invoice(total=D("2725")))


@pytest.mark.parametrize(("minor", "units", "text"), [
    (-250, 2, "-2.50"), (3224, 0, "3224"), (123456789, 2, "1234567.89"), (5, 3, "0.005"),
])
def test_plain_amount(minor: int, units: int, text: str) -> None:
    assert plain_amount(minor, units) == text


def test_terms_prefix_by_kind() -> None:
    terms = DocumentTerms("I", "C", "D", 7)
    assert [terms.prefix(k) for k in ("invoice", "credit_note", "debit_note")] == ["I", "C", "D"]
