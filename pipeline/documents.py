"""Invoice documents (SPEC §9): numbering terms, and the model of one printable document.

Pure: rows in, a document model out. The numbers themselves are given inside the run's one
commit transaction (store/documents.py); the markup is billrun/invoice_html.py's template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pipeline.catalog import Catalog, Seller
from pipeline.money import format_amount
from pipeline.periods import period_bounds

# A sequence number is at least this many digits, zero padded, after the prefix (INV-00000001).
NUMBER_DIGITS = 8
KINDS = ("invoice", "credit_note", "debit_note")


@dataclass(frozen=True)
class DocumentTerms:
    """The catalog's numbering and payment terms (SPEC §9), with its defaults."""

    invoice_prefix: str = "INV-"
    credit_note_prefix: str = "CN-"
    debit_note_prefix: str = "DN-"
    payment_terms_days: int = 30

    @classmethod
    def of(cls, catalog: Catalog) -> DocumentTerms:
        return cls(catalog.invoice_prefix, catalog.credit_note_prefix,
                   catalog.debit_note_prefix, catalog.payment_terms_days)

    def prefix(self, kind: str) -> str:
        """The prefix of a document kind (`invoice`, `credit_note`, `debit_note`)."""
        return {"invoice": self.invoice_prefix, "credit_note": self.credit_note_prefix,
                "debit_note": self.debit_note_prefix}[kind]


def document_number(prefix: str, sequence: int) -> str:
    """`prefix` and the sequence number, zero padded to NUMBER_DIGITS (more digits if needed)."""
    return f"{prefix}{sequence:0{NUMBER_DIGITS}d}"


# ---------------------------------------------------------------------------------------------
# The model of one printable invoice: every number already worked out and formatted, so that
# the template (billrun/invoice_html.py) only places text.

# Line types shown with usage (by service and destination group), not under their add-on.
USAGE_TYPES = ("usage", "discount")
KIND_LABELS = {"invoice": "Invoice", "credit_note": "Credit note", "debit_note": "Debit note"}
_TERM = re.compile(r"(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})")
_DAYS = re.compile(r"\((\d+)/(\d+)\)")


def minor(amount: Decimal | int | str, minor_units: int) -> int:
    """A stored amount (DECIMAL, already rounded to the currency) as integer minor units."""
    return int(Decimal(amount).scaleb(minor_units).to_integral_value())


def plain_amount(amount_minor: int, minor_units: int) -> str:
    """Minor units as plain decimal text at the currency's precision (`-2.50`, `3224`): for
    JSON, without thousands separators."""
    value = Decimal(amount_minor).scaleb(-minor_units)
    return f"{value:.{minor_units}f}"


@dataclass(frozen=True)
class FeeRow:
    description: str
    line_type: str
    term: str  # "2026-01-11 to 2026-02-01", the term the line charges ("" when none)
    proration: str  # "21/31 days", "full term" or ""
    quantity: str
    amount: str
    amount_minor: int


@dataclass(frozen=True)
class AddonGroup:
    addon_id: str
    name: str
    rows: tuple[FeeRow, ...]
    subtotal: str


@dataclass(frozen=True)
class UsageRow:
    service: str
    destination_group: str
    quantity: str
    usage: str  # undiscounted amount
    discount: str  # negative, or "" when no discount applied
    net: str
    discounted_by: str  # the add-ons (or main product) whose plan gave the discount
    amounts_minor: tuple[int, ...]


@dataclass(frozen=True)
class NoteLine:
    description: str
    amount: str


@dataclass(frozen=True)
class Note:
    number: str
    kind: str  # "Credit note" or "Debit note"
    issued_on: str
    due_on: str
    total: str
    lines: tuple[NoteLine, ...]


@dataclass(frozen=True)
class Party:
    name: str
    address: tuple[str, ...]  # one line each
    tax_id: str


@dataclass(frozen=True)
class InvoiceDocument:
    """One invoice as it is printed (SPEC §9). A draft has no number and is marked DRAFT."""

    draft: bool
    number: str  # "" for a draft
    account_id: str
    period: str
    period_start: str
    period_end: str  # exclusive
    currency: str
    issued_on: str
    due_on: str
    seller: Party | None
    account: tuple[tuple[str, str], ...]  # (label, value) pairs
    groups: tuple[AddonGroup, ...]
    usage: tuple[UsageRow, ...]
    usage_total: str
    total: str
    total_minor: int
    notes: tuple[Note, ...]
    balance: str  # the total with every correcting note
    line_amounts: tuple[str, ...]  # every amount printed for a line, in order (for checks)


def _quantity(value: Decimal | None) -> str:
    if value is None:
        return ""
    text = f"{Decimal(value).normalize():f}"
    return text


