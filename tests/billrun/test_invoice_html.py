"""The invoice template (SPEC §9): autoescaped, self-contained, printable, no arithmetic."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from billrun.invoice_html import STYLE, TEMPLATE, render_invoice
from pipeline.catalog import Seller
from pipeline.documents import invoice_document


def _doc(description: str, status: str = "final"):
    return invoice_document(
        {"account_id": "A<1>", "period": "2026-01", "currency": "USD", "total": Decimal("1.00"),
         "status": status, "invoice_number": "INV-00000001" if status == "final" else None,
         "issued_on": date(2026, 2, 1), "due_on": date(2026, 3, 3)},
        [{"line_type": "recurring", "addon_id": "ADD_X", "quantity": Decimal(1),
          "amount": Decimal("1.00"), "description": description}],
        [], [], minor_units=2, addon_names={"ADD_X": "X & Y"},
        account={"account_id": "A<1>", "billing_day": 1},
        seller=Seller(name="<Acme>", address="", tax_id=""),
    )


def test_text_is_escaped() -> None:
    html = render_invoice(_doc("<script>alert(1)</script>"))
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "X &amp; Y" in html and "&lt;Acme&gt;" in html and "A&lt;1&gt;" in html


def test_the_template_places_text_and_computes_nothing() -> None:
    for expression in re.findall(r"{{(.*?)}}|{%(.*?)%}", TEMPLATE):
        code = "".join(expression)
        assert not re.search(r"[+*/]|\s-\s|\bsum\b|\|\s*(round|sum|float|int)", code), code


def test_print_rules_keep_rows_whole_and_repeat_headers() -> None:
    assert "tr { break-inside: avoid; page-break-inside: avoid; }" in STYLE
    assert "thead { display: table-header-group; }" in STYLE
    assert "@page { margin:" in STYLE and not re.search(r"(?<!-)size:", STYLE)  # A4 or Letter


def test_a_draft_says_draft_and_shows_no_number() -> None:
    html = render_invoice(_doc("fee", status="draft"))
    assert "DRAFT" in html and "INV-" not in html and "Issued on" not in html
    final = render_invoice(_doc("fee"))
    assert "DRAFT" not in final and "Invoice INV-00000001" in final
