"""Document numbers (SPEC §9), given inside the run's one commit transaction.

The numbers are given in `store.results.write_results`, after the run's `runs` row is written
and before COMMIT: a run that fails or is killed rolls its numbers back with everything else,
and the next run continues each sequence without a gap. Only what has no number yet is
numbered, so running the same night twice issues nothing. Each kind (invoice, credit note,
debit note) has its own sequence; numbers follow the runs (by their start), then `period`, then
`account_id`.

The final invoices a run writes are numbered before they are inserted (`issue_invoice_numbers`
with `fresh`): each row goes in once, number included, instead of being inserted and then
updated (an UPDATE of millions of rows cost more than the rest of the numbering at 1M
accounts). The notes are numbered once the adjustment lines are written (`issue_documents`).

Rows written before numbers existed (a database made by an older billrun) have none: the first
run that commits numbers them the same way, in the order of the runs that finalized them, with
the as-of dates of those runs.
"""

from __future__ import annotations

import duckdb

from pipeline.documents import NUMBER_DIGITS, DocumentTerms
from store.duck import rows, scalar

# What still needs a number: final invoices, and the adjustment lines of each (run, account,
# period), which make one note: a credit note when they sum to zero or less, else a debit note.
# `stored`: the row is in its table already (it gets its number by an UPDATE).
_PENDING_INVOICES = """SELECT 'invoice' AS kind, account_id, period, currency, total,
        CAST(NULL AS VARCHAR) AS corrects, run_id AS made_by, true AS stored
    FROM invoices WHERE status = 'final' AND invoice_number IS NULL"""
_FRESH_INVOICES = """SELECT 'invoice' AS kind, account_id, period, currency, total,
        CAST(NULL AS VARCHAR) AS corrects, $run_id AS made_by, false AS stored
    FROM {fresh} WHERE status = 'final'"""
_PENDING_NOTES = """SELECT CASE WHEN sum(a.amount) <= 0 THEN 'credit_note' ELSE 'debit_note' END
          AS kind, a.account_id, a.period, any_value(a.currency) AS currency,
        sum(a.amount) AS total, i.invoice_number AS corrects, a.run_id AS made_by,
        true AS stored
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

# The temp table that holds what one `_issue` numbered, with its numbers.
ISSUED = "_issued"


class NumberingError(RuntimeError):
    """A document sequence has a gap or a duplicate: the run is rolled back."""


def _issue(
    con: duckdb.DuckDBPyConnection, pending: str, terms: DocumentTerms, run_id: str
) -> dict[str, int]:
    """Number the rows of `pending` into the temp table `_issued` (with `document_number`)
    and record them in `documents`; how many of each kind. One sort of the pending rows, one
    insert: the numbers are made in the same pass as the sequence."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {ISSUED} AS
            WITH p AS ({pending}),
                 base AS (SELECT kind, max(sequence) AS last FROM documents GROUP BY kind),
                 numbered AS (
                   SELECT p.*, d.issued_on,
                          CAST(d.issued_on + CAST($days AS INTEGER) AS DATE) AS due_on,
                          coalesce(base.last, 0) + row_number() OVER (
                              PARTITION BY p.kind
                              ORDER BY d.started_at NULLS LAST, p.made_by, p.period,
                                       p.account_id) AS sequence
                   FROM p LEFT JOIN ({_RUN_DATES}) d ON d.run_id = p.made_by
                   LEFT JOIN base USING (kind))
            SELECT CASE kind WHEN 'invoice' THEN $inv WHEN 'credit_note' THEN $cn ELSE $dn END
                     || printf('%0{NUMBER_DIGITS}d', sequence) AS document_number, *
            FROM numbered""",
        {"days": terms.payment_terms_days, "inv": terms.invoice_prefix,
         "cn": terms.credit_note_prefix, "dn": terms.debit_note_prefix,
         **({"run_id": run_id} if "$run_id" in pending else {})},
    )
    con.execute(
        f"""INSERT INTO documents BY NAME
            SELECT document_number, kind, account_id, period, currency, total, issued_on,
                   due_on, corrects, ? AS run_id, sequence
            FROM {ISSUED}""",
        [run_id],
    )
    return dict(rows(con, f"SELECT kind, count(*) FROM {ISSUED} GROUP BY kind"))


def issue_invoice_numbers(
    con: duckdb.DuckDBPyConnection, run_id: str, terms: DocumentTerms, fresh: str | None = None
) -> int:
    """Number every final invoice still without a number (the caller holds the run's
    transaction, and has written its `runs` row); returns how many. `fresh`: the invoice rows
    the run is about to insert (a table or a parenthesized query: `account_id, period,
    currency, total, status`); their final ones are numbered as this run's, and the caller
    inserts them with the numbers of `_issued` (`document_number, issued_on, due_on`, by
    `account_id, period`). Stored rows without a number get theirs here."""
    pending = _PENDING_INVOICES
    if fresh is not None:
        pending += "\nUNION ALL\n" + _FRESH_INVOICES.format(fresh=fresh)
    issued = _issue(con, pending, terms, run_id).get("invoice", 0)
    if issued and scalar(con, f"SELECT count(*) FROM {ISSUED} WHERE stored"):
        con.execute(
            f"""UPDATE invoices i SET invoice_number = n.document_number,
                      issued_on = n.issued_on, due_on = n.due_on
               FROM {ISSUED} n WHERE n.stored AND i.account_id = n.account_id
                 AND i.period = n.period"""
        )
    return issued


def issue_documents(
    con: duckdb.DuckDBPyConnection, run_id: str, terms: DocumentTerms,
    invoices_issued: int | None = None,
) -> dict[str, int]:
    """Number every note, and every final invoice, still without a number (the caller holds
    the run's transaction, and has written its `runs` row); returns `<kind>s_issued` counts.
    `invoices_issued`: the invoices were numbered already (`issue_invoice_numbers`), so many."""
    if invoices_issued is None:
        invoices_issued = issue_invoice_numbers(con, run_id, terms)
    notes = _issue(con, _PENDING_NOTES, terms, run_id)  # after: a note names its invoice
    if notes:
        con.execute(
            f"""UPDATE adjustments a SET document_number = n.document_number
               FROM {ISSUED} n WHERE a.run_id = n.made_by AND a.account_id = n.account_id
                 AND a.period = n.period AND a.document_number IS NULL"""
        )
    con.execute(f"DROP TABLE IF EXISTS {ISSUED}")
    # (kind, sequence) is unique (the table's key): n numbers from 1 to n have no gap.
    bad = rows(
        con,
        "SELECT kind FROM documents GROUP BY kind "
        "HAVING count(*) <> max(sequence) OR min(sequence) <> 1",
    )
    if bad:
        raise NumberingError(f"document sequence with a gap or a duplicate: {bad}")
    counts = {"invoice": invoices_issued, **notes}
    return {f"{kind}s_issued": counts.get(kind, 0) for kind in ("invoice", "credit_note",
                                                                  "debit_note")}
