"""Document numbers (SPEC §9), given inside the run's one commit transaction.

`issue_documents` runs in `store.results.write_results`, after the run's invoices, adjustments
and `runs` row are written and before COMMIT: a run that fails or is killed rolls its numbers
back with everything else, and the next run continues each sequence without a gap. Only what
has no number yet is numbered, so running the same night twice issues nothing. Each kind
(invoice, credit note, debit note) has its own sequence; numbers follow the runs (by their
start), then `period`, then `account_id`.

Rows written before numbers existed (a database made by an older billrun) have none: the first
run that commits numbers them the same way, in the order of the runs that finalized them, with
the as-of dates of those runs.
"""

from __future__ import annotations

import duckdb

from pipeline.documents import NUMBER_DIGITS, DocumentTerms
from store.duck import rows

# What still needs a number: final invoices, and the adjustment lines of each (run, account,
# period), which make one note: a credit note when they sum to zero or less, else a debit note.
_PENDING_INVOICES = """SELECT 'invoice' AS kind, account_id, period, currency, total,
        CAST(NULL AS VARCHAR) AS corrects, run_id AS made_by
    FROM invoices WHERE status = 'final' AND invoice_number IS NULL"""
_PENDING_NOTES = """SELECT CASE WHEN sum(a.amount) <= 0 THEN 'credit_note' ELSE 'debit_note' END
          AS kind, a.account_id, a.period, any_value(a.currency) AS currency,
        sum(a.amount) AS total, i.invoice_number AS corrects, a.run_id AS made_by
    FROM adjustments a LEFT JOIN invoices i USING (account_id, period)
    WHERE a.document_number IS NULL
    GROUP BY a.run_id, a.account_id, a.period, i.invoice_number"""

# The issue date of what a run made: its as-of date, or for a reprocess (which has none) the
# as-of date of the last successful nightly before it (SPEC §9).
_RUN_DATES = """SELECT r.run_id, r.started_at, coalesce(r.as_of,
        (SELECT max(n.as_of) FROM runs n WHERE n.kind = 'nightly' AND n.status = 'success'
           AND n.started_at <= r.started_at),
        CAST(r.started_at AS DATE)) AS issued_on
    FROM runs r"""


class NumberingError(RuntimeError):
    """A document sequence has a gap or a duplicate: the run is rolled back."""


def _issue(
    con: duckdb.DuckDBPyConnection, pending: str, terms: DocumentTerms, run_id: str
) -> dict[str, int]:
    """Number the rows of `pending` and record them in `documents`; how many of each kind."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _issued AS
            WITH p AS ({pending}),
                 base AS (SELECT kind, max(sequence) AS last FROM documents GROUP BY kind)
            SELECT p.*, d.issued_on,
                   CAST(d.issued_on + CAST(? AS INTEGER) AS DATE) AS due_on,
                   coalesce(base.last, 0) + row_number() OVER (
                       PARTITION BY p.kind
                       ORDER BY d.started_at NULLS LAST, p.made_by, p.period, p.account_id)
                     AS sequence
            FROM p LEFT JOIN ({_RUN_DATES}) d ON d.run_id = p.made_by
            LEFT JOIN base USING (kind)""",
        [terms.payment_terms_days],
    )
    con.execute(
        f"""INSERT INTO documents BY NAME
            SELECT CASE kind WHEN 'invoice' THEN ? WHEN 'credit_note' THEN ? ELSE ? END
                     || printf('%0{NUMBER_DIGITS}d', sequence) AS document_number,
                   kind, account_id, period, currency, total, issued_on, due_on, corrects,
                   ? AS run_id, sequence
            FROM _issued""",
        [terms.invoice_prefix, terms.credit_note_prefix, terms.debit_note_prefix, run_id],
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _issued AS
           SELECT i.*, d.document_number FROM _issued i
           JOIN documents d USING (kind, sequence)"""
    )
    return dict(rows(con, "SELECT kind, count(*) FROM _issued GROUP BY kind"))


def issue_documents(
    con: duckdb.DuckDBPyConnection, run_id: str, terms: DocumentTerms
) -> dict[str, int]:
    """Number every final invoice and every note still without a number (the caller holds the
    run's transaction, and has written its `runs` row); returns `<kind>s_issued` counts."""
    issued = _issue(con, _PENDING_INVOICES, terms, run_id)
    con.execute(
        """UPDATE invoices i SET invoice_number = n.document_number, issued_on = n.issued_on,
                  due_on = n.due_on
           FROM _issued n WHERE i.account_id = n.account_id AND i.period = n.period"""
    )
    notes = _issue(con, _PENDING_NOTES, terms, run_id)  # after: a note names its invoice
    con.execute(
        """UPDATE adjustments a SET document_number = n.document_number
           FROM _issued n WHERE a.run_id = n.made_by AND a.account_id = n.account_id
             AND a.period = n.period AND a.document_number IS NULL"""
    )
    con.execute("DROP TABLE IF EXISTS _issued")
    # (kind, sequence) is unique (the table's key): n numbers from 1 to n have no gap.
    bad = rows(
        con,
        "SELECT kind FROM documents GROUP BY kind "
        "HAVING count(*) <> max(sequence) OR min(sequence) <> 1",
    )
    if bad:
        raise NumberingError(f"document sequence with a gap or a duplicate: {bad}")
    counts = {**issued, **notes}
    return {f"{kind}s_issued": counts.get(kind, 0) for kind in ("invoice", "credit_note",
                                                                  "debit_note")}