def _fee_row(line: dict[str, Any], units: int) -> FeeRow:
    description = line.get("description") or ""
    term = _TERM.search(description)
    days = _DAYS.search(description)
    proration = ""
    if days:
        used, full = int(days.group(1)), int(days.group(2))
        proration = "full term" if used == full else f"{used}/{full} days"
    amount = minor(line["amount"], units)
    return FeeRow(
        description=description,
        line_type=str(line["line_type"]).replace("_", " "),
        term=f"{term.group(1)} to {term.group(2)}" if term else "",
        proration=proration,
        quantity=_quantity(line.get("quantity")),
        amount=format_amount(amount, units, in_minor=True),
        amount_minor=amount,
    )


def _groups(fees: list[dict[str, Any]], names: dict[str, str], units: int) -> list[AddonGroup]:
    by_addon: dict[str, list[dict[str, Any]]] = {}
    for line in fees:
        by_addon.setdefault(line.get("addon_id") or "", []).append(line)
    groups = []
    for addon_id in sorted(by_addon):
        rows = tuple(_fee_row(line, units) for line in sorted(
            by_addon[addon_id],
            key=lambda r: (str(r.get("term_start") or ""), str(r.get("assignment_id") or ""),
                           str(r["line_type"]), str(r.get("description") or ""))))
        subtotal = sum(r.amount_minor for r in rows)
        groups.append(AddonGroup(
            addon_id=addon_id, name=names.get(addon_id, addon_id or "Other charges"), rows=rows,
            subtotal=format_amount(subtotal, units, in_minor=True),
        ))
    return groups


def _usage(lines: list[dict[str, Any]], names: dict[str, str], units: int) -> list[UsageRow]:
    """Usage summed by service and destination group, with its discount."""
    keys = sorted({(str(r["service"]), str(r["destination_group"])) for r in lines})
    rows = []
    for service, group in keys:
        mine = [r for r in lines if (r["service"], r["destination_group"]) == (service, group)]
        usage = [r for r in mine if r["line_type"] == "usage"]
        discounts = [r for r in mine if r["line_type"] == "discount"]
        usage_minor = sum(minor(r["amount"], units) for r in usage)
        discount_minor = sum(minor(r["amount"], units) for r in discounts)
        quantity = sum((Decimal(r["quantity"] or 0) for r in usage), Decimal(0))
        owners = sorted({names.get(r.get("addon_id") or "", r.get("addon_id") or "main product")
                         for r in discounts})
        rows.append(UsageRow(
            service=service, destination_group=group, quantity=_quantity(quantity),
            usage=format_amount(usage_minor, units, in_minor=True),
            discount=format_amount(discount_minor, units, in_minor=True) if discounts else "",
            net=format_amount(usage_minor + discount_minor, units, in_minor=True),
            discounted_by=", ".join(owners),
            amounts_minor=(usage_minor, discount_minor),
        ))
    return rows


def invoice_document(
    invoice: dict[str, Any],
    lines: list[dict[str, Any]],
    notes: list[dict[str, Any]],
    note_lines: list[dict[str, Any]],
    *,
    minor_units: int,
    addon_names: dict[str, str],
    account: dict[str, Any],
    seller: Seller | None,
) -> InvoiceDocument:
    """Build the printable model of one invoice from its stored rows: `invoice` (a row of
    `invoices`), its `lines` (rows of `charges`), the `notes` that correct it (rows of
    `documents`) and their lines (rows of `adjustments`, by `document_number`); `account`: the
    account's row (main product, billing day)."""
    units = minor_units
    fees = [r for r in lines if r["line_type"] not in USAGE_TYPES]
    usage_lines = [r for r in lines if r["line_type"] in USAGE_TYPES]
    groups = _groups(fees, addon_names, units)
    usage = _usage(usage_lines, addon_names, units)
    total_minor = minor(invoice["total"], units)
    line_minor = sum(minor(r["amount"], units) for r in lines)
    if line_minor != total_minor:  # stored invariant (store/results.py); never print otherwise
        raise ValueError(f"invoice total {invoice['total']} differs from its lines")
    built_notes = []
    for note in sorted(notes, key=lambda n: (n["issued_on"], n["document_number"])):
        mine = [r for r in note_lines if r["document_number"] == note["document_number"]]
        built_notes.append(Note(
            number=note["document_number"], kind=KIND_LABELS[note["kind"]],
            issued_on=str(note["issued_on"]), due_on=str(note["due_on"]),
            total=format_amount(minor(note["total"], units), units, in_minor=True),
            lines=tuple(NoteLine(r.get("description") or "",
                                 format_amount(minor(r["amount"], units), units, in_minor=True))
                        for r in sorted(mine, key=lambda r: str(r.get("description") or ""))),
        ))
    balance = total_minor + sum(minor(n["total"], units) for n in notes)
    draft = invoice["status"] != "final"
    billing_day = int(account.get("billing_day") or 1)
    start, end = period_bounds(str(invoice["period"]), billing_day)
    amounts = [row.amount for g in groups for row in g.rows]
    amounts += [a for u in usage for a in (u.usage, u.discount) if a]
    return InvoiceDocument(
        draft=draft,
        number="" if draft else str(invoice.get("invoice_number") or ""),
        account_id=str(invoice["account_id"]),
        period=str(invoice["period"]),
        period_start=str(start),
        period_end=str(end),
        currency=str(invoice["currency"]),
        issued_on="" if draft or invoice.get("issued_on") is None else str(invoice["issued_on"]),
        due_on="" if draft or invoice.get("due_on") is None else str(invoice["due_on"]),
        seller=None if seller is None else Party(
            seller.name, tuple(p.strip() for p in seller.address.splitlines() if p.strip()),
            seller.tax_id),
        account=tuple((label, str(account[key])) for label, key in (
            ("Account", "account_id"), ("Main product", "main_product"),
            ("Billing day", "billing_day")) if account.get(key) is not None),
        groups=tuple(groups),
        usage=tuple(usage),
        usage_total=format_amount(sum(sum(u.amounts_minor) for u in usage), units,
                                  in_minor=True),
        total=format_amount(total_minor, units, in_minor=True),
        total_minor=total_minor,
        notes=tuple(built_notes),
        balance=format_amount(balance, units, in_minor=True),
        line_amounts=tuple(amounts),
    )


