"""The printable model of one credit or debit note (SPEC §9), pure, with hand-worked sums."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.documents import note_document

NOTE = {"document_number": "CN-00000002", "kind": "credit_note", "account_id": "A2",
        "period": "2026-02", "currency": "USD", "total": Decimal("-3.75"),
        "issued_on": date(2026, 4, 1), "due_on": date(2026, 5, 1), "corrects": "INV-00000004"}
LINES = [
    {"line_type": "credit", "amount": Decimal("-2.50"), "quantity": Decimal(1),
     "description": "Credit V1 2026-02-15..2026-03-01 (14/28)", "reason": "backdated removal"},
    {"line_type": "usage", "amount": Decimal("-1.25"), "quantity": Decimal("-12.5"),
     "description": "usage voice US", "reason": "usage removed"},
]


def build(**changes):
    note = {**NOTE, **changes.pop("note", {})}
    args = {"invoice_total": Decimal("5.00"), "earlier_notes": [Decimal("1.00")], **changes}
    return note_document(note, LINES, args["invoice_total"], args["earlier_notes"],
                         minor_units=2, account={"account_id": "A2", "billing_day": 1},
                         seller=None)


def test_a_note_shows_its_lines_its_total_and_the_balance_after_it() -> None:
    doc = build()
    # lines -2.50 - 1.25 = -3.75; the invoice 5.00, an earlier debit note +1.00, this -3.75:
    # 5.00 + 1.00 - 3.75 = 2.25.
    assert (doc.kind, doc.number, doc.corrects, doc.total) == (
        "Credit note", "CN-00000002", "INV-00000004", "-3.75")
    assert [(line.fee.line_type, line.fee.amount, line.fee.proration, line.reason)
            for line in doc.lines] == [
        ("credit", "-2.50", "14/28 days", "backdated removal"),
        ("usage", "-1.25", "", "usage removed")]
    assert (doc.invoice_total, doc.balance) == ("5.00", "2.25")
    assert (doc.period_start, doc.period_end) == ("2026-02-01", "2026-03-01")


def test_a_note_of_a_period_without_invoice_stands_alone() -> None:
    doc = build(note={"corrects": None}, invoice_total=None, earlier_notes=[])
    assert (doc.corrects, doc.invoice_total, doc.balance) == ("", "", "-3.75")


def test_a_note_whose_lines_do_not_add_up_is_refused() -> None:
    with pytest.raises(ValueError, match="CN-00000002 total -3.70 differs from its lines"):
        build(note={"total": Decimal("-3.70")})


@given(st.integers(-10**9, 10**9), st.lists(st.integers(-10**7, 10**7), max_size=5))
def test_the_balance_is_the_invoice_plus_every_note_to_this_one(
    invoice_cents: int, earlier_cents: list[int]
) -> None:
    doc = build(invoice_total=Decimal(invoice_cents).scaleb(-2),
                earlier_notes=[Decimal(c).scaleb(-2) for c in earlier_cents])
    expected = Decimal(invoice_cents + sum(earlier_cents) - 375).scaleb(-2)
    assert Decimal(doc.balance.replace(",", "")) == expected
