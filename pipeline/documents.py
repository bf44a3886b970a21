"""Invoice documents (SPEC §9): numbering terms, and the model of one printable document.

Pure: rows in, a document model out. The numbers themselves are given inside the run's one
commit transaction (store/documents.py); the markup is billrun/invoice_html.py's template.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.catalog import Catalog

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