# ---------------------------------------------------------------------------------------------
# The model of one printable note (a credit or debit note, SPEC §9), printed on its own.

@dataclass(frozen=True)
class CorrectionLine:
    """One adjustment line of a note: the line as an invoice shows it, and why it was made."""

    fee: FeeRow
    reason: str


@dataclass(frozen=True)
class NoteDocument:
    """One credit or debit note as it is printed: the invoice it corrects, its lines, and the
    invoice's total once this note (and the notes issued before it) apply."""

    kind: str  # "Credit note" or "Debit note"
    number: str
    issued_on: str
    due_on: str
    corrects: str  # the corrected invoice's number, "" when the period had no invoice
    account_id: str
    period: str
    period_start: str
    period_end: str  # exclusive
    currency: str
    seller: Party | None
    account: tuple[tuple[str, str], ...]
    lines: tuple[CorrectionLine, ...]
    total: str
    total_minor: int
    invoice_total: str  # the corrected invoice's own total ("" without an invoice)
    balance: str  # the invoice's total with this note and those issued before it


def _party(seller: Seller | None) -> Party | None:
    if seller is None:
        return None
    return Party(seller.name,
                 tuple(p.strip() for p in seller.address.splitlines() if p.strip()),
                 seller.tax_id)


def _account_rows(account: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((label, str(account[key])) for label, key in (
        ("Account", "account_id"), ("Main product", "main_product"),
        ("Billing day", "billing_day")) if account.get(key) is not None)


def note_document(
    note: dict[str, Any],
    lines: list[dict[str, Any]],
    invoice_total: Decimal | None,
    earlier_notes: list[Decimal],
    *,
    minor_units: int,
    account: dict[str, Any],
    seller: Seller | None,
) -> NoteDocument:
    """Build the printable model of one note from its stored rows: `note` (a row of
    `documents`), its `lines` (rows of `adjustments` with its `document_number`), the total of
    the invoice it corrects (None when the period had none) and the totals of the notes of the
    same (account, period) issued before it."""
    units = minor_units
    total_minor = minor(note["total"], units)
    rows = tuple(CorrectionLine(_fee_row(line, units), str(line.get("reason") or ""))
                 for line in sorted(lines, key=lambda r: (
                     str(r["line_type"]), str(r.get("assignment_id") or ""),
                     str(r.get("service") or ""), str(r.get("description") or ""))))
    if sum(r.fee.amount_minor for r in rows) != total_minor:  # stored invariant: never print else
        raise ValueError(f"note {note['document_number']} total {note['total']} differs from "
                         "its lines")
    billing_day = int(account.get("billing_day") or 1)
    start, end = period_bounds(str(note["period"]), billing_day)
    balance = total_minor + sum(minor(t, units) for t in earlier_notes)
    if invoice_total is not None:
        balance += minor(invoice_total, units)
    return NoteDocument(
        kind=KIND_LABELS[note["kind"]],
        number=str(note["document_number"]),
        issued_on=str(note["issued_on"]),
        due_on=str(note["due_on"]),
        corrects=str(note.get("corrects") or ""),
        account_id=str(note["account_id"]),
        period=str(note["period"]),
        period_start=str(start),
        period_end=str(end),
        currency=str(note["currency"]),
        seller=_party(seller),
        account=_account_rows(account),
        lines=rows,
        total=format_amount(total_minor, units, in_minor=True),
        total_minor=total_minor,
        invoice_total="" if invoice_total is None else format_amount(
            minor(invoice_total, units), units, in_minor=True),
        balance=format_amount(balance, units, in_minor=True),
    )
